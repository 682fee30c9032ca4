"""`stage: dpo`: preference training on TRL's DPOTrainer (run by `mathtune train RECIPE`).

    mathtune data pairs --model smollm2-135m-instruct --data runs/data/synth_easy -k 4 -o runs/pairs/synth.jsonl
    mathtune train recipes/smollm2-135m_dpo_pairs.yaml trainer.max_steps=4

The recipe has the SFT shape (`model`, `method` LoRA/DoRA/QLoRA/full) with `data.pairs`, a
preference-pairs JSONL (`mathtune.data.pairs`: the model's own graded samples, or human-labelled
prompt/chosen/rejected lines). The `trainer:` block is passed through to `trl.DPOConfig` and
validated by it (a misspelt key names the closest DPOConfig field).

Defaults from the literature, each overridable in `trainer:`:
- `loss_type: [sigmoid, sft]`, `loss_weights: [1.0, 1.0]`: DPO plus the chosen answer's
  length-normalised NLL, i.e. RPO as in Iterative Reasoning Preference Optimization (Pang et al.
  2024, arXiv 2404.19733, alpha = 1). On math, plain DPO lowers the likelihood of the chosen
  solutions along with the rejected ones; the NLL term keeps the right ones likely. (TRL 1.x
  dropped `rpo_alpha`; the combined loss list is its replacement.) Give `loss_type: sigmoid`
  alone for plain DPO.
- `beta: 0.1` (the DPO paper's and the RPO paper's value).
With LoRA/DoRA/QLoRA the adapter is handed to DPOTrainer as a `peft_config`, so there is no
separate reference model: the reference log-probs come from the same weights with the adapter
disabled. Full fine-tuning loads a frozen reference copy (TRL's default). With `model.name` an
adapter directory (DPO after SFT) training continues that adapter and the reference is the
starting adapter: TRL copies it into a frozen "ref" adapter (only the trained one is saved).
Device-aware ones as for SFT: precision from `pick_dtype`, gradient checkpointing only when a
step's activations would not fit, logging every step, checkpoints every 10% of the run,
validation (pairs held out by `data.validation`, whole problems at a time) every 10%, best kept.
`data.eval_pairs: FILE` scores a separate held-out pairs file instead (e.g. pairs of test-set
problems from `mathtune data pairs --from-run`); it is reported, never used to pick a checkpoint.

Prompts: a pair with `problem` is rendered in `data.prompt`'s style for this model (the text
eval prompts with); chat-message pairs go through the chat template; bare string prompts are
used verbatim. Chosen/rejected texts end with the chat template's end-of-turn token.

Logged to metrics.jsonl (TRL's keys, via MetricsLogCallback): `loss`, `rewards/chosen`,
`rewards/rejected`, `rewards/accuracies` (share of pairs whose implicit reward ranks chosen
first), `rewards/margins`, `logps/chosen|rejected`, and the same with `eval_` on validation.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..errors import MathtuneError
from ..prompts import get_style
from .recipe import TrainRecipe

LITERATURE_DEFAULTS: dict[str, Any] = {
    "loss_type": ["sigmoid", "sft"],
    "loss_weights": [1.0, 1.0],
    "beta": 0.1,
}


# --------------------------------------------------------------------------- config


def check_dpo_keys(settings: dict[str, Any]) -> None:
    """Every key is a `trl.DPOConfig` field, else one error naming it and the closest field."""
    from trl import DPOConfig

    from .sft import check_trainer_keys

    check_trainer_keys(settings, DPOConfig)


def make_dpo_config(settings: dict[str, Any]) -> Any:
    """`trl.DPOConfig(**settings)`, with unknown keys and invalid values as one clear error."""
    from trl import DPOConfig

    from .sft import make_config

    return make_config(settings, DPOConfig)


def preference_settings(recipe: TrainRecipe, run_dir: Path, device: str, dtype: Any, model_config: Any,
                        has_eval: bool) -> dict[str, Any]:
    """mathtune's defaults shared by the pair stages (dpo, reward), before the user's block."""
    from .sft import checkpointing_setting, common_settings

    user = recipe.trainer
    # a step holds chosen and rejected of every pair in the batch
    tokens = 2 * int(user.get("per_device_train_batch_size", 4)) * int(user.get("max_length") or 1024)
    defaults: dict[str, Any] = {
        **common_settings(recipe, run_dir, device, dtype),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        **checkpointing_setting(user, model_config, tokens, device, dtype),
    }
    if has_eval:
        defaults.update({"eval_strategy": "steps", "eval_steps": 0.1})
        if recipe.data.eval_pairs:  # a held-out file is reported, never used to pick what is kept
            if recipe.run.early_stopping_patience:
                raise MathtuneError("early stopping on data.eval_pairs would choose the model on held-out pairs",
                                    "drop run.early_stopping_patience, or split validation pairs off data.pairs")
        elif recipe.run.keep_best or recipe.run.early_stopping_patience:
            defaults.update({"load_best_model_at_end": True, "metric_for_best_model": "eval_loss",
                             "greater_is_better": False})
        for a, b in (("eval_steps", "save_steps"), ("save_steps", "eval_steps")):
            if a in user and b not in user:  # best-checkpoint tracking needs them aligned
                defaults[b] = user[a]
    elif recipe.run.early_stopping_patience:
        raise MathtuneError("early stopping needs held-out pairs", "set data.validation to a share, e.g. 0.1")
    return defaults


def dpo_settings(recipe: TrainRecipe, run_dir: Path, device: str, dtype: Any, model_config: Any,
                 has_eval: bool) -> dict[str, Any]:
    """The DPOConfig kwargs: the recipe's `trainer:` block over mathtune's defaults."""
    user = dict(recipe.trainer)
    defaults = {**LITERATURE_DEFAULTS, **preference_settings(recipe, run_dir, device, dtype, model_config, has_eval)}
    if "loss_type" in user and "loss_weights" not in user:
        defaults.pop("loss_weights")  # the weights belong to the default loss list, not the user's
    settings = {**defaults, **user}
    settings["logging_nan_inf_filter"] = False  # the NaN guard must see non-finite losses
    return settings


# --------------------------------------------------------------------------- data


def pair_datasets(recipe: TrainRecipe, tokenizer: Any, end: str | None) -> tuple[Any, Any, bool]:
    """(train pairs, held-out pairs or None, False) as TRL preference datasets with `prompt`,
    `chosen`, `rejected`; `end` (the end-of-turn text, None for TRL's own EOS) closes each answer."""
    from mathtune.data import read_pairs, split_pairs

    spec = recipe.data
    pairs = read_pairs(spec.pairs or "")
    if spec.eval_pairs:  # a held-out file (e.g. pairs of test-set problems): the training pairs stay whole
        train, val = pairs, read_pairs(spec.eval_pairs)
        shared = {p.group() for p in val} & {p.group() for p in train}
        if shared:
            raise MathtuneError(f"{len(shared)} problems of data.eval_pairs {spec.eval_pairs} are also in data.pairs",
                                "held-out pairs must come from other problems (e.g. the test split's)")
    else:
        train, val = split_pairs(pairs, spec.validation, spec.seed)
    train = train[: spec.limit] if spec.limit else train
    if spec.validation_limit and len(val) > spec.validation_limit:
        print(f"mathtune: note: scoring the first {spec.validation_limit} of {len(val)} held-out pairs "
              f"(data.validation_limit; raise it to score them all)", file=sys.stderr, flush=True)
        val = val[: spec.validation_limit]
    styles = {p.meta.get("prompt_style") for p in pairs if p.problem} - {None, spec.prompt}
    if styles:
        print(f"mathtune: note: pairs were sampled with prompt style {sorted(styles)[0]!r}; they are rendered in "
              f"data.prompt={spec.prompt!r} here", file=sys.stderr, flush=True)
    return _dataset(train, tokenizer, recipe, end), (_dataset(val, tokenizer, recipe, end) if val else None), False


def _dataset(pairs: list[Any], tokenizer: Any, recipe: TrainRecipe, end: str | None) -> Any:
    from datasets import Dataset

    from .grpo import prompt_text

    if not pairs:
        raise MathtuneError(f"stage {recipe.stage} got no training pairs", "check data.pairs / data.limit")
    style = get_style(recipe.data.prompt)
    rows = []
    for p in pairs:
        if p.conversational:
            rows.append({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected})
            continue
        source = p.problem if p.problem else p.prompt
        prompt = prompt_text(style, source, tokenizer, recipe.data.system) if p.problem else _no_bos(source, tokenizer)
        rows.append({"prompt": prompt, "chosen": _ended(p.chosen, end), "rejected": _ended(p.rejected, end)})
    kinds = {isinstance(r["prompt"], list) for r in rows}
    if len(kinds) > 1:
        raise MathtuneError(f"{recipe.data.pairs} mixes chat-message pairs with text pairs",
                            "write every pair in one format (all strings, or all chat messages)")
    return Dataset.from_list(rows)


def _ended(text: str, end: str | None) -> str:
    return text if not end or text.endswith(end) else text + end


def _no_bos(text: str, tokenizer: Any) -> str:
    """A verbatim prompt, less a BOS the tokenizer will add itself (TRL tokenizes with special tokens)."""
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos):
        ids = tokenizer("x")["input_ids"]
        if ids and ids[0] == tokenizer.bos_token_id:
            return text[len(bos):]
    return text


