"""Synthetic families: combinatorics, probability, statistics (mean/median/mode/range)."""

from __future__ import annotations

import random
from collections import Counter
from fractions import Fraction
from math import comb, factorial, perm

from .render import decimal_str, frac_plain, frac_tex

Result = tuple[str, list[str], str]

COLORS = ["red", "blue", "green", "yellow", "white", "black"]


def combinatorics(rng: random.Random, level: int) -> Result:
    r = rng.randint
    if level == 1:
        a, b = r(2, 9), r(2, 9)
        return (f"A menu has {a} main dishes and {b} desserts. How many ways can you choose one main dish and one dessert?",
                [f"{a} * {b} = {a * b}"], str(a * b))
    if level == 2:
        if rng.random() < 0.5:
            n, k = r(2, 9), r(2, 4)
            return (f"How many {k}-letter codes can be made from {n} different letters if letters may repeat?",
                    [f"{' * '.join([str(n)] * k)} = {n**k}"], str(n**k))
        n = r(3, 6)
        chain = " * ".join(str(i) for i in range(n, 0, -1))
        return (f"In how many ways can {n} different books be arranged in a row?",
                [f"{n}! = {chain} = {factorial(n)}"], str(factorial(n)))
    if level == 3:
        n = r(5, 12)
        k = r(2, min(4, n - 1))
        return (f"How many ways are there to choose {k} students from a group of {n}?",
                [f"C({n}, {k}) = {n}! / ({k}! * {n - k}!) = {comb(n, k)}"], str(comb(n, k)))
    if level == 4:
        n, k = r(5, 12), r(2, 4)
        roles = ["president", "vice president", "secretary", "treasurer"][:k]
        listing = ", ".join(roles[:-1]) + " and " + roles[-1]
        chain = " * ".join(str(n - i) for i in range(k))
        return (f"In how many ways can a {listing} be chosen from {n} people if no one holds two roles?",
                [f"{chain} = {perm(n, k)}"], str(perm(n, k)))
    a, b = r(4, 9), r(4, 9)
    i, j = r(2, 3), r(2, 3)
    ca, cb = comb(a, i), comb(b, j)
    return (f"A committee of {i} teachers and {j} parents is chosen from {a} teachers and {b} parents. "
            f"How many different committees are possible?",
            [f"C({a}, {i}) = {ca}", f"C({b}, {j}) = {cb}", f"{ca} * {cb} = {ca * cb}"], str(ca * cb))


def probability(rng: random.Random, level: int) -> Result:
    r = rng.randint
    if level == 1:
        if rng.random() < 0.3:
            k = r(1, 6)
            return (f"A fair six-sided die is rolled. What is the probability of rolling a {k}?",
                    ["There is 1 favorable outcome out of 6", "P = 1/6"], "\\frac{1}{6}")
        n = r(4, 20)
        k = r(1, n - 1)
        p = Fraction(n - k, n)
        return (f"A spinner has {n} equal sections numbered 1 to {n}. What is the probability of landing on a number greater than {k}?",
                [f"There are {n - k} favorable outcomes out of {n}", _reduce(f"P = {n - k}/{n}", p)], frac_tex(p))
    c1, c2 = rng.sample(COLORS, 2)
    a, b = r(1, 12), r(1, 12)
    if level == 2:
        p = Fraction(a, a + b)
        return (f"A bag has {a} {c1} balls and {b} {c2} balls. One ball is drawn at random. "
                f"What is the probability that it is {c1}?",
                [f"Total = {a} + {b} = {a + b}", _reduce(f"P = {a}/{a + b}", p)], frac_tex(p))
    if level == 3 and rng.random() < 0.5:
        p = Fraction(a, a + b) ** 2
        return (f"A bag has {a} {c1} balls and {b} {c2} balls. A ball is drawn, put back, and a second ball is drawn. "
                f"What is the probability that both are {c1}?",
                [f"P = {a}/{a + b} * {a}/{a + b} = {frac_plain(p)}"], frac_tex(p))
    if level == 3:
        k = r(0, 5)
        p = Fraction(6 - k, 12)
        return (f"A fair coin is flipped and a fair six-sided die is rolled. What is the probability of getting "
                f"heads and a number greater than {k}?",
                [f"P(heads) = 1/2, P(greater than {k}) = {6 - k}/6", f"P = 1/2 * {6 - k}/6 = {frac_plain(p)}"],
                frac_tex(p))
    if level == 4:
        a, b = r(2, 9), r(1, 9)
        t = a + b
        p = Fraction(a * (a - 1), t * (t - 1))
        return (f"A bag has {a} {c1} balls and {b} {c2} balls. Two balls are drawn without replacement. "
                f"What is the probability that both are {c1}?",
                [f"P = {a}/{t} * {a - 1}/{t - 1} = {a * (a - 1)}/{t * (t - 1)} = {frac_plain(p)}"], frac_tex(p))
    if rng.random() < 0.5:
        n = r(3, 6)
        k = r(0, n)
        p = Fraction(comb(n, k), 2**n)
        return (f"A fair coin is flipped {n} times. What is the probability of getting exactly {k} heads?",
                [f"C({n}, {k}) = {comb(n, k)} of the {2**n} outcomes", _reduce(f"P = {comb(n, k)}/{2**n}", p)], frac_tex(p))
    s = r(2, 12)
    ways = 6 - abs(s - 7)
    p = Fraction(ways, 36)
    return (f"Two fair six-sided dice are rolled. What is the probability that the sum is {s}?",
            [f"There are {ways} ways to get a sum of {s} out of 36", _reduce(f"P = {ways}/36", p)], frac_tex(p))


