"""`stage: grpo`: RL with verifiable rewards on TRL's GRPOTrainer (run by `mathtune train RECIPE`).

    mathtune train recipes/smollm2-135m_grpo_synth.yaml trainer.max_steps=4

The recipe has the SFT shape (`model`, `method` LoRA/DoRA/QLoRA/full, `data`) plus `rewards:`
(names and weights, see `mathtune.train.rewards`). Each `Example`'s `problem` becomes the prompt
through the prompt style eval uses (`style.render`), its `answer` the gold the `correctness`
reward grades against (the dataset column `answer`). The `trainer:` block is passed through to
`trl.GRPOConfig` and validated by it (a misspelt key names the closest GRPOConfig field).

Defaults from the literature, each overridable in `trainer:`:
- `loss_type: dr_grpo` and `scale_rewards: none`: Dr. GRPO (Liu et al. 2025, arXiv 2503.20783)
  removes GRPO's length normalisation and per-group std scaling, both shown to bias the update
  (toward long wrong answers, and toward too-easy/too-hard questions);
- `beta: 0`: no KL term and no reference model (DAPO, Dr. GRPO, SimpleRL-Zoo train without it);
- `epsilon_high: 0.28`: DAPO's clip-higher, so low-probability tokens can still gain mass;
- `mask_truncated_completions: true`: DAPO's overlong filtering (a cut-off completion is no
  evidence for or against its tokens).
Device-aware ones as for SFT: precision from `pick_dtype`, gradient checkpointing only when a
step's activations would not fit, logging every step, checkpoints every 10% of the run.

Logged to metrics.jsonl (TRL's own log keys, via mathtune's MetricsLogCallback): `reward`,
`reward_std`, `rewards/<name>/mean|std` per reward, `frac_reward_zero_std` (share of groups whose
completions all got the same reward, i.e. no learning signal), completion lengths, clipped share,
`kl` when beta > 0. `ZeroSignalCallback` warns when most groups carry no signal. Sampled
completions with what the grader extracted: `completions/step-N.jsonl` (`CompletionLog`).

Rollouts (`grpo.rollout`, default `mathtune`): mathtune's decode loop through TRL's public
`rollout_func` (`mathtune.train.rollout`; `benchmarks/grpo_throughput.py` times it against TRL's
own `model.generate` rollout), or `trl`. `grpo.pass_rate: {k, low, high}` keeps only problems the
starting policy solves sometimes (`mathtune.train.pass_rate`).

On a CPU the loss forward runs padding-free (`cpu_speedups._packed_rows`): each group's prompt
packed once with its completions as branches of it (`attention.shared_prefixes`), only completion
tokens through the LM head, rows with nothing in the loss left out. It computes the padded
batch's log-probs and gradients (tested through PEFT in fp32 and bf16); `benchmarks/
grpo_throughput.py` times the step against TRL's.

Data held out by `data.validation` is not trained on (GRPO here runs no periodic evaluation).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..errors import MathtuneError
from ..prompts import PromptStyle, get_style
from .recipe import TrainRecipe

LITERATURE_DEFAULTS: dict[str, Any] = {
    "loss_type": "dr_grpo",
    "scale_rewards": "none",
    "beta": 0.0,
    "epsilon_high": 0.28,
    "mask_truncated_completions": True,
}
# Peak RSS of GRPO's packed CPU loss forward + backward without checkpointing (SmolLM2-135M, bf16,
# LoRA r=16, 8 groups x 8 rows): 6.9 GB at 3,360 packed tokens, 11.3 GB at 7,104, i.e. 1.2 MB per
# token where `sft.activation_bytes` assumes 2.1: sized at 0.65 of it, with headroom.
PACKED_ACTIVATION_SHARE = 0.65
PROMPT_TOKENS_GUESS = 256  # prompt length assumed when sizing activations, if the prompts are not known


# --------------------------------------------------------------------------- config


def check_grpo_keys(settings: dict[str, Any]) -> None:
    """Every key is a `trl.GRPOConfig` field, else one error naming it and the closest field."""
    from trl import GRPOConfig

    from .sft import check_trainer_keys

    check_trainer_keys(settings, GRPOConfig)


def make_grpo_config(settings: dict[str, Any]) -> Any:
    """`trl.GRPOConfig(**settings)`, with unknown keys and invalid values as one clear error."""
    from trl import GRPOConfig

    from .sft import make_config

    return make_config(settings, GRPOConfig)


def grpo_settings(recipe: TrainRecipe, run_dir: Path, device: str, dtype: Any, model_config: Any,
                  curriculum: bool = False, prompt_tokens: int = PROMPT_TOKENS_GUESS) -> dict[str, Any]:
    """The GRPOConfig kwargs: the recipe's `trainer:` block over mathtune's defaults. Activation
    checkpointing is sized for `prompt_tokens` (the longest prompt) plus the completion cap."""
    from .sft import checkpointing_setting, common_settings

    if recipe.run.early_stopping_patience:
        raise MathtuneError("run.early_stopping_patience is not supported for stage grpo (no periodic evaluation)",
                            "drop run.early_stopping_patience")
    user = dict(recipe.trainer)
    batch = int(user.get("per_device_train_batch_size", 8))
    completion = int(user.get("max_completion_length") or 512)
    if device == "cpu" and getattr(model_config, "_attn_implementation", "sdpa") == "sdpa":
        # the loss forward packs each group's prompt once (`cpu_speedups._packed_rows`): a step holds the activations
        # of groups x prompt + rows x completion tokens, each ~PACKED_ACTIVATION_SHARE of what the
        # estimate assumes for a padded row
        groups = max(1, batch // int(user.get("num_generations") or 8))
        tokens = int((groups * prompt_tokens + batch * completion) * PACKED_ACTIVATION_SHARE)
    else:
        tokens = batch * (prompt_tokens + completion)
    defaults: dict[str, Any] = {
        **LITERATURE_DEFAULTS,
        **common_settings(recipe, run_dir, device, dtype),
        **checkpointing_setting(user, model_config, tokens, device, dtype),
    }
    if curriculum:  # TRL's RepeatSampler keeps the dataset order when not shuffling
        if user.get("shuffle_dataset"):
            raise MathtuneError("trainer.shuffle_dataset reorders the curriculum",
                                "drop it or set data.curriculum: false")
        defaults["shuffle_dataset"] = False
    settings = {**defaults, **user}
    if recipe.grpo.rollout == "mathtune":
        from .rollout import check_rollout_settings

        check_rollout_settings(settings)
    settings["logging_nan_inf_filter"] = False  # the NaN guard must see non-finite losses
    return settings


# --------------------------------------------------------------------------- data


def prompt_text(style: PromptStyle, problem: str, tokenizer: Any, system: str | None) -> str:
    """The style's prompt; a BOS the template wrote is dropped when the tokenizer adds its own
    (TRL tokenizes text prompts with special tokens, which would double it)."""
    text = style.render(problem, tokenizer, system=system)
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos):
        ids = tokenizer("x")["input_ids"]
        if ids and ids[0] == tokenizer.bos_token_id:
            text = text[len(bos):]
    return text


def grpo_dataset(examples: list[Any], tokenizer: Any, style: PromptStyle, system: str | None) -> Any:
    """A `datasets.Dataset` with `prompt` (rendered), `answer` (the gold) and `problem` columns
    (TRL passes the last two to every reward function: `correctness` grades against `answer`,
    `reward_model` renders `problem` in its own prompt style)."""
    from datasets import Dataset

    if not examples:
        raise MathtuneError("stage grpo got no training examples", "check the data: section of the recipe")
    return Dataset.from_list([{"prompt": prompt_text(style, ex.problem, tokenizer, system), "answer": ex.answer,
                               "problem": ex.problem} for ex in examples])


def grpo_datasets(recipe: TrainRecipe, tokenizer: Any, run_dir: Path) -> tuple[Any, None, bool]:
    """(train prompts, no eval set, whether the order is a curriculum)."""
    from .data import load_data

    data = load_data(recipe.data, "sft", run_dir, tokenizer)
    style = get_style(recipe.data.prompt)
    return grpo_dataset(data.train, tokenizer, style, recipe.data.system), None, data.curriculum


# --------------------------------------------------------------------------- trainer


class ZeroSignalCallback(TrainerCallback):
    """Warn (once) when most groups give no signal: every completion of a prompt got the same
    reward, so its advantages are zero and it teaches nothing (`frac_reward_zero_std`)."""

    def __init__(self, window: int = 5, threshold: float = 0.5) -> None:
        self.window, self.threshold = window, threshold
        self.seen: list[float] = []
        self.warned_at: int | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        value = (logs or {}).get("frac_reward_zero_std")
        if value is None:
            return
        self.seen.append(float(value))
        recent = self.seen[-self.window:]
        if self.warned_at is None and state.is_world_process_zero and sum(recent) / len(recent) > self.threshold \
                and (len(recent) == self.window or state.global_step >= state.max_steps):
            self.warned_at = state.global_step
            print(f"mathtune: warning: {sum(recent) / len(recent):.0%} of reward groups had zero std over the last "
                  f"{len(recent)} logged steps (step {state.global_step}): most groups give no learning signal. "
                  "Keep problems the model sometimes solves, raise trainer.num_generations or "
                  "trainer.temperature, or add a shaping reward (format).", file=sys.stderr, flush=True)


class CompletionLog:
    """Wraps the first reward function: each step, the first sampled completions with what the
    grader extracted, the gold and that reward's value, to `completions/step-N.jsonl` in
    the run dir (one file per step, rewritten when a resumed run redoes the step); `mathtune
    report --train RUN` shows the last step's table."""

    KEEP = 8

    def __init__(self, func: Any, run_dir: Path) -> None:
        self.func, self.dir = func, Path(run_dir) / "completions"
        self.__name__ = func.__name__

    def __call__(self, completions: list[Any], **kw: Any) -> list[float | None]:
        from ..files import atomic_write_jsonl
        from ..grading import extract_answer
        from ..grading.reward import completion_text

        values = self.func(completions, **kw)
        state = kw.get("trainer_state")
        if state is None or not getattr(state, "is_world_process_zero", True):
            return values
        keep = range(min(self.KEEP, len(completions)))
        prompts, answers = kw.get("prompts") or [], kw.get("answer") or []
        rows = []
        for i in keep:
            text = completion_text(completions[i])
            rows.append({"step": int(state.global_step), "prompt": str(prompts[i])[-300:] if i < len(prompts) else "",
                         "completion": text, "extracted": extract_answer(text),
                         "gold": answers[i] if i < len(answers) else None,
                         "reward": {self.__name__: values[i]}})
        atomic_write_jsonl(self.dir / f"step-{int(state.global_step):06d}.jsonl", rows)
        return values


