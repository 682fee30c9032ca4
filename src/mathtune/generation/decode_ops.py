"""Two elementwise steps of a Llama-family block, and the greedy pick, in C while the hf backend generates.

Between its matrix products, a transformers Llama/Qwen2/Mistral block runs RMSNorm twice (8
PyTorch ops each: casts, square, mean, rsqrt, two products) and the rotary embedding of q and k
(14 ops: slices, negations, concatenations, products, sums). At decode sizes each op is a few
microseconds of dispatch around little arithmetic; in bfloat16 each cast is a pass over the
data too. `kernels/decode_ops.c` does each step in one call, rounding where PyTorch rounds (see
its header), compiled on first use like the decode attention kernel (`decode_kernel._build`,
without -ffast-math) and used only after a probe against transformers' own functions passes.
Both give transformers' bits in float32 and bfloat16 (RMSNorm adds its squares in the order of
ATen's sum kernel, `_lanes`), so greedy text does not change. On the AMX Xeon (2 cores), a
decode step's shapes (batch 64, SmolLM2-135M): RMSNorm 80 -> 33 us in bf16 (53 -> 28 in fp32),
rotary of q and k 102 -> 61 us (92 -> 47); prefill-sized (9,728 rows) 11x in bf16. 64 GSM8K
problems end to end (bf16, one process, alternating runs): 35.4 -> 33.4 s (best of 3, 1.06x),
the same text on all 64 (1.13x with a first RMSNorm that summed in its own order and changed
the greedy text of 51 of them: not kept). The SiLU-gated product was tried too and left in
PyTorch: one op fewer, but compute-bound, and 0.8-0.9x PyTorch's vectorised SiLU at batch 64
in C (plain loops, a polynomial exp). Greedy decoding's pick, the first index of each row's
largest logit (`argmax`, as `max(dim=-1).indices` picks it), is one vectorised pass here: 64 x
49,152 bf16 logits 2.09 -> 0.27 ms a step on 2 AMD Zen 5 cores (fp32 1.82 -> 0.25), where
PyTorch's reduction with an index does not vectorise; a row holding a NaN goes back to PyTorch.

`elementwise_in_c(model)` installs them for the duration of a block (the `decode-elementwise`
patch, `patches/elementwise.py`): instance forwards on the model's RMSNorm modules of the
classes verified, the rotary function of their modeling modules; everything comes back on exit.
Off with `MATHTUNE_DECODE_KERNEL=0` (the C kernels' one switch) or without a compiler.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("kernels") / "decode_ops.c"
FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512", "-fno-math-errno", "-ffp-contract=off", "-fopenmp", "-shared", "-fPIC")


@functools.cache
def _library() -> Any:
    """The loaded, probed library, or None (switched off, no compiler, failed build or probe)."""
    from . import decode_kernel

    lib = None if decode_kernel._switch() == "0" else decode_kernel.load(SOURCE, FLAGS)
    if lib is None:
        return None
    i64, ptr, f32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float
    for dt in ("bf16", "f32"):
        getattr(lib, f"rmsnorm_{dt}").argtypes = [ptr, i64, i64, i64, ptr, f32, ctypes.c_int, ptr]
        getattr(lib, f"rope_{dt}").argtypes = [ptr] + [i64] * 7 + [ptr, ptr, i64, i64, ptr]
        getattr(lib, f"argmax_{dt}").argtypes = [ptr, i64, i64, i64, ptr]
        getattr(lib, f"rmsnorm_backward_{dt}").argtypes = [ptr, i64, i64, i64, ptr, i64, ptr, f32, ptr, ptr,
                                                          ctypes.c_int]
        getattr(lib, f"swiglu_forward_{dt}").argtypes = [ptr, i64, ptr, i64, i64, i64, ptr]
        getattr(lib, f"swiglu_backward_{dt}").argtypes = [ptr, i64, ptr, i64, ptr, i64, i64, i64, ptr, ptr]
        for name in ("rmsnorm", "rope", "argmax", "rmsnorm_backward", "swiglu_forward", "swiglu_backward"):
            getattr(lib, f"{name}_{dt}").restype = None
    lib.mathtune_lanes = _lanes(lib)
    return lib if _probe(lib) else None


def available() -> bool:
    return _library() is not None


def describe() -> str:
    """One line for benchmarks and logs."""
    from . import decode_kernel

    if available():
        return "on (RMSNorm, rotary, greedy argmax)"
    if decode_kernel._switch() == "0":
        return "off (MATHTUNE_DECODE_KERNEL=0)"
    return "off (not built or failed its probe: a C compiler with OpenMP is needed)"


def _suffix(dtype: Any) -> str | None:
    import torch

    return {torch.bfloat16: "bf16", torch.float32: "f32"}.get(dtype)


def _lanes(lib: Any) -> int:
    """The float32 lanes of ATen's sum kernel in this process (8 or 16), found by which order
    gives torch's own bits for a float32 RMSNorm; 8 when neither does (torch 2.13's sum took 8
    lanes on the AMX Xeon although its CPU capability reads AVX512; 8 is also AVX2's width)."""
    import torch
    from transformers.models.llama import modeling_llama as ml

    gen = torch.Generator().manual_seed(1)
    norm = ml.LlamaRMSNorm(200, eps=1e-5)
    x = torch.randn(64, 200, generator=gen) * 3
    with torch.inference_mode():
        want = norm(x)
        for lanes in (8, 16):
            lib.mathtune_lanes = lanes
            if torch.equal(rms_norm(x, norm.weight, 1e-5, lib), want):
                return lanes
    return 8


