"""The shape of an answer: tuples, intervals, sets, unions, matrices, equations, `\\pm`,
one-variable inequalities, and "exact \\approx rounded".

`parse_shape(cleaned)` splits an answer at its top level (outside any brackets) into a small
tree whose leaves are plain expressions. Equivalence (equivalence.py) compares trees shape by
shape, so `(1,2)` (ordered, open) differs from `[1,2]`, `\\{1,2\\}` equals `\\{2,1\\}`, roots
"2, 3" equal "3, 2", "x = 5" can be compared with "5", and "0 < f(x) \\le 1" is the interval
(0, 1] ("x < -1 or x > 2" a union). Everything is iterative or bounded (depth <= 6, <= 64
items), so hostile input cannot recurse deeply; trees are cached (they are immutable).

Try it:  python -c "from mathtune.grading.structure import parse_shape as p; print(p('(1,2] \\\\cup [3,4)'))"
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

MAX_DEPTH = 6
MAX_ITEMS = 64
MAX_SHAPE_LEN = 5000


@dataclass(frozen=True)
class Leaf:
    text: str


@dataclass(frozen=True)
class Bracketed:
    """Ordered tuple or interval: the bracket characters matter, "(1,2)" != "[1,2]"."""

    left: str
    right: str
    items: tuple[Node, ...]
    text: str


@dataclass(frozen=True)
class Collection:
    """Unordered: "\\{1,2\\}", a list of roots "2, 3", "x=1 or x=2", "1 \\pm \\sqrt2"."""

    items: tuple[Node, ...]
    text: str


@dataclass(frozen=True)
class Union:
    items: tuple[Node, ...]
    text: str


@dataclass(frozen=True)
class Matrix:
    rows: tuple[tuple[Node, ...], ...]
    text: str


@dataclass(frozen=True)
class Equation:
    lhs: str
    rhs: Node
    text: str


@dataclass(frozen=True)
class Approx:
    """"\\frac{\\sqrt3}{3} \\approx 0.577": the exact value, and its rounding."""

    exact: Node
    approx: str
    text: str


Node = Leaf | Bracketed | Collection | Union | Matrix | Equation | Approx

_OPEN, _CLOSE = "([{", ")]}"


def _depths(s: str) -> list[int]:
    """Bracket depth before each character (any of ([{ opens, any of )]} closes)."""
    out = []
    d = 0
    for c in s:
        out.append(d)
        if c in _OPEN:
            d += 1
        elif c in _CLOSE:
            d -= 1
    return out


def split_top(s: str, pattern: str) -> list[str]:
    """Split `s` at matches of `pattern` that lie outside all brackets."""
    depth = _depths(s)
    parts, pos = [], 0
    for m in re.finditer(pattern, s):
        if m.start() < len(depth) and depth[m.start()] == 0 and m.start() >= pos:
            parts.append(s[pos : m.start()])
            pos = m.end()
            if len(parts) > MAX_ITEMS:
                return [s]
    parts.append(s[pos:])
    return [p.strip() for p in parts]


def _wraps(s: str) -> bool:
    """True when the bracket opening `s` is closed by its last character."""
    if len(s) < 2 or s[0] not in _OPEN or s[-1] not in _CLOSE:
        return False
    d = 0
    for i, c in enumerate(s):
        if c in _OPEN:
            d += 1
        elif c in _CLOSE:
            d -= 1
            if d == 0:
                return i == len(s) - 1
    return False


VARIABLE = re.compile(r"(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?[\w,]+\}?)?'*(?:\^\{?-1\}?)?(?:\([A-Za-z0-9]\))?")


def is_variable(s: str) -> bool:
    """A name that can be assigned: x, y_1, \\theta, f(x), f^{-1}(x), a_{n}."""
    return bool(VARIABLE.fullmatch(s.strip()))


_MATRIX = re.compile(r"\\begin\{([pbvBV]?matrix|smallmatrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}", re.DOTALL)


def _negate(term: str) -> str:
    return f"-{term}" if not split_top(term, r"(?<!^)[-+]")[1:] else f"-({term})"


def _plus_minus(s: str) -> list[str] | None:
    parts = split_top(s, r"\\pm(?![A-Za-z])|\\mp(?![A-Za-z])")
    if len(parts) != 2 or not parts[1]:
        return None
    a, b = parts
    if not a:
        return [b, _negate(b)]
    b_wrapped = b if not split_top(b, r"(?<!^)[-+]")[1:] else f"({b})"
    return [f"{a}+{b_wrapped}", f"{a}-{b_wrapped}"]


THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?|-?\d+,\d+")  # or a decimal comma, or a list

_REL = {"<": "<", ">": ">", "<=": "<=", ">=": ">=", "\\le": "<=", "\\leq": "<=", "\\leqslant": "<=",
        "\\ge": ">=", "\\geq": ">=", "\\geqslant": ">=", "\\lt": "<", "\\gt": ">", "=<": "<=", "=>": ">="}
_REL_SPLIT = r"<=|>=|=<|=>|\\l(?:e(?:qslant|q)?|t)(?![A-Za-z])|\\g(?:e(?:qslant|q)?|t)(?![A-Za-z])|<|>"


def _interval(lo: str, lo_op: str, hi_op: str, hi: str, text: str) -> Bracketed:
    return Bracketed("[" if lo_op == "<=" else "(", "]" if hi_op == "<=" else ")", (Leaf(lo), Leaf(hi)), text)


def relation_interval(s: str) -> Bracketed | None:
    """A one-variable condition as an interval: "a < x <= b", "x > 3", "3 \\ge f(x)"."""
    parts = split_top(s, _REL_SPLIT)
    if len(parts) not in (2, 3) or not all(parts):
        return None
    ops = [_REL.get(m.group(0)) for m in re.finditer(_REL_SPLIT, s)]
    ops = [o for o in ops if o]
    if len(ops) != len(parts) - 1:
        return None
    if len(parts) == 3:
        lo, var, hi = parts
        if not is_variable(var) or ops[0][0] != ops[1][0]:
            return None
        if ops[0][0] == ">":
            lo, hi, ops = hi, lo, ["<" + o[1:] for o in reversed(ops)]
        return _interval(lo, ops[0], ops[1], hi, s)
    left, right = parts
    op = ops[0]
    if not is_variable(left) and is_variable(right):  # 3 < x reads as x > 3
        left, right, op = right, left, {"<": ">", ">": "<", "<=": ">=", ">=": "<="}[op]
    if not is_variable(left) or is_variable(right):
        return None
    if op[0] == "<":
        return _interval("-\\infty", "<", op, right, s)
    return _interval(right, op[:1] if op == ">" else "<=", "<", "\\infty", s)


@functools.lru_cache(maxsize=16384)
def parse_shape(s: str, depth: int = 0) -> Node:
    """The shape tree of a cleaned answer (cached: trees are immutable)."""
    s = s.strip()
    if depth > MAX_DEPTH or len(s) > MAX_SHAPE_LEN or not s or THOUSANDS.fullmatch(s):
        return Leaf(s)  # "70,110" reads as a number here; equivalence may re-read it as a list
    sub = depth + 1
    parts = split_top(s, r"\\in(?![A-Za-z])")
    if len(parts) == 2 and is_variable(parts[0]):
        s = parts[1]
    parts = split_top(s, r"\\cup(?![A-Za-z])")
    if len(parts) > 1 and all(parts):
        return Union(tuple(parse_shape(p, sub) for p in parts), s)
    m = _MATRIX.fullmatch(s)
    if m:
        rows = [r for r in split_top(m.group(2), r"\\\\") if r]
        cells = tuple(tuple(parse_shape(c, sub) for c in split_top(r, "&")) for r in rows[:MAX_ITEMS])
        return Matrix(cells, s)
    if s.startswith("\\{") and s.endswith("\\}") and _wraps(s[1:-2] + "}"):
        items = [p for p in split_top(s[2:-2], r",|;") if p]
        return Collection(tuple(parse_shape(p, sub) for p in items), s)
    if _wraps(s) and s[0] in "([" and s[-1] in ")]":
        items = split_top(s[1:-1], ",")
        if len(items) > 1:
            return Bracketed(s[0], s[-1], tuple(parse_shape(p, sub) for p in items), s)
    items = [re.sub(r"^(?:and|or)\s+", "", p) for p in split_top(s, r"\s*[,;]\s*(?:(?:and|or)\s+)?|\s+(?:and|or)\s+")]
    if len(items) > 1 and all(items):
        nodes = tuple(parse_shape(p, sub) for p in items)
        if re.search(r"\sor\s", s) and all(isinstance(n, Bracketed) and relation_interval(p) for n, p in zip(nodes, items, strict=True)):
            return Union(nodes, s)  # "x < -1 or x > 2"
        return Collection(nodes, s)
    pm = _plus_minus(s)
    if pm:
        return Collection(tuple(parse_shape(p, sub) for p in pm), s)
    interval = relation_interval(s)
    if interval is not None:
        return interval
    sides = split_top(s, r"(?<![<>!\\:])=(?!=)")
    if len(sides) >= 2 and all(sides):
        return Equation(sides[0], parse_shape(sides[-1], sub), s)
    approx = split_top(s, r"\\approx(?![A-Za-z])|≈")
    if len(approx) == 2 and all(approx):
        if is_variable(approx[0]):
            return Equation(approx[0], parse_shape(approx[1], sub), s)
        return Approx(parse_shape(approx[0], sub), approx[1], s)
    return Leaf(s)


def node_text(node: Node) -> str:
    return node.text