class RolloutTimeCallback(TrainerCallback):
    """Adds `rollout_s`, the seconds mathtune's rollout spent sampling since the last log, to the
    logged metrics; beside TRL's `step_time` it says how a step splits between sampling and the
    trainer's scoring, loss and update."""

    def __init__(self, rollout: Any) -> None:
        self.rollout = rollout

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if logs is not None and "loss" in logs:
            logs["rollout_s"] = round(self.rollout.seconds, 4)
            self.rollout.seconds = 0.0


def make_rollout(recipe: TrainRecipe, config: Any, tokenizer: Any) -> Any:
    """mathtune's decode loop as TRL's `rollout_func` (`grpo.rollout: mathtune`), else None (TRL's own)."""
    if recipe.grpo.rollout != "mathtune" or config.use_vllm:
        return None
    from .rollout import DecodeRollout

    return DecodeRollout(tokenizer, max_new_tokens=config.max_completion_length, temperature=config.temperature,
                         top_p=config.top_p, seed=recipe.seed, policy=recipe.grpo.policy,
                         batch_size=config.generation_batch_size or 64)


def build_grpo_trainer(model: Any, tokenizer: Any, config: Any, train_ds: Any, reward_funcs: list[Any],
                       callbacks: list[Any], optimizer: Any = None, rollout: Any = None) -> Any:
    """TRL's GRPOTrainer; `config.reward_weights` must match `reward_funcs`; `rollout` is an optional
    `rollout_func` (TRL's public extension point for generation)."""
    import os

    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    extra = {}
    if rollout is not None:
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # mathtune pins TRL and tests its rollout_func use
        extra["rollout_func"] = rollout
    try:
        trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=config, train_dataset=train_ds,
                              processing_class=tokenizer, callbacks=callbacks, optimizers=(optimizer, None), **extra)
    except ValueError as e:  # TRL's checks of setting combinations
        raise MathtuneError(f"TRL rejected the GRPO setup: {str(e).splitlines()[0][:300]}",
                            "adjust the trainer: block or the rewards: section of the recipe") from None
    if config.disable_tqdm:
        trainer.remove_callback(PrinterCallback)
    return trainer


