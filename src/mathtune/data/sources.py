"""Source registry and loading: Hugging Face Hub by default, local files offline, same adapter.

A source is loaded from, in order: an explicit `path`; a local data dir laid out like
../shared/data/benchmarks (`<name>/<split>.jsonl`, from the source's `data_dir`, the recipe's
`data_dir`, `--data-dir` or `MATHTUNE_DATA`); else the Hub via `datasets.load_dataset`
(streamed for the large sets). If a source cannot be loaded it raises `SourceUnavailable`
naming it, and `load_with_fallbacks` tries the recipe's `fallbacks` in order, logging each.

    from mathtune.data.sources import load_source
    from mathtune.data.recipe import SourceSpec
    examples = load_source(SourceSpec(name="gsm8k", limit=100), data_dir="../shared/data/benchmarks")
"""

from __future__ import annotations

import functools
import logging
import os
import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..benchmarks import hub_unreachable
from ..errors import MathtuneError, unknown_name_error
from . import adapters
from .adapters import Adapter, RowContext
from .readers import Row, apply_mapping, iter_rows, resolve_files
from .recipe import SourceSpec
from .schema import Example

log = logging.getLogger("mathtune.data")


class SourceUnavailable(MathtuneError):
    """A source could not be loaded (offline, gone, missing file); fallbacks may be tried."""


@dataclass(frozen=True)
class SourceDef:
    name: str
    description: str
    adapter: Adapter
    hub_id: str | None = None
    hub_configs: tuple[str | None, ...] = (None,)
    local_name: str | None = None  # directory name in a benchmarks-style data dir
    streaming: bool = False
    stratify_difficulty: bool = False  # pick `limit` examples evenly across difficulty levels


MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                 "number_theory", "prealgebra", "precalculus")

SOURCES: dict[str, SourceDef] = {
    s.name: s
    for s in [
        SourceDef("gsm8k", "GSM8K grade-school word problems", adapters.gsm8k, "openai/gsm8k", ("main",), "gsm8k"),
        SourceDef("math", "MATH competition problems (Hendrycks)", adapters.math, "EleutherAI/hendrycks_math",
                  MATH_SUBJECTS, "math"),
        SourceDef("numina-math-cot", "NuminaMath-CoT (860k)", adapters.numina_math_cot, "AI-MO/NuminaMath-CoT",
                  streaming=True),
        SourceDef("numina-qwq-cot", "NuminaMath QwQ traces (5M)", adapters.numina_qwq_cot,
                  "PrimeIntellect/NuminaMath-QwQ-CoT-5M", streaming=True),
        SourceDef("magpie-reasoning", "Magpie R1 reasoning, Math/excellent filtered", adapters.magpie_reasoning,
                  "Magpie-Align/Magpie-Reasoning-V2-250K-CoT-Deepseek-R1-Llama-70B", streaming=True,
                  stratify_difficulty=True),
        SourceDef("nemotron-math", "Nemotron RL OpenMathReasoning prompts + answers", adapters.nemotron_math,
                  "nvidia/Nemotron-RL-math-OpenMathReasoning", streaming=True),
        SourceDef("gsm-hard", "GSM-Hard (GSM8K with large numbers)", adapters.gsm_hard,
                  "reasoning-machines/gsm-hard", local_name="gsm_hard"),
        SourceDef("synth", "procedural problems with exact answers (offline)", adapters.generic_file),
        SourceDef("file", "any JSONL/CSV/Parquet file or directory (set path, mapping)", adapters.generic_file),
    ]
}


def get_source(name: str) -> SourceDef:
    if name not in SOURCES:
        raise unknown_name_error("data source", name, SOURCES)
    return SOURCES[name]


def default_data_dir(*candidates: str | None) -> Path | None:
    """The first local data dir given: source, recipe, --data-dir, then $MATHTUNE_DATA."""
    for c in (*candidates, os.environ.get("MATHTUNE_DATA")):
        if c:
            return Path(c).expanduser()
    return None


