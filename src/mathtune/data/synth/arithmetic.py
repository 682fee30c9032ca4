"""Synthetic families: arithmetic, multi-step word problems, fractions, decimals and percentages.

Each family is `fn(rng, level) -> (problem, steps, answer)`; the generator adds the final
"The final answer is \\boxed{...}." line. Levels 1-2 are one- or two-step problems with small
numbers; level 5 chains four or more operations.
"""

from __future__ import annotations

import random
from fractions import Fraction
from math import lcm

from .render import decimal_str, frac_plain, frac_tex

NAMES = ["Ava", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jamal",
         "Kira", "Liam", "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tara",
         "Uma", "Victor", "Wen", "Yusuf", "Zoe"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "books", "cookies", "stamps", "cards",
         "shells", "balloons", "candles", "buttons", "oranges", "toy cars", "beads"]

Result = tuple[str, list[str], str]


def _name(rng: random.Random, k: int = 1) -> list[str]:
    return rng.sample(NAMES, k)


def arithmetic(rng: random.Random, level: int) -> Result:
    r = rng.randint
    if level == 1:
        a, b = r(2, 50), r(2, 50)
        if rng.random() < 0.5:
            return f"What is {a} + {b}?", [f"{a} + {b} = {a + b}"], str(a + b)
        a, b = max(a, b), min(a, b)
        return f"What is {a} - {b}?", [f"{a} - {b} = {a - b}"], str(a - b)
    if level == 2:
        if rng.random() < 0.5:
            a, b = r(2, 12), r(2, 12)
            return f"What is {a} * {b}?", [f"{a} * {b} = {a * b}"], str(a * b)
        a, b, c = r(10, 60), r(2, 40), r(2, 30)
        s = a + b
        c = min(c, s)
        return f"What is {a} + {b} - {c}?", [f"{a} + {b} = {s}", f"{s} - {c} = {s - c}"], str(s - c)
    if level == 3:
        a, b, c = r(2, 15), r(2, 15), r(2, 50)
        if rng.random() < 0.5:
            return f"What is {a} * {b} + {c}?", [f"{a} * {b} = {a * b}", f"{a * b} + {c} = {a * b + c}"], str(a * b + c)
        return f"What is ({c} + {a}) * {b}?", [f"{c} + {a} = {c + a}", f"{c + a} * {b} = {(c + a) * b}"], str((c + a) * b)
    if level == 4:
        a, b, c, d = r(5, 30), r(5, 30), r(2, 20), r(2, 20)
        p, q = a * b, c * d
        return (f"What is {a} * {b} - {c} * {d}?",
                [f"{a} * {b} = {p}", f"{c} * {d} = {q}", f"{p} - {q} = {p - q}"], str(p - q))
    a, b, c, e = r(5, 40), r(5, 40), r(2, 12), r(2, 9)
    d = e * r(2, 20)
    s, m, q = a + b, (a + b) * c, d // e
    return (f"What is ({a} + {b}) * {c} - {d} / {e}?",
            [f"{a} + {b} = {s}", f"{s} * {c} = {m}", f"{d} / {e} = {q}", f"{m} - {q} = {m - q}"], str(m - q))


