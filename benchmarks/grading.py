"""Grader benchmark: mathtune vs math-verify, side by side in one run.

    .venv/bin/python benchmarks/grading.py                # corpus + full GSM8K test + full MATH test
    .venv/bin/python benchmarks/grading.py --only corpus --show 10
    .venv/bin/python benchmarks/grading.py --limit 200    # quick run (first N golds of each)
    .venv/bin/python benchmarks/grading.py --only gsm8k --show 5

The differential corpus (tests/data/grading_corpus.jsonl: gold, response, adjudicated
`expected`, model, benchmark, kind) is graded by both; the script prints, per slice (model,
benchmark, answer kind) and overall, how often each grader agrees with the adjudicated verdict,
the slices where mathtune is below math-verify, responses/s of both, the speed ratio and the
timeout rate. math-verify gets `verify(parse("$gold$"), parse(response))`, as the corpus
builder does; mathtune gets `grade_many` on (response, gold).

GSM8K (1319 golds, the raw "... #### 18" solutions): every gold is answered in realistic correct
phrasings ("The answer is 1,234.", "#### 1234", "\\boxed{1234}", "$1234.00") after the gold's own
worked solution, and with wrong answers (off by one, x10, x0.01). MATH (5000 golds, the last
\\boxed{} of each solution): every gold is rewritten into equivalent forms (\\dfrac <-> \\frac,
\\frac{a}{b} -> a/b, reordered solution lists and sets, \\text{} units, spacing, \\left( \\right))
and, for numeric golds, a wrong value. Each case has a known expected verdict; the script prints
responses/s and verdict accuracy for both graders and the speed ratio. Nothing is hard-coded.

Both graders run single-process by default (`--workers 1`), so the ratio compares like with like;
math-verify gets the clean gold value (it cannot read "#### 18"), mathtune the raw field.
Data: ../shared/data/benchmarks (or --data-dir / $MATHTUNE_SHARED_BENCHMARKS); skips cleanly
when absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mathtune.grading import gold_answer, grade_many  # noqa: E402

CORPUS = REPO / "tests" / "data" / "grading_corpus.jsonl"
SLICE_KEYS = ("model", "benchmark", "kind")


@dataclass(frozen=True)
class Case:
    response: str
    gold_raw: str  # what mathtune gets (the benchmark field)
    gold_value: str  # what math-verify gets (the clean answer)
    expected: bool
    kind: str


# ----------------------------------------------------------------------------- GSM8K cases


def _money(v: Decimal) -> str:
    return f"{v:,}" if v == v.to_integral_value() else str(v)


def gsm8k_cases(rows: list[dict]) -> list[Case]:
    cases = []
    for row in rows:
        raw = row["answer"]
        value = gold_answer(raw)
        reasoning = re.sub(r"<<[^>]*>>", "", raw.split("####")[0]).strip()
        v = Decimal(value)
        right = {
            "answer_is_commas": f"{reasoning}\nThe answer is {_money(v)}.",
            "hash": f"{reasoning}\n#### {value}",
            "boxed": f"{reasoning}\nSo the final result is $\\boxed{{{value}}}$.",
            "dollars_cents": f"{reasoning}\nSo the total comes to ${v:.2f}.",
        }
        wrong = {
            "off_by_one": v + 1,
            "times_10": v * 10 if v != 0 else Decimal(7),
            "times_0.01": (v / 100).normalize() if v != 0 else Decimal(3),
        }
        for kind, text in right.items():
            cases.append(Case(text, raw, value, True, kind))
        for kind, w in wrong.items():
            cases.append(Case(f"{reasoning}\nThe answer is {_money(w) if w == w.to_integral_value() else w}.", raw, value, False, kind))
    return cases


# ----------------------------------------------------------------------------- MATH cases


def _split_top(s: str) -> list[str] | None:
    depth, parts, start = 0, [], 0
    for i, c in enumerate(s):
        depth += c in "({["
        depth -= c in ")}]"
        if c == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return [p.strip() for p in parts] if len(parts) > 1 else None


def _slash(g: str) -> str:
    def repl(m: re.Match) -> str:
        a, b = m.group(1), m.group(2)
        a = a if re.fullmatch(r"-?\w+|\\[a-z]+", a) else f"({a})"
        b = b if re.fullmatch(r"\w+|\\[a-z]+", b) else f"({b})"
        return f"{a}/{b}" if m.group(0) == g else f"({a}/{b})"

    return re.sub(r"\\d?frac\{([^{}]+)\}\{([^{}]+)\}", repl, g)


def _rewrites(g: str, problem: str) -> dict[str, str]:
    out = {}
    if "\\dfrac" in g:
        out["dfrac_to_frac"] = g.replace("\\dfrac", "\\frac")
    elif "\\frac" in g:
        out["frac_to_dfrac"] = g.replace("\\frac", "\\dfrac")
    slashed = _slash(g)
    if slashed != g:
        out["frac_to_slash"] = slashed
    parts = _split_top(g[2:-2]) if g.startswith("\\{") and g.endswith("\\}") else None
    if parts:
        out["reorder_set"] = "\\{" + ", ".join(reversed(parts)) + "\\}"
    elif "separated by commas" in problem and (parts := _split_top(g)):
        out["reorder_list"] = ", ".join(reversed(parts))
    if re.fullmatch(r"-?[\d.]+", g):
        out["text_units"] = g + "\\text{ units}"
    spaced = re.sub(r"\s*([+=]|(?<=[\w}])-)\s*", r" \1 ", g)
    spaced = re.sub(r"(?<!\\),(?!\\!|\d{3})\s*", ", ", spaced).strip()  # not thousands separators
    if spaced != g:
        out["spacing"] = spaced
    if "(" in g and g.count("(") == g.count(")") and "\\left" not in g:
        out["left_right"] = g.replace("(", "\\left(").replace(")", "\\right)")
    return out


def math_cases(rows: list[dict], per_gold: int = 2) -> list[Case]:
    cases = []
    for n, row in enumerate(rows):
        raw = row["solution"]
        g = gold_answer(raw)
        if not g:
            continue
        rewrites = list(_rewrites(g, row.get("problem", "")).items())
        if rewrites:
            start = n % len(rewrites)
            for kind, text in (rewrites[start:] + rewrites[:start])[:per_gold]:
                cases.append(Case(f"We simplify and find the answer is $\\boxed{{{text}}}$.", raw, g, True, kind))
        else:
            cases.append(Case(f"Thus the answer is $\\boxed{{{g}}}$.", raw, g, True, "verbatim"))
        if re.fullmatch(r"-?\d+", g):
            cases.append(Case(f"Thus the answer is $\\boxed{{{int(g) + 1}}}$.", raw, g, False, "wrong_int"))
        elif m := re.fullmatch(r"\\d?frac\{(\d+)\}\{(\d+)\}", g):
            wrong = f"\\frac{{{int(m.group(1)) + 1}}}{{{m.group(2)}}}"
            cases.append(Case(f"Thus the answer is $\\boxed{{{wrong}}}$.", raw, g, False, "wrong_frac"))
    return cases


# ----------------------------------------------------------------------------- runners


def warm_mathtune(workers: int) -> None:
    """Start the sympy workers (and import everything) before the clock starts."""
    grade_many([("\\boxed{\\sqrt{2}/2}", "\\frac{1}{\\sqrt{2}}")] * max(1, workers), workers=workers)


def run_mathtune(cases: list[Case], workers: int) -> tuple[list[bool], float, int]:
    warm_mathtune(workers)
    t = time.perf_counter()
    grades = grade_many([(c.response, c.gold_raw) for c in cases], workers=workers)
    return [g.correct for g in grades], time.perf_counter() - t, sum(g.status == "timeout" for g in grades)


def run_math_verify(cases: list[Case]) -> tuple[list[bool], float, int]:
    """math-verify with its own defaults (signal timeouts, 5 s); `slow` counts calls >= 5 s."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    verify(parse("$\\frac{1}{\\sqrt{2}}$"), parse("\\boxed{\\sqrt{2}/2}"))  # warm up the parser the same way
    t = time.perf_counter()
    out, slow = [], 0
    for c in cases:
        t0 = time.perf_counter()
        try:
            out.append(bool(verify(parse(f"${c.gold_value}$"), parse(c.response))))
        except Exception:
            out.append(False)
        slow += time.perf_counter() - t0 >= 5.0
    return out, time.perf_counter() - t, slow