def load_source(spec: SourceSpec, data_dir: str | None = None, seed: int = 0, key: str = "sources[0]") -> list[Example]:
    """Load one source (no fallbacks): its examples after adapter filters and `limit`."""
    sdef = get_source(spec.name)
    seed = spec.seed if spec.seed is not None else seed
    if sdef.name == "synth":
        return _load_synth(spec, seed)
    rows, origin = _rows(sdef, spec, data_dir, seed)
    label = spec.options.get("label") or (Path(spec.path).stem if sdef.name == "file" and spec.path else sdef.name)
    adapter: Callable[..., Example | None] = sdef.adapter
    out: list[Example] = []
    want = _scan_budget(spec, sdef)
    for where, row in rows:
        ex = adapter(apply_mapping(row, spec.mapping, where, key), RowContext(label, where, key, spec.options))
        if ex is not None:
            out.append(ex)
        if want is not None and len(out) >= want:
            break
    log.info("loaded %d examples from %s (%s)", len(out), spec.name, origin)
    return _select(out, spec.limit, seed, sdef.stratify_difficulty and spec.options.get("stratify", True))


def _scan_budget(spec: SourceSpec, sdef: SourceDef) -> int | None:
    """How many accepted examples to collect before sampling `limit` (streamed sources stop early)."""
    if spec.limit is None:
        return None
    return spec.limit * (4 if sdef.stratify_difficulty else 1) if _streaming(spec, sdef) else None


def _streaming(spec: SourceSpec, sdef: SourceDef) -> bool:
    return sdef.streaming if spec.streaming is None else spec.streaming


def _select(examples: list[Example], limit: int | None, seed: int, stratify: bool) -> list[Example]:
    if limit is None or len(examples) <= limit:
        return examples
    rng = random.Random(seed)
    if not stratify:
        return [examples[i] for i in sorted(rng.sample(range(len(examples)), limit))]
    from .mix import stratified_sample

    return stratified_sample(examples, limit, "difficulty", rng)


def _local_file(sdef: SourceDef, spec: SourceSpec, data_dir: str | None) -> Path | None:
    if spec.path:
        return Path(spec.path).expanduser()
    root = default_data_dir(spec.data_dir, data_dir)
    if root is None or sdef.name == "file":
        return None
    sub = root / (sdef.local_name or sdef.name)
    for suffix in (".jsonl", ".parquet", ".csv", ".json"):
        if (sub / f"{spec.split}{suffix}").is_file():
            return sub / f"{spec.split}{suffix}"
    return None


def _rows(sdef: SourceDef, spec: SourceSpec, data_dir: str | None, seed: int) -> tuple[Iterator[tuple[str, Row]], str]:
    local = _local_file(sdef, spec, data_dir)
    if local is not None:
        if not local.exists():
            raise SourceUnavailable(f"source {spec.name!r}: local path not found: {local}",
                                    "fix the path, or add a fallback source")
        files = resolve_files(local, spec.split)
        return (r for f in files for r in iter_rows(f)), f"local {local}"
    if sdef.name == "file":
        raise MathtuneError("source 'file' needs a path", "set path: to a JSONL/CSV/Parquet file or directory")
    if sdef.hub_id is None:
        raise SourceUnavailable(f"source {spec.name!r} has no Hub dataset and no local file", "set path or data_dir")
    return _hub_rows(sdef, spec, seed), f"hub {sdef.hub_id}"


def _hub_rows(sdef: SourceDef, spec: SourceSpec, seed: int) -> Iterator[tuple[str, Row]]:
    """Rows from the Hub. Loading happens eagerly for the first config so that an unavailable
    dataset fails here (named) rather than halfway through iteration."""
    configs = spec.options.get("hub_configs") or sdef.hub_configs
    hub_id = spec.options.get("hub_id") or sdef.hub_id
    datasets = [_load_hub(hub_id, cfg, spec, sdef, seed) for cfg in configs]

    def gen() -> Iterator[tuple[str, Row]]:
        for cfg, ds in zip(configs, datasets, strict=True):
            for i, row in enumerate(ds):
                yield f"{hub_id}{'/' + cfg if cfg else ''}[{i}]", row

    return gen()


@functools.cache
def load_hub_dataset(hub_id: str, config: str | None, split: str, streaming: bool = False) -> Any:
    """`datasets.load_dataset`, failing fast when the Hub is unreachable (raises RuntimeError)."""
    reason = hub_unreachable()
    if reason:
        raise RuntimeError(reason + " (set HF_HUB_OFFLINE=1 to use datasets already in the HF cache)")
    import datasets

    return datasets.load_dataset(hub_id, config, split=split, streaming=streaming)


