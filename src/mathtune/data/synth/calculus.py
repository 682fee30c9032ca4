"""Synthetic families: derivatives and definite integrals of polynomials (exact, via Fraction)."""

from __future__ import annotations

import random
from fractions import Fraction

from .render import frac_plain, frac_tex, poly

Result = tuple[str, list[str], str]
Poly = dict[int, Fraction]


def _nz(rng: random.Random, lo: int, hi: int) -> int:
    return rng.randint(lo, hi) * rng.choice([-1, 1])


def _diff(p: Poly) -> Poly:
    return {k - 1: c * k for k, c in p.items() if k > 0} or {0: Fraction(0)}


def _antidiff(p: Poly) -> Poly:
    return {k + 1: c / (k + 1) for k, c in p.items()}


def _eval(p: Poly, x: Fraction | int) -> Fraction:
    return sum((c * Fraction(x) ** k for k, c in p.items()), Fraction(0))


def _random_poly(rng: random.Random, degree: int, hi: int) -> Poly:
    p = {k: Fraction(rng.randint(-hi, hi)) for k in range(degree)}
    p[degree] = Fraction(_nz(rng, 1, hi))
    return p


def derivative(rng: random.Random, level: int) -> Result:
    if level == 1:
        a, n = rng.randint(2, 9), rng.randint(2, 4)
        f = {n: Fraction(a)}
        d = _diff(f)
        return (f"Find the derivative of f(x) = {poly(f)}.", [f"f'(x) = {n} * {a}x^{n - 1} = {poly(d)}".replace("x^1 ", "x ")],
                poly(d))
    if level in (2, 3):
        f = _random_poly(rng, level, 9)
        d = _diff(f)
        return (f"Find the derivative of f(x) = {poly(f)}.",
                ["Differentiate term by term: d/dx x^n = n x^(n-1)", f"f'(x) = {poly(d)}"], poly(d))
    f = _random_poly(rng, level - 1, 6)
    c = rng.randint(-3, 3)
    d = _diff(f)
    if level == 4:
        v = _eval(d, c)
        return (f"Let f(x) = {poly(f)}. What is f'({c})?",
                [f"f'(x) = {poly(d)}", f"f'({c}) = {frac_plain(v)}"], frac_tex(v))
    dd = _diff(d)
    v = _eval(dd, c)
    return (f"Let f(x) = {poly(f)}. What is f''({c})?",
            [f"f'(x) = {poly(d)}", f"f''(x) = {poly(dd)}", f"f''({c}) = {frac_plain(v)}"], frac_tex(v))


def integral(rng: random.Random, level: int) -> Result:
    r = rng.randint
    if level == 1:
        a, b = r(1, 12), r(1, 9)
        f: Poly = {0: Fraction(a)}
        lo, hi = 0, b
    elif level == 2:
        f, lo, hi = {1: Fraction(2 * r(1, 6))}, 0, r(1, 6)
    elif level == 3:
        f = {1: Fraction(2 * r(1, 5)), 0: Fraction(r(-9, 9))}
        lo, hi = r(-3, 2), r(3, 6)
    elif level == 4:
        f = {2: Fraction(3 * r(1, 3)), 1: Fraction(2 * r(-4, 4)), 0: Fraction(r(-9, 9))}
        lo, hi = r(-2, 0), r(1, 4)
    else:
        f = _random_poly(rng, rng.choice([2, 3]), 6)
        lo, hi = r(-2, 0), r(1, 3)
    F = _antidiff(f)
    vhi, vlo = _eval(F, hi), _eval(F, lo)
    v = vhi - vlo
    return (f"Evaluate the integral of {poly(f)} from x = {lo} to x = {hi}.",
            [f"Antiderivative: F(x) = {poly(F)}",
             f"F({hi}) - F({lo}) = {frac_plain(vhi)} - ({frac_plain(vlo)}) = {frac_plain(v)}"], frac_tex(v))
