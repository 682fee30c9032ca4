"""Symbolic comparison with sympy (parsing LaTeX with latex2sympy2_extended), plus the guards
that keep it safe.

This module runs inside the grading worker processes (worker.py / pool.py); importing it in
the caller is fine but `SympyJudge` is only ever *called* there, under a per-task timeout.
`hostile_reason()` is cheap and pure Python and is also used in-process, so that power towers
like `9^{9^{9^9}}`, giant factorials and megabyte answers are refused before sympy sees them.

Equality policy: exact when both sides are exact. Constants are compared to 40 of 60 digits
(nested radicals never reach simplify), expressions at random points (60 digits), simplify only
when neither settles it; decimals against irrational or non-terminating values use the tolerance
rule of normalize.approx_equal. 1/0 is never equal to anything; `\\sqrt[3]{-8}` is -2 (real odd
roots); parses are cached per worker.

Try it:  python -c "from mathtune.grading.symbolic import SympyJudge as J; print(J().leaf(r'\\frac{\\sqrt2}{2}', r'1/\\sqrt{2}'))"
"""

from __future__ import annotations

import functools
import math
import random
import re
from fractions import Fraction
from typing import Any

from .extract import match_brace
from .normalize import Number, approx_equal, numbers_equal, parse_number, readings
from .numeric import equation_verdict
from .structure import Equation, Leaf, Node

MAX_SYMPY_LEN = 1500
MAX_BRACE_DEPTH = 40
MAX_EXPONENT = 100_000  # results up to ~10^5 digits are cheap; beyond that we refuse


class Unparseable(Exception):
    """The answer cannot be read as mathematics (or is too dangerous to try)."""


# ----------------------------------------------------------------------------- guards


def _exponent_text(s: str, caret: int) -> str:
    """The exponent after the `^` at `caret`; an unbraced chain "9^9^9" reads right-assoc."""
    parts: list[str] = []
    i = caret
    for _ in range(64):
        i += 1
        while i < len(s) and s[i] == " ":
            i += 1
        if i < len(s) and s[i] == "{":
            close = match_brace(s, i)
            parts.append(s[i + 1 : close] if close > 0 else s[i + 1 :])
            i = close + 1 if close > 0 else len(s)
        else:
            m = re.match(r"\d+|\\?[A-Za-z]+|.", s[i:])
            parts.append(m.group(0) if m else "")
            i += len(parts[-1])
        while i < len(s) and s[i] == " ":
            i += 1
        if i >= len(s) or s[i] != "^":
            break
    return "^".join("{" + p + "}" if "^" in p else p for p in parts)


def _log10_bound(expr: str, depth: int = 0) -> float:
    """log10 of the value of a purely numeric power expression ("9^{9^9}"); 0 when symbolic."""
    e = expr.replace(" ", "").strip("{}()")
    if re.fullmatch(r"\d+", e):
        return math.log10(int(e[:300])) + max(0, len(e) - 300) if int(e[:300]) > 0 else 0.0
    if depth > 6:
        return math.inf
    if re.fullmatch(r"[\d{}()^*]+", e) and "^" in e:
        base, _, rest = e.partition("^")
        if not re.fullmatch(r"\d+", base) or int(base[:10]) <= 1:
            return 0.0
        exp_log = _log10_bound(rest, depth + 1)
        if exp_log > 15:
            return math.inf
        return (10**exp_log) * math.log10(int(base[:300]))
    return 0.0


def hostile_reason(s: str) -> str | None:
    """Why `s` must not be given to sympy (size, nesting, exponent or factorial blow-up)."""
    if len(s) > MAX_SYMPY_LEN:
        return f"answer too long for symbolic comparison ({len(s)} characters)"
    depth = peak = 0
    for c in s:
        depth += c in "{(["
        depth -= c in "})]"
        peak = max(peak, depth)
    if peak > MAX_BRACE_DEPTH:
        return "brackets nested too deeply"
    if depth != 0:
        return "unbalanced brackets"
    t = s.replace("**", "^")
    for m in re.finditer(r"\^", t):
        expo = _exponent_text(t, m.start())
        bound = _log10_bound(expo)
        if bound > math.log10(MAX_EXPONENT):
            return f"exponent too large: ^{{{expo[:40]}}}"
    for m in re.finditer(r"(\d+)\s*!", t):
        if len(m.group(1)) > 5 or int(m.group(1)) > 10_000:
            return f"factorial too large: {m.group(1)[:20]}!"
    if re.search(r"\d{800,}", t):
        return "number literal too long"
    return None


