"""Patch `onednn-packed-linear`: `F.linear` on a weight packed once into oneDNN's blocked layout (torch private ops).

The oneDNN counterpart of `mkl_linear.py`, for bf16 and float32 weights. On CPUs with
AVX512-BF16/AMX, where `pick_dtype` runs the model in bf16, `F.linear` hands each call to oneDNN, which reorders the plain weight into its
blocked (AMX tile) layout on every call; a decode step's skinny GEMMs pay that copy each time.
PyTorch's CPU inductor path packs once and multiplies many times with two private ops,
`torch.ops.mkldnn._reorder_linear_weight(weight, batch_size)` and
`torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")`; `PackedLinearOneDNN` makes
exactly that call, and the probe checks it against `F.linear` (1, 5, 64 and 130 rows, a 3-D
input, with and without a bias), per dtype, before anything is packed.

float32 too: on an AMD EPYC with AVX2 only (Zen 3, 2 cores, torch 2.13) oneDNN's packed GEMM beat
MKL's packed one at SmolLM2-135M's decode shapes, 64 rows: gate/up 2.47 against 3.34 ms, the LM
head 33.9 against 60.0 ms (at 16 rows 16.1 against 30.6), but lost at 576x576 (0.71 against
0.40). So `generation/fused.py` times both packed paths once per weight shape and keeps the
faster. The packed tensor is all that is kept: no second plain copy of the weight.

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
    "torch: calls the private ops torch.ops.mkldnn._reorder_linear_weight / _linear_pointwise on bf16 and "
    "float32 weights",
    {"torch": ">=2.13,<2.14"},
)
PREPACK_ROWS = 64


class PackedLinearOneDNN:
    """`F.linear(x, weight, bias)` for bfloat16 or float32 CPU tensors, on a copy of `weight` packed for oneDNN."""

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


def available(dtype: str = "bfloat16") -> bool:
    """True where this torch is a verified one and the production call gives `F.linear`'s results
    for weights of `dtype` ("bfloat16" or "float32")."""
    return PATCH.supported() and _probe(dtype)


@functools.cache
def _probe(dtype: str = "bfloat16") -> bool:
    import torch

    from .mkl_linear import matches_linear

    try:
        if not torch.backends.mkldnn.is_available():
            return False
        if dtype == "bfloat16":
            return (torch.ops.mkldnn._is_mkldnn_bf16_supported()
                    and matches_linear(PackedLinearOneDNN, torch.bfloat16, 1e-2))
        return dtype == "float32" and matches_linear(PackedLinearOneDNN, torch.float32, 1e-4)
    except (AttributeError, RuntimeError, NotImplementedError):  # no oneDNN linear ops in this build
        return False
