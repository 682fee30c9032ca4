"""RMSNorm, the rotary embedding and the MLP's SwiGLU of a training step: C ops, with their backward.

transformers' Llama-family RMSNorm is 8 PyTorch ops (a float32 copy of x, square, mean, add,
rsqrt, product, the copy back, the weight's product) whose autograd keeps the float32 copy and
two more full-size tensors for backward; the rotary embedding of q and k is 14 (slices,
negations, concatenations, products, sums). `generation/decode_ops.py` does each in one C call
with PyTorch's bits in float32 and bfloat16. Here the same calls are the forward of two autograd
functions, so a training step uses them too:

- `RMSNorm` keeps only x (and the weight) for backward and recomputes r = rsqrt(mean(x^2) + eps)
  in float32 there: with n = x r and g' = g w, dx = r (g' - n mean(g' n)), dw = sum of g n
  (the product with the weight is taken on n rounded to x's dtype, as transformers does; that
  rounding passes the gradient straight through, as autograd's does). That backward is one C
  pass too (`decode_ops.rms_norm_backward`, float32, per-thread partial sums for dw; PyTorch's
  ops where it declines): [1317, 576] bf16 7.0 -> 0.38 ms (0.29 with VCVTNEPS2BF16 stores), and in a profiled SFT run (AMX Xeon,
  4 steps) the norms' backward 272 -> 74 ms of 5.3 s.
- `Rotary` is linear in x: y = x cos + rotate_half(x) sin, whose adjoint is
  g cos + rotate_half^T(g sin) = `rope(g, cos, -sin)` when sin's two halves are equal, which they
  are for every rotary embedding transformers builds (emb = cat(freqs, freqs)); calls where they
  are not run transformers' function.
- `SwiGLU` (`silu(g) * up` in each Llama-family MLP whose activation is SiLU): one C pass forward
  and one backward (`decode_ops.swiglu`, float32 inside; silu rounded to the dtype before the
  product as PyTorch's two ops round it, but another exp, so not PyTorch's bits), keeping g and
  u only (autograd keeps silu(g) as well).

On the AMX Xeon (2 cores), forward + backward of one SFT batch of SmolLM2-135M (1,159 tokens,
bf16 under autocast, LoRA on all linear layers), one process, patch off and on in turn, best of 3
steps x 4 rounds: 2.459 -> 2.171 s (1.13x); the loss has the same bits (with the norms and the
rotary function; the SwiGLU's exp moves it in the last bits). `elementwise_for_training(model)`
installs them through the `decode-elementwise` patch (`patches/elementwise.py`); off with
`MATHTUNE_DECODE_KERNEL=0` or without a compiler, like the decode ops.
"""

from __future__ import annotations

import functools
from typing import Any

from ..generation import decode_ops
from ..patches.undo import Undo


@functools.cache
def _functions() -> tuple[Any, Any, Any]:
    import torch

    # Both take the C op's output as `out` (computed by the caller, which needs to know whether the
    # op declined) and return it: the function only attaches the backward to it.
    class RMSNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, eps, out):  # type: ignore[override]
            ctx.save_for_backward(x, weight)
            ctx.eps = eps
            return out

        @staticmethod
        def backward(ctx, grad):  # type: ignore[override]
            x, weight = ctx.saved_tensors
            fast = decode_ops.rms_norm_backward(x, weight, grad, ctx.eps, ctx.needs_input_grad[0],
                                                ctx.needs_input_grad[1])
            if fast is not None:
                return fast[0], fast[1], None, None
            xf = x.float()
            r = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True).add_(ctx.eps))
            n = xf.mul_(r)  # xf is ours: normalised in place
            gf = grad.float()
            gx = gw = None
            if ctx.needs_input_grad[1]:
                gw = (gf * n.to(x.dtype).float()).reshape(-1, x.shape[-1]).sum(0).to(weight.dtype)
            if ctx.needs_input_grad[0]:
                gn = gf.mul_(weight.float())
                gx = gn.sub_(n * (gn * n).mean(-1, keepdim=True)).mul_(r).to(x.dtype)
            return gx, gw, None, None

    class Rotary(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, cos, sin, out):  # type: ignore[override]
            ctx.save_for_backward(cos, sin)
            return out

        @staticmethod
        def backward(ctx, grad):  # type: ignore[override]
            cos, sin = ctx.saved_tensors
            gx = decode_ops.rope(grad, cos, -sin)
            if gx is None:  # a layout the C op does not take: the same adjoint in PyTorch
                half = grad.shape[-1] // 2
                u = grad * sin[:, None]
                gx = grad * cos[:, None] + torch.cat((u[..., half:], -u[..., :half]), dim=-1)
            return gx, None, None, None

    class SwiGLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, g, u, out):  # type: ignore[override]
            ctx.save_for_backward(g, u)
            return out

        @staticmethod
        def backward(ctx, grad):  # type: ignore[override]
            g, u = ctx.saved_tensors
            fast = decode_ops.swiglu_backward(grad.to(g.dtype), g, u)
            if fast is None:  # a layout the C op does not take: autograd through PyTorch's ops
                with torch.enable_grad():
                    g2, u2 = g.detach().requires_grad_(), u.detach().requires_grad_()
                    fast = torch.autograd.grad(torch.nn.functional.silu(g2) * u2, (g2, u2), grad)
            return fast[0], fast[1], None

    return RMSNorm, Rotary, SwiGLU


def rms_norm(x: Any, weight: Any, eps: float) -> Any | None:
    """transformers' RMSNorm through the C op, differentiable; None where the op declines."""
    out = decode_ops.rms_norm(x, weight, eps)
    if out is None or not (x.requires_grad or weight.requires_grad):
        return out
    return _functions()[0].apply(x, weight, eps, out)


_halves_memo: list[Any] = [None, False]  # [sin tensor, its halves are equal]: layers share one sin


def _equal_halves(sin: Any) -> bool:
    import torch

    if _halves_memo[0] is not sin:
        half = sin.shape[-1] // 2
        _halves_memo[0], _halves_memo[1] = sin, bool(torch.equal(sin[..., :half], sin[..., half:]))
    return _halves_memo[1]


def rope(x: Any, cos: Any, sin: Any) -> Any | None:
    """`x * cos + rotate_half(x) * sin` through the C op, differentiable; None where it declines."""
    if x.requires_grad and not _equal_halves(sin):
        return None
    out = decode_ops.rope(x, cos, sin)
    if out is None or not x.requires_grad:
        return out
    return _functions()[1].apply(x, cos, sin, out)


def swiglu(g: Any, u: Any) -> Any | None:
    """`silu(g) * u` through the C op, differentiable; None where it declines."""
    out = decode_ops.swiglu(g, u)
    if out is None or not (g.requires_grad or u.requires_grad):
        return out
    return _functions()[2].apply(g, u, out)


def elementwise_for_training(model: Any, mlp: bool = True) -> Undo:
    """The model's RMSNorm modules, rotary function and (with `mlp`) SiLU-gated MLPs through
    `rms_norm` / `rope` / `swiglu` (the `decode-elementwise` patch); the Undo is empty where the
    C ops are unavailable."""
    from ..patches.elementwise import PATCH, replace_elementwise

    if not decode_ops.available():
        return Undo(PATCH.name)
    return replace_elementwise(model, rms_norm, rope, swiglu if mlp else None)
