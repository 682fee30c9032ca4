"""Faster linear layers for CPU decoding: fused sibling projections on pre-packed MKL weights.

A decode step multiplies a few dozen rows by each weight matrix. On a CPU such skinny GEMMs run
far below peak, for two reasons this module removes while `generate` runs:

- **Small siblings.** Llama-family blocks feed the *same* hidden state to q_proj, k_proj and
  v_proj, and to gate_proj and up_proj (k/v of a grouped-query model are small: 576x192 in
  SmolLM2-135M). Each group runs as one GEMM over the concatenated weights: the first projection
  of the group computes all outputs, its siblings return their slice of that result.
- **Re-packing the weights at every call.** A BLAS GEMM copies the weight matrix into its
  kernel's panel layout on every call; with 8-64 rows that copy costs about as much as the
  arithmetic. Where PyTorch is built with MKL (x86), every linear layer's float32 weight (the
  fused ones, o_proj, down_proj, lm_head, ...) is packed once into MKL's or oneDNN's layout,
  whichever packed GEMM times faster for the weight's shape (`_fastest`, once per shape and
  process, when the first `generate` opens this context); a bfloat16 model (CPUs with
  AVX512-BF16/AMX) is packed once into oneDNN's blocked layout instead. Prefill-sized inputs run at about the same speed either way.
  `benchmarks/eval_throughput.py` times the whole hf backend against plain `generate`.

Both are library patches, gated on the versions they were verified with and listed in
`mathtune.patches`: the forward swaps on `nn.Linear` instances (`linear-instance-forwards`) and
the private MKL and oneDNN ops with their run-time probes (`mkl-packed-linear`,
`onednn-packed-linear`). Where the packing patch is
off, the fused groups still run on `F.linear`; where the forward patch is off, nothing changes.

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
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

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
        self.packed = _packer(weight)(weight, self.bias) if pack else None
        # packed: only the zero-stride stand-in is kept, no second plain copy of the weight
        self.weight = self.packed.standin if self.packed is not None else weight
        self._x: Any = None
        self._out: tuple[Any, ...] = ()

    def linear(self, x: Any) -> Any:
        import torch

        if self.packed is None:
            return torch.nn.functional.linear(x, self.weight, self.bias)
        return self.packed(x)

    def output(self, x: Any, i: int) -> Any:
        if len(self.sizes) == 1:
            return self.linear(x)
        if x is not self._x:
            self._out = self.linear(x).split(self.sizes, dim=-1)
            self._x = x
        return self._out[i]

    def release(self) -> None:
        if self.packed is not None:
            self.packed.release()
        self._x, self._out = None, ()
        self.packed = self.weight = self.bias = None


def _packers(dtype: Any) -> list[Any]:
    """The packed-linear classes verified for `dtype` on this torch (their probe, the production
    call, gives `F.linear`'s results): oneDNN's for bfloat16; MKL's and oneDNN's for float32."""
    import torch

    from ..patches import mkl_linear, onednn_linear

    if dtype == torch.bfloat16:
        return [onednn_linear.PackedLinearOneDNN] if onednn_linear.available("bfloat16") else []
    if dtype != torch.float32:
        return []
    return ([mkl_linear.PackedLinear] if mkl_linear.available() else []) + (
        [onednn_linear.PackedLinearOneDNN] if onednn_linear.available("float32") else [])


def _packing_works(dtype: Any) -> bool:
    """True where a packing patch for `dtype` (`mkl-packed-linear`, `onednn-packed-linear`) is
    verified for this torch and its probe gives `F.linear`'s results."""
    return bool(_packers(dtype))


def _packer(weight: Any) -> Any:
    """The packed-linear class for this weight: the faster one for its shape and dtype where
    several are verified (`_fastest`), else the only one."""
    packers = _packers(weight.dtype)
    if len(packers) == 1:
        return packers[0]
    return packers[_fastest(tuple(packers), tuple(weight.shape), weight.dtype)]


@functools.cache
def _fastest(packers: tuple[Any, ...], shape: tuple[int, int], dtype: Any) -> int:
    """Index of the packer whose GEMM is fastest for a weight of `shape` at decode batch sizes (16
    and 64 rows; best of 3 calls each, after a warm-up), timed once per shape and process on a
    random weight. Which library wins depends on the CPU: oneDNN's for most shapes on an AVX2-only
    AMD EPYC (`patches/onednn_linear.py`); the two are not yet compared on the Intel kinds."""
    import time

    import torch

    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(*shape, generator=gen).to(dtype)
    inputs = [torch.randn(rows, shape[1], generator=gen).to(dtype) for rows in (16, 64)]
    costs = []
    with torch.inference_mode():
        for cls in packers:
            layer, total = cls(weight), 0.0
            for x in inputs:
                layer(x)
                best = float("inf")
                for _ in range(3):
                    t0 = time.perf_counter()
                    layer(x)
                    best = min(best, time.perf_counter() - t0)
                total += best
            layer.release()
            costs.append(total)
    log.debug("packed linear %s %s: %s", shape, dtype, dict(zip([c.__name__ for c in packers], costs, strict=True)))
    return costs.index(min(costs))


def _groups(model: Any, pack: bool) -> list[tuple[list[Any], _Group]]:
    """The fused sibling groups and, when packing, every other plain linear layer alone. Only
    exact `nn.Linear` layers with their class forward are used: LoRA-wrapped or quantized layers
    keep their own forward, and so does a layer someone patched (training's `lora_A`)."""
    from ..patches.linear_forwards import replaceable

    found, grouped = [], set()
    for module in model.modules():
        for names in GROUPS:
            linears = [getattr(module, n, None) for n in names]
            if not all(replaceable(m) for m in linears):
                continue
            if len({m.in_features for m in linears}) != 1 or len({m.weight.dtype for m in linears}) != 1:
                continue
            found.append((linears, _Group(linears, pack)))
            grouped.update(id(m) for m in linears)
    if pack:
        found += [([m], _Group([m], True)) for m in model.modules() if replaceable(m) and id(m) not in grouped]
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
    model's float32 (MKL) or bfloat16 (oneDNN) CPU weights, every linear layer runs on a packed
    weight; yields how many
    groups were replaced (0 when disabled or when the copies would exceed `max_share` of the
    free host memory)."""

    from ..models import free_memory
    from ..patches.linear_forwards import PATCH, replace_forwards

    enabled = enabled and PATCH.supported()
    if enabled:
        params = list(model.parameters())
        dtypes = {p.dtype for p in params}
        pack = (len(dtypes) == 1 and all(p.device.type == "cpu" for p in params)
                and _packing_works(next(iter(dtypes))))
        enabled = _copy_bytes(model, pack) <= max_share * free_memory("cpu")
    groups = _groups(model, pack) if enabled else []
    undo = replace_forwards((m, (lambda x, _g=group, _i=i: _g.output(x, _i)))
                            for linears, group in groups for i, m in enumerate(linears))
    try:
        with undo:  # the class forwards come back on exit
            yield len(groups)
    finally:
        for _, group in groups:
            group.release()
