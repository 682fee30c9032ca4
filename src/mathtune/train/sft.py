"""Build TRL's `SFTConfig` and `SFTTrainer` for a recipe (used by both the sft and cpt stages).

The recipe's `trainer:` block is passed to `trl.SFTConfig` as is; mathtune only fills in the
settings the user left unset, chosen for the device rather than TRL's GPU-first defaults:

- precision from `mathtune.models.pick_dtype` (TRL turns bf16 on by default, which on a CPU
  without AVX512-BF16/AMX is ~100x slower than fp32);
- gradient checkpointing only where memory needs it: on when a step's estimated activations
  exceed half the free (GPU or host) memory, off when it would only cost time (SmolLM2-135M,
  batch 4 x 1024 on a CPU: off);
- batching, never padded to the maximum length: on a GPU, SFT examples are packed (TRL
  `packing=True`, best-fit decreasing into `max_length` rows); on a CPU each batch of examples is
  flattened padding-free instead (`padding_free=True`: one row, no pad token). Either way
  `position_ids` restart at each example and attention runs per example
  (`mathtune.train.attention`, flash-attention varlen kernels on GPUs), so examples never attend
  to each other. On a CPU, flattening trades a few percent of tokens/s for a fraction of
  packing's memory (4 packed rows are 4096 tokens of activations per step, 4 short examples a
  few hundred; `benchmarks/train_throughput.py` measures both arms side by side), and with small
  datasets packing leaves few optimizer steps. Set `trainer.packing` to choose.
- a curriculum (`mathtune.train.data`) trains with a sequential sampler and without best-fit
  packing, so examples reach the optimizer in the order the data gives.
- logging every step with the NaN filter off (so the NaN guard sees a non-finite loss),
  periodic validation loss, checkpoints every 10% of the run, best checkpoint kept.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import MathtuneError, closest
from ..models import free_memory
from .recipe import TrainRecipe


def activation_bytes(model_config: Any, tokens: int, dtype_bytes: int) -> int:
    """Rough activation memory kept for backward without checkpointing (decoder layers only):
    ~10 hidden-size and ~4 intermediate-size tensors per token per layer."""
    cfg = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    hidden = getattr(cfg, "hidden_size", 1024)
    inter = getattr(cfg, "intermediate_size", None) or 4 * hidden
    layers = getattr(cfg, "num_hidden_layers", 24)
    # calibrated on SmolLM2-135M + LoRA on a CPU (~4 MB/token measured vs ~1.4 for 10h+4i)
    return tokens * layers * (30 * hidden + 12 * inter) * dtype_bytes


def needs_checkpointing(recipe: TrainRecipe, model_config: Any, device: str, dtype: Any) -> bool:
    """Gradient checkpointing only when the activations of a step would not fit comfortably
    (more than half the free memory); otherwise it only costs time (~30% more compute)."""
    t = recipe.trainer
    tokens = int(t.get("per_device_train_batch_size", 4)) * int(t.get("max_length") or 1024)
    return activation_bytes(model_config, tokens, dtype.itemsize) > free_memory(device) // 2


def common_settings(recipe: TrainRecipe, run_dir: Path, device: str, dtype: Any) -> dict[str, Any]:
    """The device-aware defaults every stage's TRL config starts from (sft, cpt, grpo, dpo, reward)."""
    import torch

    return {
        "output_dir": str(run_dir),
        "seed": recipe.seed,
        "bf16": dtype == torch.bfloat16,
        "fp16": dtype == torch.float16,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 0.1,
        "save_total_limit": 2,
        "report_to": "none",
        "disable_tqdm": True,  # ProgressCallback shows progress (or nothing, progress: none)
        "use_cpu": device == "cpu",
        "dataloader_num_workers": 0,
    }


