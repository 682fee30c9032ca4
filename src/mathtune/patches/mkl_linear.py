"""Patch `mkl-packed-linear`: `F.linear` on a weight packed once into MKL's GEMM layout (torch private ops).

A BLAS GEMM copies its weight into the kernel's panel layout on every call; a decode step's
skinny GEMMs (a few dozen rows) spend about as long on that copy as on the arithmetic. MKL can
pack the weight once (`cblas_sgemm_pack`) and multiply many times (`cblas_sgemm_compute`).
PyTorch exposes both only as private ops, `torch.ops.mkl._mkl_reorder_linear_weight(weight,
prepack_rows)` and `torch.ops.mkl._mkl_linear(x, packed, origin_weight, bias, prepack_rows)`.

What production relies on, and the probe checks with the very call production makes
(`PackedLinear.__call__`):
- `_mkl_linear` takes the packed path when its last argument equals the input's row count, and
  then reads only the *shape* of `origin_weight`. `PackedLinear` always passes the input's row
  count and, as `origin_weight`, a zero-stride stand-in (one element expanded to the weight's
  shape), so no second plain copy of the weight is kept. A torch whose `_mkl_linear` read the
  stand-in's values would give wrong results: the probe would see that and keep `F.linear`.
- MKL documents a packed matrix for the (m, n, k) it was packed for; in practice the packed
  panels do not depend on m, so one pack (for 64 rows) serves every row count. The probe checks
  1, 5, 64 and 130 rows, a 3-D [batch, sequence, features] input, with and without a bias.

Verified with torch 2.13 (x86 builds with MKL). Outside that range, or where the probe fails (no
MKL ops, e.g. aarch64), `available()` is False and callers use `F.linear`. This patch changes no
library object, so there is nothing to undo: packed copies live in the `PackedLinear` objects of
`generation/fused.py` and are freed when its context closes.
"""

from __future__ import annotations

import functools
from typing import Any

from .gate import Patch

PATCH = Patch(
    "mkl-packed-linear",
    "torch: calls the private ops torch.ops.mkl._mkl_reorder_linear_weight / _mkl_linear, passing a "
    "zero-stride stand-in for the weight",
    {"torch": ">=2.13,<2.14"},
)
PREPACK_ROWS = 64


class PackedLinear:
    """`F.linear(x, weight, bias)` for float32 CPU tensors, on a copy of `weight` packed for MKL."""

    def __init__(self, weight: Any, bias: Any = None) -> None:
        import torch

        self.packed = torch.ops.mkl._mkl_reorder_linear_weight(weight.detach(), PREPACK_ROWS)
        # `_mkl_linear` reads only the shape of `origin_weight` when the row count passed equals
        # the input's (always, below): a zero-stride stand-in instead of the real weight
        self.standin = weight.new_empty(1).expand(weight.shape)
        self.bias = bias

    def __call__(self, x: Any) -> Any:
        import torch

        return torch.ops.mkl._mkl_linear(x, self.packed, self.standin, self.bias, x.numel() // x.shape[-1])

    def release(self) -> None:
        self.packed = self.standin = self.bias = None


def available() -> bool:
    """True where this torch is a verified one and the production call gives `F.linear`'s results."""
    return PATCH.supported() and _probe()


def matches_linear(layer_cls: Any, dtype: Any, tol: float) -> bool:
    """Whether `layer_cls(weight, bias)(x)` -- the very call production makes -- gives
    `F.linear`'s results for 1, 5, 64 and 130 rows and a 3-D input, with and without a bias,
    under `inference_mode` as in `generate`. Shared by the MKL and oneDNN packing probes."""
    import torch

    gen = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(200, 96, generator=gen).to(dtype), torch.randn(200, generator=gen).to(dtype)
    inputs = [torch.randn(rows, 96, generator=gen).to(dtype) for rows in (1, 5, 64, 130)]
    inputs.append(torch.randn(3, 7, 96, generator=gen).to(dtype))
    with torch.inference_mode():
        for b in (None, bias):
            layer = layer_cls(weight, b)
            for x in inputs:
                want, got = torch.nn.functional.linear(x, weight, b), layer(x)
                if got.shape != want.shape or not torch.allclose(got.float(), want.float(), atol=tol, rtol=tol):
                    return False
    return True


@functools.cache
def _probe() -> bool:
    import torch

    try:
        return torch.backends.mkl.is_available() and matches_linear(PackedLinear, torch.float32, 1e-4)
    except (AttributeError, RuntimeError, NotImplementedError):  # no MKL ops in this build (e.g. aarch64)
        return False
