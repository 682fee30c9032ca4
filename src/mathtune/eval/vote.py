"""Weighted voting over graded answers, model weights fitted on a dev split, maj@k from random
k-subsets, and ensembles of eval runs written as a normal run directory.

  weighted_vote   extracted answers are clustered with the grader's equivalence
                  (`mathtune.grading.answers_equivalent`: "0.5" and "1/2" vote together); each
                  answer adds its weight (model weight x per-sample weight) to its cluster; the
                  heaviest cluster wins, ties go to the cluster whose first member has the lowest
                  index; a zero-weight vote does not vote. With equal weights this is exactly
                  `metrics.majority_vote`.
  fit_weights     per-model weights from dev-split runs: a grid search over the weight simplex
                  (step 0.1, <= 4 models) maximising the dev ensemble's accuracy, ties broken
                  towards equal weights; more models get smoothed log-odds of dev accuracy.
                  Dev runs that share a problem id with the runs being ensembled are refused:
                  fitting on the test split would make the ensemble's score optimistic.
  maj_at_k_subsets  maj@k estimated from `draws` random k-subsets of each problem's samples
                  (rather than only the first k), with a 95% percentile-bootstrap interval over
                  problems (seeded, so reruns give the same numbers).
  ensemble_runs   several eval runs (of one benchmark) -> one record per shared problem, whose
                  response/extracted/correct are the winning cluster's first member, plus the
                  vote tally: `mathtune compare` and `mathtune report` read it like any run.

Try it:  mathtune ensemble tests/data/runs/base tests/data/runs/tuned -o /tmp/ens && mathtune compare tests/data/runs/tuned /tmp/ens
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MathtuneError
from .metrics import Equivalence, Run, compute_metrics, group_by_problem

Vote = tuple[str | None, bool]  # (extracted answer, graded correct)


@dataclass(frozen=True)
class VoteResult:
    answer: str | None  # the winning cluster's representative (its first-seen distinct answer)
    correct: bool  # whether the winning cluster's first member was graded correct
    weight: float  # total weight of the winning cluster
    size: int  # votes in the winning cluster
    first: int | None  # index of the winning cluster's first member


def _default_equivalence() -> Equivalence:
    from ..grading import answers_equivalent  # the shared grader, public API only

    return answers_equivalent


def cluster_answers(answers: Sequence[str | None], equivalent: Equivalence | None = None) -> list[list[int]]:
    """Indices of non-empty answers grouped into equivalence clusters, in first-seen order.

    Identical strings merge before `equivalent` runs, so it is called at most once per pair of
    (distinct answer, cluster representative)."""
    distinct: dict[str, list[int]] = {}
    for i, answer in enumerate(answers):
        if answer is not None and str(answer).strip():
            distinct.setdefault(str(answer).strip(), []).append(i)
    if not distinct:
        return []
    eq = equivalent or _default_equivalence()
    clusters: list[tuple[str, list[int]]] = []
    for answer, idx in distinct.items():
        for rep, members in clusters:
            if eq(rep, answer):
                members.extend(idx)
                break
        else:
            clusters.append((answer, list(idx)))
    return sorted((sorted(m) for _, m in clusters), key=lambda m: m[0])


def _winner(clusters: list[list[int]], weights: Sequence[float]) -> int | None:
    """Index into `clusters` of the heaviest (ties: lowest first member; clusters are sorted so)."""
    best, best_w = None, -math.inf
    for ci, members in enumerate(clusters):
        w = math.fsum(weights[i] for i in members)
        if w > best_w:
            best, best_w = ci, w
    return best


def weighted_vote(
    solutions: Sequence[Vote], weights: Sequence[float] | None = None, equivalent: Equivalence | None = None
) -> VoteResult:
    """The weighted-majority answer of (extracted, correct) votes; `weights` default to 1 each."""
    w = [1.0] * len(solutions) if weights is None else [float(x) for x in weights]
    if len(w) != len(solutions):
        raise ValueError(f"{len(solutions)} solutions but {len(w)} weights")
    if any(x < 0 or not math.isfinite(x) for x in w):
        raise MathtuneError(f"vote weights must be finite and >= 0, got {w}", "pass weights such as 0.6,0.4")
    # A zero-weight vote does not vote at all (not even to break ties).
    clusters = cluster_answers([a if x > 0 else None for (a, _), x in zip(solutions, w, strict=True)], equivalent)
    ci = _winner(clusters, w)
    if ci is None:
        return VoteResult(None, False, 0.0, 0, None)
    members = clusters[ci]
    first = members[0]
    answer = solutions[first][0]
    return VoteResult(str(answer).strip(), bool(solutions[first][1]), math.fsum(w[i] for i in members),
                      len(members), first)


# ----------------------------------------------------------------------------- maj@k by subsets


def maj_at_k_subsets(
    problems: Sequence[Sequence[Vote]], k: int, draws: int = 200, seed: int = 0, bootstrap: int = 1000,
    equivalent: Equivalence | None = None,
) -> dict[str, Any]:
    """maj@k averaged over `draws` random k-subsets per problem, with a 95% bootstrap interval.

    Clusters do not depend on the subset, so each problem is clustered once and every draw only
    counts votes. Problems with fewer than k samples are left out (`n` says how many counted)."""
    rng = random.Random(seed)
    per_problem: list[float] = []
    for votes in problems:
        if len(votes) < k:
            continue
        clusters = cluster_answers([a for a, _ in votes], equivalent)
        where = {i: ci for ci, members in enumerate(clusters) for i in members}
        wins = 0
        for _ in range(draws):
            subset = sorted(rng.sample(range(len(votes)), k))
            tally: dict[int, int] = {}
            first: dict[int, int] = {}
            for i in subset:
                if i in where:
                    tally[where[i]] = tally.get(where[i], 0) + 1
                    first.setdefault(where[i], i)
            if tally:
                ci = max(tally, key=lambda c: (tally[c], -first[c]))
                wins += bool(votes[first[ci]][1])
        per_problem.append(wins / draws)
    if not per_problem:
        return {"k": k, "value": None, "n": 0, "ci95": None, "draws": draws, "ci_method": "bootstrap"}
    n = len(per_problem)
    means = sorted(math.fsum(rng.choice(per_problem) for _ in range(n)) / n for _ in range(bootstrap))
    lo, hi = means[int(0.025 * (bootstrap - 1))], means[int(math.ceil(0.975 * (bootstrap - 1)))]
    return {"k": k, "value": round(math.fsum(per_problem) / n, 6), "n": n, "ci95": [round(lo, 6), round(hi, 6)],
            "draws": draws, "ci_method": "percentile bootstrap over problems"}


# ----------------------------------------------------------------------------- ensembles of runs


def _shared_problems(runs: Sequence[Run]) -> tuple[list[str], list[dict[str, list[dict]]]]:
    groups = [group_by_problem(r.records) for r in runs]
    shared = [pid for pid in groups[0] if all(pid in g for g in groups[1:])]
    if not shared:
        raise MathtuneError(f"the runs {', '.join(str(r.path) for r in runs)} share no problem ids",
                            "ensemble runs of the same benchmark (and the same --limit / subset)")
    return shared, groups


def _sample_weight(rec: dict[str, Any], key: str | None) -> float:
    if key is None:
        return 1.0
    value = rec.get(key)
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
        raise MathtuneError(f"per-sample weight {key!r} of record {rec.get('id')!r} is {value!r}",
                            "the field must be a number >= 0 (e.g. a sequence confidence in [0, 1])")
    return float(value)


def _pooled(groups: list[dict[str, list[dict]]], pid: str, weights: Sequence[float],
            sample_key: str | None) -> tuple[list[dict], list[float], list[int]]:
    recs, ws, owner = [], [], []
    for m, g in enumerate(groups):
        for r in g[pid]:
            recs.append(r)
            ws.append(weights[m] * _sample_weight(r, sample_key))
            owner.append(m)
    return recs, ws, owner


def check_not_test_split(dev_runs: Sequence[Run], test_runs: Sequence[Run]) -> None:
    """Refuse weight fitting on runs that share problems with (or are) the runs being ensembled."""
    test_ids = {(run.benchmark, pid) for run in test_runs for pid in group_by_problem(run.records)}
    test_paths = {run.path.resolve() for run in test_runs}
    for dev in dev_runs:
        overlap = [pid for pid in group_by_problem(dev.records) if (dev.benchmark, pid) in test_ids]
        if dev.path.resolve() in test_paths or overlap:
            raise MathtuneError(
                f"fitting weights on {dev.path} would fit them on the test split "
                f"({len(overlap)} of its problems are in the runs being ensembled)",
                "evaluate each model on a held-out dev split (e.g. a different --benchmark split or "
                "problems outside the test --limit) and pass those runs to --fit-on",
            )


def fit_weights(dev_runs: Sequence[Run], equivalent: Equivalence | None = None, step: float = 0.1) -> list[float]:
    """Per-model weights maximising the ensemble's accuracy on dev runs (one run per model)."""
    shared, groups = _shared_problems(dev_runs)
    m = len(dev_runs)
    # Per problem: clusters with per-model vote counts; the winner then only needs dot products.
    tables = []
    for pid in shared:
        recs, _, owner = _pooled(groups, pid, [1.0] * m, None)
        clusters = cluster_answers([r.get("extracted") for r in recs], equivalent)
        tables.append([([sum(owner[i] == j for i in c) for j in range(m)], bool(recs[c[0]]["correct"]))
                       for c in clusters])

    def accuracy(w: Sequence[float]) -> int:
        solved = 0
        for clusters in tables:
            best, best_w = None, -math.inf
            for counts, correct in clusters:
                s = sum(c * x for c, x in zip(counts, w, strict=True))
                if s > best_w:
                    best, best_w = correct, s
            solved += bool(best)
        return solved

    if m > 4:
        accs = [sum(bool(g[pid][0]["correct"]) for pid in shared) for g in groups]
        n = len(shared)
        logit = [math.log((c + 1) / (n - c + 1)) for c in accs]
        low = min(logit)
        return [round(x - low + 1e-3, 6) for x in logit]
    steps = round(1 / step)
    best_w, best_key = [1 / m] * m, (accuracy([1 / m] * m), 0.0)
    for combo in itertools.product(range(steps + 1), repeat=m):
        if sum(combo) != steps or min(combo) == 0:
            continue
        w = [c / steps for c in combo]
        key = (accuracy(w), -sum(abs(x - 1 / m) for x in w))
        if key > best_key:
            best_w, best_key = w, key
    return [round(x, 6) for x in best_w]


