"""Metrics: Wilson interval, pass@k, maj@k voting, compute_metrics and load_run.

Run:  .venv/bin/pytest tests/test_metrics.py -q
"""

from __future__ import annotations

import itertools
import json
from math import comb

import pytest

from mathtune.errors import MathtuneError
from mathtune.eval.metrics import (
    compute_metrics,
    load_run,
    majority_vote,
    pass_at_k,
    wilson_interval,
)
from mathtune.grading import answers_equivalent

# ----------------------------------------------------------------------------- Wilson


@pytest.mark.parametrize(
    ("correct", "n", "expected"),
    [  # Newcombe (1998) "Two-sided confidence intervals for the single proportion", Table II
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0000, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
        (0, 10, (0.0000, 0.2775)),
    ],
)
def test_wilson_interval_matches_published_values(correct, n, expected):
    lo, hi = wilson_interval(correct, n)
    assert (round(lo, 4), round(hi, 4)) == expected


def test_wilson_interval_is_symmetric_and_bounded():
    lo, hi = wilson_interval(7, 10)
    lo2, hi2 = wilson_interval(3, 10)
    assert lo == pytest.approx(1 - hi2) and hi == pytest.approx(1 - lo2)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] < 1.0


# ----------------------------------------------------------------------------- pass@k


