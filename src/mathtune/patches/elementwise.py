"""Patch `decode-elementwise`: RMSNorm and the rotary embedding of Llama-family models in C while
the hf backend generates (`generation/decode_ops.py`) and while mathtune trains on a CPU
(`train/elementwise.py`: the same ops as the forward of autograd functions), undoably.

    undo = replace_elementwise(model, rms_norm, rope)
    ...
    undo.undo()   # instances without an instance forward again, modeling modules' functions back

Replaced: the instance `forward` of each `LlamaRMSNorm` / `Qwen2RMSNorm` / `MistralRMSNorm`
module of the model, and the module-level `apply_rotary_pos_emb` of those classes' modeling
modules, which their attention forwards look up at call time; for training also the instance
`forward` of each `LlamaMLP` / `Qwen2MLP` / `MistralMLP` whose `config.hidden_act` is "silu"
(the same projections, `silu(gate) * up` in one op). Each has the same source in each of these
modules (transformers 5.24). Each new forward calls the C op (`generation/decode_ops.py`) and falls back to the original for
inputs the op does not take (it returns None). Verified with transformers 5.24 and torch 2.13;
outside those, nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .gate import Patch
from .undo import Undo

PATCH = Patch(
    "decode-elementwise",
    "transformers: instance `forward` of Llama/Qwen2/Mistral RMSNorm modules and the modeling modules' "
    "`apply_rotary_pos_emb`, in C while `generate` runs and while training on a CPU; instance `forward` of "
    "their SiLU MLP modules while training",
    {"torch": ">=2.13,<2.14", "transformers": ">=5.24,<5.25"},
)

FAMILIES = {"llama": "Llama", "qwen2": "Qwen2", "mistral": "Mistral"}  # modeling module: class prefix


def _norm_classes() -> dict[type, Any]:
    """{RMSNorm class: its modeling module}."""
    import importlib

    mods = {f: importlib.import_module(f"transformers.models.{f}.modeling_{f}") for f in FAMILIES}
    return {getattr(mod, f"{FAMILIES[f]}RMSNorm"): mod for f, mod in mods.items()}


def _mlp_classes() -> tuple[type, ...]:
    import importlib

    return tuple(getattr(importlib.import_module(f"transformers.models.{f}.modeling_{f}"), f"{p}MLP")
                 for f, p in FAMILIES.items())


def replace_elementwise(model: Any, rms_norm: Callable[..., Any], rope: Callable[..., Any],
                        swiglu: Callable[..., Any] | None = None) -> Undo:
    """Route the model's RMSNorm and rotary steps (and, given `swiglu`, the `silu(gate) * up` of
    each MLP whose activation is SiLU) through the given ops (each returns None for inputs it does
    not take: the original runs then). The Undo restores everything."""
    undo = Undo(PATCH.name)
    if not PATCH.supported():
        return undo
    norms = _norm_classes()
    mlps = _mlp_classes() if swiglu is not None else ()
    modules = set()
    for m in model.modules():
        if "forward" in vars(m):
            continue  # somebody else's instance forward: left alone
        if type(m) in mlps and getattr(m.config, "hidden_act", None) == "silu":
            def mlp_forward(x: Any, _m: Any = m) -> Any:  # LlamaMLP.forward with the gate's product in one op
                g, u = _m.gate_proj(x), _m.up_proj(x)
                h = swiglu(g, u)
                return _m.down_proj(_m.act_fn(g) * u if h is None else h)
            undo.set_attr(m, "forward", mlp_forward)
            undo.targets += 1
        if type(m) in norms:
            def norm_forward(x: Any, _m: Any = m) -> Any:
                out = rms_norm(x, _m.weight, _m.variance_epsilon)
                return type(_m).forward(_m, x) if out is None else out
            undo.set_attr(m, "forward", norm_forward)
            modules.add(norms[type(m)])
            undo.targets += 1
    for mod in modules:
        orig = mod.apply_rotary_pos_emb

        def apply_rotary_pos_emb(q: Any, k: Any, cos: Any, sin: Any, unsqueeze_dim: int = 1, _orig: Any = orig) -> Any:
            if unsqueeze_dim == 1:
                q2, k2 = rope(q, cos, sin), rope(k, cos, sin)
                if q2 is not None and k2 is not None:
                    return q2, k2
            return _orig(q, k, cos, sin, unsqueeze_dim)
        undo.set_attr(mod, "apply_rotary_pos_emb", apply_rotary_pos_emb)
        undo.targets += 1
    return undo
