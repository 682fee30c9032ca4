"""`mathtune compare RUN_A RUN_B [--json OUT]`: paired comparison of two eval runs.

Joins the runs on problem id (greedy sample), prints both accuracies, the delta with a 95%
interval, the exact McNemar p-value, the problems B fixed and broke, per-subject / per-level
deltas and the change in reasoning diagnostics. `--json` writes the full result.

Try it:  mathtune compare tests/data/runs/base tests/data/runs/tuned
"""

from __future__ import annotations

import argparse
from typing import Any

HELP = "paired comparison of two eval runs (delta with CI, McNemar test, fixed/broken problems)"
DESCRIPTION = (
    "Compare eval run B against baseline run A on the problems both answered: accuracy of each, "
    "the paired delta with a 95% interval, the exact McNemar p-value, the problems B fixed "
    "(A wrong -> B right) and broke, per-category deltas and diagnostic changes."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_a", metavar="RUN_A", help="baseline eval run directory (contains predictions.jsonl)")
    p.add_argument("run_b", metavar="RUN_B", help="eval run directory to compare against RUN_A")
    p.add_argument("--json", metavar="OUT", help="also write the full comparison as JSON to OUT")
    p.add_argument("--show", type=int, default=10, metavar="N",
                   help="list at most N fixed and N broken problems (default: 10; --json has all)")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _pp(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f} pp"


def _delta(x: float) -> Any:
    from rich.text import Text

    return Text(_pp(x), style="green" if x > 0 else "red" if x < 0 else "")


def _plain(*values: Any) -> list[Any]:
    """Cells as rich Text, so user strings ("[1, 2]", ids) are never read as markup."""
    from rich.text import Text

    return [v if isinstance(v, Text) else Text("-" if v is None else str(v)) for v in values]


def _overview(c: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title=f"Paired comparison on {c['shared']} shared problems (greedy sample)", title_justify="left")
    for col in ("", "run", "model", "benchmark", "accuracy", "95% CI"):
        t.add_column(col, justify="right" if col in ("accuracy", "95% CI") else "left")
    for side in ("a", "b"):
        acc = c[f"accuracy_{side}"]
        t.add_row(*_plain(side.upper(), c[side]["name"], c[side]["model"], c[side]["benchmark"], _pct(acc["value"]),
                          f"[{_pct(acc['ci95'][0])}, {_pct(acc['ci95'][1])}]"))
    return t


def _verdict(c: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(show_header=True, title="B - A", title_justify="left")
    for col in ("delta", "95% CI (paired)", "McNemar p", "fixed", "broken", "both right", "both wrong"):
        t.add_column(col, justify="right")
    lo, hi = c["delta_ci95"]
    t.add_row(*_plain(_delta(c["delta"]), f"[{_pp(lo)}, {_pp(hi)}]", f"{c['mcnemar_p']:.3g}",
                      c["fixed"], c["broken"], c["both_correct"], c["both_wrong"]))
    return t


def _categories(c: dict[str, Any], key: str, what: str) -> Any:
    from rich.table import Table

    t = Table(title=f"By {what}", title_justify="left")
    for col in (what, "n", "A", "B", "delta", "fixed", "broken", "McNemar p"):
        t.add_column(col, justify="left" if col == what else "right")
    for g, s in c[key].items():
        t.add_row(*_plain(g, s["n"], _pct(s["accuracy_a"]["value"]), _pct(s["accuracy_b"]["value"]),
                          _delta(s["delta"]), s["fixed"], s["broken"], f"{s['mcnemar_p']:.3g}"))
    return t


def _diagnostics(c: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title="Reasoning diagnostics (shared problems, greedy)", title_justify="left")
    for col in ("measure", "A", "B", "change"):
        t.add_column(col, justify="left" if col == "measure" else "right")
    for k, v in c["diagnostics"].items():
        if v["delta"] is None:
            continue
        if k.endswith("_rate"):
            t.add_row(*_plain(k.replace("_", " "), _pct(v["a"]), _pct(v["b"]), _pp(v["delta"])))
        else:
            t.add_row(*_plain(k.replace("_", " "), f"{v['a']:.1f}", f"{v['b']:.1f}", f"{v['delta']:+.1f}"))
    return t


def _problems(items: list[dict[str, Any]], title: str, show: int) -> Any:
    from rich.table import Table

    more = f" (showing {show})" if len(items) > show else ""
    t = Table(title=f"{title}: {len(items)}{more}", title_justify="left")
    for col in ("id", "problem", "gold", "A said", "B said"):
        t.add_column(col, overflow="fold", max_width=70 if col == "problem" else 24)
    for it in items[:show]:
        t.add_row(*_plain(it["id"], it["problem"], it["gold"], it["extracted_a"], it["extracted_b"]))
    return t


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from ..eval.compare import compare_runs
    from ..eval.metrics import load_run
    from ..files import atomic_write_json

    result = compare_runs(load_run(args.run_a), load_run(args.run_b))
    console = print_comparison(result, args.show)
    if args.json:
        path = atomic_write_json(args.json, result)
        console.print(f"wrote {escape(str(path))}", highlight=False)
    return 0


def print_comparison(result: dict[str, Any], show: int = 10) -> Any:
    """Print a `compare_runs` result as rich tables; returns the console used."""
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    for w in result["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    console.print(_overview(result))
    console.print(_verdict(result))
    for key, what in (("by_subject", "subject"), ("by_level", "level")):
        if key in result:
            console.print(_categories(result, key, what))
    console.print(_diagnostics(result))
    console.print(_problems(result["fixed_problems"], "Fixed (A wrong -> B right)", show))
    console.print(_problems(result["broken_problems"], "Broken (A right -> B wrong)", show))
    return console
