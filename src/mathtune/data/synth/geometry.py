"""Synthetic family: geometry (areas, perimeters, Pythagoras, circles in terms of pi)."""

from __future__ import annotations

import random

Result = tuple[str, list[str], str]

TRIPLES = [(3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25), (20, 21, 29), (9, 40, 41)]


def geometry(rng: random.Random, level: int) -> Result:
    r = rng.randint
    kind = r(0, 1)
    if level == 1:
        length, width = r(2, 20), r(2, 20)
        if kind == 0:
            return (f"A rectangle is {length} cm long and {width} cm wide. What is its area in square cm?",
                    [f"Area = {length} * {width} = {length * width}"], str(length * width))
        p = 2 * (length + width)
        return (f"A rectangle is {length} cm long and {width} cm wide. What is its perimeter in cm?",
                [f"Perimeter = 2 * ({length} + {width}) = {p}"], str(p))
    if level == 2:
        if kind == 0:
            b, h = 2 * r(1, 12), r(2, 20)
            return (f"A triangle has base {b} and height {h}. What is its area?",
                    [f"Area = {b} * {h} / 2 = {b * h // 2}"], str(b * h // 2))
        s = r(2, 25)
        return (f"A square has side length {s}. What is its perimeter?", [f"Perimeter = 4 * {s} = {4 * s}"], str(4 * s))
    a, b, c = rng.choice(TRIPLES)
    k = r(1, 4) if level == 3 else r(1, 6)
    a, b, c = a * k, b * k, c * k
    if level == 3:
        return (f"A right triangle has legs {a} and {b}. How long is its hypotenuse?",
                [f"c^2 = {a}^2 + {b}^2 = {a * a} + {b * b} = {c * c}", f"c = {c}"], str(c))
    if level == 4:
        if kind == 0:
            return (f"A right triangle has hypotenuse {c} and one leg {a}. How long is the other leg?",
                    [f"b^2 = {c}^2 - {a}^2 = {c * c} - {a * a} = {b * b}", f"b = {b}"], str(b))
        p, q, h = r(2, 15), r(2, 15), 2 * r(1, 8)
        area = (p + q) * h // 2
        return (f"A trapezoid has parallel sides {p} and {q} and height {h}. What is its area?",
                [f"Area = ({p} + {q}) * {h} / 2 = {area}"], str(area))
    rad = r(2, 15)
    if kind == 0:
        return (f"A circle has radius {rad}. What is its area? Express your answer in terms of \\pi.",
                [f"Area = \\pi * {rad}^2 = {rad * rad}\\pi"], f"{rad * rad}\\pi")
    per, length = 2 * r(10, 40), r(3, 9)
    width = per // 2 - length
    return (f"A rectangle has perimeter {per} and length {length}. What is its area?",
            [f"Width = {per}/2 - {length} = {width}", f"Area = {length} * {width} = {length * width}"],
            str(length * width))
