"""Build a dataset directory from a data recipe: load -> filter -> dedup -> decontaminate -> mix
-> split -> write Parquet + data card. `kind: cpt` recipes build a packed corpus instead.

    from mathtune.data import build_dataset, read_split
    out = build_dataset("recipes/data/gsm8k_synth_mix.yaml", "runs/data/mix")
    train = read_split(out, "train")

Output (SFT): train.parquet, validation.parquet (schema columns), card.json, card.md,
lengths.png, recipe.yaml. Output (CPT): blocks.parquet (input_ids, n_tokens), texts.jsonl,
card.json, card.md, recipe.yaml. The directory appears whole or not at all (atomic_dir).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from ..config import dump_recipe, load_recipe
from ..errors import MathtuneError
from ..files import atomic_dir, atomic_write_text
from . import card as cards
from .dedup import Decontaminator, exact_dedup, near_dedup
from .mix import (
    TokenCounter,
    apply_filters,
    curriculum_order,
    load_tokenizer,
    mix_sources,
    train_validation_split,
)
from .recipe import DataRecipe
from .schema import Example, arrow_schema
from .sources import default_data_dir, load_with_fallbacks
from .testsets import load_test_problems

log = logging.getLogger("mathtune.data")
SPLITS = ("train", "validation")


def build_dataset(
    recipe: DataRecipe | str | Path,
    out_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    tokenizer: Any = None,
) -> Path:
    """Build the dataset a recipe describes into `out_dir`; returns the directory.

    `tokenizer` (an HF tokenizer object) overrides the recipe's tokenizer, e.g. in tests."""
    name = "dataset"
    if not isinstance(recipe, DataRecipe):
        name = Path(recipe).stem
        recipe = load_recipe(DataRecipe, recipe, overrides)
    elif overrides:
        raise MathtuneError("overrides apply to recipe files only", "pass a recipe path, or edit the DataRecipe")
    out = Path(out_dir or recipe.output or Path("runs") / "data" / name)
    ddir = str(data_dir) if data_dir else recipe.data_dir
    with atomic_dir(out) as tmp:
        if recipe.kind == "cpt":
            card = _build_cpt(recipe, tmp, tokenizer)
        else:
            card = _build_sft(recipe, tmp, ddir, tokenizer)
        card.update(name=name, kind=recipe.kind, seed=recipe.seed, mathtune_version=_version())
        cards.write_card(tmp, card)
        atomic_write_text(tmp / "recipe.yaml", dump_recipe(recipe))
    log.info("wrote %s", out)
    return out


def _version() -> str:
    from .. import __version__

    return __version__


def _load_all(recipe: DataRecipe, data_dir: str | None, counter: TokenCounter, card: dict[str, Any]) -> list[tuple[str, Example]]:
    """Every source, with fallbacks and per-source filters: [(group, example)]."""
    if not recipe.sources:
        raise MathtuneError("the recipe lists no sources", "add sources: [{name: synth, limit: 1000}]")
    items: list[tuple[str, Example]] = []
    groups: set[str] = set()
    for i, spec in enumerate(recipe.sources):
        key = f"sources[{i}]"
        examples, used, notes = load_with_fallbacks(spec, data_dir, recipe.seed, key)
        card["notes"].extend(notes)
        group = spec.options.get("label") or used
        if group in groups:
            group = f"{group}#{i}"
        groups.add(group)
        if not examples:
            raise MathtuneError(f"source {used!r} ({key}) produced no examples",
                                f"check {key} (split, path, options) or remove it")
        kept, dropped = apply_filters(examples, recipe.filters, counter, where=f"source {used!r} ({key})")
        card["filters"][group] = dropped
        card["sources"].append({"key": key, "requested": spec.name, "used": used, "group": group,
                                "loaded": len(examples), "after_filters": len(kept), "weight": spec.weight})
        items.extend((group, e) for e in kept)
    return items


def _dedup(items: list[tuple[str, Example]], recipe: DataRecipe, card: dict[str, Any]) -> list[tuple[str, Example]]:
    examples = [e for _, e in items]
    exact, near = [], []
    if recipe.dedup.exact:
        examples, exact = exact_dedup(examples)
    if recipe.dedup.near:
        examples, near = near_dedup(examples, recipe.dedup.threshold, recipe.dedup.num_perm, skip_sources=("synth",))
    card["dedup"] = {"exact": len(exact), "near": len(near), "examples": [d.as_dict() for d in (exact + near)[:50]]}
    keep = {id(e) for e in examples}
    return [(g, e) for g, e in items if id(e) in keep]


