"""Rows for the grader regression corpus that need no model (imported by grading_corpus.py).

    from grading_corpus_rows import reference_rows, perturbed_rows, gold_kind, last_boxed

- `reference_rows(data)`: the datasets' own solutions graded against their gold (MATH and
  MATH-500 solution text with its \\boxed{}, GSM8K "#### N" solutions with <<calc>> annotations,
  AIME 2024 AoPS solutions, SVAMP equations "( 290.0 / 2.0 ) = 145.0"): expected true.
- `perturbed_rows(data)`: gold answers rewritten into other notations (\\dfrac vs a/b, decimals vs
  fractions, reordered sets, \\left( \\right), intervals, units/\\text{}, degrees, pmatrix vs
  bmatrix, "The answer is", $...$, \\(...\\), doubly escaped \\\\frac as in JSON, sympy's plain
  text form) wrapped in realistic closing lines: expected true; and wrong values (off by one,
  reciprocal, swapped tuple, flipped interval bracket, dropped set element, transposed matrix,
  other choice letter): expected false. Every transform is exact string surgery whose verdict
  is known by construction; the rows the graders disagree on are adjudicated by reading.
All choices are seeded, so the rows are reproducible.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

Row = dict


# ----------------------------------------------------------------------------- gold answers


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} / \\fbox{...} (brace-matched), else None."""
    i = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    j = text.find("{", i) if i >= 0 else -1
    if j < 0:
        return None
    depth = 0
    for k in range(j, len(text)):
        depth += {"{": 1, "}": -1}.get(text[k], 0)
        if depth == 0:
            return text[j + 1 : k]
    return None