# ----------------------------------------------------------------------------- parsing


def _real_odd_roots(expr: Any) -> Any:
    """\\sqrt[3]{2-\\sqrt5} is the real cube root (negative), not sympy's principal complex one."""
    import sympy

    def odd_root_of_negative(e: Any) -> bool:
        return bool(e.is_Pow and e.exp.is_Rational and e.exp.p == 1 and e.exp.q % 2 == 1 and e.base.is_negative)

    if not isinstance(expr, sympy.Basic):
        return expr
    return expr.replace(odd_root_of_negative, lambda e: -sympy.Pow(-e.base, e.exp))


_PYTHONIC = re.compile(r"\*\*|\b(?:sqrt|exp|log|ln|pi|sin|cos|tan|oo)\b")


_SAFE_NAMES = {"sqrt", "exp", "log", "ln", "pi", "sin", "cos", "tan", "oo", "E", "I"}


def _parse_plain(s: str) -> Any | None:
    """Plain (sympy / calculator) syntax, or None. parse_expr runs Python's eval, so only
    arithmetic characters and a few function names get that far."""
    if len(s) > 300 or not re.fullmatch(r"[0-9A-Za-z+\-*/^().,\s]*", s):
        return None
    if any(len(w) > 1 and w not in _SAFE_NAMES for w in re.findall(r"[A-Za-z_]+", s)):
        return None
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    tr = (*standard_transformations, implicit_multiplication_application, convert_xor)
    try:
        return parse_expr(s.replace("ln(", "log("), transformations=tr, evaluate=False)
    except Exception:
        return None


def to_sympy(s: str) -> Any:
    """Parse a cleaned LaTeX (or plain) answer into sympy (cached); raises Unparseable."""
    return _parse_cached(s)


@functools.lru_cache(maxsize=4096)
def _parse_cached(s: str) -> Any:  # a sympy object; sympy is imported lazily
    import sympy
    from latex2sympy2_extended import NormalizationConfig, latex2sympy

    reason = hostile_reason(s)
    if reason:
        raise Unparseable(reason)
    expr = None
    if "\\" not in s and _PYTHONIC.search(s):  # "sqrt(2)/2", "2**3", "49*pi": sympy syntax
        expr = _parse_plain(s)
    if expr is None:
        config = NormalizationConfig(basic_latex=True, units=False, malformed_operators=True, nits=False, boxed="none")
        try:
            expr = latex2sympy(s, normalization_config=config)
        except Exception as e:  # the parser raises many kinds of errors; all mean "not LaTeX"
            expr = _parse_plain(s) if "\\" not in s else None
            if expr is None:
                raise Unparseable(f"cannot parse {s[:60]!r}") from e
    i = sympy.Symbol("i")
    if isinstance(expr, sympy.Basic) and i in getattr(expr, "free_symbols", ()):
        expr = expr.subs(i, sympy.I)  # a lone i in an answer is the imaginary unit
    return _real_odd_roots(expr)


# ----------------------------------------------------------------------------- comparison


def _random_points_agree(a: Any, b: Any) -> bool | None:
    """a - b vanishes at 4 random points (60 digits): a polynomial-identity test that settles
    identities simplify is slow on. None when too few points could be evaluated."""
    import sympy

    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    rng = random.Random(1234)
    checked = 0
    for _ in range(8):
        point = {s: sympy.Rational(rng.randint(101, 997), rng.randint(101, 397)) for s in symbols}
        try:
            va, vb = sympy.N(a.subs(point), 60), sympy.N(b.subs(point), 60)
            if not (va.is_number and vb.is_number) or va.has(sympy.zoo, sympy.nan) or vb.has(sympy.zoo, sympy.nan):
                continue
            if not (va.is_finite and vb.is_finite):
                continue
            if abs(va - vb) > sympy.Float(10, 60) ** -40 * (1 + abs(vb)):
                return False
        except (TypeError, ValueError, ZeroDivisionError, AttributeError):
            continue
        checked += 1
        if checked >= 4:
            return True
    return None


