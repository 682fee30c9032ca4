"""Weighted voting, weight fitting, maj@k by random subsets and `mathtune ensemble` run dirs.

Run:  .venv/bin/python -m pytest tests/test_vote.py -q
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from mathtune.errors import MathtuneError
from mathtune.eval.compare import compare_runs
from mathtune.eval.metrics import load_run, majority_vote
from mathtune.eval.vote import fit_weights, maj_at_k_subsets, weighted_vote, write_ensemble
from mathtune.grading import answers_equivalent

RUNS = Path(__file__).parent / "data" / "runs"
POOL = ["1/2", "0.5", "\\frac{1}{2}", "3", "3.0", "7", "-7", "x+1", "1+x", "12", None, "", "  "]


def reference_majority_vote(votes, equivalent):
    """The pre-#13 `metrics.majority_vote`, frozen here as the reference implementation."""
    distinct: dict[str, list[int]] = {}
    for i, (answer, _) in enumerate(votes):
        if answer is not None and str(answer).strip():
            distinct.setdefault(str(answer).strip(), []).append(i)
    if not distinct:
        return (None, False, 0)
    clusters: list[tuple[str, list[int]]] = []
    for answer, idx in distinct.items():
        for rep, members in clusters:
            if equivalent(rep, answer):
                members.extend(idx)
                break
        else:
            clusters.append((answer, list(idx)))
    clusters.sort(key=lambda c: min(c[1]))
    rep, members = max(clusters, key=lambda c: len(c[1]))
    return (rep, bool(votes[min(members)][1]), len(members))


def _random_votes(rng: random.Random) -> list[tuple[str | None, bool]]:
    return [(rng.choice(POOL), rng.random() < 0.5) for _ in range(rng.randint(0, 9))]


def test_equal_weights_reproduce_majority_vote_on_1000_random_cases():
    rng = random.Random(13)
    ties = 0
    for _ in range(1000):
        votes = _random_votes(rng)
        ref = reference_majority_vote(votes, answers_equivalent)
        result = weighted_vote(votes, [1.0] * len(votes))
        assert (result.answer, result.correct, result.size) == ref, votes
        assert majority_vote(votes) == ref, votes
        ties += len({a for a, _ in votes if a and a.strip()}) > 1
    assert ties > 300  # the cases really exercise clustering and tie-breaking


def test_equivalent_answers_vote_together():
    votes = [("3", False), ("1/2", True), ("0.5", True), ("3", False), ("\\frac{1}{2}", True)]
    result = weighted_vote(votes)
    assert (result.answer, result.correct, result.size, result.weight) == ("1/2", True, 3, 3.0)


def test_dominant_weight_gives_that_models_answer():
    rng = random.Random(7)
    for _ in range(200):
        votes = [v for v in _random_votes(rng) if v[0] and v[0].strip()] or [("5", True)]
        star = rng.randrange(len(votes))
        weights = [1.0] * len(votes)
        weights[star] = 1000.0
        result = weighted_vote(votes, weights)
        assert answers_equivalent(result.answer, votes[star][0]), (votes, star)


def test_per_sample_weights_and_bad_weights():
    votes = [("4", True), ("5", False), ("5", False)]
    assert weighted_vote(votes).answer == "5"
    assert weighted_vote(votes, [0.9, 0.3, 0.3]).answer == "4"
    with pytest.raises(MathtuneError):
        weighted_vote(votes, [1.0, -1.0, 1.0])
    with pytest.raises(ValueError):
        weighted_vote(votes, [1.0])


