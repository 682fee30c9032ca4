"""Synthetic math problems with exact answers: the offline default data source.

Procedural families (arithmetic, word problems, fractions, percentages, linear equations and
systems, quadratics, gcd/lcm, modular arithmetic, combinatorics, probability, sequences,
derivatives, integrals, geometry, statistics), each with difficulty levels 1-5. Answers are
computed by the generator (fractions.Fraction), solutions are short step lists that end with
"The final answer is \\boxed{ANSWER}." so small models can learn the format.

    from mathtune.data import synth
    train = synth.generate(2000, seed=0)                      # same seed -> same problems
    train, test = synth.train_test(2000, 200, levels=[1, 2])  # disjoint by problem text
    synth.FAMILIES                                            # the family registry
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ...errors import MathtuneError, unknown_name_error
from ..schema import Example
from . import algebra, arithmetic, calculus, counting, geometry, number_theory
from .render import final_line

LEVELS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Family:
    name: str
    domain: str
    make: Callable[[random.Random, int], tuple[str, list[str], str]]
    description: str


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("arithmetic", "arithmetic", arithmetic.arithmetic, "+, -, *, / with order of operations"),
        Family("word_problems", "word_problems", arithmetic.word_problem, "multi-step arithmetic stories"),
        Family("fractions", "fractions", arithmetic.fractions, "add, subtract, multiply, divide fractions"),
        Family("percentages", "percentages", arithmetic.percentages, "percent of, discounts, decimals, percent change"),
        Family("linear_equations", "algebra", algebra.linear_equation, "one-variable linear equations"),
        Family("linear_systems", "algebra", algebra.linear_system, "2x2 linear systems, answer (x, y)"),
        Family("quadratics", "algebra", algebra.quadratic, "roots of quadratics, Vieta"),
        Family("sequences", "sequences", algebra.sequence, "arithmetic and geometric sequences and sums"),
        Family("gcd_lcm", "number_theory", number_theory.gcd_lcm, "gcd, lcm, Euclid, divisor counts"),
        Family("modular", "number_theory", number_theory.modular, "remainders, multiples, modular powers"),
        Family("combinatorics", "combinatorics", counting.combinatorics, "products, factorials, C(n,k), P(n,k)"),
        Family("probability", "probability", counting.probability, "dice, coins, urns"),
        Family("statistics", "statistics", counting.statistics, "mean, median, mode, range"),
        Family("derivatives", "calculus", calculus.derivative, "derivatives of polynomials"),
        Family("integrals", "calculus", calculus.integral, "definite integrals of polynomials"),
        Family("geometry", "geometry", geometry.geometry, "areas, perimeters, Pythagoras, circles"),
    ]
}


def problem_key(text: str) -> str:
    """Normalised problem text used to keep train and held-out sets disjoint."""
    return re.sub(r"\s+", " ", text.strip().lower())


def make_example(family: str, level: int, rng: random.Random) -> Example:
    """One problem of `family` at `level` drawn with `rng`."""
    fam = FAMILIES[family]
    problem, steps, answer = fam.make(rng, level)
    solution = "\n".join([*steps, final_line(answer)])
    digest = hashlib.sha1(problem.encode("utf-8")).hexdigest()[:12]
    return Example(
        id=f"synth-{family}-{digest}",
        problem=problem,
        solution=solution,
        answer=answer,
        source="synth",
        domain=fam.domain,
        difficulty=level,
        messages=[{"role": "user", "content": problem}, {"role": "assistant", "content": solution}],
        meta={"family": family},
    )


def _resolve(families: Iterable[str] | None, levels: Iterable[int] | None) -> tuple[list[str], list[int]]:
    names = list(families) if families else list(FAMILIES)
    for name in names:
        if name not in FAMILIES:
            raise unknown_name_error("synthetic family", name, FAMILIES)
    lv = sorted(set(levels)) if levels else list(LEVELS)
    bad = [x for x in lv if x not in LEVELS]
    if bad:
        raise MathtuneError(f"synthetic difficulty levels must be 1-5, got {bad}", "use levels such as [1, 2]")
    return names, lv


def generate(
    n: int,
    families: Sequence[str] | None = None,
    levels: Sequence[int] | None = None,
    seed: int = 0,
    exclude: Iterable[str] = (),
) -> list[Example]:
    """`n` distinct problems, balanced over families x levels, reproducible from `seed`.

    Problems whose normalised text is in `exclude` (or already generated) are skipped, so a
    held-out set can be made disjoint from a training set (see `train_test`).
    """
    names, lv = _resolve(families, levels)
    rng = random.Random(seed)
    combos = [(f, lvl) for f in names for lvl in lv]
    rng.shuffle(combos)
    seen = {problem_key(t) for t in exclude}
    misses = dict.fromkeys(combos, 0)
    out: list[Example] = []
    i = 0
    while len(out) < n:
        live = [c for c in combos if misses[c] < 200]
        if not live:
            raise MathtuneError(
                f"synthetic generator ran out of distinct problems after {len(out)} of {n}",
                "widen families/levels or lower the size",
            )
        fam, level = live[i % len(live)]
        i += 1
        for _ in range(10):  # small families/levels repeat themselves: redraw a few times
            ex = make_example(fam, level, rng)
            key = problem_key(ex.problem)
            if key not in seen:
                break
        if key in seen:
            misses[(fam, level)] += 1
            continue
        misses[(fam, level)] = 0
        seen.add(key)
        out.append(ex)
    return out


def train_test(
    n_train: int,
    n_test: int,
    families: Sequence[str] | None = None,
    levels: Sequence[int] | None = None,
    seed: int = 0,
    test_seed: int | None = None,
) -> tuple[list[Example], list[Example]]:
    """A training set and a held-out set with different seeds and no shared problem text."""
    test = generate(n_test, families, levels, seed=seed + 1_000_003 if test_seed is None else test_seed)
    train = generate(n_train, families, levels, seed=seed, exclude=(e.problem for e in test))
    return train, test


__all__ = ["FAMILIES", "LEVELS", "Family", "generate", "make_example", "problem_key", "train_test"]