def _literal_vs_exact(lit: Number, other: Any, lit_is_gold: bool) -> bool:
    """A decimal literal against a sympy number: exact rationals compare exactly."""
    import sympy

    if other.is_Rational:
        exact = Number(Fraction(int(other.p), int(other.q)))
        return numbers_equal(lit, exact) if lit_is_gold else numbers_equal(exact, lit)
    if other.is_real is False or not other.is_number:
        return False
    value = sympy.N(other, 40)
    if not value.is_real:
        return False
    return any(approx_equal(r, Fraction(str(value)), 3 if lit_is_gold else 6) for r in readings(lit))


def _undefined(x: Any) -> bool:
    """1/0, 0/0 and friends: not numbers, so never equal to anything (even each other)."""
    import sympy

    return isinstance(x, sympy.Basic) and bool(x.has(sympy.zoo, sympy.nan))


def exprs_equal(a: Any, b: Any) -> bool:
    """Equality of two parsed sympy objects (numbers, expressions, sets, matrices, relations)."""
    import sympy
    from sympy.core.relational import Relational

    if _undefined(a) or _undefined(b):
        return False
    if a == b:
        return True
    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        if not (isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase)) or a.shape != b.shape:
            return False
        return all(exprs_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Relational) or isinstance(b, Relational):
        return _relations_equal(a, b)
    if isinstance(a, sympy.Set) or isinstance(b, sympy.Set):
        a, b = _as_set(a), _as_set(b)  # "-2 \\le x \\le 7" is the set [-2, 7]
        return isinstance(a, sympy.Set) and isinstance(b, sympy.Set) and _sets_equal(a, b)
    if not (isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr)):
        return False
    if a.has(sympy.Float) or b.has(sympy.Float):
        return _float_equal(a, b)
    if a.is_Rational and b.is_Rational:
        return False  # exact and already compared
    if not a.free_symbols and not b.free_symbols:
        close = _numeric_verdict(a, b)  # nested radicals: 60 digits instead of simplify
        if close is not None:
            return close
    else:
        agree = _random_points_agree(a, b)
        if agree is not None:
            return agree
    try:
        return bool(sympy.simplify(a - b) == 0)
    except Exception:
        return False


def _numeric_verdict(a: Any, b: Any) -> bool | None:
    """Two constants: equal when they agree to 40 of 60 digits; None when not evaluable."""
    import sympy

    try:
        va, vb = sympy.N(a, 60), sympy.N(b, 60)
    except Exception:
        return None
    if not (va.is_number and vb.is_number) or va.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        return None
    if vb.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        return None
    try:
        return bool(abs(va - vb) <= sympy.Float(10, 60) ** -40 * (1 + abs(vb)))
    except TypeError:
        return None


def _float_equal(a: Any, b: Any) -> bool:
    """Decimals are involved: exact when both are rational, tolerance only against inexact."""
    import sympy

    ra, rb = sympy.nsimplify(a, rational=True), sympy.nsimplify(b, rational=True)
    if ra.is_Rational and rb.is_Rational:
        return ra == rb
    if ra.is_number and rb.is_number:
        va, vb = sympy.N(a, 30), sympy.N(b, 30)
        return bool(abs(va - vb) <= 1e-6 * abs(vb)) if vb != 0 else bool(abs(va) < 1e-12)
    return bool(_random_points_agree(ra, rb))


def _as_set(x: Any) -> Any:
    """A one-variable condition (x > 3, -2 <= x <= 7, x < 0 or x > 1) as a set; else x."""
    import sympy

    if isinstance(x, sympy.logic.boolalg.Boolean) and not isinstance(x, sympy.Set) and len(x.free_symbols) == 1:
        try:
            return x.as_set()
        except Exception:
            return x
    return x


def _relations_equal(a: Any, b: Any) -> bool:
    import sympy
    from sympy.core.relational import Relational

    if isinstance(a, Relational) and isinstance(b, Relational):
        if a.canonical == b.canonical:
            return True
        fa, fb = a.free_symbols, b.free_symbols
        if len(fa) == 1 and fa == fb:
            return _sets_equal(a.as_set(), b.as_set())
        return False
    rel, other = (a, b) if isinstance(a, Relational) else (b, a)
    if isinstance(other, sympy.Set) and len(rel.free_symbols) == 1:
        return _sets_equal(rel.as_set(), other)
    return False