def number_text(value: object) -> str:
    """A dataset's numeric answer as text: 27.0 -> '27', 2.5 -> '2.5'; strings unchanged."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).strip()


_NUM = r"-?(?:\d{1,3}(?:\{?,\}?\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"
_UNITS = re.compile(r"\\(?:text|mbox|mathrm|textbf)\{\s*[a-zA-Z .]*\}|\^\{?\\circ\}?|\\%|%|\\\$|\$|\\[,!;: ]")


def gold_kind(gold: str, problem: str = "") -> str:
    """The kind of a gold answer: integer, decimal, fraction, expression, tuple, interval, set,
    matrix, equation, text or other (numbers in another base)."""
    g = gold.strip()
    bare = _UNITS.sub("", g).replace("\\left", "").replace("\\right", "").strip()
    bare = re.sub(r"\\[dt]frac", r"\\frac", bare)
    if re.fullmatch(_NUM, bare.replace(" ", "")):
        return "decimal" if "." in bare else "integer"
    if re.fullmatch(r"-?\\frac\{-?\d+\}\{\d+\}|-?\d+/\d+|-?\\frac\d\d", bare.replace(" ", "")):
        return "fraction"
    if "matrix" in g or "\\begin{array}" in g:
        return "matrix"
    if re.fullmatch(r"\(?\s*\\text\{\s*\(?[A-Ea-e]\)?\s*\}\s*\)?|\(?[A-E]\)?", g) or re.fullmatch(r"(\\text\{[^{}]*\}\s*,?\s*)+", g):
        return "text"
    if "\\cup" in g or "\\infty" in g or re.fullmatch(r"[\[(].*,.*[\])]", bare) and (
        bare[0] + bare[-1] in ("[)", "(]", "[]") or "interval" in problem):
        return "interval"
    if re.fullmatch(r"\\\{.*\\\}", g) or ("," in bare and not re.search(r"^[\[(].*[\])]$", bare)):
        return "set"
    if re.fullmatch(r"\(.*,.*\)", bare):
        return "tuple"
    if re.search(r"(?<![<>\\])=|\\le|\\ge|<|>", g):
        return "equation"
    if re.search(r"_\{?\d+\}?$", bare):
        return "other"  # a number in another base, 152A_{11}
    if re.fullmatch(r"[a-zA-Z ]+", bare) and not re.fullmatch(r"[a-z]", bare.strip()):
        return "text"
    return "expression"


def read_rows(data: Path, name: str) -> list[dict]:
    with (data / name / "test.jsonl").open() as f:
        return [json.loads(line) for line in f]


def math_by_kind(data: Path) -> dict[str, list[tuple[int, dict, str]]]:
    """MATH test rows grouped by the kind of their gold (last \\boxed{} of the solution)."""
    out: dict[str, list[tuple[int, dict, str]]] = {}
    for i, row in enumerate(read_rows(data, "math")):
        gold = last_boxed(row["solution"])
        if gold is not None:
            out.setdefault(gold_kind(gold, row["problem"]), []).append((i, row, gold))
    return out


def _row(gold: str, response: str, expected: bool | None, model: str, bench: str, kind: str, source: str,
         reason: str = "", problem: str = "") -> Row:
    return {"gold": gold, "response": response, "expected": expected, "model": model, "benchmark": bench,
            "kind": kind, "source": source, "reason": reason, "problem": problem}


# ----------------------------------------------------------------------------- reference rows


REFERENCE_QUOTA = {"integer": 8, "fraction": 6, "expression": 8, "tuple": 6, "interval": 6, "matrix": 6,
                   "set": 6, "decimal": 4, "equation": 4, "text": 4, "other": 2}


def reference_rows(data: Path) -> list[Row]:
    """The datasets' own worked solutions against their own gold: expected true."""
    rng = random.Random(1501)
    rows: list[Row] = []
    for kind, items in math_by_kind(data).items():
        for i, row, gold in rng.sample(items, min(REFERENCE_QUOTA.get(kind, 0), len(items))):
            rows.append(_row(gold, row["solution"], True, "reference", "math", kind, f"reference solution math#{i}",
                             "the dataset's own solution; its last \\boxed{} is the gold", row["problem"]))
    m500 = read_rows(data, "math500")
    for i in sorted(rng.sample(range(len(m500)), 15)):
        r = m500[i]
        rows.append(_row(r["answer"], r["solution"], True, "reference", "math500", gold_kind(r["answer"], r["problem"]),
                         f"reference solution math500#{i}", "the dataset's own solution; it boxes the answer field",
                         r["problem"]))
    gsm = read_rows(data, "gsm8k")
    for i in sorted(rng.sample(range(len(gsm)), 10)):
        gold = gsm[i]["answer"].split("####")[-1].strip()
        rows.append(_row(gold, gsm[i]["answer"], True, "reference", "gsm8k", gold_kind(gold),
                         f"reference solution gsm8k#{i}", f"the dataset's own solution ends '#### {gold}'",
                         gsm[i]["question"]))
    for i, r in enumerate(read_rows(data, "aime24")):
        rows.append(_row(r["answer"], r["solution"], None, "reference", "aime24", "integer",
                         f"reference solution aime24#{i}", "", r["problem"]))
    sv = read_rows(data, "svamp")
    for i in sorted(rng.sample(range(len(sv)), 6)):
        r = sv[i]
        gold = number_text(r["Answer"])
        rows.append(_row(gold, f"{r['Equation'].strip()} = {r['Answer']}", True, "reference", "svamp",
                         gold_kind(gold), f"reference equation svamp#{i}",
                         f"the dataset's own equation evaluates to {r['Answer']} = {gold}", f"{r['Body']} {r['Question']}"))
    return rows


# ----------------------------------------------------------------------------- perturbations

WRAPPERS = (
    "So the answer is ${x}$.",
    "Therefore, the final answer is $\\boxed{{{x}}}$.",
    "Putting it together, the answer is \\({x}\\).",
    "Final Answer: The final answer is ${x}$. I hope it is correct.",
    "**Answer:** ${x}$",
    "Thus\n\\[\n\\boxed{{{x}}}\n\\]",
    "The answer is: {x}",
    "Hence we get $\\boxed{{{x}}}$ as the result.",
)
OPENERS = ("Let's solve this step by step.\n\n", "We work through the problem carefully.\n\n", "",
           "First, simplify the given expression and check the conditions.\n\n")

_FRAC = re.compile(r"(-?)\\[dt]?frac\{(-?\d+)\}\{(\d+)\}")


def _frac_slash(g: str) -> str | None:
    out = _FRAC.sub(lambda m: f"{m[1]}{m[2]}/{m[3]}", g)
    return out if out != g else None


