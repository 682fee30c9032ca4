"""Mixing and selection: filters, weighted mixtures, stratified sampling, curriculum, splits.

Every random choice takes a `random.Random` made from the recipe seed, so the same recipe and
seed always select the same examples in the same order.

    kept, dropped = apply_filters(examples, FilterSpec(max_tokens=512), TokenCounter(None))
    mixed, taken, notes = mix_sources({"gsm8k": a, "synth": b}, {"gsm8k": 1, "synth": 3}, 4000, rng)
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Literal

from ..errors import MathtuneError
from .recipe import FilterSpec
from .schema import Example

StratKey = Literal["difficulty", "domain", "source"]


class TokenCounter:
    """Token length of an example's problem + solution: the HF tokenizer when given (a name or
    path, or a tokenizer object), else whitespace-separated words."""

    def __init__(self, tokenizer: Any = None) -> None:
        if isinstance(tokenizer, str):
            tokenizer = load_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self.unit = "tokens" if tokenizer is not None else "words"

    def text(self, ex: Example) -> str:
        return f"{ex.problem}\n{ex.solution}"

    def count_many(self, examples: Sequence[Example]) -> list[int]:
        texts = [self.text(e) for e in examples]
        if self.tokenizer is None:
            return [len(t.split()) for t in texts]
        out: list[int] = []
        for i in range(0, len(texts), 512):
            enc = self.tokenizer(texts[i : i + 512], add_special_tokens=False)["input_ids"]
            out.extend(len(x) for x in enc)
        return out


def load_tokenizer(name_or_path: str) -> Any:
    """A tokenizer from a local directory, a catalogue name (via mathtune.models) or a hub id."""
    from pathlib import Path

    from transformers import AutoTokenizer

    path: Any = name_or_path
    if not Path(name_or_path).expanduser().is_dir():
        from ..models import resolve_model  # a catalogue name or hub id; a clear error when offline

        path = resolve_model(name_or_path, pull=True)
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as e:
        raise MathtuneError(f"could not load tokenizer {name_or_path!r}: {str(e).splitlines()[0][:200]}",
                            "give a local model directory, or unset the tokenizer to count words") from None


def _filters(spec: FilterSpec, lengths: dict[str, int]) -> list[tuple[str, str, Callable[[Example], bool]]]:
    """(name, setting, keep-predicate) for each active filter, in the order they are applied."""
    out: list[tuple[str, str, Callable[[Example], bool]]] = []
    if spec.require_answer:
        out.append(("require_answer", "true", lambda e: bool(e.answer.strip())
                    and e.answer.strip().lower() not in {"proof", "none", "n/a"}))
    if spec.domains:
        allowed = set(spec.domains)
        out.append(("domains", str(spec.domains), lambda e: e.domain in allowed))
    if spec.min_difficulty is not None:
        lo = spec.min_difficulty
        out.append(("min_difficulty", str(lo), lambda e: e.difficulty is not None and e.difficulty >= lo))
    if spec.max_difficulty is not None:
        hi = spec.max_difficulty
        out.append(("max_difficulty", str(hi), lambda e: e.difficulty is not None and e.difficulty <= hi))
    if spec.min_tokens is not None:
        mn = spec.min_tokens
        out.append(("min_tokens", str(mn), lambda e: lengths[e.id] >= mn))
    if spec.max_tokens is not None:
        mx = spec.max_tokens
        out.append(("max_tokens", str(mx), lambda e: lengths[e.id] <= mx))
    if spec.verify_answers:
        out.append(("verify_answers", "true", _verified))
    return out


def _verified(ex: Example) -> bool:
    from ..grading import grade

    return bool(grade(ex.solution, ex.answer).correct)


def apply_filters(
    examples: list[Example], spec: FilterSpec, counter: TokenCounter, where: str = "the data"
) -> tuple[list[Example], dict[str, int]]:
    """Apply each active filter in turn; returns kept examples and {filter: number dropped}.

    Raises MathtuneError naming the filter when a filter leaves nothing."""
    needs_len = spec.min_tokens is not None or spec.max_tokens is not None
    lengths = dict(zip((e.id for e in examples), counter.count_many(examples), strict=True)) if needs_len else {}
    dropped: dict[str, int] = {}
    cur = examples
    for name, setting, keep in _filters(spec, lengths):
        before = len(cur)
        cur = [e for e in cur if keep(e)]
        dropped[name] = before - len(cur)
        if before and not cur:
            raise MathtuneError(
                f"filter {name!r} ({name}={setting}) removed all {before} remaining examples of {where}",
                f"loosen or remove filters.{name}" + (f" (lengths counted in {counter.unit})" if "tokens" in name else ""),
            )
    return cur, dropped


def stratified_sample(examples: Sequence[Example], k: int, by: StratKey, rng: random.Random) -> list[Example]:
    """`k` examples spread as evenly as possible over the values of `by` (round-robin)."""
    groups: dict[Any, list[Example]] = defaultdict(list)
    for e in examples:
        groups[getattr(e, by)].append(e)
    keys = sorted(groups, key=lambda x: (x is None, str(x)))
    for key in keys:
        rng.shuffle(groups[key])
    out: list[Example] = []
    idx = 0
    while len(out) < min(k, len(examples)):
        for key in keys:
            if idx < len(groups[key]) and len(out) < k:
                out.append(groups[key][idx])
        idx += 1
    return out


def sample(examples: Sequence[Example], k: int, rng: random.Random, stratify_by: StratKey | None = None) -> list[Example]:
    if k >= len(examples):
        out = list(examples)
        rng.shuffle(out)
        return out
    if stratify_by:
        return stratified_sample(examples, k, stratify_by, rng)
    return rng.sample(list(examples), k)


def mix_sources(
    groups: dict[str, list[Example]],
    weights: dict[str, float],
    size: int | None,
    rng: random.Random,
    stratify_by: StratKey | None = None,
) -> tuple[list[Example], dict[str, int], list[str]]:
    """Sample `size` examples split across sources by weight (all of them when size is None).

    A source with fewer examples than its share gives all it has and the rest is shared out
    among the others. Returns (examples shuffled together, {source: taken}, notes)."""
    notes: list[str] = []
    if size is None:
        quotas = {name: len(exs) for name, exs in groups.items()}
    else:
        quotas = _quotas(groups, weights, size, notes)
    out: list[Example] = []
    for name, exs in groups.items():
        out.extend(sample(exs, quotas[name], rng, stratify_by))
    rng.shuffle(out)
    return out, {n: min(quotas[n], len(groups[n])) for n in groups}, notes


def _quotas(groups: dict[str, list[Example]], weights: dict[str, float], size: int, notes: list[str]) -> dict[str, int]:
    avail = {n: len(e) for n, e in groups.items()}
    quotas = dict.fromkeys(groups, 0)
    remaining, open_ = size, [n for n in groups if avail[n] > 0]
    while remaining > 0 and open_:
        total_w = sum(weights[n] for n in open_)
        shares = {n: int(remaining * weights[n] / total_w) for n in open_}
        # largest remainders get the rounding leftovers so the shares add up to `remaining`
        leftover = remaining - sum(shares.values())
        for n in sorted(open_, key=lambda n: -(remaining * weights[n] / total_w - shares[n]))[:leftover]:
            shares[n] += 1
        for n in open_:
            give = min(shares[n], avail[n] - quotas[n])
            quotas[n] += give
            remaining -= give
        open_ = [n for n in open_ if quotas[n] < avail[n]]
    for n in groups:
        want = round(size * weights[n] / sum(weights.values()))
        if quotas[n] < want:
            notes.append(f"source {n!r} had only {avail[n]} examples for a share of {want}; others filled the gap")
    if remaining > 0:
        notes.append(f"mix.size={size} but only {size - remaining} examples are available after filters")
    return quotas


Pacing = Literal["sorted", "baby-steps"]
PACINGS: tuple[str, ...] = ("sorted", "baby-steps")


def level(ex: Example) -> int:
    """An example's curriculum level: its difficulty, 3 when unknown."""
    return 3 if ex.difficulty is None else ex.difficulty