def rms_norm(x: Any, weight: Any, eps: float, lib: Any = None) -> Any | None:
    """transformers' RMSNorm of `x` [..., n] (rows of unit stride), or None where it does not apply."""
    import torch

    lib = lib or _library()
    sfx = _suffix(x.dtype)
    if (lib is None or sfx is None or weight.dtype != x.dtype or x.device.type != "cpu" or x.dim() < 2
            or x.stride(-1) != 1 or weight.shape != (x.shape[-1],) or not weight.is_contiguous()):
        return None
    n = x.shape[-1]
    rows = x.reshape(-1, n) if x.dim() != 2 else x
    if rows.stride(-1) != 1:
        return None
    out = torch.empty(x.shape, dtype=x.dtype)
    getattr(lib, f"rmsnorm_{sfx}")(rows.data_ptr(), rows.shape[0], n, rows.stride(0), weight.data_ptr(), eps,
                                   lib.mathtune_lanes, out.data_ptr())
    return out


def _rows_of(*tensors: Any) -> list[Any] | None:
    """Each tensor as [rows, n] with unit stride along n (same shape, dtype, CPU), or None (the inputs
    are only read, so a reshape that has to copy is fine)."""
    t0 = tensors[0]
    if any(t.shape != t0.shape or t.dtype != t0.dtype or t.device.type != "cpu" for t in tensors) or t0.dim() < 1:
        return None
    out = [t.reshape(-1, t0.shape[-1]) if t.dim() != 2 else t for t in tensors]
    return out if all(t.stride(-1) == 1 for t in out) else None


def rms_norm_backward(x: Any, weight: Any, grad: Any, eps: float, need_x: bool = True,
                      need_weight: bool = True, lib: Any = None) -> tuple[Any, Any] | None:
    """The gradients (for x, for the weight; None where not needed) of `rms_norm(x, weight, eps)`
    given its output's gradient, in float32 inside (the kernel's own summation order, not
    autograd's), or None where the op does not apply."""
    import torch

    lib = lib or _library()
    sfx = _suffix(x.dtype)
    n = x.shape[-1]
    pair = None if lib is None or sfx is None else _rows_of(x, grad)
    if pair is None or weight.dtype != x.dtype or weight.shape != (n,) or not weight.is_contiguous():
        return None
    rows, g = pair
    threads = torch.get_num_threads()
    gx = torch.empty(x.shape, dtype=x.dtype) if need_x else None
    part = torch.empty((threads, n), dtype=torch.float32) if need_weight else None
    getattr(lib, f"rmsnorm_backward_{sfx}")(rows.data_ptr(), rows.shape[0], n, rows.stride(0), g.data_ptr(),
                                            g.stride(0), weight.data_ptr(), eps,
                                            None if gx is None else gx.data_ptr(),
                                            None if part is None else part.data_ptr(), threads)
    return gx, None if part is None else part.sum(0).to(weight.dtype)


def swiglu(g: Any, u: Any, lib: Any = None) -> Any | None:
    """`silu(g) * u` (silu rounded to the dtype before the product, as PyTorch's two ops), float32
    inside; not PyTorch's bits (another exp). None where the op does not apply."""
    import torch

    lib = lib or _library()
    sfx = _suffix(g.dtype)
    rows = None if lib is None or sfx is None else _rows_of(g, u)
    if rows is None:
        return None
    (g2, u2), n = rows, g.shape[-1]
    h = torch.empty(g.shape, dtype=g.dtype)
    getattr(lib, f"swiglu_forward_{sfx}")(g2.data_ptr(), g2.stride(0), u2.data_ptr(), u2.stride(0), g2.shape[0], n,
                                          h.data_ptr())
    return h


def swiglu_backward(grad: Any, g: Any, u: Any, lib: Any = None) -> tuple[Any, Any] | None:
    """(d/dg, d/du) of `swiglu(g, u)` given its output's gradient, in float32; None where it does not apply."""
    import torch

    lib = lib or _library()
    sfx = _suffix(g.dtype)
    rows = None if lib is None or sfx is None else _rows_of(grad, g, u)
    if rows is None:
        return None
    (d2, g2, u2), n = rows, g.shape[-1]
    dg, du = torch.empty(g.shape, dtype=g.dtype), torch.empty(g.shape, dtype=g.dtype)
    getattr(lib, f"swiglu_backward_{sfx}")(d2.data_ptr(), d2.stride(0), g2.data_ptr(), g2.stride(0), u2.data_ptr(),
                                           u2.stride(0), g2.shape[0], n, dg.data_ptr(), du.data_ptr())
    return dg, du