def test_maj_at_k_subsets_matches_exact_and_has_interval():
    eq = str.__eq__
    # 3 samples, 2 right ("1"), 1 wrong: every 1-subset is a single vote -> maj@1 = 2/3 exactly.
    problems = [[("1", True), ("1", True), ("2", False)]] * 20
    one = maj_at_k_subsets(problems, 1, draws=3000, seed=1, equivalent=eq)
    assert one["value"] == pytest.approx(2 / 3, abs=0.03)
    # k = n: the one subset is the whole set -> the full majority, the interval collapses.
    full = maj_at_k_subsets(problems, 3, draws=5, equivalent=eq)
    assert full["value"] == 1.0 and full["ci95"] == [1.0, 1.0]
    mixed = problems[:10] + [[("2", False), ("2", False), ("1", True)]] * 10
    m = maj_at_k_subsets(mixed, 3, draws=5, equivalent=eq)
    assert m["value"] == 0.5 and m["ci95"][0] < 0.5 < m["ci95"][1]
    assert maj_at_k_subsets(problems, 4, equivalent=eq)["n"] == 0


def test_ensemble_run_dir_loads_and_compares(tmp_path):
    runs = [load_run(RUNS / "base"), load_run(RUNS / "tuned")]
    out = tmp_path / "ens"
    write_ensemble(runs, out)
    ens = load_run(out)
    assert not ens.warnings
    assert {"predictions.jsonl", "metrics.json", "config.yaml", "run.json"} <= {p.name for p in out.iterdir()}
    assert len(ens.records) == len(runs[0].greedy())
    assert ens.model.startswith("ensemble(") and ens.benchmark == runs[0].benchmark
    # Each record's answer is the equal-weight vote over all 8 pooled samples.
    for rec in ens.records:
        pooled = [(r.get("extracted"), bool(r["correct"])) for run in runs for r in run.records if r["id"] == rec["id"]]
        assert (rec["extracted"], rec["correct"]) == majority_vote(pooled)[:2]
    c = compare_runs(runs[1], ens)
    assert c["shared"] == len(ens.records)
    assert c["accuracy_b"]["value"] == ens.full_metrics()["accuracy"]["value"]
    assert "maj_at_k_subsets" in json.loads((out / "metrics.json").read_text())


def test_dominant_model_weight_reproduces_that_models_majority(tmp_path):
    runs = [load_run(RUNS / "base"), load_run(RUNS / "tuned")]
    write_ensemble(runs, tmp_path / "ens", weights=[0.0, 1.0])
    ens = load_run(tmp_path / "ens")
    for rec in ens.records:
        own = [(r.get("extracted"), bool(r["correct"])) for r in runs[1].records if r["id"] == rec["id"]]
        assert rec["correct"] == majority_vote(own)[1]


def test_fitting_on_the_test_split_is_an_error(tmp_path):
    runs = [load_run(RUNS / "base"), load_run(RUNS / "tuned")]
    with pytest.raises(MathtuneError, match="test split"):
        write_ensemble(runs, tmp_path / "ens", fitted_on=runs)


def _dev_copy(src: Path, dst: Path) -> Path:
    """A copy of a run whose problem ids are renamed: a stand-in for a disjoint dev split."""
    dst.mkdir(parents=True)
    for name in ("run.json", "config.yaml"):
        shutil.copy(src / name, dst / name)
    lines = [json.loads(x) for x in (src / "predictions.jsonl").read_text().splitlines() if x.strip()]
    (dst / "predictions.jsonl").write_text("".join(json.dumps({**r, "id": "dev-" + r["id"]}) + "\n" for r in lines))
    return dst


def test_fit_weights_on_a_dev_split(tmp_path, monkeypatch):
    from mathtune.cli import main

    dev = [load_run(_dev_copy(RUNS / n, tmp_path / f"dev-{n}")) for n in ("base", "tuned")]
    w = fit_weights(dev)
    assert len(w) == 2 and sum(w) == pytest.approx(1.0) and min(w) > 0
    acc = {r.name: r.full_metrics()["accuracy"]["value"] for r in dev}
    assert acc["tuned"] > acc["base"] and w[1] >= w[0]  # the stronger model is not down-weighted
    rc = main(["ensemble", str(RUNS / "base"), str(RUNS / "tuned"), "-o", str(tmp_path / "ens"),
               "--fit-on", f"{dev[0].path},{dev[1].path}"])
    assert rc == 0
    info = json.loads((tmp_path / "ens" / "run.json").read_text())
    assert [m["weight"] for m in info["members"]] == w