def report(name: str, cases: list[Case], workers: int, show: int) -> None:
    print(f"\n== {name}: {len(cases)} responses ({sum(c.expected for c in cases)} correct, "
          f"{sum(not c.expected for c in cases)} wrong by construction)")
    mt, mt_s, _ = run_mathtune(cases, workers)
    try:
        mv, mv_s, _ = run_math_verify(cases)
    except ImportError:
        mv, mv_s = None, None
        print("  math-verify not installed (pip install math-verify): baseline skipped")
    rows = [("mathtune", mt, mt_s)] + ([("math-verify", mv, mv_s)] if mv is not None else [])
    print(f"  {'grader':<12} {'responses/s':>12} {'seconds':>8} {'verdict acc':>11} {'false+':>7} {'false-':>7}")
    for label, verdicts, secs in rows:
        acc = sum(v == c.expected for v, c in zip(verdicts, cases, strict=True)) / len(cases)
        fp = sum(v and not c.expected for v, c in zip(verdicts, cases, strict=True))
        fn = sum(c.expected and not v for v, c in zip(verdicts, cases, strict=True))
        print(f"  {label:<12} {len(cases) / secs:>12.1f} {secs:>8.2f} {acc:>11.2%} {fp:>7} {fn:>7}")
    if mv is not None:
        print(f"  speed ratio mathtune / math-verify: {mv_s / mt_s:.1f}x")
    kinds = sorted({c.kind for c in cases})
    print("  accuracy by kind: " + ", ".join(
        f"{k} {sum(v == c.expected for v, c in zip(mt, cases, strict=True) if c.kind == k)}/{sum(c.kind == k for c in cases)}"
        + (f" (mv {sum(v == c.expected for v, c in zip(mv, cases, strict=True) if c.kind == k)})" if mv else "")
        for k in kinds))
    misses = [(c, v) for c, v in zip(cases, mt, strict=True) if v != c.expected]
    for c, v in misses[:show]:
        print(f"  mathtune miss [{c.kind}] gold={c.gold_value!r} expected={c.expected} got={v}: ...{c.response[-90:]!r}")


