"""The model card (README.md) of a training run: base model, data, method, hyper-parameters,
final losses and benchmark results when present. Written into the run dir and every output dir.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..files import atomic_write_text
from .recipe import TrainRecipe

HYPER = ("learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "optim",
         "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps",
         "max_length", "packing", "padding_free", "bf16", "fp16", "gradient_checkpointing", "seed")
STAGE_HYPER = {"dpo": ("beta", "loss_type", "loss_weights"), "reward": ("center_rewards_coefficient",)}
TRAINERS = {"sft": "SFT", "cpt": "SFT", "grpo": "GRPO", "dpo": "DPO", "reward": "Reward"}


def _data_line(recipe: TrainRecipe) -> str:
    d = recipe.data
    if d.pairs is not None:
        return f"preference pairs `{d.pairs}`"
    if d.synth is not None:
        return f"synthetic problems (mathtune.data.synth, n={d.synth.n}, seed={d.synth.seed})"
    if d.examples is not None:
        return f"{len(d.examples)} inline examples"
    return f"data recipe `{d.recipe}`" if d.recipe else f"`{d.path}`"


def _value(recipe: TrainRecipe, args: Any, key: str) -> Any:
    if key == "max_length" and recipe.stage == "sft":  # mathtune truncates while tokenizing
        return recipe.trainer.get("max_length", 1024)
    value = getattr(args, key)
    return getattr(value, "value", value)  # enums (SchedulerType, OptimizerNames) as their names


def render_card(recipe: TrainRecipe, args: Any, metrics: dict[str, Any]) -> str:
    m = recipe.method
    method = m.kind.upper() if m.kind != "full" else "full fine-tuning"
    if m.kind != "full":
        method += f" (r={m.r}, alpha={m.alpha or 2 * m.r}, dropout={m.dropout}, targets={m.target_modules}"
        if m.train_embeddings or m.train_lm_head:
            method += f", trains {'embed_tokens ' if m.train_embeddings else ''}{'lm_head' if m.train_lm_head else ''}"
        if m.embedding_lr:
            method += f", embedding lr {m.embedding_lr}"
        method += ")"
    lines = [
        "---",
        f"base_model: {recipe.model.name}",
        "library_name: peft" if m.kind != "full" else "library_name: transformers",
        f"tags: [mathtune, math, trl, {recipe.stage}]",
        "---",
        "",
        f"# {recipe.run_name()}",
        "",
        f"Trained with mathtune (stage `{recipe.stage}`) on TRL's {TRAINERS[recipe.stage]}Trainer.",
        "",
        f"- **Base model:** `{recipe.model.name}`",
        f"- **Data:** {_data_line(recipe)}; prompt style `{recipe.data.prompt}`"
        + {"sft": " (loss on the answer only)", "cpt": " (raw token blocks, every token in the loss)",
           "grpo": f" (prompts only; rewards {recipe.rewards})",
           "dpo": " (chosen vs rejected answers; reference: the model before training)",
           "reward": " (a score head ranks chosen above rejected)"}[recipe.stage],
        f"- **Method:** {method}",
        "",
        "## Hyper-parameters",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {_value(recipe, args, k)} |" for k in HYPER + STAGE_HYPER.get(recipe.stage, ())
          if hasattr(args, k)],
        "",
        "## Results",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {_cell(v)} |" for k, v in metrics.items() if not isinstance(v, dict)],
    ]
    titles = {"benchmark": f"Benchmark ({recipe.run.eval_benchmark})",
              "eval_ranking": "Held-out ranking (every held-out pair, scored by the saved model)"}
    for key, group in metrics.items():  # nested results (benchmark, eval_ranking): a table each
        if isinstance(group, dict):
            lines += ["", f"## {titles.get(key, key)}", "", "| metric | value |", "|---|---|",
                      *[f"| {k} | {_cell(v)} |" for k, v in group.items()]]
    lines += ["", "## Reproduce", "", "```", f"mathtune train {recipe.output_dir() / 'config.yaml'}", "```", ""]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_card(recipe: TrainRecipe, args: Any, metrics: dict[str, Any], run_dir: Path, out_dirs: list[Path]) -> None:
    text = render_card(recipe, args, metrics)
    for d in [run_dir, *out_dirs]:
        if d.is_dir():
            atomic_write_text(d / "README.md", text)
