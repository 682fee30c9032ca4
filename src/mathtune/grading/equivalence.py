"""Are two answers the same? Shape-by-shape comparison with a pluggable leaf judge.

`compare(gold, pred, judge)` walks the two shape trees (structure.py) and asks `judge` about
leaves. Verdicts are three-valued: True, False, or None ("cannot tell without sympy").

  * `FAST` (in-process, pure Python): canonical-string equality, exact `Fraction` numbers,
    text and multiple-choice letters. GSM8K-style answers are settled here in microseconds.
  * the sympy judge (symbolic.py) runs only in worker processes (pool.py), so a slow or
    hostile simplification is killed by the per-task timeout instead of hanging the caller.

`answers_equivalent(a, b)` is the public entry (used for maj@k voting): fast path first, then
a bounded worker call; verdicts are cached.

Try it:  python -c "from mathtune.grading import answers_equivalent as e; print(e('1/2', '0.5'))"
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Protocol

from .normalize import choice_letter, clean, key, numbers_equal, parse_number, text_key
from .structure import (
    THOUSANDS,
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


def match_unordered(gold: tuple[Node, ...], pred: tuple[Node, ...], judge: Judge) -> bool | None:
    """Multiset equality: every gold item pairs with a distinct pred item."""
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
            as_list = Collection(tuple(Leaf(p) for p in one.text.split(",")), one.text)
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


def compare_nodes(gold: Node, pred: Node, judge: Judge) -> bool | None:
    """Three-valued equivalence of two shape trees."""
    if isinstance(gold, Equation) and isinstance(pred, Equation):
        return _equations(gold, pred, judge)
    if isinstance(pred, Equation):  # "x = 5" answers "5"
        return compare_nodes(gold, pred.rhs, judge)
    if isinstance(gold, Equation):  # gold "x = 5" accepts "5"; gold "x + y = 5" does not
        return compare_nodes(gold.rhs, pred, judge) if is_variable(gold.lhs) else False
    if type(gold) is not type(pred):
        return _mixed_shapes(gold, pred, judge)
    if isinstance(gold, Leaf):
        return judge.leaf(gold.text, pred.text)
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


# ----------------------------------------------------------------------------- the fast judge


def fast_leaf(gold: str, pred: str) -> bool | None:
    """Pure-Python leaf verdict: strings, exact numbers, text, choice letters; None = ask sympy."""
    if key(gold) == key(pred):
        return True
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
    if tg is not None and tp is not None:
        return tg == tp
    if (ng is not None and tp is not None) or (tg is not None and np_ is not None):
        return False  # "Monday" vs 5
    return None


class FastJudge:
    """Leaves by `fast_leaf`; anything needing algebra is left undecided (None)."""

    def leaf(self, gold: str, pred: str) -> bool | None:
        return fast_leaf(gold, pred)

    def equation(self, gold: Equation, pred: Equation) -> bool | None:
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
    if ng is not None and np_ is not None:  # the GSM8K path: no shapes, no sympy
        return numbers_equal(ng, np_)
    return compare_nodes(parse_shape(gold), parse_shape(pred), FAST)


# ----------------------------------------------------------------------------- public


_CACHE: OrderedDict[tuple[str, str], bool] = OrderedDict()
_CACHE_SIZE = 8192


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
    hit = _CACHE.get((ca, cb))
    if hit is not None:
        return hit
    from .pool import judge_with_sympy

    result = judge_with_sympy([(ca, cb)], timeout=timeout, workers=1)[0]
    verdict = result["status"] == "ok" and bool(result["correct"])
    if result["status"] != "timeout":
        _CACHE[(ca, cb)] = verdict
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return verdict
