"""Metrics over an eval run's predictions: accuracy with a confidence interval, maj@k, pass@k,
per-subject / per-level breakdowns and reasoning diagnostics; plus `load_run()` for run dirs.

An eval run directory holds predictions.jsonl (one record per problem and sample), metrics.json,
config.yaml and run.json. Records sharing an "id" are samples 0..k-1 of one problem.

  accuracy        sample 0 (greedy) only, with a 95% Wilson score interval (Wilson 1927): unlike
                  the normal-approximation interval it stays inside [0, 1] and keeps its coverage
                  at small n and at accuracies near 0 or 1.
  mean_sample_accuracy   the share of correct responses over all samples (k > 1 only).
  maj@k           self-consistency voting (Wang et al. 2022): the extracted answers of a
                  problem's first k samples are clustered with `mathtune.grading.answers_equivalent`
                  ("1/2" and "0.5" vote together); the largest cluster wins, ties go to the cluster
                  whose first member has the lowest sample index (deterministic). The problem
                  counts as solved when that winning cluster's answer was graded correct.
                  Samples with no extracted answer do not vote.
  pass@k          the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models
                  Trained on Code"): 1 - C(n-c, k) / C(n, k) per problem with n samples of which c
                  are correct, averaged; reported for k = 1, 2, 4, ... <= samples per problem.
  by_subject / by_level   accuracy, Wilson interval and n per group, when records carry them.
  diagnostics     `diagnostics.aggregate()` over every response (all samples).
  tools           with `--tools python`: programs run, failed, timed out (`tool_summary`).

Try it:  python -c "from mathtune.eval.metrics import load_run, compute_metrics as m; print(m(load_run('tests/data/runs/base').records))"
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MathtuneError
from ..files import read_jsonl
from . import diagnostics

Z95 = 1.959963984540054  # two-sided 95% normal quantile
REQUIRED_KEYS = ("id", "correct")

Equivalence = Callable[[str, str], bool]


# ----------------------------------------------------------------------------- statistics


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a proportion `correct / n` (95% by default)."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo = 0.0 if correct == 0 else max(0.0, centre - half)  # exact bounds; float rounding misses them
    hi = 1.0 if correct == n else min(1.0, centre + half)
    return (lo, hi)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021).

    Computed as 1 - prod_{i=n-c+1..n} (1 - k/i), the numerically stable form from the paper.
    """
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 < k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def majority_vote(
    votes: list[tuple[str | None, bool]], equivalent: Equivalence | None = None
) -> tuple[str | None, bool, int]:
    """Cluster (extracted answer, correct) votes by equivalence; return the winner's
    (answer, correct, cluster size). Ties go to the cluster seen first (lowest sample index).

    The equal-weights case of `mathtune.eval.vote.weighted_vote`.
    """
    from .vote import weighted_vote

    result = weighted_vote(votes, None, equivalent)
    return (result.answer, result.correct, result.size)


# ----------------------------------------------------------------------------- grouping


