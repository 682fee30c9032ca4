"""Answer extraction: which answer a response gives, and that finding it stays linear.

    .venv/bin/python -m pytest tests/test_grading_extraction.py -q
"""

from __future__ import annotations

import time

import pytest

from mathtune.grading import extract_answer, gold_answer
from mathtune.grading.spans import math_spans, unescape


@pytest.mark.parametrize(
    "text, expected",
    [
        # anchored answers compete by position: the later one wins
        ("We get \\boxed{4} first. The final answer is $9$.", "9"),
        ("The final answer is $9$. To confirm: \\boxed{9}", "9"),
        ("\\boxed{7}. I hope the answer is correct.", "7"),  # words after a marker never win
        ("Final Answer: The number of apples is 31.", "31"),
        ("The answer is 12 because 3 * 4 = 12 and 2 more.", "12"),
        ("Answer $ 5 $", "5"),
        ("The answer: \\\\frac{2}{3}", "\\frac{2}{3}"),  # doubled backslashes
        # several boxes that are one answer
        ("$\\boxed{1}$, $\\boxed{2}$ and $\\boxed{3}$", "1, 2, 3"),
        ("\\boxed{a} \\qquad \\text{or} \\qquad \\boxed{b}", "a, b"),
        ("Try \\boxed{2}. That fails the check, so the value is \\boxed{3}.", "3"),
        # prose: the last object, whole
        ("so the solution set is $2 < x \\le 8$.", "2 < x \\le 8"),
        ("The vertex is at (3, -4).", "(3, -4)"),
        ("That gives 3 + 4 = 7.", "7"),
        ("It costs $5 each, making $20 in total.", "$20"),
        ("The train leaves at 4:45 p.m. sharp.", "4:45 p.m"),
        ("for every real $x$ we have $f(x) = 2x + 1$ for all real $x$.", "f(x) = 2x + 1"),
        ("nothing numeric here at all", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_parts_of_the_gold_gather_boxes_further_apart():
    text = "Part (a): the mean is \\boxed{12}. Part (b): the median is \\boxed{10}."
    assert extract_answer(text) == "10"
    assert extract_answer(text, parts=2) == "12, 10"
    assert extract_answer("the roots are x = 4 or x = -1", parts=2) == "4, -1"


def test_gold_answer_reads_every_box_of_a_short_gold():
    assert gold_answer("$\\boxed{2}$ and $\\boxed{-5}$") == "2, -5"
    assert gold_answer("\\\\boxed{\\\\frac{1}{2}}") == "\\frac{1}{2}"
    long = "Step. " * 80 + "So $a = \\boxed{4}$. " + "More steps. " * 30 + "Finally $\\boxed{9}$."
    assert gold_answer(long) == "9"  # a long solution: its last answer only


def test_money_is_not_math_and_escapes_are_halved_only_when_doubled():
    spans = [s.text for s in math_spans("costs $6 each, making $ then $7$ and $ 14 $")]
    assert spans == ["7", "14"]
    assert unescape("\\\\frac{1}{2}") == "\\frac{1}{2}"
    assert unescape("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}") == "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"


@pytest.mark.parametrize(
    "text",
    ["$" * 60_000, "$a" * 30_000, "\\(" * 30_000, "\\[" * 30_000, "$$" * 30_000, "$ \\( \\[ $$ " * 10_000,
     "So x " * 20_000, "$a\n" * 30_000, "x < " * 30_000, "(1, " * 30_000, "the answer is " * 10_000,
     "\\boxed{1 " * 20_000, "1," * 100_000],
    ids=lambda t: repr(t[:8]),
)
def test_extraction_stays_linear_on_pathological_text(text):
    t = time.monotonic()
    extract_answer(text)
    assert time.monotonic() - t < 2.0