def word_problem(rng: random.Random, level: int) -> Result:
    r = rng.randint
    item = rng.choice(ITEMS)
    n1, n2, n3 = _name(rng, 3)
    kind = r(0, 1)
    if level == 1:
        a, b = r(3, 40), r(2, 30)
        if kind == 0:
            return (f"{n1} has {a} {item}. {n1} gets {b} more. How many {item} does {n1} have now?",
                    [f"{a} + {b} = {a + b}"], str(a + b))
        a = a + b
        return (f"{n1} has {a} {item} and gives {b} to {n2}. How many {item} does {n1} have left?",
                [f"{a} - {b} = {a - b}"], str(a - b))
    if level == 2:
        if kind == 0:
            a, b = r(2, 9), r(2, 12)
            c = r(1, a * b - 1)
            return (f"{n1} buys {a} packs of {item} with {b} in each pack and gives {c} to {n2}. "
                    f"How many {item} does {n1} have left?",
                    [f"{a} * {b} = {a * b}", f"{a * b} - {c} = {a * b - c}"], str(a * b - c))
        p, a = r(2, 9), r(2, 9)
        bill = 10 * ((p * a) // 10 + r(1, 3))
        return (f"A pen costs ${p}. {n1} buys {a} pens and pays with a ${bill} bill. How much change does {n1} get?",
                [f"{a} * {p} = {a * p}", f"{bill} - {a * p} = {bill - a * p}"], str(bill - a * p))
    if level == 3:
        if kind == 0:
            a, p, b, q = r(2, 8), r(2, 9), r(2, 8), r(1, 6)
            cost = a * p + b * q
            bill = 10 * (cost // 10 + r(1, 3))
            return (f"{n1} buys {a} notebooks at ${p} each and {b} pens at ${q} each, and pays with a ${bill} bill. "
                    f"How much change does {n1} get?",
                    [f"{a} * {p} = {a * p}", f"{b} * {q} = {b * q}", f"{a * p} + {b * q} = {cost}",
                     f"{bill} - {cost} = {bill - cost}"], str(bill - cost))
        a, b, d = r(3, 12), r(2, 9), r(2, 7)
        e = r(2, 7)
        t1, t2 = a * d, b * e
        return (f"{n1} reads {a} pages a day for {d} days, then {b} pages a day for {e} days. "
                f"How many pages does {n1} read in total?",
                [f"{a} * {d} = {t1}", f"{b} * {e} = {t2}", f"{t1} + {t2} = {t1 + t2}"], str(t1 + t2))
    if level == 4:
        if kind == 0:
            w, h, d = r(8, 25), r(2, 8), 2 * r(1, 3)
            total = w * h * d
            return (f"{n1} earns ${w} per hour and works {h} hours a day for {d} days. "
                    f"{n1} spends half of the money. How much money does {n1} have left?",
                    [f"{w} * {h} = {w * h}", f"{w * h} * {d} = {total}", f"{total} / 2 = {total // 2}"],
                    str(total // 2))
        a, k, c = r(5, 30), r(2, 4), r(1, 9)
        b = k * a
        c3 = b - c
        return (f"{n1} has {a} {item}. {n2} has {k} times as many {item} as {n1}. {n3} has {c} fewer than {n2}. "
                f"How many {item} do the three of them have together?",
                [f"{n2}: {k} * {a} = {b}", f"{n3}: {b} - {c} = {c3}", f"{a} + {b} + {c3} = {a + b + c3}"],
                str(a + b + c3))
    if kind == 0:
        p = rng.choice([10, 20, 25, 40, 50, 60, 75])
        a = 20 * r(2, 15)
        sold = a * p // 100
        rest = a - sold
        q = r(1, rest - 1)
        return (f"A store has {a} shirts. It sells {p}% of them on Monday and {q} more on Tuesday. "
                f"How many shirts are left?",
                [f"{p}% of {a} = {sold}", f"{a} - {sold} = {rest}", f"{rest} - {q} = {rest - q}"], str(rest - q))
    s, w = r(5, 25), r(4, 12)
    total = s * w
    p = rng.choice([10, 20, 25, 50])
    while total * p % 100:
        w += 1
        total = s * w
    spent = total * p // 100
    c = r(1, total - spent - 1)
    left = total - spent - c
    return (f"{n1} saves ${s} per week for {w} weeks, then spends {p}% of the savings on a bike and ${c} on a helmet. "
            f"How much money does {n1} have left?",
            [f"{s} * {w} = {total}", f"{p}% of {total} = {spent}", f"{total} - {spent} - {c} = {left}"], str(left))


def _rand_frac(rng: random.Random, max_den: int) -> Fraction:
    d = rng.randint(2, max_den)
    return Fraction(rng.randint(1, d - 1), d)


def fractions(rng: random.Random, level: int) -> Result:
    if level == 1:
        d = rng.randint(3, 12)
        a, b = rng.randint(1, d - 1), rng.randint(1, d - 1)
        s = Fraction(a + b, d)
        steps = [f"{a}/{d} + {b}/{d} = {a + b}/{d}"]
        if s.denominator != d:
            steps.append(f"{a + b}/{d} = {frac_plain(s)}")
        return f"What is {a}/{d} + {b}/{d}?", steps, frac_tex(s)
    x, y = _rand_frac(rng, 10), _rand_frac(rng, 10)
    while x.denominator == y.denominator:
        y = _rand_frac(rng, 10)
    if level in (2, 3) and (level == 2 or rng.random() < 0.5):
        op, val = ("+", x + y) if level == 2 else ("-", x - y)
        L = lcm(x.denominator, y.denominator)
        xn, yn = x.numerator * L // x.denominator, y.numerator * L // y.denominator
        num = xn + yn if op == "+" else xn - yn
        steps = [f"{frac_plain(x)} = {xn}/{L} and {frac_plain(y)} = {yn}/{L}", f"{xn}/{L} {op} {yn}/{L} = {num}/{L}"]
        if Fraction(num, L).denominator != L:
            steps.append(f"{num}/{L} = {frac_plain(val)}")
        return f"What is {frac_plain(x)} {op} {frac_plain(y)}?", steps, frac_tex(val)
    if level == 3:
        val = x * y
        raw = f"{x.numerator * y.numerator}/{x.denominator * y.denominator}"
        steps = [f"{frac_plain(x)} * {frac_plain(y)} = {raw}"]
        if val.denominator != x.denominator * y.denominator:
            steps.append(f"{raw} = {frac_plain(val)}")
        return f"What is {frac_plain(x)} * {frac_plain(y)}?", steps, frac_tex(val)
    if level == 4:
        val = x / y
        steps = [f"Dividing by {frac_plain(y)} means multiplying by {y.denominator}/{y.numerator}",
                 f"{frac_plain(x)} * {y.denominator}/{y.numerator} = {frac_plain(val)}"]
        return f"What is {frac_plain(x)} divided by {frac_plain(y)}?", steps, frac_tex(val)
    z = Fraction(rng.randint(1, 9), rng.randint(2, 9))
    s = x + y
    val = s * z
    steps = [f"{frac_plain(x)} + {frac_plain(y)} = {frac_plain(s)}", f"{frac_plain(s)} * {frac_plain(z)} = {frac_plain(val)}"]
    return f"What is ({frac_plain(x)} + {frac_plain(y)}) * {frac_plain(z)}?", steps, frac_tex(val)


def percentages(rng: random.Random, level: int) -> Result:
    r = rng.randint
    if level in (1, 2):
        p = rng.choice([10, 50]) if level == 1 else rng.choice([5, 15, 20, 25, 30, 40, 60, 75, 80])
        n = 10 * r(1, 20) if level == 1 else 20 * r(1, 25)
        val = Fraction(p * n, 100)
        return (f"What is {p}% of {n}?", [f"{p}% of {n} = {p}/100 * {n} = {frac_plain(val)}"],
                decimal_str(val))
    if level == 3:
        a, b = Fraction(r(10, 999), 100), Fraction(r(1, 99), rng.choice([10, 100]))
        if rng.random() < 0.5:
            return (f"What is {decimal_str(a)} + {decimal_str(b)}?",
                    [f"{decimal_str(a)} + {decimal_str(b)} = {decimal_str(a + b)}"], decimal_str(a + b))
        k = r(2, 9)
        return (f"What is {decimal_str(a)} * {k}?", [f"{decimal_str(a)} * {k} = {decimal_str(a * k)}"],
                decimal_str(a * k))
    if level == 4:
        price = 20 * r(2, 25)
        p = rng.choice([10, 15, 20, 25, 30, 40, 50])
        off = Fraction(price * p, 100)
        item = rng.choice(["jacket", "lamp", "bike", "game", "chair", "watch"])
        return (f"A {item} costs ${price}. It is on sale for {p}% off. What is the sale price in dollars?",
                [f"{p}% of {price} = {frac_plain(off)}", f"{price} - {frac_plain(off)} = {frac_plain(price - off)}"],
                decimal_str(price - off))
    old = rng.choice([20, 25, 40, 50, 80, 100, 200])
    p = rng.choice([5, 10, 20, 25, 30, 50, 75])
    if rng.random() < 0.5:
        new = old + old * p // 100
        return (f"A price rises from ${old} to ${new}. By what percent did it increase?",
                [f"{new} - {old} = {new - old}", f"{new - old}/{old} * 100 = {p}"], str(p))
    part = Fraction(r(1, old - 1))
    val = part / old * 100
    if not _short_decimal(val):
        part = Fraction(old * p, 100)
        val = Fraction(p)
    return (f"What percent of {old} is {frac_plain(part)}?",
            [f"{frac_plain(part)}/{old} * 100 = {decimal_str(val)}"], decimal_str(val))


def _short_decimal(q: Fraction) -> bool:
    try:
        return len(decimal_str(q, max_places=2)) > 0
    except ValueError:
        return False