def _dfrac(g: str) -> str | None:
    return g.replace("\\frac", "\\dfrac") if "\\frac" in g and "\\dfrac" not in g else None


def _frac_decimal(g: str) -> str | None:
    m = _FRAC.fullmatch(g.strip())
    if not m:
        return None
    num, den = int(m[2]), int(m[3])
    d = den
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d != 1 or den == 0:
        return None  # not a terminating decimal
    from decimal import Decimal

    return ("-" if m[1] else "") + str(Decimal(num) / Decimal(den))


def _decimal_frac(g: str) -> str | None:
    s = g.strip()
    if not re.fullmatch(r"-?\d*\.\d+", s):
        return None
    from fractions import Fraction

    f = Fraction(s)
    return f"\\frac{{{f.numerator}}}{{{f.denominator}}}" if f.denominator != 1 else str(f.numerator)


def _int_forms(g: str) -> str | None:
    s = g.replace(",", "").replace("{,}", "").strip()
    if not re.fullmatch(r"-?\d+", s):
        return None
    n = int(s)
    return f"{n:,}" if abs(n) >= 1000 else f"{n}.0"


def _left_right(g: str) -> str | None:
    s = g.strip()
    if "\\left" in s or not re.fullmatch(r"[\[(].*[\])]", s) or "\\cup" in s:
        return None
    return f"\\left{s[0]} {s[1:-1].replace(',', ', ')} \\right{s[-1]}"


def _split_top(s: str) -> list[str]:
    """Split on commas outside braces/brackets."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        depth += 1 if ch in "{([" else -1 if ch in "})]" else 0
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [*parts, cur.strip()]


def _set_reorder(g: str) -> str | None:
    s = g.strip()
    braces = s.startswith("\\{") and s.endswith("\\}")
    inner = s[2:-2] if braces else s
    parts = _split_top(inner)
    if len(parts) < 2 or len(set(parts)) < 2 or any("and" in p for p in parts):
        return None
    return ("\\{" + ", ".join(parts[::-1]) + "\\}") if braces else ", ".join(parts[::-1])


def _matrix_b(g: str) -> str | None:
    return g.replace("pmatrix", "bmatrix") if "pmatrix" in g else None


def _strip_units(g: str) -> str | None:
    out = re.sub(r"\s*\\(?:text|mbox)\{\s*[a-zA-Z. ]+\}\s*$|\^\{?\\circ\}?$|\\%$", "", g.strip())
    return out if out != g.strip() and out else None


def _double_escape(g: str) -> str | None:
    return g.replace("\\", "\\\\") if "\\" in g else None


def _sympy_text(g: str) -> str | None:
    """sympy's plain-text form of a parsed gold (expressions only), e.g. 2\\sqrt{5} -> 2*sqrt(5), x^2 - 7*x + 12."""
    if "circ" in g:
        return None  # sympy drops the degree sign: cos(58) is not cos 58 degrees
    try:
        import sympy
        from latex2sympy2_extended import latex2sympy

        text = str(sympy.sympify(str(latex2sympy(g)))).replace("**", "^")
    except Exception:
        return None
    return text if text != g and len(text) < 80 and "Symbol" not in text else None


EQUIVALENT: dict[str, tuple[Callable[[str], str | None], ...]] = {
    "integer": (_int_forms, _strip_units),
    "decimal": (_decimal_frac, _strip_units),
    "fraction": (_frac_slash, _frac_decimal, _dfrac),
    "expression": (_dfrac, _sympy_text, _double_escape),
    "tuple": (_left_right, _frac_slash, _double_escape),
    "interval": (_left_right, _frac_slash),
    "set": (_set_reorder, _frac_slash),
    "matrix": (_matrix_b, _frac_slash, _double_escape),
    "equation": (lambda g: g.replace(" ", "") if " " in g else g.replace("=", " = "), _dfrac),
    "text": (lambda g: re.sub(r"\\text\{\s*\(?([A-E])\)?\s*\}", r"\1", g) if "\\text" in g else None,),
    "other": (lambda g: g.replace("_{", "_").replace("}", "") if "_{" in g else None,),
}