def dpo_datasets(recipe: TrainRecipe, tokenizer: Any) -> tuple[Any, Any, bool]:
    from .data import end_of_turn

    return pair_datasets(recipe, tokenizer, end_of_turn(tokenizer, get_style(recipe.data.prompt)))


def report_dropped(trainer: Any, before: int, what: str) -> None:
    """TRL drops pairs that do not fit `max_length`; say so instead of training on fewer silently."""
    after = len(trainer.train_dataset)
    if after < before:
        print(f"mathtune: note: {before - after} of {before} training pairs were dropped by the trainer ({what}); "
              "raise trainer.max_length to keep them", file=sys.stderr, flush=True)
    if after == 0:
        raise MathtuneError("no training pair fits trainer.max_length", "raise trainer.max_length")


# --------------------------------------------------------------------------- trainer


def build(recipe: TrainRecipe, model: Any, tokenizer: Any, train_ds: Any, eval_ds: Any, run_dir: Path, device: str,
          dtype: Any, extra: list[Any]) -> tuple[Any, Any]:
    """(DPOTrainer, NaN guard) for the recipe, with mathtune's callbacks."""
    from transformers import EarlyStoppingCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOTrainer

    from .callbacks import MetricsLogCallback, NanGuardCallback, ProgressCallback
    from .peft_setup import build_optimizer, peft_config

    config = make_dpo_config(dpo_settings(recipe, run_dir, device, dtype, model.config, eval_ds is not None))
    nan_guard = NanGuardCallback()
    cbs: list[Any] = [nan_guard, MetricsLogCallback(run_dir), ProgressCallback(recipe.run.progress)]
    if recipe.run.early_stopping_patience:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=recipe.run.early_stopping_patience))
    from peft import PeftModel

    # A new adapter goes in as peft_config: DPOTrainer then uses the adapter-disabled model as the
    # reference. A continued adapter (model.name: an SFT adapter dir) is a PeftModel already:
    # DPOTrainer copies it into a frozen "ref" adapter, so the reference is the starting model.
    new_adapter = None if isinstance(model, PeftModel) else peft_config(model, recipe.method)
    try:
        trainer = DPOTrainer(model=model, args=config, train_dataset=train_ds, eval_dataset=eval_ds,
                             processing_class=tokenizer, callbacks=cbs + extra, peft_config=new_adapter)
    except (ValueError, NotImplementedError) as e:
        raise MathtuneError(f"TRL rejected the DPO setup: {str(e).splitlines()[0][:300]}",
                            "adjust the trainer: or method: block of the recipe") from None
    report_dropped(trainer, len(train_ds), "prompt alone fills max_length")
    if recipe.method.embedding_lr:  # the trainer builds its schedule on this optimizer
        trainer.optimizer = build_optimizer(trainer.model, config, recipe.method.embedding_lr)
    if config.disable_tqdm:
        trainer.remove_callback(PrinterCallback)
    if device == "cpu":
        from ..models import retune_callback, tune_threads

        trainer.add_callback(retune_callback(tune_threads("train")))
    return trainer, nan_guard


def check(recipe: TrainRecipe) -> None:
    """What can be checked without a model: trainer keys and values (DPOConfig)."""
    quiet = {} if "gradient_checkpointing" in recipe.trainer else {"activation_checkpointing": False}
    defaults = dict(LITERATURE_DEFAULTS)
    if "loss_type" in recipe.trainer and "loss_weights" not in recipe.trainer:
        defaults.pop("loss_weights")
    make_dpo_config({**defaults, **quiet, **recipe.trainer, "output_dir": str(recipe.output_dir()), "use_cpu": True,
                     "bf16": False})
