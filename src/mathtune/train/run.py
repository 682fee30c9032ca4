"""`train(recipe)`: load -> build -> run -> save, for the sft, cpt, grpo (train/grpo.py), dpo
(train/dpo.py) and reward (train/reward_model.py) stages.

    from mathtune.train import train
    result = train("recipes/smollm2-135m_lora_synth.yaml", ["trainer.max_steps=10"])
    result.adapter_dir, result.metrics

Run directory (`run.output_dir`, default runs/train/<name>):
    config.yaml        the resolved recipe (reload with `mathtune train config.yaml`)
    checkpoint-N/      Trainer checkpoints (weights, optimizer, scheduler, RNG, trainer_state.json)
    adapter/ | model/  the final adapter (LoRA/DoRA/QLoRA) or full model, with the tokenizer
    merged/            the adapter merged into the base model (method.merge: true)
    metrics.jsonl/.csv every log record; loss.png the loss curves; result.json; README.md (card)

Resume: re-running the same command continues from the last *complete* checkpoint with the
same schedule, optimizer state, RNG state and data order (Trainer's `resume_from_checkpoint`).
transformers 5.23 writes `checkpoint-N/` in place (its `_save_checkpoint` has no
tmp-dir-then-rename step), with `trainer_state.json` written last; so a checkpoint counts as
complete only when that file parses and weights are present. A half-written one (a kill -9
during a save) is renamed to `.incomplete-checkpoint-N` and the run resumes from the one before.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import dump_recipe
from ..errors import MathtuneError
from ..files import atomic_dir, atomic_write_json, atomic_write_text
from ..prompts import get_style
from .callbacks import (
    MetricsLogCallback,
    NanGuardCallback,
    ProgressCallback,
    plot_losses,
    truncate_metrics,
)
from .recipe import TrainRecipe

WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json",
                "adapter_model.bin", "pytorch_model.bin")


@dataclass
class TrainResult:
    run_dir: Path
    adapter_dir: Path | None
    model_dir: Path | None  # full fine-tuning output
    merged_dir: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)
    best_checkpoint: str | None = None
    resumed_from: str | None = None


def resolve(recipe: TrainRecipe | dict[str, Any] | str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> TrainRecipe:
    if isinstance(recipe, TrainRecipe):
        return TrainRecipe.from_dict(recipe.model_dump(), overrides) if overrides else recipe
    if isinstance(recipe, dict):
        return TrainRecipe.from_dict(recipe, overrides)
    return TrainRecipe.load(recipe, overrides)


def train(recipe: TrainRecipe | dict[str, Any] | str | os.PathLike, overrides: list[str] | tuple[str, ...] = (),
          *, callbacks: list[Any] | tuple[Any, ...] = ()) -> TrainResult:
    """Train as the recipe says; `callbacks` are extra TrainerCallbacks (tests, the demo)."""
    from transformers import set_seed

    recipe = resolve(recipe, overrides)
    _check_early(recipe)
    run_dir = recipe.output_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    set_seed(recipe.trainer.get("seed", recipe.seed))

    model, tokenizer, device, dtype, n_params = _load(recipe)
    train_ds, eval_ds, curriculum = _datasets(recipe, tokenizer, run_dir)
    continued = _continues_adapter(model, recipe)
    model = _apply_method(model, recipe)
    if _rank() == 0:  # a continued adapter's method as it has it, so config.yaml reloads as it is
        atomic_write_text(run_dir / "config.yaml", dump_recipe(_as_continued(recipe, model) if continued else recipe))
    trainer, nan_guard = _build(recipe, model, tokenizer, train_ds, eval_ds, run_dir, device, dtype, n_params,
                                list(callbacks), curriculum)
    resume = last_complete_checkpoint(run_dir) if recipe.run.resume else None
    if _rank() == 0:
        if resume:
            truncate_metrics(run_dir / "metrics.jsonl", _step_of(resume))
            print(f"mathtune: resuming from {resume}", flush=True)
        elif (run_dir / "metrics.jsonl").exists():
            (run_dir / "metrics.jsonl").unlink()

    out = trainer.train(resume_from_checkpoint=resume)
    if nan_guard.bad_step is not None:
        _raise_nan(run_dir, nan_guard)
    return _save_outputs(recipe, trainer, tokenizer, run_dir, out, eval_ds, resume)


def _load(recipe: TrainRecipe) -> tuple[Any, Any, str, Any, int]:
    if recipe.stage == "reward":  # a sequence classifier with one output, not a causal LM
        from .reward_model import load_base
    else:
        from .peft_setup import load_base

    model, tokenizer, device, dtype = load_base(recipe.model, recipe.method)
    n_params = sum(p.numel() for p in model.parameters())
    return model, tokenizer, device, dtype, n_params


def _datasets(recipe: TrainRecipe, tokenizer: Any, run_dir: Path) -> tuple[Any, Any, bool]:
    """(train dataset, validation dataset or None, whether training order is a curriculum)."""
    from .data import cpt_dataset, load_data, sft_dataset
    from .sft import max_length

    if recipe.stage == "grpo":
        from .grpo import grpo_datasets

        return grpo_datasets(recipe, tokenizer, run_dir)
    if recipe.stage in ("dpo", "reward"):
        from .dpo import dpo_datasets, pair_datasets

        # dpo: answers end with the chat template's end-of-turn; reward: TRL's EOS, as the scorer adds it
        return dpo_datasets(recipe, tokenizer) if recipe.stage == "dpo" else pair_datasets(recipe, tokenizer, None)
    data = load_data(recipe.data, recipe.stage, run_dir, tokenizer)
    if recipe.stage == "cpt":
        return cpt_dataset(data.train), (cpt_dataset(data.validation) if data.validation else None), False
    style = get_style(recipe.data.prompt)
    n = max_length(recipe)
    train_ds = sft_dataset(data.train, tokenizer, style, recipe.data.system, n)
    eval_ds = sft_dataset(data.validation, tokenizer, style, recipe.data.system, n) if data.validation else None
    return train_ds, eval_ds, data.curriculum


def _apply_method(model: Any, recipe: TrainRecipe) -> Any:
    from .peft_setup import peft_config, prepare_full

    if recipe.stage == "reward":
        from .reward_model import apply_method

        return apply_method(model, recipe.method)
    from peft import get_peft_model

    if _continues_adapter(model, recipe):
        return _continue_adapter(model, recipe)  # dpo: TRL keeps a frozen copy of it as the reference
    cfg = peft_config(model, recipe.method)
    if cfg is None:
        return prepare_full(model)
    if recipe.stage == "dpo":  # DPOTrainer wraps it (dpo.build): the adapter disabled is the reference
        return model
    return get_peft_model(model, cfg)


def _continues_adapter(model: Any, recipe: TrainRecipe) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel) and recipe.stage in ("sft", "cpt", "grpo", "dpo")


def _adapter_kind(cfg: Any) -> str:
    return "dora" if getattr(cfg, "use_dora", False) else "lora"


def _as_continued(recipe: TrainRecipe, model: Any) -> TrainRecipe:
    """The recipe with `method` set to the continued adapter's kind, rank, alpha and dropout."""
    cfg = model.peft_config[model.active_adapter]
    method = {**recipe.method.model_dump(), "kind": _adapter_kind(cfg), "r": cfg.r, "alpha": cfg.lora_alpha,
              "dropout": cfg.lora_dropout}
    return TrainRecipe.from_dict({**recipe.model_dump(), "method": method})


