"""Training data: load examples from any supported source and tokenize them for the trainer.

SFT examples are formatted with the same `mathtune.prompts` style evaluation uses:
`style.render(problem, tokenizer)` is the prompt, `style.completion(solution, answer)` plus the
model's end-of-turn token is the completion. We tokenize here (not in TRL) and hand TRL a
dataset with `input_ids` and `labels` (-100 on the prompt), because
- TRL tokenizes plain-text prompts with `add_special_tokens=True`, which doubles the BOS of
  templates that already write it (Llama/TinyLlama/Mistral), and
- the completion must end with the chat template's end-of-turn token (`<|im_end|>`,
  `<|eot_id|>`, `</s>`), which is not always the tokenizer's `eos_token`.
TRL still truncates, packs and collates this dataset (it skips only its own tokenization).

CPT uses `blocks.parquet` (column `input_ids`) of a built corpus, or raw .txt/.tex/.md text
which is tokenized, joined with EOS and cut into `block_size` blocks; every token carries loss.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from ..errors import MathtuneError
from ..files import read_jsonl
from ..prompts import PromptStyle
from .recipe import DataSpec

Row = dict[str, Any]
TEXT_SUFFIXES = (".txt", ".tex", ".md")
_SENTINEL = "MATHTUNE_SENTINEL_7f3a"


# --------------------------------------------------------------------------- loading


def load_rows(spec: DataSpec, stage: str, work_dir: Path) -> tuple[list[Row], list[Row]]:
    """(train, validation) rows from the one source the data spec names."""
    if spec.synth is not None:
        from mathtune.data import synth

        rows = [_example_row(e) for e in synth.generate(spec.synth.n, families=spec.synth.families,
                                                      levels=spec.synth.levels, seed=spec.synth.seed)]
        return _split(rows, spec)
    if spec.examples is not None:
        rows = [_normalise(r, f"data.examples[{i}]") for i, r in enumerate(spec.examples)]
        return _split(rows, spec)
    if spec.recipe is not None:
        from mathtune.data import build_dataset

        out = work_dir / "data"
        from accelerate import PartialState

        with PartialState().main_process_first():  # under accelerate launch: rank 0 builds, the others wait
            if not _is_built(out):  # built once per run dir; a resumed run reuses it (same data order)
                build_dataset(data_recipe(spec), out, data_dir=spec.data_dir,
                              overrides=spec.recipe_overrides if isinstance(spec.recipe, str) else ())
        return _load_path(out, spec, stage)
    if spec.path is None:
        raise MathtuneError("the train recipe names no data",
                            "set data.path (dataset dir or JSONL), data.recipe, data.synth or data.examples")
    return _load_path(Path(spec.path).expanduser(), spec, stage)


def data_recipe(spec: DataSpec) -> Any:
    """The data recipe a train recipe names: a YAML path, or an inline mapping validated by the data stage's schema."""
    if isinstance(spec.recipe, dict):
        from mathtune.config import apply_overrides, validate
        from mathtune.data import DataRecipe

        return validate(DataRecipe, apply_overrides(spec.recipe, spec.recipe_overrides), "data.recipe of the train recipe")
    return spec.recipe


def _is_built(path: Path) -> bool:
    return (path / "train.parquet").is_file() or (path / "blocks.parquet").is_file()


def _load_path(path: Path, spec: DataSpec, stage: str) -> tuple[list[Row], list[Row]]:
    if not path.exists():
        raise MathtuneError(f"training data not found: {path}",
                            "point data.path at a built dataset dir, a .jsonl/.parquet file or a text corpus dir")
    if path.is_dir() and (path / "blocks.parquet").is_file():
        rows = [{"input_ids": ids} for ids in _parquet(path / "blocks.parquet", ["input_ids"])]
        return _split(rows, spec)
    if path.is_dir() and (path / "train.parquet").is_file():
        train = [_normalise(r, f"{path}/train.parquet") for r in _parquet(path / "train.parquet")]
        val_file = path / "validation.parquet"
        if val_file.is_file():
            val = [_normalise(r, str(val_file)) for r in _parquet(val_file)]
            return _limit(train, spec), _cap(val, spec)
        return _split(train, spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES)
        if stage == "cpt" and files:
            return _split([{"text": p.read_text(encoding="utf-8", errors="replace")} for p in files], spec)
        raise MathtuneError(f"{path} holds no train.parquet, blocks.parquet{' or text files' if stage == 'cpt' else ''}",
                            "build it with `mathtune data build RECIPE --out DIR` first")
    if path.suffix == ".parquet":
        return _split([_normalise(r, str(path)) for r in _parquet(path)], spec)
    if path.suffix in (".jsonl", ".json"):
        return _split(_read_jsonl(path), spec)
    if stage == "cpt" and path.suffix in TEXT_SUFFIXES:
        return _split([{"text": path.read_text(encoding="utf-8", errors="replace")}], spec)
    raise MathtuneError(f"unsupported training data file {path}", "use .jsonl, .parquet or a built dataset directory")


