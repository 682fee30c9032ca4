"""Grade a model response against a gold answer: extract -> clean -> compare -> `Grade`.

`grade()` does the cheap work in-process (extraction, normalisation, the pure-Python fast
path that settles GSM8K-style numbers) and sends only what needs algebra to the sympy worker
pool (pool.py), bounded by `timeout` seconds. `grade_many()` does the same for a batch and fans
the sympy part out over `workers` processes (default: all cores), de-duplicating identical
pairs. Hostile answers (power towers, huge factorials, megabyte strings, deep nesting) are
refused before sympy sees them (`status="unparseable"`); anything still too slow is killed
(`status="timeout"`).

Statuses: "ok" (a verdict was reached), "no_answer" (nothing extracted), "unparseable" (the
answer, or the gold, could not be read as mathematics and did not match as text),
"timeout" (the symbolic check overran). Only "ok" can be correct.

Try it:  python -c "from mathtune.grading import grade; print(grade('So the answer is $\\\\frac{1}{2}$.', '0.5'))"
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import MathtuneError
from .equivalence import fast_verdict
from .extract import check_order, extract_answer, gold_answer
from .normalize import clean
from .symbolic import hostile_reason

GradeStatus = Literal["ok", "no_answer", "unparseable", "timeout"]
MAX_TASK_CHARS = 20_000  # a pair longer than this is never sent to sympy


@dataclass(frozen=True)
class Grade:
    status: GradeStatus
    extracted: str | None
    gold: str
    correct: bool


def _prepare(response: str, gold: str, order: tuple[str, ...]) -> tuple[Grade | None, tuple[str, str] | None, str | None, str]:
    """Everything short of sympy: (final Grade, or the cleaned (gold, pred) task for a worker)."""
    g = gold_answer(gold)
    pred = extract_answer(response or "", order)
    if pred is None:
        return Grade("no_answer", None, g, False), None, pred, g
    cg, cp = clean(g), clean(pred)
    if not cp:
        return Grade("no_answer", pred, g, False), None, pred, g
    if not cg:
        return Grade("unparseable", pred, g, False), None, pred, g
    verdict = fast_verdict(cg, cp)
    if verdict is not None:
        return Grade("ok", pred, g, verdict), None, pred, g
    if len(cg) + len(cp) > MAX_TASK_CHARS or hostile_reason(cg) or hostile_reason(cp):
        return Grade("unparseable", pred, g, False), None, pred, g
    return None, (cg, cp), pred, g


def _from_worker(result: dict, pred: str | None, g: str) -> Grade:
    status = result.get("status", "unparseable")
    if status not in ("ok", "unparseable", "timeout"):
        status = "unparseable"
    return Grade(status, pred, g, bool(result.get("correct")) and status == "ok")


def grade(response: str, gold: str, *, extract: Sequence[str] | None = None, timeout: float = 5.0) -> Grade:
    """Grade one response against a gold answer (raw benchmark field or bare value)."""
    return grade_many([(response, gold)], workers=1, extract=extract, timeout=timeout)[0]


def _pairs(items: Iterable[tuple[str, str]] | list[dict]) -> list[tuple[str, str]]:
    out = []
    for n, item in enumerate(items):
        if isinstance(item, dict):
            if "response" not in item or "gold" not in item:
                raise MathtuneError(f"item {n} has no 'response' or 'gold' field", "give dicts with both keys")
            out.append((str(item["response"] or ""), str(item["gold"])))
        else:
            response, gold = item
            out.append((str(response or ""), str(gold)))
    return out


def grade_many(
    pairs: Iterable[tuple[str, str]] | list[dict],
    *,
    workers: int | None = None,
    extract: Sequence[str] | None = None,
    timeout: float = 5.0,
) -> list[Grade]:
    """Grade (response, gold) pairs (or dicts with those keys), in order; each symbolic check is
    bounded by `timeout` seconds and they run on `workers` processes (default: all cores)."""
    order = check_order(extract)
    items = _pairs(pairs)
    grades: list[Grade | None] = []
    meta: list[tuple[str | None, str]] = []
    task_of: dict[int, int] = {}
    tasks: dict[tuple[str, str], int] = {}
    for n, (response, gold) in enumerate(items):
        done, task, pred, g = _prepare(response, gold, order)
        grades.append(done)
        meta.append((pred, g))
        if task is not None:
            task_of[n] = tasks.setdefault(task, len(tasks))
    if tasks:
        from .pool import judge_with_sympy

        results = judge_with_sympy(list(tasks), timeout=timeout, workers=workers)
        for n, t in task_of.items():
            grades[n] = _from_worker(results[t], *meta[n])
    return [g for g in grades if g is not None]