def _ensemble_record(pid: str, recs: list[dict], ws: list[float], owner: list[int], labels: list[str],
                     equivalent: Equivalence | None) -> dict[str, Any]:
    result = weighted_vote([(r.get("extracted"), bool(r["correct"])) for r in recs], ws, equivalent)
    base = recs[result.first] if result.first is not None else recs[0]
    tally: dict[str, float] = {}
    for r, w in zip(recs, ws, strict=True):
        if r.get("extracted") is not None and str(r["extracted"]).strip():
            key = str(r["extracted"]).strip()
            tally[key] = round(tally.get(key, 0.0) + w, 6)
    return {**{k: v for k, v in base.items() if k != "votes"}, "id": pid, "sample": 0,
            "extracted": result.answer, "correct": result.correct,
            "status": base.get("status") if result.first is not None else "no_answer",
            "votes": {"winner_model": labels[owner[result.first]] if result.first is not None else None,
                      "winner_weight": round(result.weight, 6), "winner_size": result.size,
                      "total_weight": round(math.fsum(ws), 6), "by_answer": tally}}


def ensemble_runs(
    runs: Sequence[Run], weights: Sequence[float] | None = None, sample_weight: str | None = None,
    equivalent: Equivalence | None = None, labels: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One voted record per problem shared by all runs (every sample of every run votes)."""
    w = [1.0] * len(runs) if weights is None else [float(x) for x in weights]
    if len(w) != len(runs):
        raise MathtuneError(f"{len(runs)} runs but {len(w)} weights", "pass one weight per run, in run order")
    if any(x < 0 or not math.isfinite(x) for x in w) or not any(x > 0 for x in w):
        raise MathtuneError(f"weights must be >= 0 with at least one > 0, got {list(w)}", "e.g. --weights 0.6,0.4")
    names = list(labels) if labels else [r.name for r in runs]
    shared, groups = _shared_problems(runs)
    out = []
    for pid in shared:
        recs, ws, owner = _pooled(groups, pid, w, sample_weight)
        out.append(_ensemble_record(pid, recs, ws, owner, names, equivalent))
    return out


def write_ensemble(
    runs: Sequence[Run], out_dir: str | Path, weights: Sequence[float] | None = None,
    fitted_on: Sequence[Run] = (), sample_weight: str | None = None, draws: int = 200,
    equivalent: Equivalence | None = None,
) -> dict[str, Any]:
    """Vote, then write predictions.jsonl, metrics.json, config.yaml and run.json to `out_dir`."""
    import time

    import yaml

    from ..files import atomic_write_json, atomic_write_jsonl, atomic_write_text

    benchmarks = sorted({r.benchmark for r in runs})
    if len(benchmarks) > 1:
        raise MathtuneError(f"the runs are on different benchmarks: {', '.join(benchmarks)}",
                            "ensemble runs of one benchmark")
    if fitted_on:
        if weights is not None:
            raise MathtuneError("pass either --weights or --fit-on, not both", "drop one of them")
        if len(fitted_on) != len(runs):
            raise MathtuneError(f"{len(runs)} runs but {len(fitted_on)} dev runs in --fit-on",
                                "pass one dev-split run per model, in the same order as the runs")
        check_not_test_split(fitted_on, runs)
        weights = fit_weights(fitted_on, equivalent)
    w = [1.0] * len(runs) if weights is None else list(weights)
    records = ensemble_runs(runs, w, sample_weight, equivalent)
    metrics = compute_metrics(records, equivalent=equivalent)
    shared, groups = _shared_problems(runs)
    pooled = [[(r.get("extracted"), bool(r["correct"])) for g in groups for r in g[pid]] for pid in shared]
    per = min(len(p) for p in pooled)
    ks = [2**i for i in range(1, 8) if 2**i <= per]
    metrics["maj_at_k_subsets"] = {str(k): maj_at_k_subsets(pooled, k, draws, equivalent=equivalent) for k in ks}
    model = "ensemble(" + " + ".join(r.model for r in runs) + ")"
    config = {"runs": [str(r.path) for r in runs], "model": model, "benchmark": benchmarks[0],
              "weights": [round(x, 6) for x in w], "fitted_on": [str(r.path) for r in fitted_on] or None,
              "sample_weight": sample_weight, "samples": 1}
    info = {"status": "complete", "kind": "ensemble", "model": model, "benchmark": benchmarks[0],
            "name": Path(out_dir).name, "problems": len(records), "samples": 1, "records": len(records),
            "members": [{"path": str(r.path), "model": r.model, "name": r.name, "weight": round(x, 6)}
                        for r, x in zip(runs, w, strict=True)],
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(out / "predictions.jsonl", records)
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    atomic_write_json(out / "run.json", info)
    return {"run_dir": str(out), "weights": w, "metrics": metrics, "info": info}