def rope(x: Any, cos: Any, sin: Any, lib: Any = None) -> Any | None:
    """`x * cos + rotate_half(x) * sin` for x [B, H, T, D] and cos/sin [B, T, D], laid out as
    PyTorch lays out that product of a transposed projection ([B, T, H, D] in memory), or None."""
    import torch

    lib = lib or _library()
    sfx = _suffix(x.dtype)
    if (lib is None or sfx is None or x.dim() != 4 or cos.dim() != 3 or x.device.type != "cpu"
            or cos.dtype != x.dtype or sin.dtype != x.dtype or cos.shape != sin.shape or cos.stride() != sin.stride()
            or x.shape[3] % 2 or cos.shape[1:] != (x.shape[2], x.shape[3]) or cos.shape[0] not in (1, x.shape[0])
            or x.stride(3) != 1 or cos.stride(2) != 1):
        return None
    b, h, t, d = x.shape
    out = torch.empty((b, t, h, d), dtype=x.dtype)
    cs0 = cos.stride(0) if cos.shape[0] == b else 0
    getattr(lib, f"rope_{sfx}")(x.data_ptr(), b, h, t, d, x.stride(0), x.stride(1), x.stride(2), cos.data_ptr(),
                                sin.data_ptr(), cs0, cos.stride(1), out.data_ptr())
    return out.transpose(1, 2)


def argmax(x: Any, lib: Any = None) -> Any | None:
    """`x.max(dim=-1).indices` of a [rows, n] CPU tensor with rows of unit stride (the first index
    of each row's maximum), or None where it does not apply (a NaN in x among them)."""
    import torch

    lib = lib or _library()
    sfx = _suffix(x.dtype)
    if lib is None or sfx is None or x.device.type != "cpu" or x.dim() != 2 or x.stride(1) != 1 or x.shape[1] == 0:
        return None
    out = torch.empty(x.shape[0], dtype=torch.int64)
    getattr(lib, f"argmax_{sfx}")(x.data_ptr(), x.shape[0], x.shape[1], x.stride(0), out.data_ptr())
    return None if bool((out < 0).any()) else out


def _probe(lib: Any) -> bool:
    """Each op against transformers' Llama functions, both dtypes (bf16 within one bf16 step of
    the last bit of a float32 intermediate on a few elements; float32 within 1e-6)."""
    import torch
    from transformers.models.llama import modeling_llama as ml

    gen = torch.Generator().manual_seed(0)
    try:
        for dtype in (torch.float32, torch.bfloat16):
            tol = {"atol": 1e-5, "rtol": 1e-6} if dtype == torch.float32 else {"atol": 1e-2, "rtol": 8e-3}
            norm = ml.LlamaRMSNorm(72, eps=1e-5)
            norm.weight.data = torch.randn(72, generator=gen)
            norm = norm.to(dtype)
            x = torch.randn(5, 3, 72, generator=gen).to(dtype)
            q = torch.randn(5, 3, 4, 16, generator=gen).to(dtype).transpose(1, 2)
            cos, sin = torch.randn(2, 5, 3, 16, generator=gen).to(dtype)
            want = ml.apply_rotary_pos_emb(q, q, cos, sin)[0]
            logits = torch.randn(6, 37, generator=gen).to(dtype)
            logits[1, 3] = logits[1, 30] = logits[1].max() + 1  # ties: the first
            checks = ((rms_norm(x, norm.weight, 1e-5, lib), norm(x)),
                      (rope(q, cos, sin, lib), want), (argmax(logits, lib), logits.max(dim=-1).indices))
            for got, ref in checks:
                if got is None or got.shape != ref.shape or not torch.allclose(got.float(), ref.float(), **tol):
                    log.info("decode ops failed their probe (%s): not used", dtype)
                    return False
    except (RuntimeError, OSError) as e:
        log.info("decode ops failed their probe: %s", e)
        return False
    return True


@contextlib.contextmanager
def elementwise_in_c(model: Any, enabled: bool = True) -> Iterator[int]:
    """Within the block, the model's RMSNorm and rotary embeddings run in C where the patch is
    verified and the library built; yields how many modules and functions were replaced (0 when
    off)."""
    from ..patches.elementwise import replace_elementwise

    lib = _library() if enabled else None
    if lib is None:
        yield 0
        return
    undo = replace_elementwise(model, functools.partial(rms_norm, lib=lib), functools.partial(rope, lib=lib))
    with undo:
        yield undo.targets
