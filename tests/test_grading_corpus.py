"""The differential corpus: mathtune agrees with the adjudicated verdicts.

    .venv/bin/python -m pytest tests/test_grading_corpus.py -q

tests/data/grading_corpus.jsonl holds (gold, response, expected) rows from real model outputs,
reference solutions and perturbed answers, each verdict adjudicated by hand with its reason
(built by benchmarks/grading_corpus.py). The grader must agree on at least 99% of them, with
false positives (a wrong answer rewarded) at most one in 500 and timeouts at most one in 200.
The side-by-side comparison with Math-Verify, per slice, is benchmarks/grading.py.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from mathtune.grading import grade_many

CORPUS = Path(__file__).parent / "data" / "grading_corpus.jsonl"


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    if not CORPUS.is_file():
        pytest.skip(f"{CORPUS} not built yet (benchmarks/grading_corpus.py)")
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if isinstance(r.get("expected"), bool)]
    if not rows:
        pytest.skip("no adjudicated rows yet")
    return rows


def test_corpus_rows_are_well_formed(corpus: list[dict]):
    for row in corpus:
        assert isinstance(row["gold"], str) and isinstance(row["response"], str), row.get("source")


def test_grader_agrees_with_the_adjudicated_corpus(corpus: list[dict]):
    grades = grade_many([(r["response"], r["gold"]) for r in corpus], workers=2)
    misses = [(r, g) for r, g in zip(corpus, grades, strict=True) if g.correct is not r["expected"]]
    agreement = 1 - len(misses) / len(corpus)
    report = "\n".join(
        f"  [{r.get('model')}/{r.get('benchmark')}/{r.get('kind')}] expected={r['expected']} got={g} "
        f"gold={r['gold'][:60]!r} response=...{r['response'][-80:]!r}"
        for r, g in misses[:20]
    )
    assert agreement >= 0.99, f"agreement {agreement:.2%} on {len(corpus)} rows; misses:\n{report}"
    false_positives = [r for r, g in misses if g.correct]
    assert len(false_positives) <= max(1, len(corpus) // 500), report
    timeouts = Counter(g.status for g in grades)["timeout"]
    assert timeouts <= len(corpus) // 200, f"{timeouts} timeouts"