def _continue_adapter(model: Any, recipe: TrainRecipe) -> Any:
    """`model.name` is an adapter directory (e.g. the SFT run's, for GRPO or DPO after SFT): training
    continues that adapter, with its own rank, alpha, targets and dropout (saved beside it), so
    method settings given explicitly must agree with it. For DPO the reference is then the
    starting adapter (TRL copies it into a frozen "ref" adapter), not the base model."""
    cfg = model.peft_config[model.active_adapter]
    method = recipe.method
    kind = _adapter_kind(cfg)
    given = method.model_fields_set
    clash = [f"method.kind={method.kind} (the adapter is {kind})"] if "kind" in given and method.kind != kind else []
    for key, value in (("r", cfg.r), ("alpha", cfg.lora_alpha), ("dropout", cfg.lora_dropout)):
        if key in given and getattr(method, key) != value:
            clash.append(f"method.{key}={getattr(method, key)} (the adapter has {value})")
    if clash:
        raise MathtuneError(f"model {recipe.model.name} is an adapter, and training continues it as it is: "
                            + ", ".join(clash), "drop those method settings, or start from its base model")
    print(f"mathtune: continuing adapter {recipe.model.name} ({kind}, r={cfg.r}, base "
          f"{cfg.base_model_name_or_path})", flush=True)
    return model


