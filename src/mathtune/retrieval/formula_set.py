"""A "formula needed" problem set: synthetic problems labelled with the card each one needs.

    from mathtune.retrieval.formula_set import formula_needed_set
    for example, card_id in formula_needed_set(800, seed=11):
        ...

The synthetic generator's sub-types (mathtune.data.synth) are told apart by their fixed wording,
so the needed card is known by construction: `RULES` maps (family, pattern on the problem text)
to a shipped card id, the first match winning. Levels 1-2 of `arithmetic` (a single + or -) and
`word_problems` (several steps, no one formula) get no label and are left out. Used by
tests/test_retrieval.py (recall@3) and benchmarks/retrieval.py.
"""

from __future__ import annotations

import re

from ..data import Example, synth

RULES = [
    ("arithmetic", r"\(|\*.*[+-]|[+-].*\*|/", "order-of-operations"),
    ("fractions", r"divided by|\d+/\d+ \*", "fraction-multiplication-division"),
    ("fractions", r"\d+/\d+ [+-] \d+/\d+", "fraction-addition"),
    ("percentages", r"on sale .* off", "percent-discount"),
    ("percentages", r"by what percent", "percent-change"),
    ("percentages", r"% of|what percent of", "percent-of"),
    ("percentages", r"\d\.\d", "decimal-arithmetic"),
    ("linear_equations", r"solve for x", "linear-equation"),
    ("linear_systems", r"system", "linear-system-elimination"),
    ("quadratics", r"sum of the roots", "vieta"),
    ("quadratics", r"positive solution of x\^2 \+", "square-root-equation"),
    ("quadratics", r"larger root", "quadratic-formula"),
    ("sequences", r"sum of the first .* arithmetic", "arithmetic-series"),
    ("sequences", r"sum of the first .* geometric", "geometric-series"),
    ("sequences", r"geometric sequence starts", "geometric-sequence"),
    ("sequences", r"arithmetic sequence starts|next term", "arithmetic-sequence"),
    ("gcd_lcm", r"least common multiple", "lcm-gcd"),
    ("gcd_lcm", r"greatest common divisor|gcd\(", "euclidean-algorithm"),
    ("gcd_lcm", r"divisors", "divisor-count"),
    ("modular", r"\^\d+", "modular-exponentiation"),
    ("modular", r"\) mod", "modular-arithmetic"),
    ("modular", r"remainder|smallest multiple", "division-algorithm"),
    ("combinatorics", r"main dish", "multiplication-principle"),
    ("combinatorics", r"may repeat", "sequences-with-repetition"),
    ("combinatorics", r"arranged in a row", "factorial-arrangements"),
    ("combinatorics", r"president", "permutations"),
    ("combinatorics", r"choose \d+ students|committee", "combinations"),
    ("probability", r"without replacement", "without-replacement"),
    ("probability", r"put back|coin is flipped and", "independent-events"),
    ("probability", r"flipped \d+ times|two fair six-sided dice", "binomial-probability"),
    ("probability", r"die is rolled|spinner|one ball is drawn", "classical-probability"),
    ("statistics", r"missing score|mean of", "mean"),
    ("statistics", r"median", "median"),
    ("statistics", r"mode of|range of", "mode-range"),
    ("derivatives", r"f''", "second-derivative"),
    ("derivatives", r"derivative|f'\(", "power-rule-derivative"),
    ("integrals", r"integral", "definite-integral-power-rule"),
    ("geometry", r"trapezoid", "trapezoid-area"),
    ("geometry", r"right triangle", "pythagorean-theorem"),
    ("geometry", r"triangle has base", "triangle-area"),
    ("geometry", r"circle", "circle"),
    ("geometry", r"rectangle|square", "rectangle"),
]
FORMULA_FAMILIES = [f for f in synth.FAMILIES if f != "word_problems"]


def needed_card(ex: Example) -> str | None:
    """The id of the card `ex` (a synthetic example) needs, or None."""
    for fam, pattern, card in RULES:
        if fam == ex.meta["family"] and re.search(pattern, ex.problem, re.IGNORECASE):
            return card
    return None


def formula_needed_set(n: int, seed: int = 0) -> list[tuple[Example, str]]:
    """(problem, needed card id) for the labelled ones among `n` synthetic problems."""
    problems = synth.generate(n, families=FORMULA_FAMILIES, seed=seed)
    labelled = [(e, needed_card(e)) for e in problems]
    return [(e, c) for e, c in labelled if c is not None]
