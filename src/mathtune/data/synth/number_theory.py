"""Synthetic families: gcd/lcm and divisibility, modular arithmetic."""

from __future__ import annotations

import random
from math import gcd, lcm

Result = tuple[str, list[str], str]


def _factorize(n: int) -> dict[int, int]:
    out: dict[int, int] = {}
    p = 2
    while p * p <= n:
        while n % p == 0:
            out[p] = out.get(p, 0) + 1
            n //= p
        p += 1
    if n > 1:
        out[n] = out.get(n, 0) + 1
    return out


def _fact_str(n: int) -> str:
    return " * ".join(f"{p}^{e}" if e > 1 else str(p) for p, e in sorted(_factorize(n).items()))


def gcd_lcm(rng: random.Random, level: int) -> Result:
    r = rng.randint
    if level == 1:
        g = r(2, 9)
        a, b = g * r(1, 6), g * r(1, 6)
        while a == b:
            b = g * r(1, 6)
        v = gcd(a, b)
        return (f"What is the greatest common divisor of {a} and {b}?",
                [f"{a} = {_fact_str(a)}, {b} = {_fact_str(b)}", f"gcd = {v}"], str(v))
    if level == 2:
        a, b = r(2, 15), r(2, 15)
        while a == b:
            b = r(2, 15)
        v = lcm(a, b)
        return (f"What is the least common multiple of {a} and {b}?",
                [f"gcd({a}, {b}) = {gcd(a, b)}", f"lcm = {a} * {b} / {gcd(a, b)} = {v}"], str(v))
    if level == 3:
        g = r(2, 30)
        a, b = g * r(2, 20), g * r(2, 20)
        while a == b:
            b = g * r(2, 20)
        a, b = max(a, b), min(a, b)
        steps = []
        x, y = a, b
        while y:
            steps.append(f"{x} = {x // y} * {y} + {x % y}")
            x, y = y, x % y
        steps.append(f"gcd = {x}")
        return f"Use the Euclidean algorithm to find gcd({a}, {b}).", steps, str(x)
    if level == 4:
        a, b, c = rng.sample(range(2, 16), 3)
        ab = lcm(a, b)
        v = lcm(ab, c)
        return (f"What is the least common multiple of {a}, {b} and {c}?",
                [f"lcm({a}, {b}) = {ab}", f"lcm({ab}, {c}) = {v}"], str(v))
    n = r(12, 400)
    f = _factorize(n)
    count = 1
    for e in f.values():
        count *= e + 1
    expo = " * ".join(f"({e} + 1)" for e in f.values())
    return (f"How many positive divisors does {n} have?",
            [f"{n} = {_fact_str(n)}", f"Number of divisors = {expo} = {count}"], str(count))


def modular(rng: random.Random, level: int) -> Result:
    r = rng.randint
    if level == 1:
        b = r(2, 9)
        a = r(b + 1, 60)
        q, m = divmod(a, b)
        return (f"What is the remainder when {a} is divided by {b}?", [f"{a} = {b} * {q} + {m}"], str(m))
    if level == 2:
        b = r(3, 12)
        a = r(100, 999)
        q, m = divmod(a, b)
        return (f"What is the remainder when {a} is divided by {b}?", [f"{a} = {b} * {q} + {m}"], str(m))
    if level == 3:
        k, n = r(3, 15), r(20, 300)
        v = -(-n // k) * k
        return (f"What is the smallest multiple of {k} that is greater than or equal to {n}?",
                [f"{n} / {k} rounds up to {v // k}", f"{v // k} * {k} = {v}"], str(v))
    if level == 4:
        a, b, m = r(20, 200), r(20, 200), r(3, 13)
        ra, rb = a % m, b % m
        v = (ra * rb) % m
        return (f"What is ({a} * {b}) mod {m}?",
                [f"{a} mod {m} = {ra}, {b} mod {m} = {rb}", f"{ra} * {rb} = {ra * rb}", f"{ra * rb} mod {m} = {v}"],
                str(v))
    a, m, k = r(2, 9), r(5, 13), r(10, 60)
    while a % m == 0:
        m += 1
    powers, seen, x = [], {}, 1
    while True:
        x = (x * a) % m
        if x in seen:
            break
        seen[x] = len(powers)
        powers.append(x)
    start = seen[x]  # powers[i] = a^(i+1) mod m; the cycle starts at index `start`
    cycle = powers[start:]
    idx = k - 1
    v = powers[idx] if idx < len(powers) else cycle[(idx - start) % len(cycle)]
    listing = ", ".join(str(p) for p in powers)
    return (f"What is the remainder when {a}^{k} is divided by {m}?",
            [f"Powers of {a} mod {m}: {listing}, then repeat with period {len(cycle)}",
             f"{a}^{k} mod {m} = {v}"], str(v))