def _build(recipe: TrainRecipe, model: Any, tokenizer: Any, train_ds: Any, eval_ds: Any, run_dir: Path,
           device: str, dtype: Any, n_params: int, extra: list[Any], curriculum: bool = False,
           ) -> tuple[Any, NanGuardCallback]:
    from transformers import EarlyStoppingCallback

    from .peft_setup import build_optimizer
    from .sft import build_trainer, make_config, trainer_settings

    if recipe.stage == "grpo":
        from . import grpo

        return grpo.build(recipe, model, tokenizer, train_ds, run_dir, device, dtype, extra, curriculum)
    if recipe.stage in ("dpo", "reward"):
        from . import dpo, reward_model

        stage = dpo if recipe.stage == "dpo" else reward_model
        return stage.build(recipe, model, tokenizer, train_ds, eval_ds, run_dir, device, dtype, extra)
    config = make_config(trainer_settings(recipe, run_dir, device, dtype, model.config, eval_ds is not None,
                                          curriculum))
    nan_guard = NanGuardCallback()
    cbs: list[Any] = [nan_guard, MetricsLogCallback(run_dir), ProgressCallback(recipe.run.progress)]
    if recipe.run.early_stopping_patience:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=recipe.run.early_stopping_patience))
    optimizer = build_optimizer(model, config, recipe.method.embedding_lr) if recipe.method.embedding_lr else None
    if config.packing or config.padding_free:
        from .attention import use_varlen_attention

        # padding-free rows: attention per example instead of a block-diagonal mask over the row
        # (this and the CPU speedups below are version-gated library patches: mathtune.patches)
        use_varlen_attention(_unwrapped(model))
    trainer = build_trainer(model, tokenizer, config, train_ds, eval_ds, cbs + extra, optimizer)
    if device == "cpu":
        from .cpu_speedups import speed_up_cpu_trainer

        speed_up_cpu_trainer(trainer)
    return trainer, nan_guard


def _unwrapped(model: Any) -> Any:
    """The causal LM inside a PEFT wrapper (the model itself when there is none)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


# --------------------------------------------------------------------------- checkpoints


def _rank() -> int:
    """This process's global rank under accelerate/torchrun (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def _step_of(checkpoint: str | Path) -> int:
    return int(Path(checkpoint).name.rsplit("-", 1)[1])


def is_complete(checkpoint: Path) -> bool:
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return any((checkpoint / f).is_file() for f in WEIGHT_FILES)