def build(recipe: TrainRecipe, model: Any, tokenizer: Any, train_ds: Any, run_dir: Path, device: str, dtype: Any,
          extra: list[Any], curriculum: bool = False) -> tuple[Any, Any]:
    """(GRPOTrainer, NaN guard) for the recipe, with mathtune's callbacks."""
    from .callbacks import MetricsLogCallback, NanGuardCallback, ProgressCallback
    from .peft_setup import build_optimizer
    from .rewards import build_rewards

    longest = max((len(ids) for ids in tokenizer(text=list(train_ds["prompt"]))["input_ids"]), default=0)
    settings = grpo_settings(recipe, run_dir, device, dtype, model.config, curriculum, longest or PROMPT_TOKENS_GUESS)
    funcs, weights = build_rewards(recipe.rewards, get_style(recipe.data.prompt),
                                   int(settings.get("max_completion_length") or 512), recipe.seed)
    if "reward_weights" in settings:
        raise MathtuneError("trainer.reward_weights is set from the rewards: section",
                            "give weights there, e.g. rewards: {correctness: 1.0, format: 0.1}")
    config = make_grpo_config({**settings, "reward_weights": weights})
    funcs = [CompletionLog(funcs[0], run_dir), *funcs[1:]]
    nan_guard = NanGuardCallback()
    cbs: list[Any] = [nan_guard, MetricsLogCallback(run_dir), ProgressCallback(recipe.run.progress),
                      ZeroSignalCallback()]
    optimizer = build_optimizer(model, config, recipe.method.embedding_lr) if recipe.method.embedding_lr else None
    rollout = make_rollout(recipe, config, tokenizer)
    if recipe.grpo.pass_rate is not None:
        from .pass_rate import filter_by_pass_rate

        train_ds = filter_by_pass_rate(train_ds, model, tokenizer, recipe.grpo.pass_rate, config, run_dir,
                                       recipe.seed, rollout)
    if rollout is not None:  # before MetricsLogCallback, which writes the logs this adds to
        cbs.insert(0, RolloutTimeCallback(rollout))
    trainer = build_grpo_trainer(model, tokenizer, config, train_ds, funcs, cbs + extra, optimizer, rollout)
    if device == "cpu":
        from .attention import use_varlen_attention
        from .cpu_speedups import speed_up_cpu_trainer

        causal_lm = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
        # TRL scores [prompts + completions] padded to the longest of each: the loss forward runs
        # padding-free instead (each row's own tokens, attention per row) and projects only the
        # completion tokens through the LM head, where TRL's CPU fallback projects every position
        use_varlen_attention(causal_lm)
        speed_up_cpu_trainer(trainer)
    return trainer, nan_guard


def check(recipe: TrainRecipe) -> None:
    """What can be checked without a model: trainer keys/values (GRPOConfig) and the rewards."""
    from .rewards import check_rewards

    check_rewards(recipe.rewards)
    if recipe.grpo.rollout == "mathtune":
        from .rollout import check_rollout_settings

        check_rollout_settings(recipe.trainer)
    quiet = {} if "gradient_checkpointing" in recipe.trainer else {"activation_checkpointing": False}
    make_grpo_config({**quiet, **recipe.trainer, "output_dir": str(recipe.output_dir()), "use_cpu": True,
                      "bf16": False})