def _sets_equal(a: Any, b: Any) -> bool:
    import sympy

    if a == b:
        return True
    if isinstance(a, sympy.FiniteSet) and isinstance(b, sympy.FiniteSet):
        if len(a) != len(b):
            return False
        rest = list(b.args)
        for x in a.args:
            hit = next((y for y in rest if exprs_equal(x, y)), None)
            if hit is None:
                return False
            rest.remove(hit)
        return True
    if isinstance(a, sympy.Interval) and isinstance(b, sympy.Interval):
        return (a.left_open, a.right_open) == (b.left_open, b.right_open) and exprs_equal(a.start, b.start) and exprs_equal(a.end, b.end)
    try:
        return bool(sympy.simplify(sympy.Complement(a, b)) == sympy.S.EmptySet and sympy.simplify(sympy.Complement(b, a)) == sympy.S.EmptySet)
    except Exception:
        return False


def _readings(s: str) -> list[Any]:
    """Parsed values of a leaf; a trailing % gives two readings (as written, and / 100)."""
    import sympy

    if s.endswith("%"):
        base = to_sympy(s[:-1].strip())
        return [base, base / sympy.Integer(100)] if isinstance(base, sympy.Expr) else [base]
    return [to_sympy(s)]


class SympyJudge:
    """Leaf, equation and mixed-shape verdicts with sympy. Never returns None; records what
    failed to parse in `self.unparseable`, and whether any of it was the gold's."""

    def __init__(self) -> None:
        self.unparseable: list[str] = []
        self.gold_unreadable = False

    def _parse(self, s: str, side: str, readings: bool = True) -> Any:
        try:
            return _readings(s) if readings else to_sympy(s)
        except Unparseable as e:
            self.unparseable.append(str(e))
            self.gold_unreadable |= side == "gold"
            raise

    def leaf(self, gold: str, pred: str) -> bool:
        from .equivalence import fast_leaf

        quick = fast_leaf(gold, pred)
        if quick is not None:
            return quick
        try:
            gs = self._parse(gold, "gold")
            ps = self._parse(pred, "pred")
        except Unparseable:
            return False
        lit_g, lit_p = parse_number(gold), parse_number(pred)
        for g in gs:
            for p in ps:
                if lit_p is not None and lit_p.decimals is not None and getattr(g, "is_number", False) and _literal_vs_exact(lit_p, g, False):
                    return True
                if lit_g is not None and lit_g.decimals is not None and getattr(p, "is_number", False) and _literal_vs_exact(lit_g, p, True):
                    return True
                if exprs_equal(g, p):
                    return True
        return False

    def equation(self, gold: Equation, pred: Equation) -> bool:
        """Same equation: lhs - rhs agree up to a non-zero constant factor ("2x+2y=4" ~ "x+y=2")."""
        import sympy

        if not (isinstance(gold.rhs, Leaf) and isinstance(pred.rhs, Leaf)):
            return False
        quick = equation_verdict(gold.lhs, gold.rhs.text, pred.lhs, pred.rhs.text)
        if quick is not None:
            return quick
        try:
            dg = self._parse(gold.lhs, "gold", False) - self._parse(gold.rhs.text, "gold", False)
            dp = self._parse(pred.lhs, "pred", False) - self._parse(pred.rhs.text, "pred", False)
        except Unparseable:
            return False
        except TypeError as e:
            self.unparseable.append(str(e))
            return False
        if exprs_equal(dg, dp):
            return True
        if dp == 0 or dg == 0 or _undefined(dg) or _undefined(dp):
            return False
        ratio = sympy.simplify(dg / dp)
        return bool(ratio.is_number and ratio != 0 and ratio.is_finite)

    def mixed(self, gold: Node, pred: Node) -> bool:
        """A leaf against another shape, e.g. "x > 3" vs "(3, \\infty)": compare as sets."""
        try:
            g = self._parse(gold.text, "gold", False)
            p = self._parse(pred.text, "pred", False)
        except Unparseable:
            return False
        return exprs_equal(g, p)
