"""Model + method: load the base model, build the PEFT config, and the optimizer param groups.

Methods: `lora`, `dora` (LoRA with weight decomposition), `qlora` (4-bit NF4 base via
bitsandbytes, CUDA only: `mathtune.models.load_model(quantize="4bit")` raises the clear error
on a CPU), `full` (every weight trains). Embeddings / lm_head train fully when asked (PEFT
`modules_to_save`), optionally at their own learning rate (`method.embedding_lr`), which is an
optimizer param group handed to the trainer as `optimizers=(opt, None)`; the trainer still
builds the schedule on it, so every group follows the same warmup/decay shape.
"""

from __future__ import annotations

from typing import Any

from ..errors import MathtuneError
from ..models import load_model, pick_device, pick_dtype
from .recipe import MethodSpec, ModelSpec

EMBEDDING_NAMES = ("embed_tokens", "wte", "word_embeddings", "embed_in")
HEAD_NAMES = ("lm_head", "embed_out", "output")


def load_base(model: ModelSpec, method: MethodSpec) -> tuple[Any, Any, str, Any]:
    """(model, tokenizer, device, compute dtype) for training."""
    device = pick_device(model.device)
    dtype = pick_dtype(device, model.dtype)
    name = {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}[str(dtype)]
    quantize = "4bit" if method.kind == "qlora" else None
    m, tok = load_model(model.name, dtype=name, device=device, quantize=quantize, for_training=True)  # type: ignore[arg-type]
    if model.attn_implementation:
        m.set_attn_implementation(model.attn_implementation)
    if quantize:
        from peft import prepare_model_for_kbit_training

        m = prepare_model_for_kbit_training(m, use_gradient_checkpointing=False)
    m.config.use_cache = False
    return m, tok, device, dtype


def module_names(model: Any, candidates: tuple[str, ...]) -> list[str]:
    """The leaf names among `candidates` that exist in the model."""
    leaves = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    return [c for c in candidates if c in leaves]


def peft_config(model: Any, method: MethodSpec) -> Any | None:
    """A peft.LoraConfig for lora/dora/qlora; None for full fine-tuning."""
    if method.kind == "full":
        return None
    from peft import LoraConfig

    to_save: list[str] = []
    if method.train_embeddings:
        to_save += module_names(model, EMBEDDING_NAMES)
    if method.train_lm_head:
        to_save += module_names(model, HEAD_NAMES)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    return LoraConfig(
        r=method.r,
        lora_alpha=method.alpha or 2 * method.r,
        lora_dropout=method.dropout,
        target_modules=method.target_modules,
        use_dora=method.kind == "dora",
        use_rslora=method.use_rslora,
        modules_to_save=to_save or None,
        ensure_weight_tying=tied and bool(to_save),
        task_type="CAUSAL_LM",
    )


def prepare_full(model: Any) -> Any:
    """Full fine-tuning: every parameter trains."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def is_embedding_param(name: str) -> bool:
    parts = name.split(".")
    return any(n in parts for n in EMBEDDING_NAMES + HEAD_NAMES)


def build_optimizer(model: Any, args: Any, embedding_lr: float) -> Any:
    """The optimizer the trainer would build (`args.optim`, weight decay split), plus a separate
    param group for embeddings/lm_head at `embedding_lr`."""
    import torch
    from transformers import Trainer
    from transformers.trainer_pt_utils import get_parameter_names

    patterns = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]  # as Trainer
    decay = set(get_parameter_names(model, [torch.nn.LayerNorm], patterns))
    groups: dict[str, list] = {"decay": [], "no_decay": [], "embedding": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = "embedding" if is_embedding_param(name) else "decay" if name in decay else "no_decay"
        groups[key].append(p)
    if not groups["embedding"]:
        raise MathtuneError("method.embedding_lr is set but no embedding or lm_head weights are trainable",
                            "set method.train_embeddings: true and/or method.train_lm_head: true")
    params = [
        {"params": groups["decay"], "weight_decay": args.weight_decay},
        {"params": groups["no_decay"], "weight_decay": 0.0},
        {"params": groups["embedding"], "weight_decay": 0.0, "lr": embedding_lr},
    ]
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    kwargs = {k: v for k, v in kwargs.items() if k != "params"}
    return cls([g for g in params if g["params"]], **kwargs)


__all__ = ["build_optimizer", "load_base", "peft_config", "prepare_full", "pick_dtype"]
