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

UNPARSEABLE = {"unparseable"}

# (id, response, gold, expected verdict, acceptable statuses). The verdict is always pinned;
# a status set has two members only where either is a right answer for that input (a garbage
# or oversized answer may be refused as unparseable or compared cheaply and found unequal).
# Hostile answers are refused before sympy (grade.py), so "timeout" is never acceptable here.
HOSTILE = [
    ("power tower 9^9^9^9", r"\boxed{9^{9^{9^9}}}", "5", False, UNPARSEABLE),
    ("power tower 10^10^10^10", r"The answer is $10^{10^{10^{10}}}$.", "5", False, UNPARSEABLE),
    ("tower without braces", r"\boxed{2^2^2^2^2^2^2}", "5", False, UNPARSEABLE),
    ("ascii power tower", "The answer is 9**9**9**9.", "5", False, UNPARSEABLE),
    ("huge exponent on a symbol", r"\boxed{(x+1)^{99999999}}", "x", False, UNPARSEABLE),
    ("huge factorial", r"\boxed{123456789!}", "5", False, UNPARSEABLE),
    ("unbalanced braces", r"\boxed{\frac{1}{2", "5", False, UNPARSEABLE),
    ("unbalanced closing", r"\boxed{1}}}}}", "1", True, {"ok"}),
    ("empty response", "", "5", False, {"no_answer"}),
    ("whitespace response", "   \n\t ", "5", False, {"no_answer"}),
    ("1 MB of text", MEGABYTE, "5", False, {"ok", "no_answer", "unparseable"}),  # no 5 in the word list
    # 500,001 ones: the sum is 500001, not the gold; too long for sympy either way
    ("1 MB boxed sum", r"\boxed{" + "1+" * 500_000 + "1}", "1000001", False, UNPARSEABLE),
    ("deeply nested braces", r"\boxed{" + "{" * 100_000 + "1" + "}" * 100_000 + "}", "1", True, {"ok"}),
    # brackets nested past MAX_BRACE_DEPTH are refused by design (symbolic.hostile_reason)
    ("deeply nested parentheses", r"\boxed{" + "(" * 50_000 + "1" + ")" * 50_000 + "}", "1", False, UNPARSEABLE),
    ("many \\left(", r"\boxed{" + r"\left(" * 20_000 + "x}", "x", False, UNPARSEABLE),
    ("megabyte number", r"\boxed{" + "9" * 1_000_000 + "}", "9", False, {"ok", "unparseable"}),
    ("identical megabyte number", r"\boxed{" + "9" * 1_000_000 + "}", "9" * 1_000_000, True, {"ok"}),
    ("huge scientific exponent", r"\boxed{1e999999999}", "1", False, {"ok", "unparseable"}),
    ("10^huge in x10 form", r"\boxed{3\times10^{99999999}}", "3", False, {"ok", "unparseable"}),
    ("null bytes and unicode", "\x00\x00 \u202e\ufffd the answer is \u2603", "5", False, {"no_answer", "ok", "unparseable"}),
    ("null bytes around a real answer", "\x00\x00 \u202e\ufffd the answer is 5", "5", True, {"ok"}),
    ("huge gold", "The answer is 5.", r"9^{9^{9^9}}", False, UNPARSEABLE),
    ("identical power tower", r"\boxed{9^{9^{9^9}}}", r"9^{9^{9^9}}", True, {"ok"}),  # no evaluation needed
    ("many boxes", r"\boxed{1} " * 100_000, "1", True, {"ok"}),
]


@pytest.mark.parametrize(("response", "gold", "correct", "statuses"), [c[1:] for c in HOSTILE],
                         ids=[c[0] for c in HOSTILE])
def test_hostile_input_gets_the_right_verdict_in_bounded_time(response, gold, correct, statuses):
    t = time.monotonic()
    g = grade(response, gold, timeout=2.0)
    elapsed = time.monotonic() - t
    assert elapsed < 5.0, f"took {elapsed:.1f}s"
    assert g.status in statuses, g
    assert g.correct is correct, g
    assert g.status == "ok" or g.correct is False  # only "ok" can be correct


def test_hostile_extraction_and_equivalence_are_fast():
    t = time.monotonic()
    assert extract_answer("{" * 200_000) is None
    assert extract_answer("\\boxed{" * 50_000) is None  # never closed: no answer
    assert answers_equivalent(r"9^{9^{9^9}}", r"9^{9^{9^9}}") is True  # identical strings: no evaluation
    assert answers_equivalent(r"9^{9^{9^9}}", r"10^{10^{10^{10}}}", timeout=2.0) is False
    assert time.monotonic() - t < 5.0
