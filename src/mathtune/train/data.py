"""Training data: the data stage's `Example`s (SFT) or token blocks (CPT), tokenized for the trainer.

The train stage reads nothing itself: every source goes through `mathtune.data`'s public API,
so there is one row schema (`Example`) from reading to tokenizing and one reader per format.

- `data.recipe`: built once into `<run>/data` by `build_dataset`; its train and validation splits
  are used as built (never re-split), in the order the data stage wrote them.
- `data.path`: a built dataset dir (`read_split`), a built CPT corpus (`read_blocks`), any local
  file (`read_examples`: Example columns, GSM8K question/answer, prompt/completion, chat), or
  for CPT raw .txt/.tex/.md text, built into `<run>/data` by the data stage's corpus builder.
- `data.examples` (inline rows, `examples_from_rows`) and `data.synth` (`synth.generate`).
Sources with no validation split are split by `train_validation_split`, which keeps the train
order.

Curriculum: when the built data says so (its card's `curriculum: true`) or the recipe sets
`data.curriculum: true`, the training examples are in difficulty order (`curriculum_order`,
optional `data.pacing: baby-steps`) and `sft.trainer_settings` gives Trainer a sequential
sampler, so they reach the optimizer in that order.

SFT examples are formatted with the same `mathtune.prompts` style evaluation uses:
`style.render(problem, tokenizer)` is the prompt, `style.completion(solution, answer)` plus the
model's end-of-turn token is the completion. We tokenize here (not in TRL) and hand TRL a
dataset with `input_ids` and `labels` (-100 on the prompt), because
- TRL tokenizes plain-text prompts with `add_special_tokens=True`, which doubles the BOS of
  templates that already write it (Llama/TinyLlama/Mistral), and
- the completion must end with the chat template's end-of-turn token (`<|im_end|>`,
  `<|eot_id|>`, `</s>`), which is not always the tokenizer's `eos_token`.
TRL still collates (and on GPUs packs) this dataset; it skips only its own tokenization.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MathtuneError
from ..prompts import PromptStyle
from .recipe import DataSpec

TEXT_SUFFIXES = (".txt", ".tex", ".md")
_SENTINEL = "MATHTUNE_SENTINEL_7f3a"


@dataclass
class TrainData:
    """What the trainer gets: SFT `Example`s or CPT token blocks, and whether order matters."""

    train: list[Any]
    validation: list[Any]
    curriculum: bool = False


# --------------------------------------------------------------------------- loading


def load_data(spec: DataSpec, stage: str, work_dir: Path, tokenizer: Any) -> TrainData:
    """(train, validation) from the one source the data spec names, through the data stage."""
    from mathtune import data

    if spec.recipe is not None:
        overrides = spec.recipe_overrides if isinstance(spec.recipe, str) else ()
        out = _build_once(work_dir / "data", data_recipe(spec), data_dir=spec.data_dir, overrides=overrides)
        return _from_built(out, spec, stage)
    if spec.synth is not None:
        return _examples(data.synth.generate(spec.synth.n, families=spec.synth.families, levels=spec.synth.levels,
                                             seed=spec.synth.seed), spec, stage)
    if spec.examples is not None:
        return _examples(data.examples_from_rows(spec.examples), spec, stage)
    if spec.path is None:
        raise MathtuneError("the train recipe names no data",
                            "set data.path (dataset dir or JSONL), data.recipe, data.synth or data.examples")
    path = Path(spec.path).expanduser()
    if not path.exists():
        raise MathtuneError(f"training data not found: {path}",
                            "point data.path at a built dataset dir, a .jsonl/.parquet file or a text corpus dir")
    if (path / "train.parquet").is_file() or (path / "blocks.parquet").is_file():
        return _from_built(path, spec, stage)
    if stage == "cpt" and _text_files(path):
        corpus = data.DataRecipe(kind="cpt", corpus=data.CorpusSpec(inputs=[str(path)], block_size=spec.block_size,
                                                                     dedup=False))
        # the model's own tokenizer cuts the blocks
        return _from_built(_build_once(work_dir / "data", corpus, tokenizer=tokenizer), spec, stage)
    return _examples(data.read_examples(path), spec, stage)


def _text_files(path: Path) -> bool:
    return path.suffix in TEXT_SUFFIXES or (path.is_dir() and any(p.suffix in TEXT_SUFFIXES for p in path.rglob("*")))


def _build_once(out: Path, recipe: Any, *, data_dir: str | None = None, overrides: list[str] | tuple[str, ...] = (),
                tokenizer: Any = None) -> Path:
    """Build a data recipe into the run dir once; a resumed run reuses it (same data order)."""
    from accelerate import PartialState

    from mathtune.data import build_dataset

    with PartialState().main_process_first():  # under accelerate launch: rank 0 builds, the others wait
        if not ((out / "train.parquet").is_file() or (out / "blocks.parquet").is_file()):
            build_dataset(recipe, out, data_dir=data_dir, overrides=overrides, tokenizer=tokenizer)
    return out


def _from_built(path: Path, spec: DataSpec, stage: str) -> TrainData:
    from mathtune import data

    if (path / "blocks.parquet").is_file():
        if stage != "cpt":
            raise MathtuneError(f"{path} is a CPT corpus (blocks.parquet)", "use stage: cpt to train on it")
        blocks = data.read_blocks(path)
        train, val = data.train_validation_split(blocks, min(spec.validation, max(len(blocks) - 1, 0)),
                                                 random.Random(spec.seed))
        return TrainData(_limit(train, spec), _cap(val, spec))
    if stage == "cpt":
        raise MathtuneError(f"{path} is an SFT dataset (train.parquet), not a corpus", "use stage: sft for it")
    train = data.read_split(path, "train")
    val = data.read_split(path, "validation") if (path / "validation.parquet").is_file() else None
    built_order = bool(data.read_card(path).get("curriculum"))
    if val is None:
        return _examples(train, spec, stage, built_order)
    train, curriculum = _ordered(train, spec, built_order)
    return TrainData(_limit(train, spec), _cap(val, spec), curriculum)


def _ordered(train: list[Any], spec: DataSpec, built_order: bool) -> tuple[list[Any], bool]:
    """The training order: a curriculum when the recipe asks or (unset) the built data is one.
    Built curriculum order is kept as written unless another pacing is asked for."""
    from mathtune import data

    curriculum = built_order if spec.curriculum is None else spec.curriculum
    if curriculum and not (built_order and spec.pacing == "sorted"):
        train = data.curriculum_order(train, random.Random(spec.seed), spec.pacing)
    return train, curriculum


def _examples(examples: list[Any], spec: DataSpec, stage: str, built_order: bool = False) -> TrainData:
    """Examples without a validation split: hold some out, then order them if asked."""
    from mathtune import data

    if stage == "cpt":
        raise MathtuneError("stage cpt got problem/solution examples",
                            "use stage: sft, or give a text corpus (.txt/.tex/.md) or a built corpus dir")
    if not examples:
        raise MathtuneError("the training data is empty", "check data.path / data.limit")
    rng = random.Random(spec.seed)
    n_val = min(spec.validation, len(examples) - 1) if spec.validation >= 1 else spec.validation
    train, val = data.train_validation_split(examples, n_val, rng)
    train, curriculum = _ordered(train, spec, built_order)
    return TrainData(_limit(train, spec), _cap(val, spec), curriculum)


def data_recipe(spec: DataSpec) -> Any:
    """The data recipe a train recipe names: a YAML path, or an inline mapping validated by the data stage's schema."""
    if isinstance(spec.recipe, dict):
        from mathtune.config import apply_overrides, validate
        from mathtune.data import DataRecipe

        return validate(DataRecipe, apply_overrides(spec.recipe, spec.recipe_overrides), "data.recipe of the train recipe")
    return spec.recipe


