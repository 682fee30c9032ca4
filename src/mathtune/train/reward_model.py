"""`stage: reward`: a reward model (Bradley-Terry, on TRL's RewardTrainer) trained on the same
preference pairs as `stage: dpo`, and the scorer that reads it back (the GRPO reward `reward_model`).

    mathtune train recipes/smollm2-135m_reward_pairs.yaml trainer.max_steps=4

    from mathtune.train.reward_model import reward_model_scores
    reward_model_scores("runs/train/smollm2-135m_reward_pairs", prompts, completions)   # list[float]

The model is the base with a one-output sequence-classification head (`AutoModelForSequenceClassification`,
`num_labels=1`: the score of the last token). With LoRA/DoRA the adapter is a PEFT `SEQ_CLS`
adapter, which trains the new `score` head fully (PEFT puts it in `modules_to_save`) next to the
low-rank updates; `method.kind: full` trains every weight. QLoRA is not offered here (a merged
4-bit reward head is not worth the complexity; LoRA on a bf16 base fits a 7B reward model on one
80 GB GPU). The `trainer:` block is passed through to `trl.RewardConfig` and validated by it.

Defaults, each overridable in `trainer:`: `center_rewards_coefficient: 0.01` (Eisenstein et al.
2023, arXiv 2312.09244, eq. 2): keeps scores near zero, so the reward sits on a known scale
next to `correctness` in a GRPO mix; the rest as for stage dpo (device-aware precision and
checkpointing, logging every step, validation and checkpoints every 10%, best kept).

Texts: prompt + answer + EOS, as TRL's RewardTrainer builds them; the scorer builds the same
text, so a score at GRPO time is the score the model was trained to give. Logged: `loss`,
`accuracy` (share of pairs scored chosen > rejected), `margin`, `mean_reward`, `min_reward`,
`max_reward`, with `eval_` on held-out pairs. TRL's `eval_accuracy` is a mean of per-batch means;
after training, `ranking_accuracy` scores every held-out pair with the saved model (the scorer GRPO
uses) and `result.json` keeps the pooled share with its Wilson interval as `eval_ranking`.

Scoring another model's samples: a reward model need not share the policy's tokenizer or chat
template (a Qwen2.5-Coder-0.5B scorer ranks SmolLM2 solutions better than SmolLM2 does: 0.716
against 0.57-0.69 on the same 324 held-out pairs, `benchmarks/accuracy_ab.py --arms reward
--rm-model qwen2.5-coder-0.5b-instruct`). The saved model dir keeps the prompt style its pairs
were rendered in (`scoring.json`, when every pair was rendered from its `problem`); given each sample's `problem` (GRPO passes its dataset's
`problem` column), the scorer renders a text prompt as training did, with the reward model's
own tokenizer, instead of scoring the policy's templated text (chat-message prompts go through
its chat template anyway). Measured with that Qwen scorer on SmolLM2-templated prompts: the held-out ranking
is the same either way (232/324) and scores move by 0.05 +- 0.08 (score sd 0.7): the scorer is
robust to the template, and it is still scored on the text it was trained on.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import MathtuneError
from .recipe import MethodSpec, ModelSpec, TrainRecipe

DEFAULTS: dict[str, Any] = {"center_rewards_coefficient": 0.01}
OUTPUT_DIRS = ("merged", "adapter", "model")  # where a run dir keeps its reward model, best first
SCORING_FILE = "scoring.json"  # beside the weights: how its training prompts were rendered


# --------------------------------------------------------------------------- config


def check_reward_keys(settings: dict[str, Any]) -> None:
    """Every key is a `trl.RewardConfig` field, else one error naming it and the closest field."""
    from trl import RewardConfig

    from .sft import check_trainer_keys

    check_trainer_keys(settings, RewardConfig)


def make_reward_config(settings: dict[str, Any]) -> Any:
    from trl import RewardConfig

    from .sft import make_config

    return make_config(settings, RewardConfig)


def reward_settings(recipe: TrainRecipe, run_dir: Path, device: str, dtype: Any, model_config: Any,
                    has_eval: bool) -> dict[str, Any]:
    """The RewardConfig kwargs: the recipe's `trainer:` block over mathtune's defaults."""
    from .dpo import preference_settings

    settings = {**DEFAULTS, **preference_settings(recipe, run_dir, device, dtype, model_config, has_eval),
                **recipe.trainer}
    settings["logging_nan_inf_filter"] = False  # the NaN guard must see non-finite losses
    return settings


def check_method(recipe: TrainRecipe) -> None:
    """What stage reward refuses up front."""
    if recipe.method.kind == "qlora":
        raise MathtuneError("stage reward does not support method.kind: qlora",
                            "use method.kind: lora (a bf16 base) or full")
    if recipe.run.eval_benchmark:
        raise MathtuneError("run.eval_benchmark runs a generation benchmark; a reward model does not generate",
                            "drop run.eval_benchmark (held-out pairs are scored as eval_accuracy)")


# --------------------------------------------------------------------------- model


def load_base(model: ModelSpec, method: MethodSpec) -> tuple[Any, Any, str, Any]:
    """(sequence-classification model with one output, tokenizer, device, compute dtype)."""
    from transformers import AutoModelForSequenceClassification
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    from ..models import (
        configure_cpu_threads,
        is_adapter_dir,
        load_tokenizer,
        pick_device,
        pick_dtype,
        resolve_model,
    )

    device = pick_device(model.device)
    dtype = pick_dtype(device, model.dtype)
    path = resolve_model(model.name)
    if is_adapter_dir(path):
        raise MathtuneError(f"stage reward starts from a full model, and {path} is an adapter",
                            "merge it first (train with method.merge: true and use its merged/ dir)")
    if device == "cpu":
        configure_cpu_threads()
    try:
        with suppress_seqcls_warning():  # the new score head is expected to be missing from the checkpoint
            m = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
    except (OSError, ValueError) as e:
        raise MathtuneError(f"could not load {path} as a sequence classifier: {str(e).splitlines()[0][:200]}",
                            "use a decoder model transformers has a *ForSequenceClassification class for") from None
    if device != "cpu":
        m.to(device)
    tok = load_tokenizer(path)
    m.config.pad_token_id = tok.pad_token_id  # the head reads the last non-pad token
    if model.attn_implementation:
        m.set_attn_implementation(model.attn_implementation)
    m.config.use_cache = False
    return m, tok, device, dtype


def apply_method(model: Any, method: MethodSpec) -> Any:
    """A PEFT SEQ_CLS adapter (the score head trains fully) or full fine-tuning."""
    from peft import get_peft_model

    from .peft_setup import peft_config, prepare_full

    cfg = peft_config(model, method)
    if cfg is None:
        return prepare_full(model)
    cfg.task_type = "SEQ_CLS"  # PEFT adds `score`/`classifier` to modules_to_save for this task type
    return get_peft_model(model, cfg)


# --------------------------------------------------------------------------- trainer


def build(recipe: TrainRecipe, model: Any, tokenizer: Any, train_ds: Any, eval_ds: Any, run_dir: Path, device: str,
          dtype: Any, extra: list[Any]) -> tuple[Any, Any]:
    """(RewardTrainer, NaN guard) for the recipe, with mathtune's callbacks."""
    from transformers import EarlyStoppingCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import RewardTrainer

    from .callbacks import MetricsLogCallback, NanGuardCallback, ProgressCallback
    from .dpo import report_dropped
    from .peft_setup import build_optimizer

    config = make_reward_config(reward_settings(recipe, run_dir, device, dtype, model.config, eval_ds is not None))
    nan_guard = NanGuardCallback()
    cbs: list[Any] = [nan_guard, MetricsLogCallback(run_dir), ProgressCallback(recipe.run.progress)]
    if recipe.run.early_stopping_patience:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=recipe.run.early_stopping_patience))
    optimizer = build_optimizer(model, config, recipe.method.embedding_lr) if recipe.method.embedding_lr else None
    try:
        trainer = RewardTrainer(model=model, args=config, train_dataset=train_ds, eval_dataset=eval_ds,
                                processing_class=tokenizer, callbacks=cbs + extra, optimizers=(optimizer, None))
    except ValueError as e:
        raise MathtuneError(f"TRL rejected the reward-model setup: {str(e).splitlines()[0][:300]}",
                            "adjust the trainer: or method: block of the recipe") from None
    report_dropped(trainer, len(train_ds), "chosen or rejected longer than max_length")
    if config.disable_tqdm:
        trainer.remove_callback(PrinterCallback)
    if device == "cpu":
        from ..models import retune_callback, tune_threads

        trainer.add_callback(retune_callback(tune_threads("train")))
    return trainer, nan_guard


