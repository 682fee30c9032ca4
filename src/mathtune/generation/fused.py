"""Faster linear layers for CPU decoding: fused sibling projections on pre-packed MKL weights.

A decode step multiplies a few dozen rows by each weight matrix. On a CPU such skinny GEMMs run
far below peak, for two reasons this module removes while `generate` runs:

- **Small siblings.** Llama-family blocks feed the *same* hidden state to q_proj, k_proj and
  v_proj, and to gate_proj and up_proj (k/v of a grouped-query model are only 576x192 in
  SmolLM2-135M). Each group runs as one GEMM over the concatenated weights: the first projection
  of the group computes all outputs, its siblings return their slice of that result (+8%).
- **Re-packing the weights at every call.** A BLAS GEMM copies the weight matrix into its
  kernel's panel layout on every call; with 8-64 rows that copy costs about as much as the
  arithmetic. Where PyTorch is built with MKL (x86), every linear layer's weight (the fused ones,
  o_proj, down_proj, lm_head, ...) is packed once into MKL's layout (`cblas_sgemm_pack`, exposed
  as `torch.ops.mkl._mkl_reorder_linear_weight`) and multiplied with `cblas_sgemm_compute`
  (`torch.ops.mkl._mkl_linear`). Measured on the 2-core dev CPU, 576-wide SmolLM2 layers:
  64 rows 224 -> 309 GFLOP/s, 16 rows 130 -> 247, 8 rows 75 -> 189; prefill-sized inputs
  (1024+ rows) within 10% either way.

MKL documents a packed matrix for the (m, n, k) it was packed for; PyTorch therefore only uses
one when the row count equals its `prepack_batch_size`. The packed B panels do not depend on m
in practice (checked for every m from 1 to 130 and up to 2049 rows on six weight shapes, within
1e-6 of `F.linear`), so one packed copy serves every batch size, and `_packing_works()` repeats
that check at 1, 5 and 64 rows before any weight is packed: a library where it fails keeps
plain `F.linear`.

Each output is the same dot product as before, summed in a different order, so results can
differ in the last bits: the test holds them within 1e-6, and `benchmarks/eval_throughput.py`
reports how many greedy completions are identical to one-at-a-time `generate`.

The packed weights are a copy of every linear layer (about all of a decoder's weights), made
when the context opens and freed when it closes, so the context changes nothing when that copy
would take more than `max_share` of the free memory. The original forwards come back on exit:
the model is untouched for anyone else (training, the baselines of a benchmark).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class _Group:
    """One GEMM shared by sibling linear layers that take the same input tensor (or a single
    layer), on a packed MKL weight when `pack` is set."""

    def __init__(self, linears: list[Any], pack: bool) -> None:
        import torch

        weight = torch.cat([m.weight for m in linears]) if len(linears) > 1 else linears[0].weight
        biases = [m.bias for m in linears]
        if all(b is None for b in biases):
            self.bias = None
        else:
            self.bias = torch.cat([b if b is not None else m.weight.new_zeros(m.out_features)
                                   for b, m in zip(biases, linears, strict=True)])
        self.sizes = [m.out_features for m in linears]
        self.packed = None
        self.weight = weight
        if pack:
            self.packed = torch.ops.mkl._mkl_reorder_linear_weight(weight.detach(), 64)
            # `_mkl_linear` reads only the shape of its `origin_weight` argument when the row
            # count equals the prepack size (we always pass it so): a zero-stride stand-in
            self.weight = weight.new_empty(1).expand(weight.shape)
        self._x: Any = None
        self._out: tuple[Any, ...] = ()

    def linear(self, x: Any) -> Any:
        import torch

        if self.packed is None:
            return torch.nn.functional.linear(x, self.weight, self.bias)
        return torch.ops.mkl._mkl_linear(x, self.packed, self.weight, self.bias, x.numel() // x.shape[-1])

    def output(self, x: Any, i: int) -> Any:
        if len(self.sizes) == 1:
            return self.linear(x)
        if x is not self._x:
            self._out = self.linear(x).split(self.sizes, dim=-1)
            self._x = x
        return self._out[i]

    def release(self) -> None:
        self._x, self._out = None, ()
        self.packed = self.weight = self.bias = None


@functools.cache
def _packing_works() -> bool:
    """True where MKL's packed GEMM is available and one packed weight gives `F.linear`'s
    results at several row counts."""
    import torch

    try:
        if not torch.backends.mkl.is_available():
            return False
        gen = torch.Generator().manual_seed(0)
        w = torch.randn(200, 96, generator=gen)
        packed = torch.ops.mkl._mkl_reorder_linear_weight(w, 64)
        for rows in (1, 5, 64):
            x = torch.randn(rows, 96, generator=gen)
            got = torch.ops.mkl._mkl_linear(x, packed, w, None, rows)
            if not torch.allclose(got, torch.nn.functional.linear(x, w), atol=1e-4, rtol=1e-4):
                return False
        return True
    except (AttributeError, RuntimeError):  # no MKL ops in this build (e.g. aarch64)
        return False


def _plain_linear(m: Any) -> bool:
    import torch

    # exactly nn.Linear: LoRA-wrapped or quantized layers keep their own forward, and so does a
    # layer whose forward someone already replaced on the instance (training's fused LoRA
    # dropout patches `lora_A`): exiting the context deletes the instance forward
    return type(m) is torch.nn.Linear and "forward" not in vars(m)


def _groups(model: Any, pack: bool) -> list[tuple[list[Any], _Group]]:
    """The fused sibling groups and, when packing, every other plain linear layer alone."""
    found, grouped = [], set()
    for module in model.modules():
        for names in GROUPS:
            linears = [getattr(module, n, None) for n in names]
            if not all(_plain_linear(m) for m in linears):
                continue
            if len({m.in_features for m in linears}) != 1 or len({m.weight.dtype for m in linears}) != 1:
                continue
            found.append((linears, _Group(linears, pack)))
            grouped.update(id(m) for m in linears)
    if pack:
        found += [([m], _Group([m], True)) for m in model.modules() if _plain_linear(m) and id(m) not in grouped]
    return found


def _copy_bytes(model: Any, pack: bool) -> int:
    """Bytes the fused (and, when packing, all packed) weights of `model` would take."""
    import torch

    if pack:
        return sum(m.weight.nbytes for m in model.modules() if isinstance(m, torch.nn.Linear))
    return sum(getattr(module, n).weight.nbytes for module in model.modules() for names in GROUPS
               if all(hasattr(module, n) for n in names) for n in names)


@contextlib.contextmanager
def fused_projections(model: Any, enabled: bool = True, max_share: float = 0.25) -> Iterator[int]:
    """Within the block, sibling projections run as one GEMM and, where MKL allows it for this
    model's float32 CPU weights, every linear layer runs on a packed weight; yields how many
    groups were replaced (0 when disabled or when the copies would exceed `max_share` of the
    free host memory)."""
    import torch

    from ..models import free_memory

    if enabled:
        params = list(model.parameters())
        pack = (bool(params) and all(p.dtype == torch.float32 and p.device.type == "cpu" for p in params)
                and _packing_works())
        enabled = _copy_bytes(model, pack) <= max_share * free_memory("cpu")
    groups = _groups(model, pack) if enabled else []
    for linears, group in groups:
        for i, m in enumerate(linears):
            m.forward = (lambda x, _g=group, _i=i: _g.output(x, _i))
    try:
        yield len(groups)
    finally:
        for linears, group in groups:
            group.release()
            for m in linears:
                del m.forward  # back to the class's forward
