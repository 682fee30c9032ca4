"""`mathtune models`: list the model catalogue — name, parameters, source, cached or not, size."""

from __future__ import annotations

import argparse
import json

HELP = "list the model catalogue (name, parameters, source, cached, size on disk)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _size(n: int) -> str:
    return "-" if not n else f"{n / 2**20:.0f} MiB" if n < 2**30 else f"{n / 2**30:.1f} GiB"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..models import catalogue_rows, mathtune_home

    rows = catalogue_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"mathtune models  (cache: {mathtune_home() / 'models'})")
    for col in ("name", "params", "source", "cached", "size", "notes"):
        table.add_column(col)
    for r in rows:
        name = r["name"] + (" (default)" if r["default"] else "")
        table.add_row(name, r["params"], r["source"], "yes" if r["cached"] else "no", _size(r["size_bytes"]), r["description"])
    Console().print(table)
    print("Any Hugging Face Hub id (owner/name) or local model directory works too.")
    return 0
