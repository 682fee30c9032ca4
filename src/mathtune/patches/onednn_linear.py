"""Patch `onednn-packed-linear`: bf16 `F.linear` on a weight packed once into oneDNN's blocked layout (torch private ops).

The bf16 counterpart of `mkl_linear.py`. On CPUs with AVX512-BF16/AMX, where `pick_dtype` runs
the model in bf16, `F.linear` hands each call to oneDNN, which reorders the plain weight into its
blocked (AMX tile) layout on every call; a decode step's skinny GEMMs pay that copy each time.
PyTorch's CPU inductor path packs once and multiplies many times with two private ops,
`torch.ops.mkldnn._reorder_linear_weight(weight, batch_size)` and
`torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")`; `PackedLinearBF16` makes
exactly that call, and the probe checks it against `F.linear` (1, 5, 64 and 130 rows, a 3-D
input, with and without a bias) before anything is packed. The packed tensor is all that is
kept: no second plain copy of the weight.

Verified with torch 2.13 (x86 builds with oneDNN). Outside that range, or where the probe fails
(no oneDNN bf16 support), `available()` is False and callers use `F.linear`. Like
`mkl-packed-linear` this changes no library object: the packed copies live in
`generation/fused.py`'s groups and are freed when its context closes.
"""

from __future__ import annotations

import functools
from typing import Any

from .gate import Patch

PATCH = Patch(
    "onednn-packed-linear",
    "torch: calls the private ops torch.ops.mkldnn._reorder_linear_weight / _linear_pointwise on bf16 weights",
    {"torch": ">=2.13,<2.14"},
)
PREPACK_ROWS = 64


class PackedLinearBF16:
    """`F.linear(x, weight, bias)` for bfloat16 CPU tensors, on a copy of `weight` packed for oneDNN."""

    def __init__(self, weight: Any, bias: Any = None) -> None:
        import torch

        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), PREPACK_ROWS)
        self.standin = weight.new_empty(1).expand(weight.shape)  # shape and dtype only, no data
        self.bias = bias

    def __call__(self, x: Any) -> Any:
        import torch

        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def release(self) -> None:
        self.packed = self.standin = self.bias = None


def available() -> bool:
    """True where this torch is a verified one and the production call gives `F.linear`'s results."""
    return PATCH.supported() and _probe()


@functools.cache
def _probe() -> bool:
    import torch

    from .mkl_linear import matches_linear

    try:
        return (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
                and matches_linear(PackedLinearBF16, torch.bfloat16, 1e-2))
    except (AttributeError, RuntimeError, NotImplementedError):  # no oneDNN bf16 ops in this build
        return False