def group_by_problem(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by problem id (first-seen order), each list sorted by sample index."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[str(r["id"])].append(r)
    for rs in groups.values():
        rs.sort(key=lambda r: int(r.get("sample") or 0))
    return dict(groups)


def _natural_key(value: str) -> tuple:
    """Sort "Level 2" before "Level 10" and numbers numerically."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", value) if t)


def accuracy_summary(correct: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_interval(correct, n)
    return {"value": round(correct / n, 6) if n else None, "correct": correct, "n": n,
            "ci95": [round(lo, 6), round(hi, 6)], "ci_method": "wilson"}


def breakdown(firsts: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]] | None:
    """Accuracy per value of `key` ("subject" / "level") over greedy records; None if absent."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for r in firsts:
        value = r.get(key)
        if value is not None and str(value).strip():
            groups[str(value).strip()].append(bool(r["correct"]))
    if not groups:
        return None
    return {g: accuracy_summary(sum(v), len(v)) for g, v in sorted(groups.items(), key=lambda kv: _natural_key(kv[0]))}


# ----------------------------------------------------------------------------- compute_metrics


def _sampling_metrics(problems: dict[str, list[dict]], k: int, equivalent: Equivalence | None) -> dict[str, Any]:
    samples = [rs[:k] for rs in problems.values()]
    n_resp = sum(len(s) for s in samples)
    out: dict[str, Any] = {
        "mean_sample_accuracy": round(sum(bool(r["correct"]) for s in samples for r in s) / n_resp, 6),
    }
    maj = [majority_vote([(r.get("extracted"), bool(r["correct"])) for r in s], equivalent)[1] for s in samples]
    out["maj_at_k"] = {"k": k, **accuracy_summary(sum(maj), len(maj))}
    pass_k: dict[str, float] = {}
    kk = 1
    while kk <= k:
        vals = [pass_at_k(len(s), sum(bool(r["correct"]) for r in s), kk) for s in samples if len(s) >= kk]
        if vals:
            pass_k[str(kk)] = round(sum(vals) / len(vals), 6)
        kk *= 2
    out["pass_at_k"] = pass_k
    return out


def compute_metrics(
    records: list[dict[str, Any]], k: int | None = None, equivalent: Equivalence | None = None
) -> dict[str, Any]:
    """All metrics of one run as a JSON-serialisable dict (see the module docstring).

    `k` caps the samples per problem used for maj@k and pass@k (default: the most any problem
    has). `equivalent` overrides the answer-equivalence used for voting (default: the grader's).
    """
    if not records:
        raise MathtuneError("no predictions to score", "check that the eval run wrote predictions.jsonl")
    problems = group_by_problem(records)
    firsts = [rs[0] for rs in problems.values()]
    n_samples = Counter(len(rs) for rs in problems.values())
    max_k = max(n_samples)
    k = max_k if k is None else max(1, min(k, max_k))
    out: dict[str, Any] = {
        "n": len(problems),
        "n_responses": len(records),
        "samples_per_problem": k,
        "accuracy": accuracy_summary(sum(bool(r["correct"]) for r in firsts), len(firsts)),
    }
    if min(n_samples) != max_k:
        out["samples_per_problem_range"] = [min(n_samples), max_k]
    if k > 1:
        out.update(_sampling_metrics(problems, k, equivalent))
    for key in ("subject", "level"):
        groups = breakdown(firsts, key)
        if groups:
            out[f"by_{key}"] = groups
    out["status_counts"] = dict(Counter(str(r.get("status") or "unknown") for r in records).most_common())
    out["diagnostics"] = diagnostics.aggregate(diagnostics.record_diagnostics(r) for r in records)
    if any("tool_calls" in r for r in records):
        out["tools"] = tool_summary(records)
    return out


def tool_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Tool-integrated runs (`--tools python`): programs run, failed and timed out, summed over
    every response, and how many responses used a tool or hit the call limit."""
    def total(key: str) -> int:
        return sum(int(r.get(key) or 0) for r in records)

    calls = total("tool_calls")
    return {"calls": calls, "failures": total("tool_failures"), "timeouts": total("tool_timeouts"),
            "responses_with_calls": sum(1 for r in records if r.get("tool_calls")),
            "limit_reached": sum(1 for r in records if r.get("tool_limit_reached")),
            "calls_per_response": round(calls / len(records), 4)}


# ----------------------------------------------------------------------------- run directories


@dataclass
class Run:
    """An eval run directory, loaded: its predictions, stored metrics, config and run info."""

    path: Path
    records: list[dict[str, Any]]
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        m = self.info.get("model") or self.config.get("model")
        if isinstance(m, dict):
            m = m.get("name") or m.get("path")
        return str(m) if m else self.path.name

    @property
    def benchmark(self) -> str:
        b = self.info.get("benchmark") or self.config.get("benchmark")
        if isinstance(b, dict):
            b = b.get("name")
        if not b and self.records:
            b = self.records[0].get("benchmark")
        return str(b) if b else "unknown"

    @property
    def name(self) -> str:
        """A short label: run.json's "name" if set, else the directory name."""
        return str(self.info.get("name") or self.path.name)

    def greedy(self) -> dict[str, dict[str, Any]]:
        """Sample-0 (lowest sample) record per problem id."""
        return {pid: rs[0] for pid, rs in group_by_problem(self.records).items()}

    def full_metrics(self) -> dict[str, Any]:
        """Metrics recomputed from the predictions (cached), so every run is scored the same way."""
        if "_computed" not in self.__dict__:
            self.__dict__["_computed"] = compute_metrics(self.records)
        return self.__dict__["_computed"]


def _check_record(rec: dict[str, Any]) -> str | None:
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        return f"missing key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
    if not isinstance(rec["correct"], bool):
        return f"'correct' must be true or false, got {rec['correct']!r}"
    sample = rec.get("sample", 0)
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int)):
        return f"'sample' must be an integer, got {sample!r}"
    return None


def read_predictions(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Valid records of a predictions.jsonl and one warning per malformed line (by number)."""
    records: list[dict[str, Any]] = []
    bad: list[str] = []
    for lineno, rec, err in read_jsonl(path):
        err = err or _check_record(rec)  # type: ignore[arg-type]
        if err:
            bad.append(f"line {lineno}: {err}")
        else:
            records.append(rec)  # type: ignore[arg-type]
    return records, bad


def _read_optional(path: Path, kind: str, warnings: list[str]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        if kind == "yaml":
            from ..config import load_yaml

            data = load_yaml(path.read_text(encoding="utf-8"))
        else:
            import json

            data = json.loads(path.read_text(encoding="utf-8"))
    except Exception as e:  # a broken side file should not hide the predictions
        warnings.append(f"could not read {path.name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        return {}
    return data if isinstance(data, dict) else {}


def load_run(run_dir: str | Path) -> Run:
    """Load an eval run directory. Malformed prediction lines are skipped and listed in
    `Run.warnings` by line number; a missing directory or no valid predictions is an error."""
    path = Path(run_dir)
    hint = "pass the directory written by `mathtune eval` (it contains predictions.jsonl)"
    if not path.exists():
        raise MathtuneError(f"eval run directory not found: {path}", hint)
    if path.is_file() and path.name == "predictions.jsonl":
        path = path.parent
    if not path.is_dir():
        raise MathtuneError(f"not an eval run directory: {path}", hint)
    preds = path / "predictions.jsonl"
    if not preds.is_file():
        raise MathtuneError(f"no predictions.jsonl in {path}", hint)
    records, bad = read_predictions(preds)
    warnings = []
    if bad:
        shown = "; ".join(bad[:5]) + (f"; ... {len(bad) - 5} more" if len(bad) > 5 else "")
        warnings.append(f"skipped {len(bad)} malformed line{'s' if len(bad) > 1 else ''} in {preds}: {shown}")
    if not records:
        detail = f" ({warnings[0]})" if warnings else " (the file is empty)"
        raise MathtuneError(f"no valid predictions in {preds}{detail}", "re-run `mathtune eval` for this run")
    return Run(
        path=path,
        records=records,
        metrics=_read_optional(path / "metrics.json", "json", warnings),
        config=_read_optional(path / "config.yaml", "yaml", warnings),
        info=_read_optional(path / "run.json", "json", warnings),
        warnings=warnings,
    )
