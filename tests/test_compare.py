"""Paired comparison: McNemar exact test, paired delta interval, compare_runs and `mathtune compare`.

Run:  .venv/bin/pytest tests/test_compare.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import binomtest

from mathtune.cli import main
from mathtune.errors import MathtuneError
from mathtune.eval.compare import compare_runs, mcnemar_exact, paired_delta_ci
from mathtune.eval.metrics import load_run

RUNS = Path(__file__).parent / "data" / "runs"


# ----------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(("fixed", "broken"), [(0, 0), (1, 0), (5, 5), (8, 2), (2, 8), (16, 6), (30, 11), (0, 12), (100, 71)])
def test_mcnemar_exact_matches_scipy_binomtest(fixed, broken):
    n = fixed + broken
    expected = binomtest(min(fixed, broken), n, 0.5).pvalue if n else 1.0
    assert mcnemar_exact(fixed, broken) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_hand_computed_table():
    # 8 fixed vs 2 broken: P(X <= 2 | n=10, 1/2) = (1 + 10 + 45) / 1024; two-sided doubles it
    assert mcnemar_exact(8, 2) == pytest.approx(2 * 56 / 1024)


def test_paired_delta_ci_matches_newcombe_reference():
    # Cavo et al. 2012 table [[59, 6], [16, 80]] from Fagerland, Lydersen & Laake "Statistical
    # Analysis of Contingency Tables" ch. 8: Newcombe square-and-add (method 10) for p1+ - p+1 is
    # -0.0621 (-0.1186 to -0.0046). Our delta is B - A, so the signs flip.
    lo, hi = paired_delta_ci(both=59, broken=6, fixed=16, neither=80)
    assert (round(lo, 4), round(hi, 4)) == (0.0046, 0.1186)


def test_paired_delta_ci_is_bounded_and_contains_the_estimate():
    for table in [(0, 0, 10, 0), (10, 0, 0, 0), (3, 1, 4, 2), (0, 5, 0, 5), (40, 3, 9, 48)]:
        both, broken, fixed, neither = table
        delta = (fixed - broken) / sum(table)
        lo, hi = paired_delta_ci(*table)
        assert -1.0 <= lo <= delta <= hi <= 1.0, table


# ----------------------------------------------------------------------------- compare_runs


def make_run(path: Path, outcomes: dict[str, bool], benchmark: str = "gsm8k", **extra) -> Path:
    """A minimal run dir: one greedy record per problem id, plus a second (ignored) sample."""
    path.mkdir(parents=True)
    rows = []
    for i, (pid, ok) in enumerate(outcomes.items()):
        base = {"id": pid, "index": i, "benchmark": benchmark, "problem": f"Problem {pid}: what is {i} + 1? " + "x" * 200,
                "gold": str(i + 1), "subject": "Algebra" if i % 2 else "Geometry", "level": 1 + i % 3,
                "response": f"The answer is {i + 1 if ok else 0}.", "extracted": str(i + 1 if ok else 0),
                "status": "ok", "tokens": 10 if ok else 30, "truncated": not ok, "time_s": 0.1, **extra}
        rows += [{**base, "sample": 0, "correct": ok}, {**base, "sample": 1, "correct": not ok}]
    (path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "run.json").write_text(json.dumps({"model": path.name, "benchmark": benchmark}))
    return path


A = {"p1": True, "p2": False, "p3": False, "p4": True, "p5": False, "p6": True, "p7": False}
B = {"p1": True, "p2": True, "p3": False, "p4": False, "p5": True, "p6": True, "p8": True}


def test_compare_runs_exact_fixed_and_broken(tmp_path):
    c = compare_runs(load_run(make_run(tmp_path / "a", A)), load_run(make_run(tmp_path / "b", B)))
    json.dumps(c)
    assert c["shared"] == 6 and c["only_a"] == 1 and c["only_b"] == 1
    assert [p["id"] for p in c["fixed_problems"]] == ["p2", "p5"]
    assert [p["id"] for p in c["broken_problems"]] == ["p4"]
    assert (c["fixed"], c["broken"], c["both_correct"], c["both_wrong"]) == (2, 1, 2, 1)
    assert c["accuracy_a"]["value"] == pytest.approx(3 / 6) and c["accuracy_b"]["value"] == pytest.approx(4 / 6)
    assert c["delta"] == pytest.approx(1 / 6, abs=1e-6)
    assert c["mcnemar_p"] == pytest.approx(binomtest(1, 3, 0.5).pvalue)
    assert c["delta_ci95"][0] < c["delta"] < c["delta_ci95"][1]
    fixed = c["fixed_problems"][0]
    assert fixed["problem"].startswith("Problem p2") and len(fixed["problem"]) <= 160
    assert (fixed["gold"], fixed["extracted_a"], fixed["extracted_b"]) == ("2", "0", "2")
    assert any("6 shared problems; 1 only in A, 1 only in B" in w for w in c["warnings"])


def test_compare_runs_categories_and_diagnostics(tmp_path):
    c = compare_runs(load_run(make_run(tmp_path / "a", A)), load_run(make_run(tmp_path / "b", B)))
    # Geometry: p1 (i=0), p3, p5 -> A: T F F, B: T F T; Algebra: p2, p4, p6 -> A: F T T, B: T F T
    assert c["by_subject"]["Geometry"]["fixed"] == 1 and c["by_subject"]["Geometry"]["broken"] == 0
    assert c["by_subject"]["Algebra"]["fixed"] == 1 and c["by_subject"]["Algebra"]["broken"] == 1
    assert list(c["by_level"]) == ["1", "2", "3"]
    d = c["diagnostics"]
    assert d["truncation_rate"]["a"] == pytest.approx(0.5) and d["truncation_rate"]["b"] == pytest.approx(2 / 6, abs=1e-3)
    assert d["mean_tokens"]["delta"] == pytest.approx((4 * 10 + 2 * 30) / 6 - (3 * 10 + 3 * 30) / 6, abs=0.01)


def test_compare_runs_benchmark_checks(tmp_path):
    a = load_run(make_run(tmp_path / "a", A))
    other = load_run(make_run(tmp_path / "other", {"q1": True}, benchmark="math500"))
    with pytest.raises(MathtuneError, match="different benchmarks"):
        compare_runs(a, other)
    same_bench = load_run(make_run(tmp_path / "same", {"q1": True}))
    with pytest.raises(MathtuneError, match="share no problem ids"):
        compare_runs(a, same_bench)
    overlapping = load_run(make_run(tmp_path / "overlap", B, benchmark="gsm8k-copy"))
    c = compare_runs(a, overlapping)
    assert c["shared"] == 6 and any("benchmarks differ" in w for w in c["warnings"])


# ----------------------------------------------------------------------------- CLI


def test_cli_compare_prints_tables_and_writes_json(tmp_path, capsys):
    out = tmp_path / "cmp.json"
    assert main(["compare", str(RUNS / "base"), str(RUNS / "tuned"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for expected in ("Paired comparison on 24 shared problems", "McNemar p", "By subject", "By level",
                     "Fixed (A wrong -> B right): 8", "Broken (A right -> B wrong): 2", "math-005", "math-017"):
        assert expected in text
    result = json.loads(out.read_text())
    assert [p["id"] for p in result["broken_problems"]] == ["math-005", "math-017"]
    assert result["fixed"] == 8 and result["mcnemar_p"] == pytest.approx(binomtest(2, 10, 0.5).pvalue)


def test_cli_compare_user_errors(tmp_path, capsys):
    assert main(["compare", str(RUNS / "base"), str(tmp_path / "missing")]) == 2
    assert "eval run directory not found" in capsys.readouterr().err
