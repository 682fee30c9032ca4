"""Synthetic generator: registry, levels, reproducibility, disjoint held-out sets, gradable answers."""

from __future__ import annotations

import random
import re
from fractions import Fraction

import pytest

from mathtune.data import synth
from mathtune.errors import MathtuneError
from mathtune.grading import grade


def test_registry_has_twelve_families_with_five_levels():
    assert len(synth.FAMILIES) >= 12
    rng = random.Random(0)
    for name in synth.FAMILIES:
        for level in synth.LEVELS:
            ex = synth.make_example(name, level, rng)
            assert ex.difficulty == level and ex.meta["family"] == name
            assert ex.problem and ex.answer
            assert ex.solution.endswith(f"The final answer is \\boxed{{{ex.answer}}}.")


def test_same_seed_same_problems_and_different_seed_differs():
    a = synth.generate(300, seed=7)
    b = synth.generate(300, seed=7)
    c = synth.generate(300, seed=8)
    assert [e.problem for e in a] == [e.problem for e in b]
    assert [e.solution for e in a] == [e.solution for e in b]
    assert len({e.problem for e in a} & {e.problem for e in c}) < 30


def test_generate_is_distinct_and_balanced():
    exs = synth.generate(1600, seed=1)
    assert len({synth.problem_key(e.problem) for e in exs}) == 1600
    assert len({e.id for e in exs}) == 1600
    per_family = {f: sum(e.meta["family"] == f for e in exs) for f in synth.FAMILIES}
    assert min(per_family.values()) >= 1600 // len(synth.FAMILIES) - 10
    assert {e.difficulty for e in exs} == {1, 2, 3, 4, 5}


def test_train_test_split_is_disjoint():
    train, test = synth.train_test(800, 200, families=["arithmetic", "word_problems"], levels=[1, 2], seed=0)
    assert len(train) == 800 and len(test) == 200
    assert not {synth.problem_key(e.problem) for e in train} & {synth.problem_key(e.problem) for e in test}


def test_family_and_level_selection_and_errors():
    exs = synth.generate(40, families=["fractions"], levels=[1], seed=0)
    assert {e.meta["family"] for e in exs} == {"fractions"} and {e.difficulty for e in exs} == {1}
    with pytest.raises(MathtuneError, match="did you mean 'fractions'"):
        synth.generate(5, families=["fraction"])
    with pytest.raises(MathtuneError, match="1-5"):
        synth.generate(5, levels=[6])


def test_easy_levels_are_short():
    """Levels 1-2 are one- or two-step problems: at most 3 solution lines, few words."""
    for ex in synth.generate(600, levels=[1, 2], seed=2):
        lines = ex.solution.splitlines()
        assert len(lines) <= 4, ex.solution
        assert len(ex.solution.split()) <= 40, ex.solution


def test_answers_are_exact():
    """Spot-check the generator's arithmetic independently of its own solution text."""
    rng = random.Random(3)
    for _ in range(200):
        ex = synth.make_example("arithmetic", rng.randint(1, 5), rng)
        expr = re.match(r"What is (.*)\?", ex.problem).group(1)
        assert Fraction(eval(expr)) == Fraction(int(ex.answer)), ex.problem  # noqa: S307 - our own digits/ops
        ex = synth.make_example("linear_equations", 2, rng)
        a, b, c = map(int, re.findall(r"-?\d+", ex.problem))
        assert a * int(ex.answer) + b == c


def test_every_answer_grades_correct_against_its_solution():
    exs = synth.generate(len(synth.FAMILIES) * 5 * 8, seed=11)
    failures = [(e.meta["family"], e.difficulty, e.answer) for e in exs
                if not grade(e.solution, e.answer).correct]
    assert failures == []
    # and the check can fail: a wrong gold answer is rejected
    wrong = [e for e in exs if e.answer.lstrip("-").isdigit()][:20]
    assert not any(grade(e.solution, str(int(e.answer) + 1)).correct for e in wrong)
