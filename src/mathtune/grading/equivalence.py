"""Are two answers the same? Shape-by-shape comparison with a pluggable leaf judge.

`compare(gold, pred, judge)` walks the two shape trees (structure.py) and asks `judge` about
leaves. Verdicts are three-valued: True, False, or None ("cannot tell without sympy").

  * `FAST` (in-process, no sympy): canonical-string equality, exact `Fraction` numbers, clock
    times ("12:00" is not "1:00") and ratios, numbers in a base, text and multiple-choice
    letters, then numeric.py's 50-digit evaluation at random points (expressions, radicals,
    equations up to a constant factor). A zero denominator is never equal to anything else.
  * the sympy judge (symbolic.py) runs only in worker processes (pool.py), so a slow or
    hostile simplification is killed by the per-task timeout instead of hanging the caller.

Shapes: a gold "label = value" ("|AB| = 4", "(p,q) = (3,2)", "V_1:V_2 = 11:21", "AB=4, CD=5")
accepts the bare value(s); "A \\approx 0.577" is A (the rounding counts against a decimal gold);
sets and solution lists compare as sets (a tuple listed twice counts once); "2,74" is a
decimal comma or a list, whichever the other side is.

`answers_equivalent(a, b)` is the public entry (used for maj@k voting): fast path first, then
a bounded worker call; verdicts are cached (thread-safe).

Try it:  python -c "from mathtune.grading import answers_equivalent as e; print(e('1/2', '0.5'))"
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from fractions import Fraction
from typing import Protocol

from .normalize import (
    COMMA_PAIR,
    Number,
    choice_letter,
    clean,
    clock_time,
    key,
    numbers_equal,
    parse_number,
    ratio,
    text_key,
    times_equal,
    zero_denominator,
)
from .numeric import equation_verdict, numeric_verdict
from .structure import (
    THOUSANDS,
    Approx,
    Bracketed,
    Collection,
    Equation,
    Leaf,
    Matrix,
    Node,
    Union,
    is_variable,
    parse_shape,
)


class Judge(Protocol):
    def leaf(self, gold: str, pred: str) -> bool | None: ...
    def equation(self, gold: Equation, pred: Equation) -> bool | None: ...
    def mixed(self, gold: Node, pred: Node) -> bool | None: ...


# ----------------------------------------------------------------------------- three-valued logic


def all_of(verdicts: Iterable[Callable[[], bool | None]]) -> bool | None:
    """AND over lazily computed verdicts; stops at the first False."""
    unknown = False
    for v in verdicts:
        r = v()
        if r is False:
            return False
        if r is None:
            unknown = True
    return None if unknown else True


def _distinct(items: tuple[Node, ...]) -> tuple[Node, ...]:
    seen: dict[str, Node] = {}
    for n in items:
        seen.setdefault(key(n.text), n)
    return tuple(seen.values())


def match_unordered(gold: tuple[Node, ...], pred: tuple[Node, ...], judge: Judge) -> bool | None:
    """Set equality: every distinct gold item pairs with a distinct pred item (a tuple listed
    twice is listed once)."""
    gold, pred = _distinct(gold), _distinct(pred)
    if len(gold) != len(pred):
        return False
    free = list(range(len(pred)))
    unknown = False
    for g in gold:
        hit = None
        any_unknown = False
        for j in free:
            r = compare_nodes(g, pred[j], judge)
            if r is True:
                hit = j
                break
            any_unknown |= r is None
        if hit is None:
            if not any_unknown:
                return False
            unknown = True
        else:
            free.remove(hit)
    return None if unknown else True


# ----------------------------------------------------------------------------- the walk


def _ordered(gold: tuple[Node, ...], pred: tuple[Node, ...], judge: Judge) -> bool | None:
    if len(gold) != len(pred):
        return False
    return all_of((lambda g=g, p=p: compare_nodes(g, p, judge)) for g, p in zip(gold, pred, strict=True))


def _equations(gold: Equation, pred: Equation, judge: Judge) -> bool | None:
    same = all_of([lambda: judge.leaf(gold.lhs, pred.lhs), lambda: compare_nodes(gold.rhs, pred.rhs, judge)])
    if same is True:
        return True
    if isinstance(gold.rhs, Leaf) and isinstance(pred.rhs, Leaf):
        swapped = all_of([lambda: judge.leaf(gold.lhs, pred.rhs.text), lambda: judge.leaf(gold.rhs.text, pred.lhs)])
        if swapped is True:
            return True
    return judge.equation(gold, pred)


def _mixed_shapes(gold: Node, pred: Node, judge: Judge) -> bool | None:
    """Different shapes that can still be the same answer."""
    if isinstance(pred, Collection) and len(pred.items) == 1:
        return compare_nodes(gold, pred.items[0], judge)
    if isinstance(gold, Collection) and len(gold.items) == 1:
        return compare_nodes(gold.items[0], pred, judge)
    if isinstance(gold, Leaf) and isinstance(pred, Collection) and not THOUSANDS.fullmatch(gold.text):
        # one answer given in several forms ("15\frac{39}{40} or \frac{639}{40}"): all must match
        return all_of((lambda p=p: compare_nodes(gold, p, judge)) for p in pred.items)
    # an ordered tuple "(2, 3)" answered as "2, 3" or "x = 2, y = 3"
    if isinstance(gold, Bracketed) and gold.left == "(" and gold.right == ")" and isinstance(pred, Collection):
        items = tuple(p.rhs if isinstance(p, Equation) and is_variable(p.lhs) else p for p in pred.items)
        return _ordered(gold.items, items, judge)
    # "70,110" is a number with a thousands separator, or the list 70, 110
    for one, other in ((gold, pred), (pred, gold)):
        if isinstance(one, Leaf) and THOUSANDS.fullmatch(one.text) and isinstance(other, Collection):
            as_list = _as_list(one.text)
            return compare_nodes(as_list, other, judge) if one is gold else compare_nodes(other, as_list, judge)
    # a set answered as a bare list (or the other way round): both unordered
    if isinstance(gold, (Collection, Union)) and isinstance(pred, (Collection, Union)):
        return False
    # a column/row vector written as a matrix or as a tuple
    for m, t in ((gold, pred), (pred, gold)):
        if isinstance(m, Matrix) and isinstance(t, Bracketed) and t.left == "(" and t.right == ")":
            flat = tuple(c for row in m.rows for c in row)
            if len(m.rows) == 1 or all(len(r) == 1 for r in m.rows):
                return _ordered(flat, t.items, judge) if m is gold else _ordered(t.items, flat, judge)
    if isinstance(gold, Leaf) or isinstance(pred, Leaf):
        return judge.mixed(gold, pred)  # e.g. "x > 3" vs "(3, \infty)"
    return False


_LABEL_NOISE = re.compile(r"_\{[^{}]*\}|_\w|\^\{?\\circ\}?|\\(?:angle|overline|widehat|hat|vec|overrightarrow|frac|mathrm|text|measuredangle|triangle|left|right|cdot)(?![A-Za-z])|[{}()|,:+\-\s'/\[\]]")


def is_label(lhs: str) -> bool:
    """A name for the value on the right: "AB", "|AB|", "(p,q)", "V_1:V_2", "\\frac{NO}{BO}",
    "\\angle ABC", "m+n". No digits outside subscripts, so "x^2+y^2" or "2x" is not one."""
    rest = _LABEL_NOISE.sub("", lhs)
    return bool(rest) and bool(re.fullmatch(r"(?:[A-Za-z]|\\[A-Za-z]+)+", rest))


def _labelled_list(gold: Node, pred: Node) -> bool:
    """Gold "AB=4, CD=5" against the bare values "4, 5"."""
    return (
        isinstance(gold, Collection)
        and (isinstance(pred, Collection) or (isinstance(pred, Bracketed) and pred.left == "(" and pred.right == ")"))
        and all(isinstance(g, Equation) and (is_label(g.lhs) or is_variable(g.lhs)) for g in gold.items)
        and not any(isinstance(p, Equation) for p in pred.items)
    )


def _rounds_to(exact: str, rounded: str) -> bool:
    """Two decimals that agree to the places of the shorter one (0.58 and 0.577)."""
    a, b = parse_number(exact), parse_number(rounded)
    if a is None or b is None or a.decimals is None or b.decimals is None:
        return False
    places = min(a.decimals, b.decimals)
    if places < 1:
        return False

    def at(n: Number) -> int:
        return int((n.value * 10**places + (1 if n.value >= 0 else -1) * Fraction(1, 2)) // 1)

    return at(a) == at(b)


def _approx(gold: Node, pred: Node, judge: Judge) -> bool | None:
    """"A \\approx 0.577": A is the answer; the rounding counts only against a decimal."""
    if isinstance(gold, Approx):
        got = compare_nodes(gold.exact, pred, judge)
        if got is not True and isinstance(pred, Leaf) and _rounds_to(pred.text, gold.approx):
            return True
        return got
    assert isinstance(pred, Approx)
    got = compare_nodes(gold, pred.exact, judge)
    if got is not True and isinstance(gold, Leaf) and _rounds_to(gold.text, pred.approx):
        return True
    return got


def compare_nodes(gold: Node, pred: Node, judge: Judge) -> bool | None:
    """Three-valued equivalence of two shape trees."""
    if isinstance(gold, Approx) or isinstance(pred, Approx):
        return _approx(gold, pred, judge)
    if isinstance(gold, Equation) and isinstance(pred, Equation):
        return _equations(gold, pred, judge)
    if isinstance(pred, Equation):  # "x = 5" answers "5"
        return compare_nodes(gold, pred.rhs, judge)
    if isinstance(gold, Equation):  # gold "x = 5" or "|AB| = 5" accepts "5"; "2x + y = 5" does not
        return compare_nodes(gold.rhs, pred, judge) if is_variable(gold.lhs) or is_label(gold.lhs) else False
    if _labelled_list(gold, pred):
        return _ordered(tuple(g.rhs for g in gold.items), pred.items, judge)  # type: ignore[union-attr]
    if type(gold) is not type(pred):
        return _mixed_shapes(gold, pred, judge)
    if isinstance(gold, Leaf):
        got = judge.leaf(gold.text, pred.text)
        if got is not True and THOUSANDS.fullmatch(gold.text) and THOUSANDS.fullmatch(pred.text):
            lists = match_unordered(_as_list(gold.text).items, _as_list(pred.text).items, judge)
            return True if lists is True else got
        return got
    if isinstance(gold, Bracketed):
        if (gold.left, gold.right) != (pred.left, pred.right):
            return False
        return _ordered(gold.items, pred.items, judge)
    if isinstance(gold, (Collection, Union)):
        return match_unordered(gold.items, pred.items, judge)
    if isinstance(gold, Matrix):
        if len(gold.rows) != len(pred.rows) or any(len(a) != len(b) for a, b in zip(gold.rows, pred.rows, strict=True)):
            return False
        return _ordered(tuple(c for r in gold.rows for c in r), tuple(c for r in pred.rows for c in r), judge)
    return False


def _as_list(text: str) -> Collection:
    return Collection(tuple(Leaf(p) for p in text.split(",")), text)


# ----------------------------------------------------------------------------- the fast judge


def fast_leaf(gold: str, pred: str) -> bool | None:
    """Pure-Python leaf verdict: strings, exact numbers, text, choice letters; None = ask sympy."""
    if key(gold) == key(pred):
        return True
    pair = _pairs(gold, pred)
    if pair is None:
        pair = _base_literals(gold, pred)
    if pair is not None:
        return pair
    if zero_denominator(gold) or zero_denominator(pred):
        return False  # 1/0 is not a number: only the same text matches it
    cg, cp = choice_letter(gold), choice_letter(pred)
    if cg or cp:
        if cg and cp:
            return cg == cp
        if cg and len(gold.strip()) <= 3:  # gold is a bare letter: only a letter can match
            return False
    ng, np_ = parse_number(gold), parse_number(pred)
    if ng is not None and np_ is not None:
        return numbers_equal(ng, np_)
    tg, tp = text_key(gold), text_key(pred)
    if tg is not None and tp is not None and (tg == tp or not (_letters(gold) and _letters(pred))):
        return tg == tp  # but "ab" against "ba" is a product of variables, not two words
    if (ng is not None and tp is not None) or (tg is not None and np_ is not None):
        return False  # "Monday" vs 5
    return numeric_verdict(gold, pred)


_BASE = re.compile(r"(-?[0-9A-Za-z]+)_\{?\(?(\d{1,2})\)?\}?")


def _base_literals(gold: str, pred: str) -> bool | None:
    """Numbers written in a base ("1202_3"): the same base and digits, or base 10 against a plain
    number. A different base is a different answer ("25_6" is not "25_7")."""
    mg, mp = _BASE.fullmatch(gold.strip()), _BASE.fullmatch(pred.strip())
    if not (mg or mp):
        return None
    if mg and mp:
        return mg.group(2) == mp.group(2) and mg.group(1).lower().lstrip("0") == mp.group(1).lower().lstrip("0")
    m, other = (mg, pred) if mg else (mp, gold)
    if m is None or int(m.group(2)) != 10 or not m.group(1).isdigit():
        return False if parse_number(other) is not None else None
    return other.strip().lstrip("0") == m.group(1).lstrip("0")


def _letters(s: str) -> bool:
    """Two or fewer bare letters ("ab", "xy"): variables as much as a word."""
    return bool(re.fullmatch(r"[A-Za-z]{1,2}", s.strip()))


def _pairs(gold: str, pred: str) -> bool | None:
    """Clock times ("12:00" vs "1:00") and ratios ("3:8" vs "6:16" or 0.375)."""
    tg, tp = clock_time(gold), clock_time(pred)
    if tg or tp:
        return times_equal(tg, tp) if tg and tp else False
    rg, rp = ratio(gold), ratio(pred)
    if rg is None and rp is None:
        return None
    if rg and rp:
        return rg == rp or (rg[1] != 0 and rp[1] != 0 and rg[0] * rp[1] == rg[1] * rp[0])
    r, other = (rg, pred) if rg else (rp, gold)
    n = parse_number(other)
    if n is None or r is None or r[1] == 0:
        return None if n is None else False
    return numbers_equal(n, Number(r[0] / r[1]))


class FastJudge:
    """Leaves by `fast_leaf`; anything needing algebra is left undecided (None)."""

    def leaf(self, gold: str, pred: str) -> bool | None:
        return fast_leaf(gold, pred)

    def equation(self, gold: Equation, pred: Equation) -> bool | None:
        if isinstance(gold.rhs, Leaf) and isinstance(pred.rhs, Leaf):
            return equation_verdict(gold.lhs, gold.rhs.text, pred.lhs, pred.rhs.text)
        return None

    def mixed(self, gold: Node, pred: Node) -> bool | None:
        leaf = gold if isinstance(gold, Leaf) else pred
        if any(op in leaf.text for op in ("<", ">", "\\le", "\\ge", "\\ne")):
            return None  # an inequality may be the same set as an interval
        return False


FAST = FastJudge()


def fast_verdict(gold: str, pred: str) -> bool | None:
    """Verdict for two *cleaned* answers without sympy, or None when algebra is needed."""
    if key(gold) == key(pred):
        return True
    ng, np_ = parse_number(gold), parse_number(pred)
    if ng is not None and np_ is not None and not (COMMA_PAIR.fullmatch(gold) or COMMA_PAIR.fullmatch(pred)):
        return numbers_equal(ng, np_)  # the GSM8K path: no shapes, no sympy
    return compare_nodes(parse_shape(gold), parse_shape(pred), FAST)


# ----------------------------------------------------------------------------- public


_CACHE: OrderedDict[tuple[str, str], bool] = OrderedDict()
_CACHE_SIZE = 8192
_CACHE_LOCK = threading.Lock()


def answers_equivalent(a: str, b: str, *, timeout: float = 2.0) -> bool:
    """Whether two extracted answers are the same (`a` is read as the reference).

    Fast path in-process; otherwise sympy in a worker process bounded by `timeout` seconds
    (a timeout or unparseable input counts as "not equivalent"). Safe off the main thread.
    """
    ca, cb = clean(a), clean(b)
    if not ca or not cb:
        return ca == cb and bool(ca)
    fast = fast_verdict(ca, cb)
    if fast is not None:
        return fast
    with _CACHE_LOCK:
        hit = _CACHE.get((ca, cb))
    if hit is not None:
        return hit
    from .pool import judge_with_sympy

    result = judge_with_sympy([(ca, cb)], timeout=timeout, workers=1)[0]
    verdict = result["status"] == "ok" and bool(result["correct"])
    if result["status"] != "timeout":
        with _CACHE_LOCK:
            _CACHE[(ca, cb)] = verdict
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    return verdict