def _decontaminate(items: list[tuple[str, Example]], recipe: DataRecipe, data_dir: str | None, card: dict[str, Any]) -> list[tuple[str, Example]]:
    spec = recipe.decontaminate
    if not spec.enabled:
        card["decontamination"] = {"enabled": False}
        return items
    bench_dir = default_data_dir(spec.data_dir, data_dir)
    tests, notes = load_test_problems(spec.benchmarks, bench_dir, spec.on_unavailable)
    card["notes"].extend(notes)
    dc = Decontaminator(tests, spec.ngram, spec.ngram_overlap, spec.minhash_threshold, spec.num_perm)
    kept, drops = dc.filter([e for _, e in items])
    by_reason: dict[str, int] = {}
    by_bench: dict[str, int] = {}
    for d in drops:
        by_reason[d.reason] = by_reason.get(d.reason, 0) + 1
        bench = d.matched.split(":")[0]
        by_bench[bench] = by_bench.get(bench, 0) + 1
    card["decontamination"] = {
        "enabled": True, "benchmarks": {k: len(v) for k, v in tests.items()}, "dropped": len(drops),
        "by_reason": by_reason, "by_benchmark": by_bench, "examples": [d.as_dict() for d in drops],
        "settings": spec.model_dump(),
    }
    keep = {id(e) for e in kept}
    out = [(g, e) for g, e in items if id(e) in keep]
    if not out:
        raise MathtuneError(f"decontamination removed all {len(items)} examples",
                            "check decontaminate.benchmarks and thresholds (see the card's examples)")
    return out


def _build_sft(recipe: DataRecipe, tmp: Path, data_dir: str | None, tokenizer: Any) -> dict[str, Any]:
    card: dict[str, Any] = {"notes": [], "filters": {}, "sources": []}
    counter = TokenCounter(tokenizer if tokenizer is not None else recipe.filters.tokenizer)
    items = _load_all(recipe, data_dir, counter, card)
    items = _dedup(items, recipe, card)
    items = _decontaminate(items, recipe, data_dir, card)

    rng = random.Random(recipe.seed)
    groups: dict[str, list[Example]] = {}
    for g, e in items:
        groups.setdefault(g, []).append(e)
    weights = {s["group"]: s["weight"] for s in card["sources"]}
    mixed, taken, notes = mix_sources(groups, weights, recipe.mix.size, rng, recipe.mix.stratify_by)
    card["notes"].extend(notes)
    for s in card["sources"]:
        s["taken"] = taken.get(s["group"], 0)
    train, val = train_validation_split(mixed, recipe.split.validation, rng)
    if recipe.mix.curriculum:
        train = curriculum_order(train, rng)
    for split, exs in (("train", train), ("validation", val)):
        write_split(tmp / f"{split}.parquet", exs)
    card["splits"] = {"train": len(train), "validation": len(val)}
    card["counts"] = {"train": cards.counts(train), "validation": cards.counts(val)}
    lengths = counter.count_many(train + val)
    card["lengths"] = cards.length_stats(lengths, counter.unit)
    if cards.histogram_png(lengths, counter.unit, tmp / "lengths.png"):
        card["lengths"]["histogram"] = "lengths.png"
    card["curriculum"] = recipe.mix.curriculum
    return card


def _build_cpt(recipe: DataRecipe, tmp: Path, tokenizer: Any) -> dict[str, Any]:
    from .corpus import build_corpus

    spec = recipe.corpus
    if not spec.inputs:
        raise MathtuneError("a kind: cpt recipe needs corpus.inputs", "list .tex/.tar.gz/.md/.txt files or directories")
    tok_name = spec.tokenizer or "smollm2-135m-instruct"
    tok = tokenizer if tokenizer is not None else load_tokenizer(tok_name)
    report = build_corpus(spec.inputs, tmp, tok, spec.block_size, spec.keep_last, spec.keep_floats, spec.dedup)
    from dataclasses import asdict

    return {"report": asdict(report), "tokenizer": getattr(tok, "name_or_path", tok_name) or tok_name,
            "block_size": spec.block_size, "keep_last": spec.keep_last}


def write_split(path: Path, examples: list[Example]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([e.to_row() for e in examples], schema=arrow_schema())
    pq.write_table(table, path)


def read_split(directory: str | Path, split: str = "train") -> list[Example]:
    """The examples of one split of a built dataset directory."""
    import pyarrow.parquet as pq

    path = Path(directory) / f"{split}.parquet"
    if not path.is_file():
        have = sorted(p.stem for p in Path(directory).glob("*.parquet")) if Path(directory).is_dir() else []
        raise MathtuneError(f"no split {split!r} in {directory} (found: {', '.join(have) or 'nothing'})",
                            "build it with `mathtune data build RECIPE`, or pick one of the splits found")
    return [Example.from_row(r) for r in pq.read_table(path).to_pylist()]


def read_blocks(directory: str | Path) -> list[list[int]]:
    """The packed token blocks of a built CPT corpus."""
    import pyarrow.parquet as pq

    path = Path(directory) / "blocks.parquet"
    if not path.is_file():
        raise MathtuneError(f"no blocks.parquet in {directory}", "build a kind: cpt recipe first")
    return pq.read_table(path, columns=["input_ids"]).column("input_ids").to_pylist()


def read_card(directory: str | Path) -> dict[str, Any]:
    """The data card (`card.json`) of a built dataset directory; {} when it has none."""
    import json

    path = Path(directory) / "card.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise MathtuneError(f"unreadable data card {path}: {e}", "rebuild the dataset with `mathtune data build`") from None
