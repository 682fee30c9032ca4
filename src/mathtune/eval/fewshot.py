"""Few-shot exemplars for evaluation prompts: the first k problems of a benchmark's train split
(from the one registry, `mathtune.benchmarks`), else a fixed list written for mathtune.

    from mathtune.benchmarks import get_benchmark
    from mathtune.eval.fewshot import load_exemplars
    shots = load_exemplars(get_benchmark("gsm8k"), "DIR", k=4)   # [(problem, solution, answer), ...]
"""

from __future__ import annotations

import os
import re

from ..benchmarks import BenchmarkSpec, load_problems
from ..errors import MathtuneError


def load_exemplars(spec: BenchmarkSpec, data_dir: str | os.PathLike | None, k: int) -> list[tuple[str, str, str]]:
    """k few-shot (problem, solution, answer) triples: the first k of the benchmark's train split
    when it has one (locally or on the Hub), else the fixed `FIXED_EXEMPLARS`."""
    if k <= 0:
        return []
    try:
        train = load_problems(spec, data_dir, limit=k, split="train")
    except MathtuneError:  # no train split here (or unreachable): the fixed list
        train = []
    out = [(p.problem, clean_solution(p.solution or ""), p.gold) for p in train[:k]]
    return out or list(FIXED_EXEMPLARS[:k])


def clean_solution(text: str) -> str:
    """Drop GSM8K calculator annotations (<<48/2=24>>) and its '#### N' answer line."""
    text = re.sub(r"<<[^>]*>>", "", text)
    return re.sub(r"\n?####.*$", "", text.strip(), flags=re.DOTALL).strip()


# Fixed few-shot exemplars for benchmarks without a train split (written for mathtune).
FIXED_EXEMPLARS: tuple[tuple[str, str, str], ...] = (
    ("A shop sells pencils at 3 for $1. How many dollars do 12 pencils cost?",
     "12 pencils are 12 / 3 = 4 groups of 3 pencils. Each group costs $1, so they cost 4 * 1 = 4 dollars.", "4"),
    ("What is the value of $x$ if $3x - 7 = 11$?",
     "Add 7 to both sides: $3x = 18$. Divide by 3: $x = 6$.", "6"),
    ("Tom has 5 boxes with 8 apples each. He gives away 13 apples. How many apples does he have left?",
     "He starts with 5 * 8 = 40 apples. After giving away 13 he has 40 - 13 = 27 apples.", "27"),
    ("Simplify $\\frac{2}{3} + \\frac{1}{6}$.",
     "Write $\\frac{2}{3} = \\frac{4}{6}$. Then $\\frac{4}{6} + \\frac{1}{6} = \\frac{5}{6}$.", "\\frac{5}{6}"),
    ("How many positive divisors does 36 have?",
     "$36 = 2^2 \\cdot 3^2$, so it has $(2+1)(2+1) = 9$ positive divisors.", "9"),
    ("A rectangle has perimeter 30 and length 9. What is its area?",
     "The width is 30 / 2 - 9 = 6, so the area is 9 * 6 = 54.", "54"),
    ("What is the remainder when 2^10 is divided by 7?",
     "2^3 = 8 leaves remainder 1, so 2^9 leaves 1 and 2^10 leaves 2.", "2"),
    ("Sara reads 15 pages a day. How many days does she need for a 200-page book?",
     "200 / 15 = 13.33..., so after 13 days 5 pages are left and she needs 14 days.", "14"),
)