def _limit(rows: list[Any], spec: DataSpec) -> list[Any]:
    return rows[: spec.limit] if spec.limit else rows


def _cap(rows: list[Any], spec: DataSpec) -> list[Any]:
    return rows[: spec.validation_limit] if spec.validation_limit else rows


# --------------------------------------------------------------------------- formatting


def end_of_turn(tokenizer: Any, style: PromptStyle) -> str:
    """The token that closes an assistant turn in this model's chat template (or EOS)."""
    eos = tokenizer.eos_token or ""
    if not style.chat or not getattr(tokenizer, "chat_template", None):
        return eos
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": _SENTINEL}], tokenize=False)
    tail = text.split(_SENTINEL, 1)[1] if _SENTINEL in text else ""
    specials = sorted({*tokenizer.all_special_tokens, *getattr(tokenizer, "added_tokens_encoder", {})},
                      key=len, reverse=True)
    return next((t for t in specials if t and tail.startswith(t)), eos)


def format_pair(ex: Any, tokenizer: Any, style: PromptStyle, eot: str, system: str | None) -> tuple[str, str]:
    """(prompt, completion) text for one SFT `Example`."""
    if ex.problem and ex.solution:
        prompt = style.render(ex.problem, tokenizer, system=system)
        return prompt, style.completion(ex.solution, ex.answer or None) + eot
    messages = ex.messages or []
    if not messages or messages[-1].get("role") != "assistant":
        raise MathtuneError(f"example {ex.id} has no solution and no chat ending with an assistant turn",
                            "fix or drop that example")
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    return prompt, messages[-1]["content"] + eot


def tokenize_pair(tokenizer: Any, prompt: str, completion: str, max_length: int | None) -> dict[str, list[int]]:
    """input_ids of prompt+completion and labels with the prompt masked (-100)."""
    bos = tokenizer.bos_token
    special = not (bos and prompt.startswith(bos))  # the template already wrote BOS
    p_ids = tokenizer(prompt, add_special_tokens=special)["input_ids"]
    ids = tokenizer(prompt + completion, add_special_tokens=special)["input_ids"]
    n = 0  # tokens can merge across the boundary: the completion starts where they diverge
    while n < min(len(p_ids), len(ids)) and p_ids[n] == ids[n]:
        n += 1
    labels = [-100] * n + ids[n:]
    if max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "labels": labels}


def sft_dataset(examples: list[Any], tokenizer: Any, style: PromptStyle, system: str | None,
                max_length: int | None) -> Any:
    """A `datasets.Dataset` of input_ids/labels in the examples' order; examples whose answer was
    cut off entirely are dropped."""
    from datasets import Dataset

    eot = end_of_turn(tokenizer, style)
    cols: dict[str, list] = {"input_ids": [], "labels": []}
    for ex in examples:
        tok = tokenize_pair(tokenizer, *format_pair(ex, tokenizer, style, eot, system), max_length)
        if any(x != -100 for x in tok["labels"]):
            cols["input_ids"].append(tok["input_ids"])
            cols["labels"].append(tok["labels"])
    if not cols["input_ids"]:
        raise MathtuneError("no example keeps any answer tokens after truncation", "raise trainer.max_length")
    return Dataset.from_dict(cols)


def cpt_dataset(blocks: list[list[int]]) -> Any:
    """Token blocks with labels = input_ids (no masking): raw continued pretraining."""
    from datasets import Dataset

    if not blocks:
        raise MathtuneError("the CPT corpus is shorter than one block", "add text or lower data.block_size")
    return Dataset.from_dict({"input_ids": blocks, "labels": [list(b) for b in blocks]})
