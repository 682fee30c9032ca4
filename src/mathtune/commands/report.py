"""`mathtune report RUN... [-o report.html] [--title T]`: one self-contained HTML report.

Summary table, accuracy with 95% intervals, per-category charts, response lengths, reasoning
diagnostics and, for two or more runs, the paired comparison of the first run against the last
with example solutions side by side. Charts are embedded PNGs: the file opens offline.

Try it:  mathtune report tests/data/runs/base tests/data/runs/tuned -o /tmp/report.html
"""

from __future__ import annotations

import argparse

HELP = "write one self-contained HTML report (charts, tables, examples) over eval runs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="eval run directories; with 2+, the first is compared with the last")
    p.add_argument("-o", "--output", metavar="FILE", help="output HTML file (default: report.html in the last run directory)")
    p.add_argument("--title", default="mathtune evaluation report", help="report title")
    p.add_argument("--train", action="append", default=[], metavar="RUN",
                   help="a training run directory whose curves to show (RL: reward, signal, length); repeatable")
    p.add_argument("--examples", type=int, default=5, metavar="N",
                   help="fixed and broken example solutions shown side by side (default: 5 each)")


def run(args: argparse.Namespace) -> int:
    from ..errors import MathtuneError
    from ..eval.metrics import load_run
    from ..eval.report import write_report

    if args.output and not args.output.lower().endswith((".html", ".htm")):
        raise MathtuneError(f"report output must be an .html file, got {args.output!r}", "pass -o report.html")
    runs = [load_run(r) for r in args.runs]
    for run_ in runs:
        for w in run_.warnings:
            print(f"warning: {w}")
    path = write_report(runs, args.output, title=args.title, examples=max(0, args.examples), train_runs=args.train)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB; open it in any browser, works offline)")
    return 0