# ----------------------------------------------------------------------------- the corpus


def corpus_cases(path: Path, limit: int | None) -> list[tuple[Case, dict]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row.get("expected"), bool):
                continue
            case = Case(row["response"], row["gold"], row["gold"], row["expected"], str(row.get("kind", "")))
            out.append((case, row))
    return out[:limit] if limit else out


def _pct(verdicts: list[bool], cases: list[Case], idx: list[int]) -> float:
    return sum(verdicts[i] == cases[i].expected for i in idx) / len(idx)


def report_corpus(path: Path, workers: int, show: int, limit: int | None) -> None:
    pairs = corpus_cases(path, limit)
    cases = [c for c, _ in pairs]
    print(f"\n== differential corpus: {len(cases)} adjudicated rows ({path.relative_to(REPO) if path.is_relative_to(REPO) else path})")
    mt, mt_s, mt_timeouts = run_mathtune(cases, workers)
    mv, mv_s, mv_slow = run_math_verify(cases)
    print(f"  {'slice':<38} {'n':>5} {'mathtune':>9} {'math-verify':>12}")
    below = []
    for k in SLICE_KEYS:
        for value in sorted({str(r.get(k, "")) for _, r in pairs}):
            idx = [i for i, (_, r) in enumerate(pairs) if str(r.get(k, "")) == value]
            a, b = _pct(mt, cases, idx), _pct(mv, cases, idx)
            below += [f"{k}={value}"] if a < b else []
            print(f"  {k + '=' + value:<38} {len(idx):>5} {a:>9.1%} {b:>12.1%}{'  <' if a < b else ''}")
    every = list(range(len(cases)))
    print(f"  {'overall':<38} {len(cases):>5} {_pct(mt, cases, every):>9.1%} {_pct(mv, cases, every):>12.1%}")
    for label, verdicts in (("mathtune", mt), ("math-verify", mv)):
        fp = sum(v and not c.expected for v, c in zip(verdicts, cases, strict=True))
        fn = sum(c.expected and not v for v, c in zip(verdicts, cases, strict=True))
        print(f"  {label} misses: {fp} false positives, {fn} false negatives")
    print(f"  slices where mathtune is below math-verify: {', '.join(below) if below else 'none'}")
    print(f"  {'grader':<12} {'responses/s':>12} {'seconds':>8} {'timeouts':>9}")
    print(f"  {'mathtune':<12} {len(cases) / mt_s:>12.1f} {mt_s:>8.2f} {mt_timeouts / len(cases):>9.2%}")
    print(f"  {'math-verify':<12} {len(cases) / mv_s:>12.1f} {mv_s:>8.2f} {mv_slow / len(cases):>9.2%}  (calls >= 5 s)")
    print(f"  speed ratio mathtune / math-verify: {mv_s / mt_s:.1f}x (workers={workers})")
    shown = 0
    for (c, r), a, b in zip(pairs, mt, mv, strict=True):
        if a != c.expected and shown < show:
            shown += 1
            print(f"  mathtune miss [{r.get('model')}/{r.get('benchmark')}/{c.kind}] gold={c.gold_value[:60]!r} "
                  f"expected={c.expected} (math-verify {b}): ...{c.response[-100:]!r}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_dir = os.environ.get("MATHTUNE_SHARED_BENCHMARKS", str(REPO.parent / "shared" / "data" / "benchmarks"))
    p.add_argument("--data-dir", default=default_dir)
    p.add_argument("--limit", type=int, default=None, help="use only the first N golds of each set")
    p.add_argument("--workers", type=int, default=1, help="mathtune sympy worker processes (default 1: like for like)")
    p.add_argument("--only", choices=["corpus", "gsm8k", "math"], default=None)
    p.add_argument("--corpus", type=Path, default=CORPUS, help="adjudicated (gold, response, expected) JSONL")
    p.add_argument("--show", type=int, default=0, help="print up to N cases where mathtune's verdict is off")
    args = p.parse_args(argv)
    if args.only in (None, "corpus"):
        if args.corpus.is_file():
            report_corpus(args.corpus, args.workers, args.show, args.limit)
        else:
            print(f"skipped corpus: {args.corpus} not found")
        if args.only == "corpus":
            return 0
    data = Path(args.data_dir)
    if not (data / "gsm8k" / "test.jsonl").is_file():
        print(f"skipped: benchmark data not found at {data} (set --data-dir or MATHTUNE_SHARED_BENCHMARKS)")
        return 0

    def load(name: str) -> list[dict]:
        with open(data / name / "test.jsonl", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return rows[: args.limit] if args.limit else rows

    if args.only in (None, "gsm8k"):
        report("GSM8K test golds", gsm8k_cases(load("gsm8k")), args.workers, args.show)
    if args.only in (None, "math") and (data / "math" / "test.jsonl").is_file():
        report("MATH test golds (rewritten equivalent forms)", math_cases(load("math")), args.workers, args.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
