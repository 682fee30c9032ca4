"""`mathtune ensemble RUN_A RUN_B ... -o RUN [--weights W,...|--fit-on DEV_A,DEV_B,...]`.

Combines eval runs of several models on one benchmark into a normal run directory: every sample
of every run votes, answers cluster by the grader's equivalence, each vote weighs its model's
weight (x an optional per-sample field such as a sequence confidence); the heaviest cluster is
the ensemble's answer. `mathtune compare` and `mathtune report` read the result unchanged.
Weights are given, or fitted on dev-split runs of the same models (`--fit-on`; dev runs that
share problems with the runs being ensembled are refused). metrics.json also holds maj@k
estimated from random k-subsets of the pooled samples, with a 95% bootstrap interval.

Try it:  mathtune ensemble tests/data/runs/base tests/data/runs/tuned -o /tmp/ens
         mathtune compare tests/data/runs/tuned /tmp/ens
"""

from __future__ import annotations

import argparse

HELP = "combine eval runs of several models by (weighted) voting into a new run directory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="eval run directories of one benchmark")
    p.add_argument("-o", "--output", required=True, metavar="RUN", help="directory to write the ensemble run to")
    p.add_argument("--weights", metavar="W,...", help="one weight per run, comma-separated (default: equal)")
    p.add_argument("--fit-on", metavar="DEV,...",
                   help="dev-split eval runs, one per model in the same order: fit the weights on them")
    p.add_argument("--sample-weight", metavar="FIELD",
                   help="a numeric prediction field multiplying each sample's vote (e.g. a confidence)")
    p.add_argument("--draws", type=int, default=200, metavar="N", help="random k-subsets per problem for maj@k")


def _weights(text: str | None, n: int) -> list[float] | None:
    from ..errors import MathtuneError

    if text is None:
        return None
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise MathtuneError(f"--weights must be numbers separated by commas, got {text!r}", "e.g. --weights 0.6,0.4") from None
    if len(values) != n:
        raise MathtuneError(f"--weights has {len(values)} values for {n} runs", "pass one weight per run, in order")
    return values


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from ..eval.metrics import load_run
    from ..eval.vote import write_ensemble

    runs = [load_run(r) for r in args.runs]
    dev = [load_run(r) for r in args.fit_on.split(",") if r.strip()] if args.fit_on else []
    result = write_ensemble(runs, args.output, weights=_weights(args.weights, len(runs)), fitted_on=dev,
                            sample_weight=args.sample_weight, draws=args.draws)
    console = Console()
    acc = result["metrics"]["accuracy"]
    for member in result["info"]["members"]:
        console.print(f"  {escape(member['name'])} ({escape(member['model'])}): weight {member['weight']:g}",
                      highlight=False)
    console.print(f"ensemble accuracy {100 * acc['value']:.1f}% [{100 * acc['ci95'][0]:.1f}%, "
                  f"{100 * acc['ci95'][1]:.1f}%] on {acc['n']} problems", highlight=False)
    for k, m in result["metrics"].get("maj_at_k_subsets", {}).items():
        if m["value"] is not None:
            console.print(f"  maj@{k} (random subsets): {100 * m['value']:.1f}% "
                          f"[{100 * m['ci95'][0]:.1f}%, {100 * m['ci95'][1]:.1f}%]", highlight=False)
    console.print(f"wrote {escape(result['run_dir'])}", highlight=False)
    return 0
