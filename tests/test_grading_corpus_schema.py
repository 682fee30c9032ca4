"""The grader regression corpus (tests/data/grading_corpus.jsonl, issue #15) is well-formed:
exact keys, known enums, a reason on every row, unique sources, >= 1,000 rows, at least half of
them written by a model. It checks the data only; how a grader scores on it is measured elsewhere.

    .venv/bin/python -m pytest tests/test_grading_corpus_schema.py -q
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

CORPUS = Path(__file__).parent / "data" / "grading_corpus.jsonl"
KEYS = ["gold", "response", "expected", "model", "benchmark", "kind", "source", "reason"]
MODELS = {"smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"}
KINDS = {"integer", "decimal", "fraction", "expression", "tuple", "interval", "set", "matrix", "equation", "text", "other"}


def _rows() -> list[dict]:
    with CORPUS.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_every_row_has_the_schema() -> None:
    for n, row in enumerate(_rows(), 1):
        assert list(row) == KEYS, f"line {n}: keys {list(row)}"
        assert isinstance(row["expected"], bool), f"line {n}"
        assert row["model"] in MODELS | {"reference", "perturbed"}, f"line {n}: model {row['model']}"
        assert row["kind"] in KINDS, f"line {n}: kind {row['kind']}"
        assert isinstance(row["gold"], str) and row["gold"].strip(), f"line {n}: empty gold"
        assert isinstance(row["response"], str), f"line {n}"
        assert row["reason"].strip() and row["source"].strip(), f"line {n}: no reason/source"


def test_size_balance_and_unique_sources() -> None:
    rows = _rows()
    assert len(rows) >= 1000
    assert sum(r["model"] in MODELS for r in rows) * 2 >= len(rows)
    dup = [s for s, n in Counter(r["source"] for r in rows).items() if n > 1]
    assert not dup, dup[:5]
    kinds = Counter(r["kind"] for r in rows)
    assert all(kinds[k] > 0 for k in KINDS), kinds
    assert {True, False} == {r["expected"] for r in rows}
