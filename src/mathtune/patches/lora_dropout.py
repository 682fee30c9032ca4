"""Patch `lora-dropout-in-lora-a`: PEFT's LoRA dropout moved into the layer's `lora_A`.

    undo = move_dropout_into_lora_a(peft_model, forward)   # forward(lora_a, x), e.g. cpu_speedups'
    ...
    undo.undo()   # every lora_dropout[name] is its original nn.Dropout again, lora_A's class forward back

PEFT's vanilla LoRA `Linear.forward` computes `lora_B(lora_A(dropout(x))) * scaling` with
`dropout = lora_dropout[adapter]` and `lora_A = lora_A[adapter]` (ModuleDicts keyed by adapter
name); adapters with a `lora_variant` (DoRA, ...) compute something else. For each vanilla
adapter with an `nn.Dropout(p > 0)` and a bias-free `nn.Linear` lora_A, this patch sets
`lora_dropout[name] = nn.Identity()`, stores `p` as `lora_A[name].mathtune_dropout` and gives that
lora_A an instance `forward` that applies the dropout itself (`train/cpu_speedups.py`: one
autograd function saving a byte mask). Parameters and state-dict keys do not change.
Verified with peft 0.21; outside it the model is left as PEFT built it.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from .gate import Patch
from .undo import Undo

PATCH = Patch(
    "lora-dropout-in-lora-a",
    "peft: lora_dropout[name] -> nn.Identity and an instance forward on lora_A[name] that applies the "
    "dropout, in each vanilla LoRA layer",
    {"peft": ">=0.21,<0.22"},
)


def _vanilla_adapters(model: Any) -> list[tuple[Any, str, Any]]:
    """(lora_dropout ModuleDict, adapter name, lora_A layer) of each adapter the patch applies to."""
    import torch

    found = []
    for module in model.modules():
        drops, lora_a = getattr(module, "lora_dropout", None), getattr(module, "lora_A", None)
        if not isinstance(drops, torch.nn.ModuleDict) or not isinstance(lora_a, torch.nn.ModuleDict):
            continue
        variants = getattr(module, "lora_variant", {}) or {}
        for name, drop in drops.items():
            a = lora_a[name] if name in lora_a else None  # noqa: SIM401 (ModuleDict has no .get)
            if (type(drop) is torch.nn.Dropout and drop.p > 0 and type(a) is torch.nn.Linear
                    and a.bias is None and name not in variants and "forward" not in vars(a)):
                found.append((drops, name, a))
    return found


def move_dropout_into_lora_a(model: Any, forward: Callable[[Any, Any], Any]) -> Undo:
    """Apply the patch to every vanilla adapter of `model` (see the module docstring); `len()` of
    the returned Undo is how many adapters changed (0 outside the verified peft versions)."""
    import torch

    undo = Undo(PATCH.name)
    if not PATCH.supported():
        return undo
    for drops, name, a in _vanilla_adapters(model):
        undo.set_attr(a, "mathtune_dropout", float(drops[name].p))
        undo.set_attr(a, "forward", types.MethodType(forward, a))
        undo.set_item(drops, name, torch.nn.Identity())
        undo.targets += 1
    return undo