def check(recipe: TrainRecipe) -> None:
    """What can be checked without a model: trainer keys/values (RewardConfig) and the method."""
    check_method(recipe)
    quiet = {} if "gradient_checkpointing" in recipe.trainer else {"activation_checkpointing": False}
    make_reward_config({**DEFAULTS, **quiet, **recipe.trainer, "output_dir": str(recipe.output_dir()),
                        "use_cpu": True, "bf16": False})


# --------------------------------------------------------------------------- scoring


def write_scoring(model_dir: Path, recipe: TrainRecipe) -> None:
    """Record in a saved reward model's dir how its training prompts were rendered from problems:
    only when every training pair was (text pairs with a `problem`); a model trained on verbatim
    or chat-message prompts gets no record and is scored on the prompts it is given."""
    from ..data import read_pairs
    from ..files import atomic_write_json

    if all(p.problem and not p.conversational for p in read_pairs(recipe.data.pairs or "")):
        atomic_write_json(Path(model_dir) / SCORING_FILE, {"prompt": recipe.data.prompt, "system": recipe.data.system})


def reward_model_dir(path: str | Path) -> Path:
    """The reward model of a run dir (merged/, adapter/ or model/), or `path` itself."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise MathtuneError(f"reward model not found: {path}",
                            "train one with a stage: reward recipe and point at its run dir or adapter/ dir")
    for name in OUTPUT_DIRS:
        if (path / name).is_dir() and not (path / "adapter_config.json").is_file():
            return path / name
    return path


def load_reward_model(path: str | Path, device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
    """(sequence classifier in eval mode, tokenizer) from a reward run dir, adapter dir or model dir."""
    from transformers import AutoModelForSequenceClassification

    from ..models import (
        adapter_base,
        is_adapter_dir,
        load_tokenizer,
        pick_device,
        pick_dtype,
        resolve_model,
    )

    where = reward_model_dir(path)
    dev = pick_device(device)
    kwargs = {"num_labels": 1, "dtype": pick_dtype(dev, dtype)}  # type: ignore[arg-type]
    tok = load_tokenizer(where)
    if is_adapter_dir(where):
        from peft import PeftModel
        from trl.trainer.reward_trainer import suppress_seqcls_warning

        if json.loads((where / "adapter_config.json").read_text()).get("task_type") != "SEQ_CLS":
            raise MathtuneError(f"{where} is not a reward-model adapter (task_type is not SEQ_CLS)",
                                "point at the output of a stage: reward run")
        with suppress_seqcls_warning():
            base = AutoModelForSequenceClassification.from_pretrained(resolve_model(adapter_base(where)), **kwargs)
        base.config.pad_token_id = tok.pad_token_id
        model = PeftModel.from_pretrained(base, where).merge_and_unload()
    else:
        config = json.loads((where / "config.json").read_text()) if (where / "config.json").is_file() else {}
        if not any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or []):
            raise MathtuneError(f"{where} is not a reward model (no sequence-classification head)",
                                "point at the output of a stage: reward run")
        model = AutoModelForSequenceClassification.from_pretrained(where, **kwargs)
    model.config.pad_token_id = tok.pad_token_id
    return model.to(dev).eval(), tok


class RewardModelScorer:
    """Scores (prompt, completion) pairs with a trained reward model; safe to call from any thread
    (calls are serialised) and loaded on first use."""

    def __init__(self, path: str | Path, device: str = "auto", dtype: str = "auto", batch_size: int = 8) -> None:
        self.path, self.device, self.dtype, self.batch_size = Path(path), device, dtype, max(1, int(batch_size))
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None
        self.dir = reward_model_dir(path)  # a wrong path fails here, not at the first score
        spec = self.dir / SCORING_FILE
        scoring = json.loads(spec.read_text()) if spec.is_file() else None
        # (prompt style, system prompt) its training pairs were rendered with, when they were
        self.rendering: tuple[Any, str | None] | None = None
        if scoring is not None:
            from ..prompts import get_style

            self.rendering = (get_style(scoring["prompt"]), scoring.get("system"))

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            self._loaded = load_reward_model(self.dir, self.device, self.dtype)
        return self._loaded

    def texts(self, prompts: Sequence[Any], completions: Sequence[Any],
              problems: Sequence[str | None] | None = None) -> list[tuple[str, bool]]:
        """(text, add special tokens) per pair, built as TRL's RewardTrainer built its training
        texts; with `problems` (and a model that recorded its prompt style), each prompt is the
        problem rendered as its training pairs were, by the reward model's tokenizer."""
        from ..grading.reward import completion_text

        _, tok = self._model()
        if problems is not None and self.rendering is not None:
            from .grpo import prompt_text

            style, system = self.rendering
            prompts = [prompt_text(style, q, tok, system) if q and not isinstance(p, list) else p
                       for p, q in zip(prompts, problems, strict=True)]
        out = []
        for p, c in zip(prompts, completions, strict=True):
            if isinstance(p, list):  # chat messages: the template renders prompt and answer together
                answer = c if isinstance(c, list) else [{"role": "assistant", "content": completion_text(c)}]
                out.append((tok.apply_chat_template(list(p) + list(answer), tokenize=False), False))
            else:
                text = str(p) + completion_text(c)
                out.append((text if text.endswith(tok.eos_token) else text + tok.eos_token, True))
        return out

    def score(self, prompts: Sequence[Any], completions: Sequence[Any],
              problems: Sequence[str | None] | None = None) -> list[float]:
        import torch

        if len(prompts) != len(completions):
            raise MathtuneError(f"{len(prompts)} prompts for {len(completions)} completions",
                                "pass one prompt per completion")
        with self._lock:
            model, tok = self._model()
            items = self.texts(prompts, completions, problems)
            scores: list[float] = []
            device = next(model.parameters()).device
            for i in range(0, len(items), self.batch_size):
                chunk = items[i:i + self.batch_size]
                special = chunk[0][1]
                batch = tok([t for t, _ in chunk], padding=True, return_tensors="pt", add_special_tokens=special)
                with torch.inference_mode():
                    logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
                scores += logits[:, 0].float().tolist()
            return scores


