"""PEFT's LoRA `Linear` forward and backward as one autograd function, for CPU training.

PEFT computes `base(x) + lora_B(lora_A(dropout(x))) * scaling` as separate modules and ops. On a
CPU each is a pass over an activation: `nn.Dropout` draws a float per element and keeps the
dropped copy of `x` for backward (q, k, v, gate and up each keep their own copy of the same
input), the LoRA output is scaled in a full-size product and added in a full-size sum (in float32
under autocast, with fp32 adapters on a bf16 base, then cast back), and backward repeats the
chain in reverse. `LoRALinear` computes the same function with the full-size work reduced to
the two products the frozen layer needs and one pass each for the dropout:

    forward:  h = (x . keep) A^T / (1 - p)            [N, r]
              y = x W^T (+ bias);  y += h (s B)^T      (one addmm into y: no full-size scale or sum)
    backward: gh = g (s B) / (1 - p);  dB = s g^T h;  dA = gh^T (x . keep)
              dx = g W;  dx += (gh A) . keep           (one pass: kernels/lora_dropout.c)

Dropout is counter-based: element i of a call is dropped when its 16-bit half of a hash of
(i // 2, the call's 64-bit key) falls below p * 2^16 (`kernels/lora_dropout.c`; `_draw` here is
the same function in
PyTorch, the fallback without a compiler and the tests' reference). The key is drawn from
PyTorch's generator, so `torch.manual_seed` makes runs repeat; backward regenerates forward's
mask from it, so no mask and no dropped copy of `x` is kept (x itself is shared with the other
layers reading it). Each element is dropped independently with probability p (to 2^-17), scaled
by 1 / (1 - p): PEFT's dropout, from another random stream.

Products run in the autocast dtype under autocast (bf16 on a CPU with fast bf16: the adapters are
cast per call, as autocast casts them) and in the inputs' dtype otherwise; adapter gradients come
back in the adapters' dtype. Measured on 2 AMX Xeon cores in bf16: forward + backward of one
layer at 1,159 tokens against PEFT with its dropout already in one function, 576 -> 1536 7.7 ->
6.1 ms and 1536 -> 576 24.6 -> 13.1 ms (with the dropout still in PyTorch); the counter-based
dropout's C pass 0.12 ms against 0.84 ms for drawing and applying a byte mask ([1159, 576]); five
SFT steps of SmolLM2-135M (LoRA r=16 on all linear layers, the two versions in alternating
processes) 14.1 -> 12.2 s (1.16x), peak RSS 2.65 -> 2.45 GB.

`fuse_lora_layers(model)` gives each vanilla LoRA `Linear` this forward (the `lora-fused-linear`
patch, `patches/lora_linear.py`); a call it does not cover (several active adapters, merged or
disabled adapters, `adapter_names`, mixed dtypes without autocast, a non-CPU tensor) runs PEFT's
own forward.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from pathlib import Path
from typing import Any

from ..patches.undo import Undo

log = logging.getLogger(__name__)
SOURCE = Path(__file__).parents[1] / "generation" / "kernels" / "lora_dropout.c"
M1, M2 = 0x7FEB352D, 0x846CA68B  # lowbias32's multipliers, as in the C source


@functools.cache
def _library() -> Any:
    """The loaded kernel library, or None (switched off, no compiler, failed build or probe)."""
    from ..generation import decode_kernel, decode_ops

    lib = None if decode_kernel._switch() == "0" else decode_kernel.load(SOURCE, decode_ops.FLAGS)
    if lib is None:
        return None
    u32, i64, ptr = ctypes.c_uint32, ctypes.c_int64, ctypes.c_void_p
    for name in ("dropout_select_16", "dropout_select_32", "dropout_add_f32", "dropout_add_bf16"):
        getattr(lib, name).argtypes = [ptr, ptr, i64, u32, u32, u32]
        getattr(lib, name).restype = None
    return lib if _probe(lib) else None


def _probe(lib: Any) -> bool:
    """The C kernel's mask is `_draw`'s, bit for bit, on a few thousand elements."""
    import torch

    x = torch.ones(5000, dtype=torch.float32)
    out = torch.empty_like(x)
    lib.dropout_select_32(x.data_ptr(), out.data_ptr(), x.numel(), 12345, 678910, 1 << 15)
    ok = torch.equal(out != 0, _draw(x.numel(), 12345, 678910) >= (1 << 15))
    if not ok:
        log.warning("lora_dropout kernel disagrees with its reference; LoRA dropout runs in PyTorch")
    return ok


def _mix(x: Any) -> Any:
    """lowbias32 on uint32 values held in an int64 tensor."""
    mask = 0xFFFFFFFF
    x = x ^ (x >> 16)
    x = (x * M1) & mask
    x = x ^ (x >> 15)
    x = (x * M2) & mask
    return x ^ (x >> 16)


def _draw(n: int, k1: int, k2: int, device: Any = "cpu") -> Any:
    """The 16-bit draws of elements 0..n-1 for key (k1, k2), as int64: the C kernel's bits
    (element i takes the low (i even) or high (i odd) half of pair i // 2's 32-bit hash)."""
    import torch

    j = torch.arange((n + 1) // 2, dtype=torch.int64, device=device)
    d = _mix((_mix(j ^ k1) + k2) & 0xFFFFFFFF)
    return torch.stack((d & 0xFFFF, d >> 16), 1).flatten()[:n]


def threshold(p: float) -> int:
    """Draws below this are dropped: round(p * 2^16), for 0 <= p < 1."""
    return min(round(p * 2**16), 2**16 - 1)


def new_key() -> tuple[int, int]:
    """A call's key, from PyTorch's default generator (so manual_seed repeats runs)."""
    import torch

    k = torch.randint(0, 2**62, (1,), dtype=torch.int64).item()
    return k & 0xFFFFFFFF, (k >> 32) & 0xFFFFFFFF


def _c_ok(*tensors: Any) -> bool:
    import torch

    t0 = tensors[0]
    return (_library() is not None and t0.numel() < 2**32 and t0.dtype in (torch.float32, torch.bfloat16)
            and all(t.device.type == "cpu" and t.is_contiguous() and t.dtype == t0.dtype for t in tensors))


def dropout_select(x: Any, key: tuple[int, int], thr: int) -> Any:
    """x with the elements this key drops set to 0 (x's flat order; no 1/(1-p) scaling)."""
    import torch

    if _c_ok(x):
        out = torch.empty_like(x)
        fn = _library().dropout_select_32 if x.dtype == torch.float32 else _library().dropout_select_16
        fn(x.data_ptr(), out.data_ptr(), x.numel(), key[0], key[1], thr)
        return out
    keep = (_draw(x.numel(), *key, device=x.device) >= thr).view(x.shape)
    return x * keep.to(x.dtype)


def dropout_add_(acc: Any, t: Any, key: tuple[int, int], thr: int) -> Any:
    """acc += t with the elements this key drops left out; returns acc."""
    import torch

    if _c_ok(acc, t):
        fn = _library().dropout_add_f32 if acc.dtype == torch.float32 else _library().dropout_add_bf16
        fn(acc.data_ptr(), t.data_ptr(), acc.numel(), key[0], key[1], thr)
        return acc
    return acc.add_(dropout_select(t, key, thr))


@functools.cache
def _function() -> Any:
    import torch

    class LoRALinear(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, bias, a, b, scaling, p, dtype):  # type: ignore[override]
            shape = x.shape
            x2 = x.reshape(-1, shape[-1]).to(dtype).contiguous()
            w = weight.to(dtype)
            a_c, b_s = a.to(dtype), (b * scaling).to(dtype)
            key, thr = (new_key(), threshold(p)) if p > 0 else (None, 0)
            h = (x2 if key is None else dropout_select(x2, key, thr)) @ a_c.t()
            if p > 0:
                h.mul_(1.0 / (1.0 - p))
            y = torch.mm(x2, w.t()) if bias is None else torch.addmm(bias.to(dtype), x2, w.t())
            y.addmm_(h, b_s.t())
            ctx.save_for_backward(x2, w, a_c, b_s, h)
            ctx.key, ctx.thr, ctx.p, ctx.scaling, ctx.shape = key, thr, p, scaling, shape
            ctx.dtypes = (x.dtype, a.dtype, b.dtype)
            return y.view(*shape[:-1], y.shape[-1])

        @staticmethod
        def backward(ctx, grad):  # type: ignore[override]
            x2, w, a_c, b_s, h = ctx.saved_tensors
            g = grad.reshape(-1, grad.shape[-1]).to(x2.dtype)
            gx = ga = gb = None
            gh = g @ b_s
            if ctx.needs_input_grad[4]:
                gb = (g.t() @ h).to(ctx.dtypes[2]).mul_(ctx.scaling)
            if ctx.p > 0:
                gh.mul_(1.0 / (1.0 - ctx.p))
            if ctx.needs_input_grad[3]:
                kept = x2 if ctx.key is None else dropout_select(x2, ctx.key, ctx.thr)
                ga = (gh.t() @ kept).to(ctx.dtypes[1])
            if ctx.needs_input_grad[0]:
                gx = g @ w
                if ctx.key is None:
                    gx.addmm_(gh, a_c)
                else:
                    dropout_add_(gx, gh @ a_c, ctx.key, ctx.thr)
                gx = gx.view(ctx.shape).to(ctx.dtypes[0])
            return gx, None, None, ga, gb, None, None, None

    return LoRALinear


def _fused_dtype(layer: Any, x: Any) -> Any | None:
    """The dtype the fused forward computes in for this call, or None when it does not apply."""
    import torch

    if (x.device.type != "cpu" or layer.disable_adapters or layer.merged or len(layer.active_adapters) != 1
            or getattr(layer, "fan_in_fan_out", False)):
        return None
    name = layer.active_adapters[0]
    if name not in layer.lora_A or name in (getattr(layer, "lora_variant", None) or {}):
        return None
    drop = layer.lora_dropout[name]
    if type(drop) not in (torch.nn.Dropout, torch.nn.Identity) or layer.lora_A[name].bias is not None:
        return None
    base = layer.get_base_layer()
    if type(base) is not torch.nn.Linear or any(t is not None and t.requires_grad for t in (base.weight, base.bias)):
        return None  # (the function gives no gradient to the base layer's weights)
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    dtypes = {x.dtype, base.weight.dtype, layer.lora_A[name].weight.dtype, layer.lora_B[name].weight.dtype}
    return x.dtype if len(dtypes) == 1 else None


def lora_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    """Instance forward for a PEFT LoRA `Linear`: `LoRALinear` where it applies, PEFT's otherwise."""
    import torch

    dtype = None if args or kwargs else _fused_dtype(self, x)
    if dtype is None:
        return type(self).forward(self, x, *args, **kwargs)
    name = self.active_adapters[0]
    drop = self.lora_dropout[name]
    p = float(drop.p) if isinstance(drop, torch.nn.Dropout) and self.training and drop.training else 0.0
    base = self.get_base_layer()
    with torch.autocast("cpu", enabled=False):
        return _function().apply(x, base.weight, base.bias, self.lora_A[name].weight, self.lora_B[name].weight,
                                 float(self.scaling[name]), p, dtype)


def fuse_lora_layers(model: Any) -> Undo:
    """Give each vanilla LoRA `Linear` of `model` `lora_forward` (the `lora-fused-linear` patch);
    `len()` of the returned Undo is how many layers changed."""
    from ..patches.lora_linear import fuse

    return fuse(model, lora_forward)


__all__ = ["dropout_add_", "dropout_select", "fuse_lora_layers", "lora_forward", "threshold"]