def curriculum_order(examples: Sequence[Example], rng: random.Random, pacing: Pacing = "sorted") -> list[Example]:
    """Easy -> hard by difficulty (unknown difficulty counts as 3), random within a level.

    `sorted`: every example once, in level order. `baby-steps` (Spitkovsky et al. 2010): one phase
    per level k, each training on every example of level <= k, shuffled within the phase; easy
    examples come back in later phases, so the run sees len(levels) phases of growing size."""
    out = list(examples)
    rng.shuffle(out)
    out.sort(key=level)
    if pacing == "sorted":
        return out
    if pacing != "baby-steps":
        raise MathtuneError(f"unknown curriculum pacing {pacing!r}", f"use one of: {', '.join(PACINGS)}")
    phases: list[Example] = []
    for k in sorted({level(e) for e in out}):
        phase = [e for e in out if level(e) <= k]
        rng.shuffle(phase)
        phases += phase
    return phases


def train_validation_split(
    examples: Sequence[Example], validation: float, rng: random.Random
) -> tuple[list[Example], list[Example]]:
    """Validation is a fraction (< 1) or a count (>= 1) of examples; training keeps the rest."""
    n = len(examples)
    k = int(validation) if validation >= 1 else int(round(n * validation))
    if k >= n and n:
        raise MathtuneError(f"split.validation={validation} leaves no training examples (only {n} in total)",
                            "lower split.validation")
    order = list(range(n))
    rng.shuffle(order)
    val_idx = set(order[:k])
    train = [e for i, e in enumerate(examples) if i not in val_idx]
    val = [examples[i] for i in sorted(val_idx)]
    return train, val
