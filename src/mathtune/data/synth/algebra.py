"""Synthetic families: linear equations, 2x2 linear systems, quadratics, sequences.

Problems are built backwards from a chosen solution, so every answer is exact (Fraction) and
every level-1/2 problem needs one or two steps.
"""

from __future__ import annotations

import random
from fractions import Fraction

from .render import frac_plain, frac_tex, linear, poly, signed

Result = tuple[str, list[str], str]


def _nz(rng: random.Random, lo: int, hi: int) -> int:
    """A random nonzero integer in [-hi, -lo] U [lo, hi]."""
    return rng.randint(lo, hi) * rng.choice([-1, 1])


def linear_equation(rng: random.Random, level: int) -> Result:
    r = rng.randint
    if level == 1:
        x, a = r(1, 30), r(1, 30)
        return (f"Solve for x: x + {a} = {x + a}.", [f"x = {x + a} - {a} = {x}"], str(x))
    if level == 2:
        a, x, b = r(2, 9), r(1, 15), r(1, 20)
        c = a * x + b
        return (f"Solve for x: {a}x + {b} = {c}.",
                [f"{a}x = {c} - {b} = {c - b}", f"x = {c - b}/{a} = {x}"], str(x))
    if level == 3:
        x = r(-10, 15)
        a, c = r(2, 9), r(1, 9)
        while c == a:
            c = r(1, 9)
        b = r(-20, 20)
        d = a * x + b - c * x
        lhs, rhs = linear(a, b), linear(c, d)
        return (f"Solve for x: {lhs} = {rhs}.",
                [f"{a}x - {c}x = {d} {signed(-b)}", f"{linear(a - c, 0)} = {d - b}", f"x = {x}"], str(x))
    if level == 4:
        a, b, c = r(2, 7), _nz(rng, 1, 9), r(1, 9)
        while c == a:
            c = r(1, 9)
        x = Fraction(r(-24, 24), abs(a - c))  # (a - c)x is an integer, so every step is too
        d = int((a - c) * x + a * b)
        return (f"Solve for x: {a}(x {signed(b)}) = {linear(c, d)}.",
                [f"{a}x {signed(a * b)} = {linear(c, d)}", f"{linear(a - c, 0)} = {d - a * b}",
                 f"x = {frac_plain(x)}"], frac_tex(x))
    a, b = r(2, 9), r(2, 9)
    while b == a:
        b = r(2, 9)
    c = r(1, 20)
    x = Fraction(c * a * b, a + b)  # x/a + x/b = c
    return (f"Solve for x: x/{a} + x/{b} = {c}.",
            [f"Multiply by {a * b}: {b}x + {a}x = {c * a * b}", f"{a + b}x = {c * a * b}",
             f"x = {frac_plain(x)}"], frac_tex(x))


def linear_system(rng: random.Random, level: int) -> Result:
    r = rng.randint
    if level == 1:
        x, y = r(1, 20), r(1, 20)
        s, d = x + y, x - y
        return (f"Solve the system x + y = {s} and x - y = {d}. Give the answer as (x, y).",
                [f"Adding: 2x = {s + d}, so x = {x}", f"y = {s} - {x} = {y}"], f"({x}, {y})")
    if level == 2:
        x, y, a = r(1, 12), r(-10, 12), r(2, 6)
        s, t = x + y, a * x + y
        return (f"Solve the system x + y = {s} and {a}x + y = {t}. Give the answer as (x, y).",
                [f"Subtracting: {a - 1}x = {t - s}, so x = {x}", f"y = {s} - {x} = {y}"], f"({x}, {y})")
    lim = 6 if level == 3 else 12
    while True:
        a, b, c, d = _nz(rng, 1, lim), _nz(rng, 1, lim), _nz(rng, 1, lim), _nz(rng, 1, lim)
        det = a * d - b * c
        if det != 0:
            break
    if level == 5:  # any integer right-hand sides: the solution may be fractional
        e, f = r(-30, 30), r(-30, 30)
        x, y = Fraction(e * d - b * f, det), Fraction(a * f - e * c, det)
    else:
        x, y = Fraction(r(-9, 9)), Fraction(r(-9, 9))
        e, f = int(a * x + b * y), int(c * x + d * y)
    steps = [f"Determinant: {_p(a)}*{_p(d)} - {_p(b)}*{_p(c)} = {det}",
             f"x = ({_p(e)}*{_p(d)} - {_p(b)}*{_p(f)})/{det} = {frac_plain(x)}",
             f"y = ({_p(a)}*{_p(f)} - {_p(e)}*{_p(c)})/{det} = {frac_plain(y)}"]
    return (f"Solve the system {_lin2(a, b)} = {e} and {_lin2(c, d)} = {f}. Give the answer as (x, y).",
            steps, f"({frac_tex(x)}, {frac_tex(y)})")