def checkpointing_setting(user: dict[str, Any], model_config: Any, tokens: int, device: str,
                          dtype: Any) -> dict[str, bool]:
    """Activation checkpointing only when a step's activations would not fit in half the free
    memory, under the name the user did not give (transformers 5 renamed gradient_checkpointing
    to activation_checkpointing and keeps the old name as a deprecated alias)."""
    key = "gradient_checkpointing" if "gradient_checkpointing" in user else "activation_checkpointing"
    return {key: activation_bytes(model_config, tokens, dtype.itemsize) > free_memory(device) // 2}


def trainer_settings(recipe: TrainRecipe, run_dir: Path, device: str, dtype: Any, model_config: Any,
                     has_eval: bool, curriculum: bool = False) -> dict[str, Any]:
    """The SFTConfig kwargs: the recipe's `trainer:` block over mathtune's device-aware defaults.
    A curriculum gets a sequential sampler and no packing (best-fit packing reorders examples)."""
    user = dict(recipe.trainer)
    defaults: dict[str, Any] = {
        **common_settings(recipe, run_dir, device, dtype),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "gradient_checkpointing": needs_checkpointing(recipe, model_config, device, dtype),
    }
    if recipe.stage == "sft":
        # GPU: pack; CPU: flatten each batch padding-free (12% slower per token than packing,
        # 2.7x less memory; see the module docstring). Never pad to max_length.
        defaults["packing"] = device != "cpu" and not curriculum
        if not user.get("packing", defaults["packing"]):
            defaults["padding_free"] = True
    if recipe.stage == "cpt":
        defaults["max_length"] = None  # blocks are already block_size long; never cut them again
    if has_eval:
        defaults.update({"eval_strategy": "steps", "eval_steps": 0.1})
        if recipe.run.keep_best or recipe.run.early_stopping_patience:
            defaults.update({"load_best_model_at_end": True, "metric_for_best_model": "eval_loss",
                             "greater_is_better": False})
    elif recipe.run.early_stopping_patience:
        raise MathtuneError("early stopping needs a validation split",
                            "set data.validation to a share (e.g. 0.05) or use a dataset with validation.parquet")
    for a, b in (("eval_steps", "save_steps"), ("save_steps", "eval_steps")):
        if a in user and b not in user and has_eval:  # best-checkpoint tracking needs them aligned
            defaults[b] = user[a]
    if curriculum:
        _check_curriculum(user)
        defaults["train_sampling_strategy"] = "sequential"
    settings = {**defaults, **user}
    settings["logging_nan_inf_filter"] = False  # the NaN guard must see non-finite losses
    if settings.get("padding_free") and not settings.get("packing"):
        # we truncated while tokenizing; TRL refuses max_length with padding-free and no packing
        settings["max_length"] = None
    return settings


def _check_curriculum(user: dict[str, Any]) -> None:
    """Settings that would reorder a curriculum are an error, not a silent no-op."""
    if user.get("train_sampling_strategy", "sequential") != "sequential":
        raise MathtuneError(f"trainer.train_sampling_strategy={user['train_sampling_strategy']!r} reorders the "
                            "curriculum", "drop it (a curriculum trains sequentially) or set data.curriculum: false")
    if user.get("packing") and user.get("packing_strategy", "bfd") != "wrapped":
        raise MathtuneError("trainer.packing with best-fit packing reorders the curriculum",
                            "set trainer.packing_strategy: wrapped, drop trainer.packing, or set data.curriculum: false")


def max_length(recipe: TrainRecipe) -> int | None:
    """Truncation length used while tokenizing (the `trainer.max_length` setting, TRL's default 1024)."""
    return recipe.trainer.get("max_length", 1024)


def check_trainer_keys(settings: dict[str, Any], config_cls: Any = None) -> None:
    """Every key is a field of the stage's TRL config (`trl.SFTConfig` unless `config_cls` names
    another, e.g. `GRPOConfig`), else one error naming it and the closest field (cheap: run
    before the model loads)."""
    if config_cls is None:
        from trl import SFTConfig as config_cls
    names = {f.name for f in dataclasses.fields(config_cls)}
    for key in settings:
        if key not in names:
            guess = closest(key, names)
            raise MathtuneError(f"unknown key 'trainer.{key}' (not a trl.{config_cls.__name__} setting)",
                                f"did you mean 'trainer.{guess}'?" if guess
                                else f"see trl.{config_cls.__name__} for the settings")


def make_config(settings: dict[str, Any], config_cls: Any = None) -> Any:
    """`config_cls(**settings)` (default `trl.SFTConfig`), with unknown keys and invalid values as
    one clear error."""
    if config_cls is None:
        from trl import SFTConfig as config_cls
    check_trainer_keys(settings, config_cls)
    try:
        return config_cls(**settings)
    except (ValueError, TypeError) as e:
        raise MathtuneError(f"invalid trainer settings: {str(e).splitlines()[0][:300]}",
                            f"fix the trainer: block of the recipe (these are trl.{config_cls.__name__} settings)"
                            ) from None


def build_trainer(model: Any, tokenizer: Any, config: Any, train_ds: Any, eval_ds: Any,
                  callbacks: list[Any], optimizer: Any = None) -> Any:
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    try:
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            callbacks=callbacks,
            optimizers=(optimizer, None),
        )
    except ValueError as e:  # TRL's own checks of setting combinations
        raise MathtuneError(f"TRL rejected the training setup: {str(e).splitlines()[0][:300]}",
                            "adjust the trainer: block of the recipe") from None
    if config.disable_tqdm:
        trainer.remove_callback(PrinterCallback)  # our progress callback shows the logs
    return trainer
