"""Grader properties that no table can be tuned to: random values, fixed seeds, hundreds of cases.

    .venv/bin/python -m pytest tests/test_grading_properties.py -q

  * distinct random numbers, fractions, clock times, intervals and tuples never compare equal;
  * one value written in different notations always does;
  * a verdict does not change when the answer is wrapped in $...$, \\(...\\), \\boxed{} or
    "The answer is ...";
  * equivalence is symmetric where the notion is symmetric.
Everything here settles on the in-process fast path, so the file runs in seconds.
"""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from mathtune.grading import answers_equivalent, grade_many

N = 150  # cases per property and kind


# ----------------------------------------------------------------------------- generators


def _int(rng: random.Random) -> int:
    return rng.choice([rng.randint(-20, 20), rng.randint(0, 999), rng.randint(1000, 10**7)])


def _frac(rng: random.Random) -> Fraction:
    while True:
        f = Fraction(rng.randint(-60, 60), rng.randint(2, 40))
        if f.denominator > 1:
            return f


def _decimal(rng: random.Random) -> str:
    return f"{rng.randint(-99, 999)}.{rng.randint(1, 99):02d}".replace(".0", ".1") if rng.random() < 0.5 else f"{rng.randint(0, 99)}.{rng.randint(1, 9)}"


def _clock(rng: random.Random) -> str:
    return f"{rng.randint(1, 12)}:{rng.randint(0, 59):02d}"


def _interval(rng: random.Random) -> tuple[str, str, int, int]:
    a = rng.randint(-30, 30)
    return rng.choice("(["), rng.choice(")]"), a, a + rng.randint(1, 30)


def _tuple(rng: random.Random) -> tuple[int, ...]:
    return tuple(rng.randint(-15, 15) for _ in range(rng.randint(2, 4)))


def _number_forms(n: int, rng: random.Random) -> list[str]:
    forms = [str(n), f"{n}.0", f"\\frac{{{2 * n}}}{{2}}", f"{n}.00"]
    if abs(n) >= 1000:
        forms.append(f"{n:,}")
        forms.append(f"{n:,}".replace(",", "{,}"))
    if n > 0:
        forms.append(f"+{n}")
    return forms


def _fraction_forms(f: Fraction, rng: random.Random) -> list[str]:
    p, q = f.numerator, f.denominator
    k = rng.randint(2, 9)
    sign = "-" if p < 0 else ""
    forms = [f"\\frac{{{p}}}{{{q}}}", f"{p}/{q}", f"\\dfrac{{{p}}}{{{q}}}", f"\\frac{{{k * p}}}{{{k * q}}}",
             f"{sign}\\frac{{{abs(p)}}}{{{q}}}", f"\\tfrac{{{p}}}{{{q}}}"]
    d = q
    for prime in (2, 5):
        while d % prime == 0:
            d //= prime
    if d == 1:  # terminating: its exact decimal too
        forms.append(str(float(f)) if len(str(float(f))) < 12 else f"\\frac{{{p}}}{{{q}}}")
    return forms


# ----------------------------------------------------------------------------- distinct values


