"""Fused input projections for CPU decoding: one GEMM for q/k/v and one for gate/up.

A decode step multiplies a few dozen rows by each weight matrix. On a CPU such skinny GEMMs run
far below peak, and the small ones (k_proj/v_proj of a grouped-query model are 576x192 in
SmolLM2-135M) are the worst. Llama-family blocks feed the *same* hidden state to q_proj, k_proj
and v_proj, and to gate_proj and up_proj, so `fused_projections(model)` temporarily routes each
group through one `F.linear` over the concatenated weights: the first projection of the group
computes all outputs, its siblings return their slice of that result.

Each output column is the same dot product as before, though the GEMM kernel may block it
differently, so results can differ in the last bits: the test holds them within 1e-6, and
`benchmarks/eval_throughput.py` found greedy text identical on 64/64 GSM8K problems. Measured
+8% problems/min for SmolLM2-135M on the 2-core dev CPU.

The concatenated weights are a copy of those layers (about 80% of a decoder's weights), made
when the context opens and freed when it closes, so it fuses only when that copy fits in
`max_share` of the free memory. The original forwards come back on exit: the model is untouched
for anyone else (training, the baselines of a benchmark).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class _Group:
    """One fused GEMM shared by sibling linear layers that take the same input tensor."""

    def __init__(self, linears: list[Any]) -> None:
        import torch

        self.weight = torch.cat([m.weight for m in linears], dim=0)
        biases = [m.bias for m in linears]
        if all(b is None for b in biases):
            self.bias = None
        else:
            self.bias = torch.cat([b if b is not None else m.weight.new_zeros(m.out_features)
                                   for b, m in zip(biases, linears, strict=True)])
        self.sizes = [m.out_features for m in linears]
        self._x: Any = None
        self._out: tuple[Any, ...] = ()

    def output(self, x: Any, i: int) -> Any:
        import torch

        if x is not self._x:
            self._out = torch.nn.functional.linear(x, self.weight, self.bias).split(self.sizes, dim=-1)
            self._x = x
        return self._out[i]

    def release(self) -> None:
        self._x, self._out = None, ()


def _groups(model: Any) -> list[tuple[list[Any], _Group]]:
    import torch

    found = []
    for module in model.modules():
        for names in GROUPS:
            linears = [getattr(module, n, None) for n in names]
            if not all(isinstance(m, torch.nn.Linear) and type(m) is torch.nn.Linear for m in linears):
                continue  # LoRA-wrapped or quantized layers keep their own forward
            if len({m.in_features for m in linears}) != 1 or len({m.weight.dtype for m in linears}) != 1:
                continue
            found.append((linears, _Group(linears)))
    return found


def _copy_bytes(model: Any) -> int:
    """Bytes the fused weights of `model` would take."""
    return sum(getattr(module, n).weight.nbytes for module in model.modules() for names in GROUPS
               if all(hasattr(module, n) for n in names) for n in names)


@contextlib.contextmanager
def fused_projections(model: Any, enabled: bool = True, max_share: float = 0.25) -> Iterator[int]:
    """Within the block, sibling projections run as one GEMM; yields how many groups were fused
    (0 when disabled or when the copy would exceed `max_share` of the free host memory)."""
    from ..models import free_memory

    enabled = enabled and _copy_bytes(model) <= max_share * free_memory("cpu")
    groups = _groups(model) if enabled else []
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