def last_complete_checkpoint(run_dir: str | Path) -> str | None:
    """The newest complete checkpoint-N in `run_dir`; incomplete ones are set aside."""
    run_dir = Path(run_dir)
    ckpts = sorted((p for p in run_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
                   key=_step_of)
    for ckpt in reversed(ckpts):
        if is_complete(ckpt):
            return str(ckpt)
        if _rank() != 0:
            continue
        aside = run_dir / f".incomplete-{ckpt.name}"
        shutil.rmtree(aside, ignore_errors=True)
        ckpt.rename(aside)
        print(f"mathtune: set aside incomplete checkpoint {ckpt.name} (interrupted while saving)", flush=True)
    return None


def _raise_nan(run_dir: Path, guard: NanGuardCallback) -> None:
    good = [c for c in (last_complete_checkpoint(run_dir),) if c and _step_of(c) < (guard.bad_step or 0)]
    where = f"the last good checkpoint is {good[0]}" if good else "no checkpoint was saved before it"
    raise MathtuneError(
        f"training loss became {guard.bad_value} at step {guard.bad_step}; the run was stopped and nothing was "
        f"saved from the diverged weights ({where})",
        "lower trainer.learning_rate, set trainer.max_grad_norm (e.g. 1.0), or check the data; re-running resumes "
        "from the last good checkpoint",
    )


# --------------------------------------------------------------------------- outputs


def _save_outputs(recipe: TrainRecipe, trainer: Any, tokenizer: Any, run_dir: Path, out: Any, eval_ds: Any,
                  resume: str | None) -> TrainResult:
    from .card import write_card

    is_peft = recipe.method.kind != "full"
    final = run_dir / ("adapter" if is_peft else "model")
    if trainer.is_world_process_zero():
        with atomic_dir(final) as tmp:
            # DPO continuing an adapter holds TRL's frozen "ref" copy beside it: only the trained one is saved
            extra = {"selected_adapters": ["default"]} if "ref" in getattr(trainer.model, "peft_config", {}) else {}
            trainer.model.save_pretrained(tmp, **extra)
            tokenizer.save_pretrained(tmp)
            _scoring(recipe, tmp)
    metrics: dict[str, Any] = {k: v for k, v in out.metrics.items() if isinstance(v, int | float)}
    metrics["global_step"] = trainer.state.global_step
    if eval_ds is not None:
        metrics.update({k: v for k, v in trainer.evaluate().items() if isinstance(v, int | float)})
    merged = _merge(recipe, trainer, tokenizer, final, run_dir) if is_peft and recipe.method.merge else None
    result = TrainResult(run_dir, final if is_peft else None, None if is_peft else final, merged, metrics,
                         trainer.state.best_model_checkpoint, resume)
    if not trainer.is_world_process_zero():
        return result
    bench = _benchmark_eval(recipe, merged or final)
    if bench:
        metrics["benchmark"] = bench
    if recipe.stage == "reward" and eval_ds is not None:
        from .reward_model import ranking_accuracy

        # pooled over every held-out pair, scored by the saved model as GRPO will score with it
        # (the trainer's eval_accuracy is a mean of per-batch means)
        ranking = ranking_accuracy(final, eval_ds["prompt"], eval_ds["chosen"], eval_ds["rejected"],
                                   device=str(trainer.args.device))
        metrics["eval_ranking"] = ranking
        print(f"mathtune: held-out ranking accuracy {ranking['accuracy']:.3f} "
              f"({ranking['correct']}/{ranking['n']} pairs, 95% CI {ranking['ci95'][0]:.3f}-{ranking['ci95'][1]:.3f})",
              flush=True)
    plot = plot_losses(run_dir / "metrics.jsonl", run_dir / "loss.png") if recipe.run.plot else None
    atomic_write_json(run_dir / "result.json", {
        "run_dir": str(run_dir), "adapter_dir": str(result.adapter_dir) if result.adapter_dir else None,
        "model_dir": str(result.model_dir) if result.model_dir else None,
        "merged_dir": str(merged) if merged else None, "best_checkpoint": result.best_checkpoint,
        "resumed_from": resume, "metrics": metrics, "loss_plot": str(plot) if plot else None,
    })
    write_card(recipe, trainer.args, metrics, run_dir, [final, *([merged] if merged else [])])
    if recipe.run.push_to_hub:
        _push(recipe.run.push_to_hub, merged or final)
    return result


def _merge(recipe: TrainRecipe, trainer: Any, tokenizer: Any, adapter_dir: Path, run_dir: Path) -> Path:
    """The adapter merged into the base weights (QLoRA: into a freshly loaded unquantized base)."""
    target = run_dir / "merged"
    if recipe.method.kind == "qlora":
        from peft import PeftModel

        from ..models import load_model

        base, _ = load_model(recipe.model.name, dtype="auto", device="cpu" if recipe.model.device == "cpu" else "auto")
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    else:
        merged = trainer.model.merge_and_unload()
    if trainer.is_world_process_zero():
        with atomic_dir(target) as tmp:
            merged.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            _scoring(recipe, tmp)
    return target


def _scoring(recipe: TrainRecipe, model_dir: Path) -> None:
    if recipe.stage == "reward":
        from .reward_model import write_scoring

        write_scoring(model_dir, recipe)


def _benchmark_eval(recipe: TrainRecipe, model_dir: Path) -> dict[str, Any] | None:
    """Optional benchmark after training, through the eval stage's package API (an `EvalConfig`
    object, not re-parsed strings: a run directory may hold any character)."""
    if not recipe.run.eval_benchmark:
        return None
    from mathtune.eval import EvalConfig, run_eval

    if recipe.method.kind != "full" and not recipe.method.merge:
        print("mathtune: run.eval_benchmark evaluates a full or merged model; set method.merge: true", flush=True)
        return None
    cfg = EvalConfig(model=str(model_dir), benchmark=recipe.run.eval_benchmark, limit=recipe.run.eval_limit,
                     prompt=recipe.data.prompt, output=str(recipe.output_dir() / "eval"))
    return dict(run_eval(cfg, progress=False).metrics)


def _push(repo_id: str, folder: Path) -> None:
    from mathtune.export import push_folder  # the one implementation, shared with `mathtune push`

    try:
        push_folder(folder, repo_id)
    except MathtuneError as e:  # offline, no token: the run itself succeeded
        raise MathtuneError(f"training finished, but {e.message}", f"{e.hint}; or: mathtune push {folder} {repo_id}") from None


def _check_early(recipe: TrainRecipe) -> None:
    """What can be wrong without a model: a misspelt trainer key, an unknown prompt style."""
    from .sft import check_trainer_keys

    if recipe.stage == "grpo":
        from .grpo import check_grpo_keys
        from .rewards import check_rewards

        check_grpo_keys(recipe.trainer)
        check_rewards(recipe.rewards)
    elif recipe.stage == "dpo":
        from .dpo import check_dpo_keys

        check_dpo_keys(recipe.trainer)
    elif recipe.stage == "reward":
        from .reward_model import check_method, check_reward_keys

        check_reward_keys(recipe.trainer)
        check_method(recipe)
    else:
        check_trainer_keys(recipe.trainer)
    get_style(recipe.data.prompt)


def check(recipe: TrainRecipe) -> None:
    """Validate a recipe without training: its trainer block (trl.SFTConfig), its data recipe
    (the data stage's schema) and its prompt style. Raises MathtuneError on the first problem."""
    from .data import data_recipe
    from .sft import make_config

    get_style(recipe.data.prompt)
    if recipe.stage == "grpo":
        from .grpo import check as check_grpo

        check_grpo(recipe)
    elif recipe.stage in ("dpo", "reward"):
        from . import dpo, reward_model

        (dpo if recipe.stage == "dpo" else reward_model).check(recipe)
    else:
        make_config({**recipe.trainer, "output_dir": str(recipe.output_dir()), "use_cpu": True, "bf16": False})
    if isinstance(recipe.data.recipe, dict):
        data_recipe(recipe.data)
    elif isinstance(recipe.data.recipe, str):
        from ..config import load_recipe
        from ..data import DataRecipe

        load_recipe(DataRecipe, recipe.data.recipe, recipe.data.recipe_overrides)
