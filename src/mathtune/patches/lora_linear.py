"""Patch `lora-fused-linear`: PEFT's LoRA `Linear` forward as one autograd function on a CPU.

    undo = fuse(peft_model, forward)   # forward(layer, x, ...), train/lora_linear.py's lora_forward
    ...
    undo.undo()   # every layer runs PEFT's class forward again

PEFT's vanilla LoRA `Linear.forward` computes `base_layer(x) + lora_B(lora_A(dropout(x))) *
scaling` for each active adapter, with `lora_A`, `lora_B`, `lora_dropout` ModuleDicts keyed by
adapter name and `scaling` a dict of floats; adapters with a `lora_variant` (DoRA, ...) compute
something else. This patch gives each `peft.tuners.lora.layer.Linear` (the class itself, not a
subclass) an instance `forward` that computes the same in one function and calls the class
forward for every call it does not cover (`train/lora_linear.py`). Parameters, state-dict keys
and the modules are untouched. Verified with peft 0.21; outside it the model is left as PEFT
built it.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from .gate import Patch
from .undo import Undo

PATCH = Patch(
    "lora-fused-linear",
    "peft: an instance forward on each vanilla LoRA Linear computing base + LoRA (+ dropout) in one "
    "autograd function",
    {"peft": ">=0.21,<0.22"},
)


def _layers(model: Any) -> list[Any]:
    """The LoRA Linear layers the patch applies to."""
    from peft.tuners.lora.layer import Linear

    return [m for m in model.modules() if type(m) is Linear and "forward" not in vars(m)]


def fuse(model: Any, forward: Callable[..., Any]) -> Undo:
    """Apply the patch to every LoRA Linear of `model` (see the module docstring); `len()` of the
    returned Undo is how many layers changed (0 outside the verified peft versions)."""
    undo = Undo(PATCH.name)
    if not PATCH.supported():
        return undo
    for layer in _layers(model):
        undo.set_attr(layer, "forward", types.MethodType(forward, layer))
        undo.targets += 1
    return undo