def reward_model_scores(model_dir: str | Path, prompts: Sequence[Any], completions: Sequence[Any],
                        *, batch_size: int = 8, device: str = "auto") -> list[float]:
    """One reward-model score per (prompt, completion): higher is preferred."""
    return RewardModelScorer(model_dir, device=device, batch_size=batch_size).score(prompts, completions)


def ranking_accuracy(model_dir: str | Path, prompts: Sequence[Any], chosen: Sequence[Any], rejected: Sequence[Any],
                     *, batch_size: int = 8, device: str = "auto") -> dict[str, Any]:
    """How often the reward model scores `chosen` above `rejected`, pooled over every pair (a tie
    counts as wrong), with its Wilson 95% interval: {n, correct, ties, accuracy, ci95, margin}."""
    from ..eval.metrics import wilson_interval

    if not (len(prompts) == len(chosen) == len(rejected)) or not prompts:
        raise MathtuneError(f"ranking needs as many prompts, chosen and rejected answers, got "
                            f"{len(prompts)}/{len(chosen)}/{len(rejected)}", "pass one (prompt, chosen, rejected) per pair")
    scorer = RewardModelScorer(model_dir, device=device, batch_size=batch_size)
    margins = [g - b for g, b in zip(scorer.score(list(prompts), list(chosen)),
                                     scorer.score(list(prompts), list(rejected)), strict=True)]
    n, correct = len(margins), sum(m > 0 for m in margins)
    lo, hi = wilson_interval(correct, n)
    return {"n": n, "correct": correct, "ties": margins.count(0.0), "accuracy": correct / n,
            "ci95": [round(lo, 4), round(hi, 4)], "margin": sum(margins) / n}