def _parquet(path: Path, columns: list[str] | None = None) -> list[Row]:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns).to_pylist()


def _read_jsonl(path: Path) -> list[Row]:
    rows, bad = [], []
    for lineno, rec, err in read_jsonl(path):
        if err:
            bad.append(f"line {lineno}: {err}")
            continue
        try:
            rows.append(_normalise(rec, f"{path}:{lineno}"))
        except MathtuneError as e:
            bad.append(f"line {lineno}: {e.message}")
    if bad:
        print(f"mathtune: skipped {len(bad)} malformed line(s) in {path}: {'; '.join(bad[:3])}")
    if not rows:
        raise MathtuneError(f"no usable examples in {path}", "each line needs problem+solution, question+answer, "
                            "prompt+completion, messages or text")
    return rows


def _example_row(ex: Any) -> Row:
    return {"problem": ex.problem, "solution": ex.solution, "answer": ex.answer, "messages": ex.messages}


def _normalise(rec: Row, where: str) -> Row:
    """Accept the Example schema, GSM8K's question/answer('... #### n'), prompt/completion, messages, text."""
    if rec.get("input_ids") is not None:
        return {"input_ids": list(rec["input_ids"])}
    messages = rec.get("messages")
    if isinstance(messages, str):
        messages = json.loads(messages) if messages.strip() else None
    if rec.get("problem") and (rec.get("solution") or messages):
        return {"problem": rec["problem"], "solution": rec.get("solution") or "",
                "answer": rec.get("answer") or None, "messages": messages}
    if rec.get("question") and rec.get("answer"):
        solution, sep, answer = str(rec["answer"]).rpartition("####")
        if not sep:
            solution, answer = str(rec["answer"]), None
        return {"problem": rec["question"], "solution": solution.strip(),
                "answer": answer.strip() if answer else None, "messages": None}
    if rec.get("prompt") is not None and rec.get("completion") is not None:
        return {"prompt": str(rec["prompt"]), "completion": str(rec["completion"])}
    if messages:
        return {"messages": messages}
    if rec.get("text"):
        return {"text": str(rec["text"])}
    raise MathtuneError(f"example at {where} has none of the expected fields (keys: {', '.join(sorted(rec))})",
                        "give problem+solution(+answer), question+answer, prompt+completion, messages or text")


def _limit(rows: list[Row], spec: DataSpec) -> list[Row]:
    return rows[: spec.limit] if spec.limit else rows


def _cap(rows: list[Row], spec: DataSpec) -> list[Row]:
    return rows[: spec.validation_limit] if spec.validation_limit else rows


def _split(rows: list[Row], spec: DataSpec) -> tuple[list[Row], list[Row]]:
    """Deterministic shuffle, then hold out `validation` (share or count) for eval loss."""
    if not rows:
        raise MathtuneError("the training data is empty", "check data.path / data.limit")
    rows = list(rows)
    random.Random(spec.seed).shuffle(rows)
    n_val = int(spec.validation) if spec.validation >= 1 else round(len(rows) * spec.validation)
    n_val = min(n_val, len(rows) - 1)
    val, train = rows[:n_val], rows[n_val:]
    return _limit(train, spec), _cap(val, spec)


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


def format_pair(row: Row, tokenizer: Any, style: PromptStyle, eot: str, system: str | None) -> tuple[str, str]:
    """(prompt, completion) text for one SFT row."""
    if "prompt" in row:
        completion = row["completion"]
        return row["prompt"], completion if completion.endswith(eot) else completion + eot
    if row.get("problem") and row.get("solution"):
        prompt = style.render(row["problem"], tokenizer, system=system)
        return prompt, style.completion(row["solution"], row.get("answer")) + eot
    messages = row.get("messages") or []
    if not messages or messages[-1].get("role") != "assistant":
        raise MathtuneError("a chat example does not end with an assistant turn", "fix or drop that example")
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    return prompt, messages[-1]["content"] + eot


def tokenize_pair(tokenizer: Any, prompt: str, completion: str, max_length: int | None) -> Row:
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


def sft_dataset(rows: list[Row], tokenizer: Any, style: PromptStyle, system: str | None,
                max_length: int | None) -> Any:
    """A `datasets.Dataset` of input_ids/labels; examples whose answer was cut off entirely are dropped."""
    from datasets import Dataset

    eot = end_of_turn(tokenizer, style)
    cols: dict[str, list] = {"input_ids": [], "labels": []}
    for row in rows:
        if "input_ids" in row or "text" in row:
            raise MathtuneError("stage sft got raw-text/token-block data", "use stage: cpt for a pretraining corpus")
        tok = tokenize_pair(tokenizer, *format_pair(row, tokenizer, style, eot, system), max_length)
        if any(x != -100 for x in tok["labels"]):
            cols["input_ids"].append(tok["input_ids"])
            cols["labels"].append(tok["labels"])
    if not cols["input_ids"]:
        raise MathtuneError("no example keeps any answer tokens after truncation", "raise trainer.max_length")
    return Dataset.from_dict(cols)