def _pass_at_k_brute(n: int, c: int, k: int) -> float:
    """Probability that a random k-subset of n samples (c correct) contains a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_pass_at_k_matches_brute_force_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_pass_at_k_brute(n, c, k), abs=1e-12), (n, c, k)
            assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-12)


def test_pass_at_k_rejects_k_above_n():
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


# ----------------------------------------------------------------------------- maj@k


def test_majority_vote_groups_equivalent_answers():
    # "1/2" and "0.5" are one answer (2 votes... plus \frac{1}{2}: 3) against "3" twice.
    votes = [("3", False), ("1/2", True), ("0.5", True), ("3", False), ("\\frac{1}{2}", True)]
    answer, correct, size = majority_vote(votes, answers_equivalent)
    assert (answer, correct, size) == ("1/2", True, 3)
    # Without equivalence the raw strings would lose to "3" (2 votes vs 1 each).
    assert majority_vote(votes, lambda a, b: a == b)[:2] == ("3", False)


def test_majority_vote_tie_goes_to_earliest_sample_and_skips_missing():
    votes = [(None, False), ("7", False), ("1/2", True), ("7", False), ("0.5", True)]
    assert majority_vote(votes, answers_equivalent) == ("7", False, 2)
    votes = [(None, False), ("0.5", True), ("7", False), ("1/2", True), ("7", False)]
    assert majority_vote(votes, answers_equivalent) == ("0.5", True, 2)
    assert majority_vote([(None, False), ("  ", False)], answers_equivalent) == (None, False, 0)


# ----------------------------------------------------------------------------- compute_metrics


def _rec(pid: str, sample: int, correct: bool, extracted: str | None, **kw) -> dict:
    return {"id": pid, "sample": sample, "correct": correct, "extracted": extracted, "gold": kw.pop("gold", "1"),
            "status": "ok" if extracted is not None else "no_answer", "response": f"The answer is {extracted}.",
            "tokens": kw.pop("tokens", 10), "truncated": False, **kw}


def test_compute_metrics_single_sample_with_breakdowns():
    records = [
        _rec("a", 0, True, "1", subject="Algebra", level=1),
        _rec("b", 0, False, "2", subject="Algebra", level=2),
        _rec("c", 0, True, "1", subject="Geometry", level=10),
        _rec("d", 0, False, None, subject="Geometry", level=2),
    ]
    m = compute_metrics(records)
    json.dumps(m)  # JSON-serialisable
    assert m["n"] == 4 and m["accuracy"]["value"] == 0.5 and m["accuracy"]["correct"] == 2
    assert m["accuracy"]["ci95"] == pytest.approx(list(wilson_interval(2, 4)), abs=1e-6)
    assert "maj_at_k" not in m and "pass_at_k" not in m
    assert m["by_subject"]["Algebra"]["value"] == 0.5 and m["by_subject"]["Geometry"]["n"] == 2
    assert list(m["by_level"]) == ["1", "2", "10"]  # natural order
    assert m["by_level"]["2"]["value"] == 0.0
    assert m["diagnostics"]["no_answer_rate"] == 0.25
    assert m["status_counts"] == {"ok": 3, "no_answer": 1}


def test_compute_metrics_samples_maj_and_pass():
    records = [
        # p1: greedy wrong, but 0.5 and 1/2 (correct) out-vote 3 -> maj right; 2 of 4 correct
        _rec("p1", 0, False, "3"), _rec("p1", 1, True, "0.5"), _rec("p1", 2, True, "1/2"), _rec("p1", 3, False, "4"),
        # p2: all wrong
        *[_rec("p2", s, False, "9") for s in range(4)],
        # p3: all right, listed out of order
        *[_rec("p3", s, True, "1") for s in (3, 1, 0, 2)],
    ]
    m = compute_metrics(records, equivalent=answers_equivalent)
    assert m["samples_per_problem"] == 4 and m["n_responses"] == 12
    assert m["accuracy"]["value"] == pytest.approx(1 / 3, abs=1e-6)  # only p3's sample 0 is right
    assert m["mean_sample_accuracy"] == pytest.approx(6 / 12, abs=1e-6)
    assert m["maj_at_k"]["value"] == pytest.approx(2 / 3, abs=1e-6) and m["maj_at_k"]["k"] == 4
    assert set(m["pass_at_k"]) == {"1", "2", "4"}
    assert m["pass_at_k"]["2"] == pytest.approx((pass_at_k(4, 2, 2) + 0 + 1) / 3, abs=1e-6)
    assert m["pass_at_k"]["4"] == pytest.approx(2 / 3, abs=1e-6)
    # k caps the samples used: with k=2, p1's votes are "3" and "0.5" (tie -> "3", wrong)
    m2 = compute_metrics(records, k=2, equivalent=answers_equivalent)
    assert m2["maj_at_k"]["value"] == pytest.approx(1 / 3, abs=1e-6) and set(m2["pass_at_k"]) == {"1", "2"}


def test_compute_metrics_uses_the_shared_grader_by_default():
    records = [_rec("p", 0, False, "2"), _rec("p", 1, True, "1/2"), _rec("p", 2, True, "0.5")]
    assert compute_metrics(records)["maj_at_k"]["value"] == 1.0


def test_compute_metrics_rejects_empty():
    with pytest.raises(MathtuneError, match="no predictions"):
        compute_metrics([])


# ----------------------------------------------------------------------------- load_run


def _write_run(path, lines: list[str], info: dict | None = None):
    path.mkdir(parents=True, exist_ok=True)
    (path / "predictions.jsonl").write_text("".join(line + "\n" for line in lines))
    (path / "run.json").write_text(json.dumps(info or {"model": "m", "benchmark": "gsm8k"}))
    (path / "config.yaml").write_text("model: m\nbenchmark: gsm8k\n")
    (path / "metrics.json").write_text("{}")
    return path


def test_load_run_reads_everything(tmp_path):
    run = load_run(_write_run(tmp_path / "r", [json.dumps(_rec("a", 0, True, "1"))]))
    assert run.model == "m" and run.benchmark == "gsm8k" and run.config == {"model": "m", "benchmark": "gsm8k"}
    assert len(run.records) == 1 and run.warnings == [] and run.name == "r"
    assert load_run(tmp_path / "r" / "predictions.jsonl").path == tmp_path / "r"


def test_load_run_reports_malformed_lines_by_number(tmp_path):
    good = json.dumps(_rec("a", 0, True, "1"))
    lines = [good, "{not json", json.dumps({"id": "b"}), good.replace("true", '"yes"'), "[1, 2]"]
    run = load_run(_write_run(tmp_path / "r", lines))
    assert len(run.records) == 1
    (warning,) = run.warnings
    assert "skipped 4 malformed lines" in warning
    for expected in ("line 2: invalid JSON", "line 3: missing key 'correct'", "line 4: 'correct' must be true or false",
                     "line 5: expected a JSON object"):
        assert expected in warning


def test_load_run_errors_name_the_input(tmp_path):
    with pytest.raises(MathtuneError, match="not found: .*nope"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MathtuneError, match="no predictions.jsonl in"):
        load_run(tmp_path / "empty")
    with pytest.raises(MathtuneError, match=r"no valid predictions .*line 1: invalid JSON"):
        load_run(_write_run(tmp_path / "bad", ["garbage"]))


def test_load_run_survives_broken_side_files(tmp_path):
    path = _write_run(tmp_path / "r", [json.dumps(_rec("a", 0, True, "1", benchmark="math500"))])
    (path / "run.json").write_text("{broken")
    (path / "config.yaml").unlink()
    run = load_run(path)
    assert run.benchmark == "math500" and run.model == "r"  # falls back to records / dir name
    assert any("run.json" in w for w in run.warnings)
