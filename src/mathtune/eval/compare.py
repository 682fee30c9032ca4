"""Paired comparison of two eval runs on the problems they share (joined on id, sample 0).

Both models answered the same problems, so the right test is a paired one: what matters is how
many problems B fixed (A wrong -> B right) against how many it broke (A right -> B wrong).

  delta       accuracy(B) - accuracy(A) on the shared problems, with a 95% interval by
              Newcombe's hybrid score method for paired proportions (Newcombe 1998, Stat Med
              17:2635, method 10): Wilson intervals of both accuracies combined with the
              (continuity-corrected) correlation of the paired outcomes. It stays inside
              [-1, 1] and behaves at small n and near 0% / 100%.
  McNemar     the exact (binomial) McNemar test: under "no difference" each discordant problem
              is equally likely to be fixed or broken, so p = two-sided binomial tail of
              min(fixed, broken) out of fixed + broken at 1/2.
  categories  the same per subject and per level.
  diagnostics the difference (B - A) of each diagnostic rate on the shared greedy responses.

Try it:  mathtune compare tests/data/runs/base tests/data/runs/tuned
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import MathtuneError
from . import diagnostics
from .metrics import Run, _natural_key, accuracy_summary, wilson_interval

PROBLEM_CHARS = 160  # problem text kept in fixed/broken lists


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 when there are none)."""
    n = fixed + broken
    if n == 0:
        return 1.0
    m = min(fixed, broken)
    tail = sum(math.comb(n, i) for i in range(m + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_delta_ci(both: int, broken: int, fixed: int, neither: int) -> tuple[float, float]:
    """95% interval for acc(B) - acc(A) from the paired 2x2 table (Newcombe 1998, method 10).

    both: A and B right; broken: A right, B wrong; fixed: A wrong, B right; neither: both wrong.
    """
    n = both + broken + fixed + neither
    if n == 0:
        return (-1.0, 1.0)
    pa, pb = (both + broken) / n, (both + fixed) / n
    la, ua = wilson_interval(both + broken, n)
    lb, ub = wilson_interval(both + fixed, n)
    denom = (both + broken) * (fixed + neither) * (both + fixed) * (broken + neither)
    # Correlation of the paired outcomes with Newcombe's continuity correction: ad - bc is
    # shrunk by n/2 towards 0 when positive (0 if it would cross), kept as is when negative.
    cross = both * neither - broken * fixed
    cross = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
    phi = cross / math.sqrt(denom) if denom > 0 else 0.0
    delta = pb - pa
    lower = delta - math.sqrt(max(0.0, (pb - lb) ** 2 - 2 * phi * (pb - lb) * (ua - pa) + (ua - pa) ** 2))
    upper = delta + math.sqrt(max(0.0, (ub - pb) ** 2 - 2 * phi * (ub - pb) * (pa - la) + (pa - la) ** 2))
    return (max(-1.0, lower), min(1.0, upper))


def _short(text: Any, limit: int = PROBLEM_CHARS) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "…"


def paired_stats(pairs: list[tuple[bool, bool]]) -> dict[str, Any]:
    """Accuracies, delta with CI, McNemar p and the 2x2 counts of (A correct, B correct) pairs."""
    both = sum(a and b for a, b in pairs)
    broken = sum(a and not b for a, b in pairs)
    fixed = sum(b and not a for a, b in pairs)
    neither = len(pairs) - both - broken - fixed
    n = len(pairs)
    lo, hi = paired_delta_ci(both, broken, fixed, neither)
    return {
        "n": n,
        "accuracy_a": accuracy_summary(both + broken, n),
        "accuracy_b": accuracy_summary(both + fixed, n),
        "delta": round((fixed - broken) / n, 6) if n else 0.0,
        "delta_ci95": [round(lo, 6), round(hi, 6)],
        "ci_method": "newcombe-paired-wilson",
        "mcnemar_p": mcnemar_exact(fixed, broken),
        "both_correct": both, "fixed": fixed, "broken": broken, "both_wrong": neither,
    }


def _categories(shared: list[tuple[dict, dict]], key: str) -> dict[str, dict[str, Any]] | None:
    groups: dict[str, list[tuple[bool, bool]]] = {}
    for ra, rb in shared:
        value = ra.get(key) if ra.get(key) is not None else rb.get(key)
        if value is not None and str(value).strip():
            groups.setdefault(str(value).strip(), []).append((bool(ra["correct"]), bool(rb["correct"])))
    if not groups:
        return None
    return {g: paired_stats(p) for g, p in sorted(groups.items(), key=lambda kv: _natural_key(kv[0]))}


def _diag_deltas(shared: list[tuple[dict, dict]]) -> dict[str, Any]:
    da = diagnostics.aggregate(diagnostics.record_diagnostics(ra) for ra, _ in shared)
    db = diagnostics.aggregate(diagnostics.record_diagnostics(rb) for _, rb in shared)
    out: dict[str, Any] = {}
    for key in ("truncation_rate", "doubt_loop_rate", "repetition_rate", "no_answer_rate", "mean_doubt_markers"):
        out[key] = {"a": da[key], "b": db[key], "delta": round(db[key] - da[key], 4)}
    for key in ("tokens", "chars"):
        a, b = da[key]["mean"], db[key]["mean"]
        out[f"mean_{key}"] = {"a": a, "b": b, "delta": round(b - a, 2) if a is not None and b is not None else None}
    return out


def _changed(shared: list[tuple[dict, dict]], a_correct: bool) -> list[dict[str, Any]]:
    return [
        {
            "id": str(ra["id"]),
            "problem": _short(ra.get("problem") or rb.get("problem")),
            "subject": ra.get("subject"),
            "level": ra.get("level"),
            "gold": ra.get("gold"),
            "extracted_a": ra.get("extracted"),
            "extracted_b": rb.get("extracted"),
        }
        for ra, rb in shared
        if bool(ra["correct"]) == a_correct and bool(rb["correct"]) != a_correct
    ]


def compare_runs(a: Run, b: Run) -> dict[str, Any]:
    """The full paired comparison of run A (baseline) and run B as a JSON-serialisable dict."""
    ga, gb = a.greedy(), b.greedy()
    shared_ids = [pid for pid in ga if pid in gb]
    warnings: list[str] = []
    if a.benchmark != b.benchmark:
        if not shared_ids:
            raise MathtuneError(
                f"runs are on different benchmarks ({a.benchmark!r} in {a.path}, {b.benchmark!r} in {b.path})",
                "compare two runs of the same benchmark",
            )
        warnings.append(f"benchmarks differ ({a.benchmark!r} vs {b.benchmark!r}); comparing the "
                        f"{len(shared_ids)} problem ids they share")
    if not shared_ids:
        raise MathtuneError(
            f"runs {a.path} and {b.path} share no problem ids",
            "compare runs of the same benchmark (and the same --limit / subset)",
        )
    only_a, only_b = len(ga) - len(shared_ids), len(gb) - len(shared_ids)
    if only_a or only_b:
        warnings.append(f"comparing the {len(shared_ids)} shared problems; {only_a} only in A, {only_b} only in B")
    shared = [(ga[pid], gb[pid]) for pid in shared_ids]
    result: dict[str, Any] = {
        "a": {"path": str(a.path), "name": a.name, "model": a.model, "benchmark": a.benchmark, "n": len(ga)},
        "b": {"path": str(b.path), "name": b.name, "model": b.model, "benchmark": b.benchmark, "n": len(gb)},
        "shared": len(shared_ids),
        "only_a": only_a,
        "only_b": only_b,
        **paired_stats([(bool(ra["correct"]), bool(rb["correct"])) for ra, rb in shared]),
    }
    for key in ("subject", "level"):
        cats = _categories(shared, key)
        if cats:
            result[f"by_{key}"] = cats
    result["diagnostics"] = _diag_deltas(shared)
    result["fixed_problems"] = _changed(shared, a_correct=False)
    result["broken_problems"] = _changed(shared, a_correct=True)
    result["warnings"] = warnings + a.warnings + b.warnings
    return result
