"""A lightweight calculator tool for models too small to write programs: exact arithmetic on an
expression, parsed with `ast` (never `eval`), bounded so no input can hang or exhaust memory.

    from mathtune.tools import calculate
    calculate("3/4 + 1/4")         # "1"
    calculate("2**10 - sqrt(16)")  # "1020"
    calculate("comb(10, 3) / 7")   # "120/7"

Rational arithmetic (fractions.Fraction) keeps 1/3 + 1/3 + 1/3 == 1; a float appears only from
sqrt of a non-square, pi or e. Allowed: numbers, + - * / // % **, parentheses, and the functions
in FUNCTIONS. Exponents are capped at |MAX_EXPONENT| and results at MAX_DIGITS digits.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from fractions import Fraction

MAX_CHARS = 500
MAX_EXPONENT = 10_000
MAX_DIGITS = 5_000
Number = Fraction | float


class CalculatorError(ValueError):
    """The expression is not something the calculator evaluates (the message says why)."""


def _int(x: Number, what: str) -> int:
    if isinstance(x, Fraction) and x.denominator == 1:
        return int(x)
    raise CalculatorError(f"{what} needs whole numbers, got {_format(x)}")


def _sqrt(x: Number) -> Number:
    if x < 0:
        raise CalculatorError("sqrt of a negative number")
    if isinstance(x, Fraction):
        n, d = math.isqrt(x.numerator), math.isqrt(x.denominator)
        if n * n == x.numerator and d * d == x.denominator:
            return Fraction(n, d)
    return math.sqrt(x)


def _factorial(x: Number) -> Number:
    n = _int(x, "factorial")
    if not 0 <= n <= 1000:
        raise CalculatorError("factorial is limited to 0..1000")
    return Fraction(math.factorial(n))


FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": _sqrt,
    "abs": abs,
    "min": min,
    "max": max,
    "round": lambda x, nd=0: Fraction(round(Fraction(x), _int(nd, "round"))),
    "floor": lambda x: Fraction(math.floor(x)),
    "ceil": lambda x: Fraction(math.ceil(x)),
    "gcd": lambda *xs: Fraction(math.gcd(*(_int(x, "gcd") for x in xs))),
    "lcm": lambda *xs: Fraction(math.lcm(*(_int(x, "lcm") for x in xs))),
    "factorial": _factorial,
    "comb": lambda n, k: Fraction(math.comb(_int(n, "comb"), _int(k, "comb"))),
    "perm": lambda n, k: Fraction(math.perm(_int(n, "perm"), _int(k, "perm"))),
}
CONSTANTS: dict[str, Number] = {"pi": math.pi, "e": math.e}
BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}


def _power(a: Number, b: Number) -> Number:
    if isinstance(b, Fraction) and b.denominator == 1:
        if abs(b) > MAX_EXPONENT:
            raise CalculatorError(f"exponent {b} is larger than {MAX_EXPONENT}")
        if a == 0 and b < 0:
            raise CalculatorError("division by zero")
        return a ** int(b)
    result = float(a) ** float(b)
    if isinstance(result, complex):
        raise CalculatorError("the result is not a real number")
    return result


def _check(x: Number) -> Number:
    if isinstance(x, Fraction):
        if max(x.numerator.bit_length(), x.denominator.bit_length()) > MAX_DIGITS * 3.33:
            raise CalculatorError(f"the result has more than {MAX_DIGITS} digits")
    elif not math.isfinite(x):
        raise CalculatorError("the result is not finite")
    return x


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return Fraction(node.value) if isinstance(node.value, int) else Fraction(str(node.value))
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        v = _eval(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _check(_power(a, b))
        if type(node.op) in BINARY:
            if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
                raise CalculatorError("division by zero")
            return _check(BINARY[type(node.op)](a, b))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS and not node.keywords:
        return _check(FUNCTIONS[node.func.id](*(_eval(a) for a in node.args)))
    raise CalculatorError(f"unsupported expression: {ast.unparse(node)[:60]}")


def _format(x: Number) -> str:
    if isinstance(x, Fraction):
        return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"
    return repr(float(x))


def calculate(expression: str) -> str:
    """The exact value of an arithmetic expression as text ("7", "5/3", "1.4142135623730951")."""
    text = expression.strip().replace("^", "**").replace("\u00d7", "*").replace("\u00f7", "/")
    if not text or len(text) > MAX_CHARS:
        raise CalculatorError(f"the expression must be 1..{MAX_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise CalculatorError(f"not an arithmetic expression: {e.msg}") from None
    try:
        return _format(_eval(tree))
    except (TypeError, ValueError, OverflowError, ZeroDivisionError) as e:
        if isinstance(e, CalculatorError):
            raise
        raise CalculatorError(str(e) or type(e).__name__) from None