def _reduce(lhs: str, p: Fraction) -> str:
    """`P = 10/15 = 2/3`, or just `P = 12/19` when already in lowest terms."""
    plain = frac_plain(p)
    return lhs if lhs.endswith(" " + plain) else f"{lhs} = {plain}"


def _num(q: Fraction) -> str:
    try:
        return decimal_str(q, max_places=3)
    except ValueError:
        return frac_tex(q)


def statistics(rng: random.Random, level: int) -> Result:
    r = rng.randint
    if level == 1:
        xs = [r(1, 20) for _ in range(3)]
        xs[-1] += (-sum(xs)) % 3
        m = sum(xs) // 3
        return (f"What is the mean of {', '.join(map(str, xs))}?",
                [f"Sum = {' + '.join(map(str, xs))} = {sum(xs)}", f"Mean = {sum(xs)}/3 = {m}"], str(m))
    if level == 2:
        xs = [r(1, 50) for _ in range(5)]
        s = sorted(xs)
        return (f"What is the median of {', '.join(map(str, xs))}?",
                [f"Sorted: {', '.join(map(str, s))}", f"The middle value is {s[2]}"], str(s[2]))
    if level == 3:
        if rng.random() < 0.5:
            base = [r(1, 30) for _ in range(4)]
            mode = rng.choice(base)
            xs = base + [mode, mode]
            rng.shuffle(xs)
            counts = Counter(xs)
            top = max(counts.values())
            if sum(1 for v in counts.values() if v == top) == 1:
                m = counts.most_common(1)[0][0]
                return (f"What is the mode of {', '.join(map(str, xs))}?",
                        [f"{m} appears {top} times, more than any other value"], str(m))
        xs = [r(1, 40) for _ in range(6)]
        return (f"What is the range of {', '.join(map(str, xs))}?",
                [f"Range = {max(xs)} - {min(xs)} = {max(xs) - min(xs)}"], str(max(xs) - min(xs)))
    if level == 4:
        xs = [r(1, 60) for _ in range(6)]
        s = sorted(xs)
        med = Fraction(s[2] + s[3], 2)
        return (f"What is the median of {', '.join(map(str, xs))}?",
                [f"Sorted: {', '.join(map(str, s))}", f"Median = ({s[2]} + {s[3]})/2 = {_num(med)}"], _num(med))
    n = r(4, 6)
    xs = [r(50, 100) for _ in range(n)]
    target = r(60, 95)
    missing = target * (n + 1) - sum(xs)
    if missing <= 0:
        target = -(-(sum(xs) + 1) // (n + 1))
        missing = target * (n + 1) - sum(xs)
    return (f"The scores {', '.join(map(str, xs))} and one more score have a mean of {target}. What is the missing score?",
            [f"Total needed = {target} * {n + 1} = {target * (n + 1)}", f"Sum of known scores = {sum(xs)}",
             f"Missing = {target * (n + 1)} - {sum(xs)} = {missing}"], str(missing))