def _load_hub(hub_id: str, config: str | None, spec: SourceSpec, sdef: SourceDef, seed: int) -> Any:
    streaming = _streaming(spec, sdef)
    try:
        ds = load_hub_dataset(hub_id, config, spec.split, streaming)
    except Exception as e:  # offline, gone, gated, wrong split: all mean "cannot use this source"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise SourceUnavailable(
            f"source {spec.name!r} ({hub_id}{', ' + config if config else ''}, split {spec.split!r}) "
            f"could not be loaded from the Hugging Face Hub: {first}",
            f"check your connection, or point {spec.name} at a local copy with path=... or data_dir=... "
            "(--data-dir / MATHTUNE_DATA)",
        ) from None
    if streaming:
        return ds.shuffle(seed=seed, buffer_size=10_000) if spec.limit else ds
    return ds.shuffle(seed=seed) if spec.limit else ds


def _load_synth(spec: SourceSpec, seed: int) -> list[Example]:
    from . import synth

    opts = dict(spec.options)
    n = spec.limit or int(opts.pop("n", 1000))
    allowed = {"families", "levels", "n", "label", "heldout"}
    unknown = set(opts) - allowed
    if unknown:
        raise MathtuneError(f"unknown synth option(s) {sorted(unknown)}", f"synth options are: {', '.join(sorted(allowed))}")
    if spec.split not in ("train", "test"):
        raise MathtuneError(f"synth split must be 'train' or 'test', got {spec.split!r}", "use split: train")
    families, levels = opts.get("families"), opts.get("levels")
    if spec.split == "test":
        return synth.train_test(0, n, families, levels, seed=seed)[1]
    # `heldout: N` keeps training problems disjoint from the first N held-out problems
    # (the set `synth.train_test(..., n_test=N, seed=seed)` and split: test return).
    heldout = int(opts.get("heldout", 0))
    test = synth.generate(heldout, families, levels, seed=seed + 1_000_003) if heldout else []
    return synth.generate(n, families, levels, seed=seed, exclude=(e.problem for e in test))


def load_with_fallbacks(
    spec: SourceSpec, data_dir: str | None = None, seed: int = 0, key: str = "sources[0]"
) -> tuple[list[Example], str, list[str]]:
    """Load `spec`, or its fallbacks in order. Returns (examples, name used, notes on failures)."""
    attempts: list[SourceSpec] = [spec]
    for fb in spec.fallbacks:
        attempts.append(fb if isinstance(fb, SourceSpec) else spec.model_copy(
            update={"name": fb, "fallbacks": [], "path": None, "mapping": {}, "options": {}}))
    notes: list[str] = []
    for i, attempt in enumerate(attempts):
        # a fallback gets its own seed, so several sources falling back to `synth` differ
        attempt_seed = seed if i == 0 else seed + zlib.crc32(f"{key}/{i}".encode()) % 100_000 + 1
        try:
            return load_source(attempt, data_dir, attempt_seed, key), attempt.name, notes
        except SourceUnavailable as e:
            nxt = attempts[i + 1].name if i + 1 < len(attempts) else None
            note = f"source {attempt.name!r} unavailable: {e.message}" + (f"; trying fallback {nxt!r}" if nxt else "")
            log.warning(note)
            notes.append(note)
    tried = ", ".join(a.name for a in attempts)
    raise MathtuneError(f"no usable source for {key} (tried {tried}): {notes[-1]}",
                        "connect to the Hub, pass --data-dir, or add a fallback such as 'synth'")


def read_examples(path: str | Path, label: str | None = None) -> list[Example]:
    """Every example of a local JSONL/JSON/CSV/Parquet file or directory (the `file` source:
    Example columns, GSM8K question/answer, prompt/completion or chat messages). Malformed lines
    are one error naming the file and line."""
    spec = SourceSpec(name="file", path=str(path), options={"label": label} if label else {})
    return load_source(spec, key="data.path")


def examples_from_rows(rows: list[Row], key: str = "data.examples", label: str = "inline") -> list[Example]:
    """Examples from in-memory rows in any layout `read_examples` accepts."""
    return [adapters.generic_file(row, RowContext(label, f"{key}[{i}]", key)) for i, row in enumerate(rows)]
