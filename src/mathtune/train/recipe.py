"""The train recipe: model, method, data, run settings, and a `trainer:` pass-through block.

Only what mathtune itself decides lives in typed sections here. Everything TRL/transformers
owns (learning rate, schedule, batch size, epochs, `max_length`, `packing`, `padding_free`,
`optim`, `report_to`, ...) goes in `trainer:` and is validated by `trl.SFTConfig` itself, so a
typo there is caught by TRL's own dataclass (and reported as one clear MathtuneError).

    mathtune train recipes/smollm2-135m_lora_synth.yaml trainer.max_steps=20 method.r=8

    from mathtune.train import TrainRecipe
    recipe = TrainRecipe.from_dict({"data": {"synth": {"n": 64}}, "trainer": {"max_steps": 5}})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ..config import Section, apply_overrides, load_recipe, validate
from ..models import DEFAULT_MODEL

Method = Literal["lora", "dora", "qlora", "full"]
Stage = Literal["sft", "cpt", "grpo", "dpo", "reward"]


class ModelSpec(Section):
    name: str = Field(default=DEFAULT_MODEL, description="catalogue name, Hub id or local model dir")
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto", description="auto = measured fastest safe dtype (mathtune.models.pick_dtype)")
    device: str = "auto"
    attn_implementation: str | None = Field(default=None, description="sdpa | eager | flash_attention_2 ...")


class MethodSpec(Section):
    kind: Method = "lora"
    r: int = Field(default=16, ge=1)
    alpha: int | None = Field(default=None, ge=1, description="LoRA alpha (default 2*r)")
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    train_embeddings: bool = Field(default=False, description="train embed_tokens fully (PEFT modules_to_save)")
    train_lm_head: bool = Field(default=False, description="train lm_head fully (PEFT modules_to_save)")
    embedding_lr: float | None = Field(
        default=None, gt=0, description="own learning rate for embed_tokens/lm_head (an optimizer param group)")
    use_rslora: bool = False
    merge: bool = Field(default=False, description="also write a merged model (merge_and_unload)")


class SynthSpec(Section):
    n: int = Field(default=200, ge=1)
    families: list[str] | None = None
    levels: list[int] | None = None
    seed: int = 0


class DataSpec(Section):
    """Exactly one of: `path` (built dataset dir with train/validation.parquet, a CPT corpus dir
    with blocks.parquet, a .jsonl/.parquet file, or a directory of .txt/.tex/.md for CPT),
    `recipe` (a data recipe, built into the run dir), `examples` (inline) or `synth`; for the
    preference stages (dpo, reward), `pairs`."""

    path: str | None = None
    pairs: str | None = Field(
        default=None, description="stage dpo/reward: preference pairs JSONL (`mathtune data pairs`, or "
                                  "prompt/chosen/rejected lines; mathtune.data.pairs)")
    eval_pairs: str | None = Field(
        default=None, description="stage dpo/reward: held-out pairs JSONL scored as the validation set (e.g. "
                                  "`mathtune data pairs --from-run` on a test-set eval); replaces data.validation")
    recipe: str | dict[str, Any] | None = Field(
        default=None, description="data recipe: a YAML path (recipes/data/...) or the recipe inline")
    recipe_overrides: list[str] = Field(default_factory=list)
    data_dir: str | None = Field(default=None, description="local benchmark/source dir for the data recipe")
    examples: list[dict[str, Any]] | None = None
    synth: SynthSpec | None = None
    prompt: str = Field(default="chat-boxed", description="mathtune.prompts style, the same one eval uses")
    system: str | None = None
    limit: int | None = Field(default=None, ge=1, description="keep at most this many training examples")
    validation: float = Field(
        default=0.05, ge=0, description="held-out share (<1) or count (>=1) when the data has no validation split")
    validation_limit: int | None = Field(default=200, ge=1, description="cap on validation examples/blocks")
    block_size: int = Field(default=2048, ge=8, description="CPT: token block size for raw-text corpora")
    curriculum: bool | None = Field(
        default=None, description="train easy -> hard by difficulty; unset: as the built data says (mix.curriculum)")
    pacing: Literal["sorted", "baby-steps"] = Field(
        default="sorted", description="curriculum schedule: each example once in level order, or one phase per "
                                      "level k over every example of level <= k")
    seed: int = 0

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        given = [k for k in ("path", "recipe", "examples", "synth", "pairs") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one data source, not {' and '.join(given)}")
        return self


class RunSpec(Section):
    output_dir: str | None = Field(default=None, description="run directory (default runs/train/<name>)")
    resume: bool = Field(default=True, description="continue from the last complete checkpoint in output_dir")
    early_stopping_patience: int | None = Field(default=None, ge=1, description="evals without improvement")
    keep_best: bool = Field(default=True, description="load the best checkpoint by validation loss at the end")
    progress: Literal["rich", "plain", "none"] = "rich"
    plot: bool = True
    push_to_hub: str | None = Field(default=None, description="Hub repo id to push the adapter/model to")
    eval_benchmark: str | None = Field(default=None, description="optional benchmark run after training (mathtune.eval)")
    eval_limit: int = Field(default=50, ge=1)


class PassRateSpec(Section):
    """Keep problems the starting model sometimes solves: sample `k` completions per problem
    first, and keep those whose pass rate lies in [low, high] (groups that are all right or all
    wrong carry no GRPO signal)."""

    k: int = Field(default=8, ge=2, description="completions sampled per problem")
    low: float = Field(default=0.2, ge=0, le=1)
    high: float = Field(default=0.8, ge=0, le=1)
    max_new_tokens: int | None = Field(default=None, ge=1, description="default trainer.max_completion_length")

    @model_validator(mode="after")
    def _band(self) -> PassRateSpec:
        if self.low > self.high:
            raise ValueError(f"pass_rate.low {self.low} is above pass_rate.high {self.high}")
        return self


class GRPOSpec(Section):
    """stage grpo settings mathtune owns (TRL's go in `trainer:`)."""

    rollout: Literal["mathtune", "trl"] = Field(
        default="mathtune", description="mathtune's decode loop via TRL's rollout_func, or TRL's model.generate")
    policy: Literal["merged", "live"] = Field(
        default="merged", description="mathtune rollout of a LoRA run: a plain copy with the adapter merged in "
                                      "per step (fast), or the training model itself (no copy)")
    pass_rate: PassRateSpec | None = Field(default=None, description="filter prompts by the model's pass rate")


class TrainRecipe(Section):
    stage: Stage = "sft"
    name: str | None = None
    seed: int = 0
    model: ModelSpec = ModelSpec()
    method: MethodSpec = MethodSpec()
    data: DataSpec = DataSpec()
    run: RunSpec = RunSpec()
    trainer: dict[str, Any] = Field(default_factory=dict, description="trl.SFTConfig settings, passed through "
                                                                      "(trl.GRPOConfig for stage grpo, DPOConfig "
                                                                      "for dpo, RewardConfig for reward)")
    rewards: dict[str, Any] = Field(default_factory=dict, description="stage grpo: reward name -> weight, or "
                                                                      "{weight, options} (mathtune.train.rewards)")
    grpo: GRPOSpec = GRPOSpec()

    @model_validator(mode="after")
    def _rewards_for_grpo(self) -> TrainRecipe:
        if self.rewards and self.stage != "grpo":
            raise ValueError(f"rewards are for stage grpo, not stage {self.stage}")
        if self.grpo != GRPOSpec() and self.stage != "grpo":  # it would change nothing
            raise ValueError(f"grpo: settings are for stage grpo, not stage {self.stage}")
        return self

    @model_validator(mode="after")
    def _pairs_for_preferences(self) -> TrainRecipe:
        preference = self.stage in ("dpo", "reward")
        if preference and self.data.pairs is None:
            raise ValueError(f"stage {self.stage} trains on preference pairs: set data.pairs to a pairs JSONL "
                             "(make one with `mathtune data pairs`)")
        if not preference and (self.data.pairs is not None or self.data.eval_pairs is not None):
            raise ValueError(f"data.pairs and data.eval_pairs are for stages dpo and reward, not stage {self.stage}")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> TrainRecipe:
        return validate(cls, apply_overrides(data, overrides), "train recipe")

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainRecipe:
        return load_recipe(cls, path, overrides)

    def run_name(self) -> str:
        if self.name:
            return self.name
        model = Path(self.model.name).name.lower()
        return f"{model}_{self.method.kind}_{self.stage}"

    def output_dir(self) -> Path:
        return Path(self.run.output_dir) if self.run.output_dir else Path("runs") / "train" / self.run_name()