def _p(n: int) -> str:
    """Parenthesise negatives inside products: 3*(-4)."""
    return f"({n})" if n < 0 else str(n)


def _lin2(a: int, b: int) -> str:
    """`3x - 2y`, `-x + y`."""
    first = ("-" if a < 0 else "") + ("" if abs(a) == 1 else str(abs(a))) + "x"
    second = ("- " if b < 0 else "+ ") + ("" if abs(b) == 1 else str(abs(b))) + "y"
    return f"{first} {second}"


def _factor(r1: Fraction) -> str:
    """`(x - 3)` for root 3, `(2x + 1)` for root -1/2, `x` for root 0."""
    num, den = r1.numerator, r1.denominator
    if num == 0:
        return "x"
    coef = "" if den == 1 else str(den)
    return f"({coef}x {signed(-num)})"


def quadratic(rng: random.Random, level: int) -> Result:
    r = rng.randint
    if level == 1:
        k, c = r(1, 20), r(0, 30)
        if c == 0:
            return (f"Find the positive solution of x^2 = {k * k}.", [f"x = sqrt({k * k}) = {k}"], str(k))
        return (f"Find the positive solution of x^2 + {c} = {k * k + c}.",
                [f"x^2 = {k * k + c} - {c} = {k * k}", f"x = {k}"], str(k))
    if level in (2, 3):
        hi = 9 if level == 2 else 15
        r1, r2 = r(-hi, hi), r(-hi, hi)
        while r1 == r2:
            r2 = r(-hi, hi)
        b, c = -(r1 + r2), r1 * r2
        eq = poly({2: 1, 1: b, 0: c})
        lo_, hi_ = sorted((r1, r2))
        return (f"Find the larger root of {eq} = 0.",
                [f"{eq} = {_factor(Fraction(r1))}{_factor(Fraction(r2))}", f"The roots are {lo_} and {hi_}"],
                str(hi_))
    if level == 4:
        a = r(2, 5)
        r1, r2 = r(-9, 9), r(-9, 9)
        while r1 == r2:
            r2 = r(-9, 9)
        b = -a * (r1 + r2)
        eq = poly({2: a, 1: b, 0: a * r1 * r2})
        return (f"What is the sum of the roots of {eq} = 0?",
                [f"Sum of roots = -b/a = {-b}/{a} = {r1 + r2}"], str(r1 + r2))
    p, q = r(1, 5), r(2, 5)
    root1 = Fraction(r(-9, 9), q)
    root2 = Fraction(r(-9, 9), p)
    while root1 == root2:
        root2 = Fraction(r(-9, 9), p)
    a = root1.denominator * root2.denominator
    b = -a * (root1 + root2)
    c = a * root1 * root2
    eq = poly({2: a, 1: b, 0: c})
    hi_ = max(root1, root2)
    return (f"Find the larger root of {eq} = 0.",
            [f"{eq} = {_factor(root1)}{_factor(root2)}",
             f"The roots are {frac_plain(min(root1, root2))} and {frac_plain(hi_)}"], frac_tex(hi_))


def sequence(rng: random.Random, level: int) -> Result:
    r = rng.randint
    if level == 1:
        a, d = r(1, 30), r(2, 9)
        terms = [a + i * d for i in range(4)]
        return (f"What is the next term of the sequence {', '.join(map(str, terms))}?",
                [f"The difference is {d}", f"{terms[-1]} + {d} = {terms[-1] + d}"], str(terms[-1] + d))
    if level == 2:
        a, d, n = r(1, 20), r(2, 9), r(8, 30)
        t = a + (n - 1) * d
        return (f"An arithmetic sequence starts {a}, {a + d}, {a + 2 * d}, ... What is term number {n}?",
                [f"a_{n} = {a} + ({n} - 1) * {d} = {t}"], str(t))
    if level == 3:
        a, d, n = r(1, 20), r(1, 9), r(5, 20)
        last = a + (n - 1) * d
        s = n * (a + last) // 2
        return (f"What is the sum of the first {n} terms of the arithmetic sequence {a}, {a + d}, {a + 2 * d}, ...?",
                [f"Last term = {a} + {n - 1} * {d} = {last}", f"Sum = {n} * ({a} + {last}) / 2 = {s}"], str(s))
    if level == 4:
        a, q, n = r(1, 5), r(2, 4), r(4, 7)
        t = a * q ** (n - 1)
        return (f"A geometric sequence starts {a}, {a * q}, {a * q * q}, ... What is term number {n}?",
                [f"a_{n} = {a} * {q}^{n - 1} = {t}"], str(t))
    a, q, n = r(1, 5), r(2, 3), r(4, 8)
    s = a * (q**n - 1) // (q - 1)
    return (f"What is the sum of the first {n} terms of the geometric sequence {a}, {a * q}, {a * q * q}, ...?",
            [f"Sum = {a} * ({q}^{n} - 1)/({q} - 1) = {s}"], str(s))
