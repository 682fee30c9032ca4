"""The train stage: SFT and continued pretraining (CPT) on TRL's SFTTrainer, and GRPO (RL with
verifiable rewards, `stage: grpo`) on TRL's GRPOTrainer, with PEFT.

Public API (the demo and other stages import only these):

    from mathtune.train import TrainRecipe, train
    result = train(TrainRecipe.from_dict({"data": {"synth": {"n": 200}}, "trainer": {"max_steps": 20}}))
    result.run_dir, result.adapter_dir, result.merged_dir, result.metrics

CLI: `mathtune train RECIPE [key=value ...]`. Modules: recipe (schema), data (load + tokenize),
cpt (token blocks), peft_setup (model, LoRA/DoRA/QLoRA/full, optimizer groups), sft (SFTConfig
defaults + trainer), grpo (GRPOConfig defaults + trainer), rewards (GRPO rewards), callbacks
(progress, logs, NaN guard, plot), run (train()), card.
Heavy libraries (torch, transformers, trl) are imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .recipe import TrainRecipe

if TYPE_CHECKING:
    from .run import TrainResult

__all__ = ["TrainRecipe", "TrainResult", "last_complete_checkpoint", "train"]


def train(recipe: Any, overrides: list[str] | tuple[str, ...] = (), **kwargs: Any) -> TrainResult:
    from .run import train as _train

    return _train(recipe, overrides, **kwargs)


def last_complete_checkpoint(run_dir: Any) -> str | None:
    from .run import last_complete_checkpoint as _last

    return _last(run_dir)


def __getattr__(name: str) -> Any:
    if name == "TrainResult":
        from .run import TrainResult

        return TrainResult
    raise AttributeError(name)
