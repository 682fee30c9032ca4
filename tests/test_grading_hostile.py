"""Hostile and huge inputs get a verdict within a bounded time, with a sensible status.

    .venv/bin/python -m pytest tests/test_grading_hostile.py -q
"""

from __future__ import annotations

import random
import time

import pytest

from mathtune.grading import answers_equivalent, extract_answer, grade

_rng = random.Random(0)
_WORDS = " ".join(_rng.choice(["the", "cat", "7", "sat", "x^2", "{", "}", "\\frac", "="]) for _ in range(200_000))
MEGABYTE = (_WORDS * 2)[:1_000_000]

HOSTILE = [
    ("power tower 9^9^9^9", r"\boxed{9^{9^{9^9}}}", "5", {"unparseable"}),
    ("power tower 10^10^10^10", r"The answer is $10^{10^{10^{10}}}$.", "5", {"unparseable"}),
    ("tower without braces", r"\boxed{2^2^2^2^2^2^2}", "5", {"unparseable", "ok"}),
    ("ascii power tower", "The answer is 9**9**9**9.", "5", {"unparseable", "ok"}),
    ("huge exponent on a symbol", r"\boxed{(x+1)^{99999999}}", "x", {"unparseable"}),
    ("huge factorial", r"\boxed{123456789!}", "5", {"unparseable"}),
    ("unbalanced braces", r"\boxed{\frac{1}{2", "5", {"unparseable"}),
    ("unbalanced closing", r"\boxed{1}}}}}", "1", {"ok"}),
    ("empty response", "", "5", {"no_answer"}),
    ("whitespace response", "   \n\t ", "5", {"no_answer"}),
    ("1 MB of text", MEGABYTE, "5", {"ok", "no_answer", "unparseable"}),
    ("1 MB boxed sum", r"\boxed{" + "1+" * 500_000 + "1}", "1000001", {"unparseable"}),
    ("deeply nested braces", r"\boxed{" + "{" * 100_000 + "1" + "}" * 100_000 + "}", "1", {"ok"}),
    ("deeply nested parentheses", r"\boxed{" + "(" * 50_000 + "1" + ")" * 50_000 + "}", "1", {"unparseable"}),
    ("many \\left(", r"\boxed{" + r"\left(" * 20_000 + "x}", "x", {"unparseable"}),
    ("megabyte number", r"\boxed{" + "9" * 1_000_000 + "}", "9", {"ok", "unparseable"}),
    ("huge scientific exponent", r"\boxed{1e999999999}", "1", {"ok", "unparseable"}),
    ("10^huge in x10 form", r"\boxed{3\times10^{99999999}}", "3", {"ok", "unparseable"}),
    ("null bytes and unicode", "\x00\x00 \u202e\ufffd the answer is \u2603", "5", {"no_answer", "ok", "unparseable"}),
    ("huge gold", "The answer is 5.", r"9^{9^{9^9}}", {"unparseable"}),
    ("many boxes", r"\boxed{1} " * 100_000, "1", {"ok"}),
]


@pytest.mark.parametrize("response, gold, statuses", [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_input_returns_in_bounded_time(response, gold, statuses):
    t = time.monotonic()
    g = grade(response, gold, timeout=2.0)
    elapsed = time.monotonic() - t
    assert elapsed < 5.0, f"took {elapsed:.1f}s"
    assert g.status in statuses, g
    if g.status != "ok":
        assert g.correct is False


def test_hostile_extraction_and_equivalence_are_fast():
    t = time.monotonic()
    assert extract_answer("{" * 200_000) is None
    extract_answer("\\boxed{" * 50_000)
    assert answers_equivalent(r"9^{9^{9^9}}", r"9^{9^{9^9}}") is True  # identical strings: no evaluation
    assert answers_equivalent(r"9^{9^{9^9}}", r"10^{10^{10^{10}}}", timeout=2.0) is False
    assert time.monotonic() - t < 5.0