def _distinct_pairs(seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    while len(pairs) < N:
        a, b = _int(rng), _int(rng)
        if a != b:
            pairs.append((rng.choice(_number_forms(a, rng)), rng.choice(_number_forms(b, rng))))
    while len(pairs) < 2 * N:
        f, g = _frac(rng), _frac(rng)
        if f != g:
            pairs.append((rng.choice(_fraction_forms(f, rng)), rng.choice(_fraction_forms(g, rng))))
    while len(pairs) < 3 * N:
        a, b = _decimal(rng), _decimal(rng)
        if Fraction(a) != Fraction(b):
            pairs.append((a, b))
    while len(pairs) < 4 * N:
        a, b = _clock(rng), _clock(rng)
        if a != b:
            pairs.append((a, b))
    while len(pairs) < 5 * N:
        i, j = _interval(rng), _interval(rng)
        if i != j:
            pairs.append((f"{i[0]}{i[2]}, {i[3]}{i[1]}", f"{j[0]}{j[2]}, {j[3]}{j[1]}"))
    while len(pairs) < 6 * N:
        s, t = _tuple(rng), _tuple(rng)
        if s != t:
            pairs.append((str(s).replace(" ", ""), str(t)))
    return pairs


def test_distinct_values_never_compare_equal():
    pairs = _distinct_pairs(15)
    grades = grade_many([(f"\\boxed{{{b}}}", a) for a, b in pairs], workers=1)
    wrong = [(a, b, g) for (a, b), g in zip(pairs, grades, strict=True) if g.correct]
    assert not wrong, wrong[:10]


def test_zero_denominators_are_not_wildcards():
    rng = random.Random(3)
    pairs = []
    while len(pairs) < N:
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        if a != b:
            pairs.append(rng.choice([(f"{a}/0", f"{b}/0"), (f"\\frac{{{a}}}{{0}}", f"\\frac{{{b}}}{{0}}"), (f"{a}:00", f"{b}:00")]))
    grades = grade_many([(f"\\boxed{{{b}}}", a) for a, b in pairs], workers=1)
    assert not [p for p, g in zip(pairs, grades, strict=True) if g.correct]


# ----------------------------------------------------------------------------- equal values


def _equal_pairs(seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    for _ in range(N):
        n = _int(rng)
        pairs.append(tuple(rng.sample(_number_forms(n, rng), 2)))  # type: ignore[arg-type]
    for _ in range(N):
        forms = _fraction_forms(_frac(rng), rng)
        pairs.append(tuple(rng.sample(forms, 2)))  # type: ignore[arg-type]
    for _ in range(N // 2):
        f = _frac(rng)
        digits = f"{float(f):.10f}"  # exact when it terminates, within the tolerance when not
        pairs.append((f"\\frac{{{f.numerator}}}{{{f.denominator}}}", digits))
    for _ in range(N // 2):
        lo_b, hi_b, a, b = _interval(rng)
        op_lo = "<" if lo_b == "(" else "\\le"
        op_hi = "<" if hi_b == ")" else "\\le"
        pairs.append((f"{lo_b}{a}, {b}{hi_b}", f"{a} {op_lo} x {op_hi} {b}"))
    for _ in range(N // 2):
        t = _tuple(rng)
        pairs.append((str(t).replace(" ", ""), "\\left(" + ", ".join(map(str, t)) + "\\right)"))
    for _ in range(N // 2):
        h, m = rng.randint(1, 11), rng.randint(0, 59)
        pairs.append(rng.choice([(f"{h}:{m:02d}", f"{h:02d}:{m:02d}"), (f"{h + 12}:{m:02d}", f"{h}:{m:02d} p.m."),
                                 (f"{h}:{m:02d} a.m.", f"{h}:{m:02d}")]))
    for _ in range(N // 2):
        items = sorted({rng.randint(-20, 20) for _ in range(rng.randint(2, 5))})
        shuffled = items[:]
        rng.shuffle(shuffled)
        pairs.append(("\\{" + ", ".join(map(str, items)) + "\\}", "\\{" + ",".join(map(str, shuffled)) + "\\}"))
    return pairs


def test_equal_values_in_different_notations_always_match():
    pairs = _equal_pairs(16)
    grades = grade_many([(f"\\boxed{{{b}}}", a) for a, b in pairs], workers=1)
    missed = [(a, b, g) for (a, b), g in zip(pairs, grades, strict=True) if not g.correct]
    assert not missed, missed[:10]


# ----------------------------------------------------------------------------- wrappers

WRAPPERS = ["{}", "${}$", "\\({}\\)", "\\boxed{{{}}}", "The answer is {}.", "The answer is ${}$.", "So the final answer is $\\boxed{{{}}}$."]


def test_wrapping_does_not_change_the_verdict():
    pairs = _equal_pairs(18)[::3] + _distinct_pairs(19)[::3]
    rows = [(w.format(b), a) for a, b in pairs for w in WRAPPERS]
    grades = grade_many(rows, workers=1)
    k = len(WRAPPERS)
    changed = []
    for n, (a, b) in enumerate(pairs):
        verdicts = {w: g.correct for w, g in zip(WRAPPERS, grades[n * k : (n + 1) * k], strict=True)}
        if len(set(verdicts.values())) != 1:
            changed.append((a, b, verdicts))
    assert not changed, changed[:5]
    assert sum(g.correct for g in grades) >= k * len(pairs) // 3  # both verdicts occur


# ----------------------------------------------------------------------------- symmetry


@pytest.mark.parametrize("seed", [21, 22])
def test_equivalence_is_symmetric(seed: int):
    pairs = _equal_pairs(seed)[::2] + _distinct_pairs(seed + 100)[::2]
    asym = [(a, b) for a, b in pairs if answers_equivalent(a, b) != answers_equivalent(b, a)]
    assert not asym, asym[:10]