def _bump_number(g: str) -> str | None:
    """Change the last number in the gold by one (7 -> 8, 0.25 -> 1.25, -3 -> -2)."""
    ms = list(re.finditer(r"\d+(?:\.\d+)?", g))
    if not ms:
        return None
    m = ms[-1]
    v = m.group()
    new = str(int(v) + 1) if "." not in v else f"{float(v) + 1:.{len(v.split('.')[1])}f}"
    return g[: m.start()] + new + g[m.end():]


def _reciprocal(g: str) -> str | None:
    m = _FRAC.fullmatch(g.strip())
    if not m or m[2] == m[3] or m[2].lstrip("-") == "0":
        return None
    return f"{m[1]}\\frac{{{m[3]}}}{{{m[2]}}}"


def _swap_tuple(g: str) -> str | None:
    s = g.strip().replace("\\left", "").replace("\\right", "")
    if not re.fullmatch(r"\(.*\)", s):
        return None
    parts = _split_top(s[1:-1])
    if len(parts) < 2 or parts[0] == parts[1]:
        return None
    return "(" + ", ".join([parts[1], parts[0], *parts[2:]]) + ")"


def _flip_bracket(g: str) -> str | None:
    s = g.strip()
    if not re.search(r"\d\s*(?:\\right)?[\])]", s):
        return None
    i = max(s.rfind(")"), s.rfind("]"))
    if re.search(r"\\infty\s*(?:\\right)?\s*$", s[:i]):
        return None  # "\infty]" would be malformed, not clearly wrong
    return s[:i] + ("]" if s[i] == ")" else ")") + s[i + 1:]


def _drop_element(g: str) -> str | None:
    s = g.strip()
    parts = _split_top(s[2:-2] if s.startswith("\\{") else s)
    return ", ".join(parts[:-1]) if len(parts) >= 2 and "and" not in parts[-1] else None


def _transpose(g: str) -> str | None:
    m = re.fullmatch(r"\\begin\{pmatrix\}(.*)\\end\{pmatrix\}", g.strip(), re.DOTALL)
    if not m:
        return None
    grid = [[c.strip() for c in r.split("&")] for r in m[1].split("\\\\")]
    if len({len(r) for r in grid}) != 1 or len(grid) < 2 or len(grid[0]) < 2:
        return None  # a vector's transpose would be a contentious row, not a clear one
    t = [list(c) for c in zip(*grid, strict=True)]
    if t == grid:
        return None
    return "\\begin{pmatrix} " + " \\\\ ".join(" & ".join(r) for r in t) + " \\end{pmatrix}"


def _other_choice(g: str) -> str | None:
    m = re.search(r"[A-E]", g)
    return g[: m.start()] + "ABCDEA"["ABCDE".index(m.group()) + 1] + g[m.end():] if m else None


WRONG: dict[str, tuple[Callable[[str], str | None], ...]] = {
    "integer": (_bump_number,), "decimal": (_bump_number,), "fraction": (_reciprocal, _bump_number),
    "expression": (_bump_number,), "tuple": (_swap_tuple, _bump_number), "interval": (_flip_bracket, _bump_number),
    "set": (_drop_element, _bump_number), "matrix": (_transpose, _bump_number), "equation": (_bump_number,),
    "text": (_other_choice,), "other": (_bump_number,),
}


PERTURB_QUOTA = {"integer": 8, "fraction": 12, "expression": 14, "tuple": 10, "interval": 10, "matrix": 8,
                 "set": 10, "decimal": 8, "equation": 8, "text": 6, "other": 4}


def _perturb_one(rng: random.Random, gold: str, kind: str, bench: str, where: str, problem: str) -> Iterator[Row]:
    """Equivalent rewrites (true) and one wrong value (false) of one gold, in random wrappers."""
    def wrap(x: str) -> str:
        return rng.choice(OPENERS) + rng.choice(WRAPPERS).format(x=x)

    for fn in EQUIVALENT.get(kind, ()):
        alt = fn(gold)
        if alt and alt.strip() != gold.strip():
            name = fn.__name__.strip("_") if fn.__name__ != "<lambda>" else f"{kind}_form"
            yield _row(gold, wrap(alt), True, "perturbed", bench, kind, f"perturbed {name} {where}",
                       f"'{alt}' is '{gold}' in another notation", problem)
    for fn in WRONG.get(kind, ()):
        bad = fn(gold)
        if bad and bad.strip() != gold.strip():
            yield _row(gold, wrap(bad), False, "perturbed", bench, kind, f"perturbed wrong-{fn.__name__.strip('_')} {where}",
                       f"'{bad}' differs from the gold '{gold}'", problem)
            break


