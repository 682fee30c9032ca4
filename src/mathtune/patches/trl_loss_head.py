"""Patch `trl-cpu-loss-head`: an override of the forward TRL's `add_fused_lm_head` installed.

    undo = override_fused_head(causal_lm, make_forward)   # make_forward(trl_forward, temperature) -> forward(self, ...)
    ...
    undo.undo()   # `causal_lm.forward` is TRL's bound forward again (the same object)

TRL's SFT/DPO/GRPO trainers call `trl.trainer.utils.add_fused_lm_head(model, ...)`, which sets an
instance `forward` (its nested `_fused_forward`, bound to the model) answering
`model(..., labels=..., fused_lm_head=True)` with a `FusedCausalLMOutput`. This patch replaces
that instance forward with one built by `make_forward(trl_forward, temperature)`
(`train/cpu_speedups.py`: the CPU loss head), which calls TRL's forward for every case it does
not handle itself; `temperature` is the one TRL's head divides the logits by (GRPO's sampling
temperature).

It applies only to TRL's own fused forward as verified: found on the instance, made by
`add_fused_lm_head` (its code object), installed with `cast_lm_head_to_fp32=False`, no logit
softcapping or scaling, and `outputs` within log-probs, entropy and top-1 (what the replacement
computes). Anything else, or a trl outside the verified range (1.16), keeps TRL's forward.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any

from .gate import Patch
from .undo import Undo

PATCH = Patch(
    "trl-cpu-loss-head",
    "trl: replaces the instance forward installed by trl.trainer.utils.add_fused_lm_head",
    {"trl": ">=1.16,<1.17"},
)
OUTPUTS = frozenset({"log_probs", "entropy", "is_top1"})


def trl_fused_forward(model: Any) -> Any | None:
    """TRL's fused-head forward on `model` when it is the verified one (see above), else None."""
    from trl.trainer.utils import add_fused_lm_head

    forward = vars(model).get("forward")
    func = getattr(forward, "__func__", None)
    # TRL `functools.wraps` it (name and module are the model class's): identify it by its code,
    # a constant of add_fused_lm_head's own code
    if func is None or not any(c is func.__code__ for c in add_fused_lm_head.__code__.co_consts):
        return None
    state = inspect.getclosurevars(func).nonlocals  # add_fused_lm_head's arguments and derived values
    temperature = state.get("temperature")
    if (not isinstance(temperature, (int, float)) or not temperature > 0 or state.get("cast_lm_head_to_fp32") is not False
            or state.get("final_logit_softcapping") is not None or state.get("logit_scale") != 1.0
            or not set(state.get("outputs", ("?",))) <= OUTPUTS):
        return None
    return forward


def override_fused_head(model: Any, make_forward: Callable[[Any, float], Callable[..., Any]]) -> Undo:
    """Replace TRL's fused forward on `model` with `make_forward(trl_forward, temperature)` bound to `model`;
    the Undo (true when it did) puts TRL's forward back."""
    undo = Undo(PATCH.name)
    if not PATCH.supported():
        return undo
    trl_forward = trl_fused_forward(model)
    if trl_forward is None:
        return undo
    temperature = float(inspect.getclosurevars(trl_forward.__func__).nonlocals["temperature"])
    undo.set_attr(model, "forward", types.MethodType(make_forward(trl_forward, temperature), model))
    undo.targets = 1
    return undo
