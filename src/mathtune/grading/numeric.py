"""A small exact-enough evaluator for common LaTeX expressions, in-process and without sympy.

`numeric_verdict(gold, pred)` reads both answers as functions of their variables (numbers,
+ - * / ^, implicit products, \\frac, \\sqrt, \\sqrt[n], \\pi, e, i, |x|, n!, \\binom, the usual
functions) and evaluates them at four random points with 50-digit arithmetic (mpmath):

  * they differ by more than 1e-5 (relative) at a point       -> False
  * they agree to 30 digits at every point, no decimal literal  -> True
  * anything else, or an expression it cannot read             -> None (ask sympy)

Semantics follow latex2sympy2_extended (the parser sympy sees): `e` is Euler's number, `i` the
imaginary unit, `\\log` base 10, `\\ln` natural, `\\sin 2x` is sin(2x), `\\sqrt[3]{-8}` is -2.
Points are positive (as in symbolic.py), so identities that need a sign (`\\sqrt{x^2}` = x)
read as on the positive reals. It settles most expression answers in well under a millisecond
and never hits sympy's slow paths (nested radicals, big powers): that is where the grader's
speed comes from once the answer is not a plain number.

Try it:  python -c "from mathtune.grading.numeric import numeric_verdict as v; print(v(r'\\sqrt{5+2\\sqrt6}', r'\\sqrt2+\\sqrt3'))"
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable
from typing import Any

MAX_LEN = 400
MAX_DEPTH = 60
MAX_LOG_MAGNITUDE = 10**6  # natural log of the largest power evaluated (about 10^434294)
DIGITS = 50

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<cmd>\\[A-Za-z]+)|(?P<var>[A-Za-z](?:_(?:\{[A-Za-z0-9]+\}|[A-Za-z0-9]))?)"
    r"|(?P<op>[-+*/^!(){}\[\]|,_]))"
)
_FUNCS = {
    "sin", "cos", "tan", "sec", "csc", "cot", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
    "ln", "log", "exp",
}
_GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota", "kappa",
    "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega",
}
_SKIP = {"left", "right", "cdot", "times", "div", "frac", "dfrac", "tfrac", "sqrt", "pi", "binom"}

Expr = Callable[[dict[str, Any]], Any]
_WORDS = re.compile(r"(?<![\\A-Za-z])(?:[A-Za-z]{3,}|ln|pi)")  # "sin x" without a backslash: not s*i*n*x


class _Refuse(Exception):
    """Not in the subset this evaluator reads."""


def _tokens(s: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    s = s.strip()
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m or m.end() == pos:
            raise _Refuse(s[pos : pos + 10])
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], mp: Any) -> None:
        self.t, self.i, self.mp, self.depth = tokens, 0, mp, 0
        self.variables: set[str] = set()
        self.places: int | None = None  # fewest decimal places among decimal literals

    def peek(self) -> tuple[str, str]:
        return self.t[self.i] if self.i < len(self.t) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if value is not None and tok[1] != value:
            raise _Refuse(f"expected {value}")
        self.i += 1
        return tok

    def expr(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refuse("too deep")
        left = self.term()
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            right = self.term()
            left = (lambda a, b: lambda v: a(v) + b(v))(left, right) if op == "+" else (lambda a, b: lambda v: a(v) - b(v))(left, right)
        self.depth -= 1
        return left

    def _starts_factor(self, stop_at_func: bool) -> bool:
        kind, val = self.peek()
        if kind in ("num", "var"):
            return True
        if kind == "cmd":
            name = val[1:]
            if name in ("cdot", "times", "div", "right"):
                return False
            return not (stop_at_func and name in _FUNCS)
        return val in ("(", "{")

    def term(self, stop_at_func: bool = False) -> Expr:
        left = self.unary(stop_at_func)
        divided = False
        while True:
            kind, val = self.peek()
            if val in ("*", "/") or val in ("\\cdot", "\\times", "\\div"):
                self.take()
                right = self.unary(stop_at_func)
                div = val in ("/", "\\div")
                divided |= div
                left = (lambda a, b: lambda v: a(v) / b(v))(left, right) if div else (lambda a, b: lambda v: a(v) * b(v))(left, right)
            elif self._starts_factor(stop_at_func):
                if divided:
                    raise _Refuse("1/2x is ambiguous")
                right = self.power(stop_at_func)
                left = (lambda a, b: lambda v: a(v) * b(v))(left, right)
            else:
                return left

    def unary(self, stop_at_func: bool = False) -> Expr:
        if self.peek()[1] == "-":
            self.take()
            inner = self.unary(stop_at_func)
            return lambda v: -inner(v)
        if self.peek()[1] == "+":
            self.take()
        return self.power(stop_at_func)

    def power(self, stop_at_func: bool = False) -> Expr:
        base = self.postfix()
        if self.peek()[1] == "^":
            self.take()
            expo = self.exponent()
            return lambda v: self._pow_lazy(base, expo, v)
        return base

    def _pow_lazy(self, base: Expr, expo: Expr, v: dict[str, Any]) -> Any:
        a = base(v)
        return self.mp.mpf(1) if a == 1 else self._pow(a, expo(v))  # 1^(2^(10^9)) without the tower

    def _pow(self, a: Any, b: Any) -> Any:
        """a^b, refusing results beyond 10^(10^6) (power towers): 1^anything is still 1."""
        if a == 1 or (a == 0 and b.real > 0):
            return self.mp.mpf(a.real) if hasattr(a, "real") else a
        if abs(b) * abs(self.mp.log(abs(a))) > MAX_LOG_MAGNITUDE if a != 0 else False:
            raise OverflowError("power too large")
        return a**b

    def exponent(self) -> Expr:
        kind, val = self.peek()
        if val == "{":
            self.take()
            e = self.expr()
            self.take("}")
            return e
        if val == "-":
            self.take()
            inner = self.exponent()
            return lambda v: -inner(v)
        if kind == "num" and "." not in val:  # x^23 is x**23, as latex2sympy reads it
            self.take()
            c = self.mp.mpf(val)
            return lambda v: c
        return self.postfix()

    def postfix(self) -> Expr:
        a = self.atom()
        while self.peek()[1] == "!":
            self.take()
            a = (lambda f: lambda v: self._factorial(f(v)))(a)
        return a

    def _factorial(self, x: Any) -> Any:
        if x.imag != 0 or x.real != int(x.real) or not 0 <= x.real <= 1000:
            raise ValueError("factorial of a non-integer")
        return self.mp.factorial(int(x.real))

    def _binomial(self, n: Any, k: Any) -> Any:
        if max(abs(n), abs(k)) > 10**6:
            raise OverflowError("binomial too large")
        return self.mp.binomial(n.real, k.real)

    def group(self) -> Expr:
        kind, val = self.peek()
        if val == "{":
            self.take()
            e = self.expr()
            self.take("}")
            return e
        if kind in ("num", "var"):  # \frac12, \sqrt2: one character
            self.take()
            if kind == "num" and len(val) > 1 and "." not in val:
                self.t.insert(self.i, ("num", val[1:]))
                val = val[0]
            return self._leaf(kind, val)
        raise _Refuse("group")

    def _leaf(self, kind: str, val: str) -> Expr:
        mp = self.mp
        if kind == "num":
            if "." in val:
                k = len(val.split(".", 1)[1])
                self.places = k if self.places is None else min(self.places, k)
            c = mp.mpf(val)
            return lambda v: c
        if val == "e":
            return lambda v: mp.e
        if val == "i":
            return lambda v: mp.mpc(0, 1)
        name = val.replace("{", "").replace("}", "")
        self.variables.add(name)
        return lambda v: v[name]

    def atom(self) -> Expr:
        kind, val = self.take()
        mp = self.mp
        if kind in ("num", "var"):
            return self._leaf(kind, val)
        if val in ("(", "{"):
            e = self.expr()
            self.take(")" if val == "(" else "}")
            return e
        if val == "|":
            e = self.expr()
            self.take("|")
            return lambda v: mp.mpf(abs(e(v)))
        if kind != "cmd":
            raise _Refuse(val)
        return self.command(val[1:])

    def command(self, name: str) -> Expr:
        mp = self.mp
        if name == "left":
            return self.atom()
        if name in ("frac", "dfrac", "tfrac"):
            a, b = self.group(), self.group()
            return lambda v: a(v) / b(v)
        if name == "binom":
            a, b = self.group(), self.group()
            return lambda v: self._binomial(a(v), b(v))
        if name == "sqrt":
            if self.peek()[1] == "[":
                self.take()
                n = self.expr()
                self.take("]")
                x = self.group()
                return lambda v: self._root(x(v), n(v))
            x = self.group()
            return lambda v: mp.sqrt(x(v))
        if name == "pi":
            return lambda v: mp.pi
        if name in _GREEK:
            self.variables.add(name)
            return lambda v: v[name]
        if name in _FUNCS:
            return self.function(name)
        raise _Refuse(name)

    def _root(self, x: Any, n: Any) -> Any:
        if n.imag == 0 and n.real == int(n.real) and int(n.real) % 2 == 1 and x.imag == 0 and x.real < 0:
            return -self.mp.root(-x.real, int(n.real))  # the real odd root
        return self._pow(x, 1 / n)

    def function(self, name: str) -> Expr:
        mp = self.mp
        power: Expr | None = None
        inverse = False
        if self.peek()[1] == "^":  # \sin^2 x, \sin^{-1} x
            self.take()
            if self.t[self.i : self.i + 4] == [("op", "{"), ("op", "-"), ("num", "1"), ("op", "}")]:
                self.i += 4
                inverse = True
            else:
                power = self.exponent()
        if name == "log" and self.peek()[1] == "_":
            self.take()
            base = self.group()
        else:
            base = None
        if self.peek()[1] in ("(", "{") or self.peek()[1] == "\\left":
            arg = self.atom()
        else:
            arg = self.term(stop_at_func=True)
        fn = _function(mp, name, inverse)

        def call(v: dict[str, Any]) -> Any:
            x = arg(v)
            y = mp.log(x) / mp.log(base(v)) if base is not None else fn(x)
            return y ** power(v) if power is not None else y

        return call


def _function(mp: Any, name: str, inverse: bool) -> Callable[[Any], Any]:
    if inverse:
        name = {"sin": "arcsin", "cos": "arccos", "tan": "arctan"}.get(name, "")
        if not name:
            raise _Refuse("inverse")
    table: dict[str, Callable[[Any], Any]] = {
        "sin": mp.sin, "cos": mp.cos, "tan": mp.tan, "sec": mp.sec, "csc": mp.csc, "cot": mp.cot,
        "arcsin": mp.asin, "arccos": mp.acos, "arctan": mp.atan, "sinh": mp.sinh, "cosh": mp.cosh,
        "tanh": mp.tanh, "ln": mp.log, "exp": mp.exp, "log": lambda x: mp.log(x, 10),
    }
    return table[name]


_LOCAL = threading.local()


def _context() -> Any:
    """This thread's own 50-digit mpmath context (mpmath's global one is shared by threads)."""
    ctx = getattr(_LOCAL, "ctx", None)
    if ctx is None:
        import mpmath

        ctx = mpmath.MPContext()
        ctx.dps = DIGITS
        _LOCAL.ctx = ctx
    return ctx


def compile_expression(s: str) -> tuple[Expr, set[str], int | None] | None:
    """(evaluate(point), variable names, fewest decimal places of its decimal literals or None),
    or None when not readable."""
    if len(s) > MAX_LEN or not s.strip() or _WORDS.search(s):
        return None
    try:
        p = _Parser(_tokens(s), _context())
        e = p.expr()
        if p.i != len(p.t):
            return None
    except (_Refuse, IndexError, RecursionError):
        return None
    return e, p.variables, p.places


def _close(a: Any, b: Any, rel: Any) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def numeric_verdict(gold: str, pred: str) -> bool | None:
    """True / False when random-point evaluation settles it; None to ask sympy."""
    from .symbolic import hostile_reason

    if hostile_reason(gold) or hostile_reason(pred):
        return None  # "1^{(2^{235423523})}" restates a problem; it is no computed answer
    cg, cp = compile_expression(gold), compile_expression(pred)
    if cg is None or cp is None:
        return None
    mp = _context()
    names = sorted(cg[1] | cp[1])
    places = [k for k in (cg[2], cp[2]) if k is not None]
    slack = mp.mpf(10) ** -min(places) if places else mp.mpf(0)  # a rounded decimal
    rng = random.Random(1234)
    agreed = 0
    for _ in range(8):
        point = {n: mp.mpf(rng.randint(101, 997)) / rng.randint(101, 397) for n in names}
        try:
            a, b = mp.mpc(cg[0](point)), mp.mpc(cp[0](point))
        except (ZeroDivisionError, ValueError, OverflowError, TypeError):
            continue
        if not (mp.isfinite(a) and mp.isfinite(b)):
            continue
        if not _close(a, b, mp.mpf("1e-5")) and abs(a - b) > max(slack, mp.mpf("1e-20")):
            return False
        if not _close(a, b, mp.mpf("1e-30")):
            return None  # close but not equal: a rounding question for sympy
        agreed += 1
        if agreed >= 4:
            return None if places else True
    return None


def equation_verdict(gold_lhs: str, gold_rhs: str, pred_lhs: str, pred_rhs: str) -> bool | None:
    """Two equations are the same when lhs - rhs of one is a non-zero constant multiple of the
    other's ("2x + 2y = 4" and "x + y = 2"): the ratio is the same at every random point."""
    from .symbolic import hostile_reason

    sides = (gold_lhs, gold_rhs, pred_lhs, pred_rhs)
    if any(hostile_reason(s) for s in sides):
        return None
    compiled = [compile_expression(s) for s in sides]
    if any(c is None for c in compiled):
        return None
    gl, gr, pl, pr = (c[0] for c in compiled)  # type: ignore[index]
    names = sorted(set().union(*(c[1] for c in compiled)))  # type: ignore[index]
    if not names:
        return None  # "3 + 4 = 7": no unknowns, not an equation to solve
    decimals = any(c[2] is not None for c in compiled)  # type: ignore[index]
    rng = random.Random(4321)
    ratios: list[Any] = []
    mp = _context()
    for _ in range(8):
        point = {n: mp.mpf(rng.randint(101, 997)) / rng.randint(101, 397) for n in names}
        try:
            dg = mp.mpc(gl(point)) - mp.mpc(gr(point))
            dp = mp.mpc(pl(point)) - mp.mpc(pr(point))
        except (ZeroDivisionError, ValueError, OverflowError, TypeError):
            continue
        if not (mp.isfinite(dg) and mp.isfinite(dp)):
            continue
        tiny = mp.mpf("1e-30") * (1 + abs(dg) + abs(dp))
        if abs(dp) <= tiny or abs(dg) <= tiny:
            if abs(dp) <= tiny and abs(dg) <= tiny:
                continue  # both vanish here: no information
            return None if decimals else False
        ratios.append(dg / dp)
        if len(ratios) >= 4:
            break
    if len(ratios) < 3:
        return None
    spread = max(abs(r - ratios[0]) for r in ratios) / abs(ratios[0])
    if spread > mp.mpf("1e-5"):
        return False
    return None if decimals or spread > mp.mpf("1e-30") else True