def _numeric_story(rng: random.Random, gold: str, bench: str, where: str, problem: str) -> Iterator[Row]:
    """Numeric golds: money/commas/units forms, and self-corrections (the final answer counts)."""
    n = int(gold.replace(",", ""))
    wrong = n + rng.choice((-2, -1, 1, 3)) if n else 5
    forms = (f"${n:,}", f"{n} dollars", f"{n}.00", f"\\${n:,}.00", f"{n:,} \\text{{ units}}")
    form = rng.choice(forms)
    yield _row(gold, f"{rng.choice(OPENERS)}The answer is {form}.", True, "perturbed", bench, "integer",
               f"perturbed money-units {where}", f"'{form}' is {n} with a unit or currency mark", problem)
    yield _row(gold, f"I first got {wrong}, but I double-checked the subtraction, so the correct answer is {n}.",
               True, "perturbed", bench, "integer", f"perturbed self-corrected {where}",
               f"the response corrects {wrong} to its final answer {n}", problem)
    yield _row(gold, f"It looks like the answer might be {n}, but that counts the first day twice.\n"
               f"So the final answer is {wrong}.", False, "perturbed", bench, "integer",
               f"perturbed retracted {where}", f"the response rejects {n}; its final answer is {wrong}", problem)


def perturbed_rows(data: Path) -> list[Row]:
    """Equivalent and wrong rewrites of real golds from MATH, GSM8K, AIME24, AMC23 and SVAMP."""
    rng = random.Random(1502)
    rows: list[Row] = []
    for kind, items in math_by_kind(data).items():
        for i, row, gold in rng.sample(items, min(PERTURB_QUOTA.get(kind, 0), len(items))):
            rows.extend(_perturb_one(rng, gold, kind, "math", f"math#{i}", row["problem"]))
    gsm = read_rows(data, "gsm8k")
    for i in sorted(rng.sample(range(len(gsm)), 12)):
        gold = gsm[i]["answer"].split("####")[-1].strip()
        rows.extend(_numeric_story(rng, gold, "gsm8k", f"gsm8k#{i}", gsm[i]["question"]))
        rows.extend(_perturb_one(rng, gold, "integer", "gsm8k", f"gsm8k#{i}", gsm[i]["question"]))
    for name, field in (("aime24", "answer"), ("amc23", "answer"), ("svamp", "Answer")):
        recs = read_rows(data, name)
        for i in sorted(rng.sample(range(len(recs)), 8)):
            gold = number_text(recs[i][field])
            problem = recs[i].get("problem") or f"{recs[i].get('Body', '')} {recs[i].get('Question', '')}"
            kind = gold_kind(gold)
            if kind == "integer" and i % 2 == 0:
                rows.extend(_numeric_story(rng, gold, name, f"{name}#{i}", problem))
            rows.extend(_perturb_one(rng, gold, kind, name, f"{name}#{i}", problem))
    return rows



# ----------------------------------------------------------------------------- harder notations


def _pairs(rng: random.Random, items: list, n: int, fn: Callable[[str], str | None]) -> list[tuple[int, dict, str, str]]:
    """Up to n (index, row, gold, rewrite) for which fn applies, in a seeded order."""
    out = []
    for i, row, gold in rng.sample(items, len(items)):
        alt = fn(gold)
        if alt is not None:
            out.append((i, row, gold, alt))
        if len(out) == n:
            break
    return out


def _swap_sides(g: str) -> str | None:
    if g.count("=") != 1 or re.search(r"[<>]|\\le|\\ge", g):
        return None
    lhs, rhs = (x.strip() for x in g.split("="))
    return f"{rhs} = {lhs}" if lhs and rhs else None


