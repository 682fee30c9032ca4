"""Patch `linear-instance-forwards`: replace `forward` on individual `nn.Linear` instances, undoably.

    undo = replace_forwards([(model.model.layers[0].self_attn.q_proj, fused_q), ...])
    ...
    undo.undo()   # every instance gets back exactly what it had (no instance forward: deleted)

`generation/fused.py` uses it while `generate` runs: the first projection of q/k/v (and of
gate/up) computes one GEMM over the concatenated weights and its siblings return their slice of
that result; other layers run on MKL-packed weights (`mkl_linear.py`). What that relies on:
`nn.Module.__call__` calls the instance's `forward` (torch), and the Llama-family attention and
MLP blocks of transformers feed the *same* tensor object to q_proj, k_proj, v_proj and to
gate_proj, up_proj within one forward (a different object only costs the shared GEMM again).
Only exact `nn.Linear` layers without an instance forward of their own are replaced (not LoRA or
quantized layers, nor training's patched `lora_A`). Verified with torch 2.13 and transformers
5.24; outside those, `replace_forwards` changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .gate import Patch
from .undo import Undo

PATCH = Patch(
    "linear-instance-forwards",
    "torch/transformers: instance `forward` of nn.Linear layers (fused q/k/v and gate/up, packed layers) "
    "while `generate` runs",
    {"torch": ">=2.13,<2.14", "transformers": ">=5.24,<5.25"},
)


def replaceable(module: Any) -> bool:
    """Exactly `nn.Linear` with the class's own forward (nobody replaced it on the instance)."""
    import torch

    return type(module) is torch.nn.Linear and "forward" not in vars(module)


def replace_forwards(forwards: Iterable[tuple[Any, Callable[[Any], Any]]]) -> Undo:
    """Give each module its new forward; the Undo restores the class forwards. Nothing changes
    outside the verified versions or for a module that is not `replaceable`."""
    undo = Undo(PATCH.name)
    if not PATCH.supported():
        return undo
    for module, forward in forwards:
        if replaceable(module):
            undo.set_attr(module, "forward", forward)
            undo.targets += 1
    return undo
