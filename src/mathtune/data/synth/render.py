"""Number and expression formatting shared by the synthetic problem families.

Answers are written in one canonical, grader-friendly form: integers as `12`, non-integers as
reduced fractions `\\frac{3}{4}` / `-\\frac{3}{4}` (or short terminating decimals where the
problem is about decimals), polynomials as `6x^2 + 2x - 5`. Steps inside solutions use plain
`3/4` so solutions stay short (fewer tokens for small models to learn).
"""

from __future__ import annotations

from fractions import Fraction


def frac_tex(q: Fraction | int) -> str:
    """Canonical answer form: integer, or reduced `\\frac{a}{b}` with a leading minus."""
    q = Fraction(q)
    if q.denominator == 1:
        return str(q.numerator)
    sign = "-" if q < 0 else ""
    return f"{sign}\\frac{{{abs(q.numerator)}}}{{{q.denominator}}}"


def frac_plain(q: Fraction | int) -> str:
    """Step form: `7`, `3/4`, `-3/4`."""
    q = Fraction(q)
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def is_terminating(q: Fraction) -> bool:
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def decimal_str(q: Fraction | int, max_places: int = 6) -> str:
    """A terminating fraction as a decimal without trailing zeros: 5.75, 12, -0.5."""
    q = Fraction(q)
    if not is_terminating(q):
        raise ValueError(f"{q} has no terminating decimal form")
    if q.denominator == 1:
        return str(q.numerator)
    sign = "-" if q < 0 else ""
    q = abs(q)
    places = 0
    while (q * 10**places).denominator != 1:
        places += 1
    if places > max_places:
        raise ValueError(f"{q} needs more than {max_places} decimal places")
    scaled = (q * 10**places).numerator
    whole, frac = divmod(scaled, 10**places)
    return f"{sign}{whole}.{str(frac).rjust(places, '0').rstrip('0')}"


def signed(n: int | Fraction, first: bool = False) -> str:
    """`+ 3` / `- 3` for terms after the first; `3` / `-3` for the first term."""
    if first:
        return frac_plain(n)
    return f"- {frac_plain(-n)}" if n < 0 else f"+ {frac_plain(n)}"


def poly(coeffs: dict[int, int | Fraction], var: str = "x") -> str:
    """Polynomial from {power: coefficient}, highest power first: `6x^2 + 2x - 5`."""
    terms: list[str] = []
    for power in sorted(coeffs, reverse=True):
        c = Fraction(coeffs[power])
        if c == 0:
            continue
        mag = abs(c)
        if power == 0:
            body = frac_plain(mag)
        else:
            coef = "" if mag == 1 else frac_plain(mag)
            if mag.denominator != 1:
                coef = f"({coef})"
            body = f"{coef}{var}" + (f"^{power}" if power > 1 else "")
        if not terms:
            terms.append(("-" if c < 0 else "") + body)
        else:
            terms.append(("- " if c < 0 else "+ ") + body)
    return " ".join(terms) if terms else "0"


def linear(a: int, b: int, var: str = "x") -> str:
    """`3x + 4`, `x - 2`, `-x`: the expression a*var + b."""
    return poly({1: a, 0: b}, var)


def final_line(answer: str) -> str:
    return f"The final answer is \\boxed{{{answer}}}."
