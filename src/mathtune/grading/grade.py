"""Grade a model response against a gold answer: extract -> clean -> compare -> `Grade`.

`grade()` does the cheap work in-process (extraction, normalisation, shapes, exact numbers and
numeric.py's random-point evaluation, which settle nearly everything) and sends only what needs
algebra to the sympy worker pool (pool.py), bounded by `timeout` seconds. `grade_many()` does
the same for a batch and fans the sympy part out over `workers` processes (default: all cores),
de-duplicating identical pairs. The gold is read first, and how many parts it has ("2, 3",
"(2, 3)") tells the extractor how many boxes or values to collect from the response. Hostile
answers (power towers, huge factorials, megabyte strings, deep nesting, unbalanced brackets) are
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
from .structure import Bracketed, Collection, Equation, parse_shape
from .symbolic import hostile_reason

GradeStatus = Literal["ok", "no_answer", "unparseable", "timeout"]
MAX_TASK_CHARS = 20_000  # a pair longer than this is never sent to sympy


@dataclass(frozen=True)
class Grade:
    status: GradeStatus
    extracted: str | None
    gold: str
    correct: bool


def answer_parts(cleaned_gold: str) -> int:
    """How many parts the gold answer has ("2, 3" and "(2, 3)" have two)."""
    node = parse_shape(cleaned_gold)
    if isinstance(node, Equation):
        node = node.rhs
    if isinstance(node, Collection) or (isinstance(node, Bracketed) and node.left == "("):
        return len(node.items)
    return 1


def _prepare(response: str, gold: str, order: tuple[str, ...]) -> tuple[Grade | None, tuple[str, str] | None, str | None, str, bool]:
    """Everything short of sympy: (final Grade or None, the cleaned (gold, pred) task for a
    worker or None, extracted answer, gold answer, whether the gold itself is unreadable)."""
    g = gold_answer(gold)
    cg = clean(g)
    pred = extract_answer(response or "", order, parts=answer_parts(cg) if cg else 1)
    if not cg:
        return Grade("unparseable", pred, g, False), None, pred, g, True
    if pred is None:
        return Grade("no_answer", None, g, False), None, pred, g, False
    cp = clean(pred)
    if not cp:
        return Grade("no_answer", pred, g, False), None, pred, g, False
    verdict = fast_verdict(cg, cp)
    if verdict is not None:
        return Grade("ok", pred, g, verdict), None, pred, g, False
    if len(cg) > MAX_TASK_CHARS // 2 or hostile_reason(cg):
        return Grade("unparseable", pred, g, False), None, pred, g, True
    if len(cg) + len(cp) > MAX_TASK_CHARS or hostile_reason(cp):
        return Grade("unparseable", pred, g, False), None, pred, g, False
    return None, (cg, cp), pred, g, False


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


def grade_with_gold_status(
    items: list[tuple[str, str]],
    *,
    workers: int | None = None,
    extract: Sequence[str] | None = None,
    timeout: float = 5.0,
    budget: float | None = None,
) -> list[tuple[Grade, bool]]:
    """(Grade, gold unreadable) per (response, gold) pair; see `grade_many`. `budget` caps the
    seconds spent on symbolic checks for the whole batch (the rest come back as timeouts)."""
    order = check_order(extract)
    grades: list[Grade | None] = []
    meta: list[tuple[str | None, str]] = []
    bad_gold: list[bool] = []
    task_of: dict[int, int] = {}
    tasks: dict[tuple[str, str], int] = {}
    for n, (response, gold) in enumerate(items):
        done, task, pred, g, unreadable = _prepare(response, gold, order)
        grades.append(done)
        meta.append((pred, g))
        bad_gold.append(unreadable)
        if task is not None:
            task_of[n] = tasks.setdefault(task, len(tasks))
    if tasks:
        from .pool import judge_with_sympy

        results = judge_with_sympy(list(tasks), timeout=timeout, workers=workers, budget=budget)
        for n, t in task_of.items():
            grades[n] = _from_worker(results[t], *meta[n])
            bad_gold[n] = bool(results[t].get("gold_unreadable"))
    return [(g, b) for g, b in zip(grades, bad_gold, strict=True) if g is not None]


def grade_many(
    pairs: Iterable[tuple[str, str]] | list[dict],
    *,
    workers: int | None = None,
    extract: Sequence[str] | None = None,
    timeout: float = 5.0,
) -> list[Grade]:
    """Grade (response, gold) pairs (or dicts with those keys), in order; each symbolic check is
    bounded by `timeout` seconds and they run on `workers` processes (default: all cores)."""
    return [g for g, _ in grade_with_gold_status(_pairs(pairs), workers=workers, extract=extract, timeout=timeout)]