def _frac_shorthand(g: str) -> str | None:
    m = re.fullmatch(r"(-?)\\frac\{(\d)\}\{(\d)\}", g.strip())
    return f"{m[1]}\\frac{m[2]}{m[3]}" if m else None


def _unreduced(g: str) -> str | None:
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", g.strip())
    return f"{m[1]}\\frac{{{3 * int(m[2])}}}{{{3 * int(m[3])}}}" if m else None


def _rounded(g: str) -> str | None:
    """A non-terminating fraction rounded to two decimals: close, but not equal."""
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", g.strip())
    if not m or _frac_decimal(g) is not None:
        return None
    return f"{m[1]}{int(m[2]) / int(m[3]):.2f}"


def _and_list(g: str) -> str | None:
    parts = _split_top(g.strip())
    return None if len(parts) != 2 or any("and" in p for p in parts) else f"${parts[0]}$ and ${parts[1]}$"


def _unicode_minus(g: str) -> str | None:
    return g.replace("-", "\u2212") if re.fullmatch(r"-\d+", g.strip()) else None


HARD_EQUIVALENT = (
    ("interval", "in-notation", lambda g: f"x \\in {g}", "'{alt}' says x lies in the gold interval: the same set"),
    ("equation", "swapped-sides", _swap_sides, "'{alt}' is the gold equation with its sides swapped"),
    ("fraction", "frac-shorthand", _frac_shorthand, "'{alt}' is TeX shorthand for the gold {gold}"),
    ("fraction", "unreduced", _unreduced, "'{alt}' reduces to the gold {gold}"),
    ("set", "and-list", _and_list, "the two values {alt} are the gold's {gold}"),
)


def hard_rows(data: Path) -> list[Row]:
    """Notations graders often miss (x \\in interval, swapped equation sides, \\frac12, unreduced
    fractions, 'a and b' lists, unicode minus, a corrected second box) and near misses (rounded
    fractions, a superseded correct box)."""
    rng = random.Random(1503)
    by_kind = math_by_kind(data)
    rows: list[Row] = []
    lead = "We check each case and simplify.\n\nThe answer is {x}."
    for kind, name, fn, why in HARD_EQUIVALENT:
        for i, row, gold, alt in _pairs(rng, by_kind.get(kind, []), 3, fn):
            x = alt if name == "and-list" else f"${alt}$"
            rows.append(_row(gold, lead.format(x=x), True, "perturbed", "math", kind, f"perturbed {name} math#{i}",
                             why.format(alt=alt, gold=gold), row["problem"]))
    for i, row, gold, alt in _pairs(rng, by_kind["fraction"], 4, _rounded):
        rows.append(_row(gold, lead.format(x=f"${alt}$"), False, "perturbed", "math", "fraction",
                         f"perturbed wrong-rounded math#{i}", f"{alt} is {gold} rounded, not equal to it", row["problem"]))
    for i, row, gold, alt in _pairs(rng, by_kind["integer"], 3, _unicode_minus):
        rows.append(_row(gold, f"Solving gives x = {alt}, so the answer is {alt}.", True, "perturbed", "math", "integer",
                         f"perturbed unicode-minus math#{i}", f"'{alt}' is {gold} written with a unicode minus sign", row["problem"]))
    for i, row, gold, wrong in _pairs(rng, by_kind["integer"] + by_kind["fraction"], 6, _bump_number):
        if len(rows) % 2:
            text, ok = f"At first I got $\\boxed{{{wrong}}}$, but I dropped a term. Correcting it:\n$$\\boxed{{{gold}}}$$", True
            why = f"the first box ({wrong}) is retracted; the final box is the gold {gold}"
        else:
            text, ok = f"This gives $\\boxed{{{gold}}}$.\n\nWait, that double counts. The correct answer is $\\boxed{{{wrong}}}$.", False
            why = f"the response retracts {gold}; its final boxed answer is {wrong}"
        rows.append(_row(gold, text, ok, "perturbed", "math", gold_kind(gold, row["problem"]),
                         f"perturbed two-boxes math#{i}", why, row["problem"]))
    return rows
