"""`mathtune grade`: grade model responses in a JSONL file against gold answers.

    mathtune grade preds.jsonl -o graded.jsonl --extract boxed,answer_is --workers 4

Each input line needs `response` and `gold` (a raw benchmark field such as GSM8K's
"... #### 18" or a MATH solution, or a bare value); `question` and `benchmark` are optional
and kept. Each output line is the input plus `extracted`, `correct` and `status`. Without -o
the output goes to stdout; the output file is written atomically. A summary (n, accuracy,
counts by status, malformed lines) goes to stderr; malformed lines are reported by number and
skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from ..errors import MathtuneError
from ..grading.extract import DEFAULT

HELP = "grade model responses (JSONL with response + gold) and report accuracy"
DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("input", type=Path, help="JSONL file: one {response, gold[, question, benchmark]} per line")
    parser.add_argument("-o", "--output", type=Path, default=None, help="graded JSONL (default: stdout)")
    parser.add_argument(
        "--extract",
        default=None,
        metavar="A,B,C",
        help=f"answer extractors to try, in order (default: {','.join(DEFAULT)})",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes for symbolic checks (default: all cores)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds allowed per symbolic check (default 5)")


def _read(path: Path) -> tuple[list[dict], list[tuple[int, str]]]:
    from ..files import read_jsonl

    if not path.is_file():
        raise MathtuneError(f"input file not found: {path}", "give a JSONL file with 'response' and 'gold' on each line")
    records: list[dict] = []
    malformed: list[tuple[int, str]] = []
    try:
        for lineno, rec, err in read_jsonl(path):
            if rec is None:
                malformed.append((lineno, err or "malformed"))
                continue
            missing = [k for k in ("response", "gold") if k not in rec]
            if missing:
                malformed.append((lineno, f"missing field {' and '.join(repr(k) for k in missing)}"))
            elif not isinstance(rec["gold"], (str, int, float)) or isinstance(rec["gold"], bool):
                malformed.append((lineno, "'gold' must be a string or a number"))
            elif rec["response"] is not None and not isinstance(rec["response"], str):
                malformed.append((lineno, "'response' must be a string"))
            else:
                records.append(rec)
    except UnicodeDecodeError as e:
        raise MathtuneError(f"{path} is not UTF-8 text ({e.reason})", "give a UTF-8 JSONL file") from e
    return records, malformed


def _summary(records: list[dict], malformed: int) -> str:
    n = len(records)
    correct = sum(r["correct"] for r in records)
    statuses = Counter(r["status"] for r in records)
    lines = [
        f"graded {n} responses: accuracy {correct / n:.2%} ({correct}/{n})" if n else "graded 0 responses",
        "  status: " + ", ".join(f"{s} {statuses.get(s, 0)}" for s in ("ok", "no_answer", "unparseable", "timeout")),
        f"  malformed lines skipped: {malformed}",
    ]
    benchmarks = sorted({str(r["benchmark"]) for r in records if r.get("benchmark") is not None})
    for b in benchmarks:
        rows = [r for r in records if str(r.get("benchmark")) == b]
        lines.append(f"  {b}: {sum(r['correct'] for r in rows) / len(rows):.2%} of {len(rows)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..files import atomic_write_jsonl
    from ..grading import grade_many
    from ..grading.extract import check_order

    order = check_order(args.extract)
    if args.workers is not None and args.workers < 1:
        raise MathtuneError(f"--workers must be at least 1, got {args.workers}", "omit it to use all cores")
    if args.timeout <= 0:
        raise MathtuneError(f"--timeout must be positive, got {args.timeout}", "the default is 5 seconds")
    records, malformed = _read(args.input)
    for lineno, err in malformed:
        print(f"mathtune grade: {args.input}:{lineno}: skipped ({err})", file=sys.stderr)
    if not records:
        raise MathtuneError(
            f"no gradable lines in {args.input}", "each line must be a JSON object with 'response' and 'gold'"
        )
    grades = grade_many(
        [(r["response"] or "", str(r["gold"])) for r in records], workers=args.workers, extract=order, timeout=args.timeout
    )
    out = [{**r, "extracted": g.extracted, "correct": g.correct, "status": g.status} for r, g in zip(records, grades, strict=True)]
    if args.output is not None:
        atomic_write_jsonl(args.output, out)
    else:
        sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out))
        sys.stdout.flush()
    print(_summary(out, len(malformed)), file=sys.stderr)
    if args.output is not None:
        print(f"  wrote {args.output}", file=sys.stderr)
    return 0
