"""`mathtune data`: build datasets and corpora from recipes, show them, list sources.

    mathtune data build recipes/data/gsm8k_synth_mix.yaml --data-dir ../shared/data/benchmarks mix.size=2000
    mathtune data show runs/data/gsm8k_synth_mix -n 3
    mathtune data sources
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "build, inspect and list training data (mix, dedup, decontaminate, CPT corpora)"
DESCRIPTION = (
    "Build a dataset directory (train/validation Parquet + data card) or a packed CPT corpus from "
    "a data recipe, show a built dataset, or list the registered sources and synthetic families."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="build a dataset or corpus from a recipe")
    b.add_argument("recipe", help="data recipe YAML (recipes/data/*.yaml)")
    # REMAINDER so that overrides may follow --out/--data-dir too; `_split_rest` sorts them out
    b.add_argument("overrides", nargs=argparse.REMAINDER, help="key=value overrides, e.g. mix.size=2000 seed=1")
    b.add_argument("--out", help="output directory (default: recipe `output`, else runs/data/<recipe name>)")
    b.add_argument("--data-dir", help="local data dir laid out as <name>/<split>.jsonl (else $MATHTUNE_DATA, else the Hub)")
    s = sub.add_parser("show", help="print samples and the data card of a built dataset")
    s.add_argument("directory")
    s.add_argument("-n", type=int, default=3, help="samples to print (default 3)")
    s.add_argument("--split", default="train")
    sub.add_parser("sources", help="list registered sources, synthetic families and benchmark test sets")


def run(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.data_command == "build":
        return _build(args)
    if args.data_command == "show":
        return _show(args)
    return _sources()


def _build(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..data import build_dataset

    overrides = _split_rest(args)
    out = build_dataset(args.recipe, args.out, args.data_dir, overrides)
    card = json.loads((out / "card.json").read_text(encoding="utf-8"))
    console = Console()
    if card.get("kind") == "cpt":
        r = card["report"]
        console.print(f"[green]built corpus[/] {out}: {r['documents']} documents, {r['tokens']} tokens, "
                      f"{r['blocks']} blocks of {card['block_size']}")
    else:
        dc = card.get("decontamination", {})
        console.print(f"[green]built dataset[/] {out}: train {card['splits']['train']}, validation "
                      f"{card['splits']['validation']}; dedup dropped {card['dedup']['exact'] + card['dedup']['near']}, "
                      f"decontamination dropped {dc.get('dropped', 0)}")
    if card.get("notes"):
        console.print(f"[yellow]{len(card['notes'])} note(s)[/] (logged above) are in {out / 'card.md'}")
    return 0


def _split_rest(args: argparse.Namespace) -> list[str]:
    """Pull --out/--data-dir out of the trailing arguments; the rest are key=value overrides."""
    from ..errors import MathtuneError

    rest, overrides = list(args.overrides), []
    while rest:
        item = rest.pop(0)
        opt, eq, val = item.partition("=")
        if opt in ("--out", "--data-dir"):
            if not eq:
                if not rest:
                    raise MathtuneError(f"{opt} needs a value", f"write {opt} DIR")
                val = rest.pop(0)
            setattr(args, opt[2:].replace("-", "_"), val)
        elif item.startswith("-"):
            raise MathtuneError(f"unknown option {item!r} for `mathtune data build`", "options: --out DIR, --data-dir DIR")
        else:
            overrides.append(item)
    return overrides


def _show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.markup import escape
    from rich.panel import Panel

    from ..data import read_blocks, read_split
    from ..errors import MathtuneError

    directory = Path(args.directory)
    if not (directory / "card.json").is_file():
        raise MathtuneError(f"{directory} is not a built dataset (no card.json)", "build one with `mathtune data build RECIPE`")
    console = Console()
    card = json.loads((directory / "card.json").read_text(encoding="utf-8"))
    if card.get("kind") == "cpt":
        blocks = read_blocks(directory)
        console.print(f"{len(blocks)} blocks; first block starts with token ids {blocks[0][:16] if blocks else []}")
    else:
        for ex in read_split(directory, args.split)[: args.n]:
            body = f"[bold]{escape(ex.problem)}[/]\n\n{escape(ex.solution)}\n\n[green]answer:[/] {escape(ex.answer)}"
            title = escape(f"{ex.id}  ({ex.source}, {ex.domain}, level {ex.difficulty})")
            console.print(Panel(body, title=title, expand=False))
    console.print(Markdown((directory / "card.md").read_text(encoding="utf-8")))
    return 0


def _sources() -> int:
    from rich.console import Console
    from rich.table import Table

    from ..benchmarks import list_benchmarks
    from ..data import synth
    from ..data.sources import SOURCES

    console = Console()
    t = Table("source", "Hub dataset", "local dir", "description", title="sources")
    for s in SOURCES.values():
        t.add_row(s.name, s.hub_id or "-", s.local_name or ("-" if s.hub_id is None else s.name), s.description)
    console.print(t)
    f = Table("family", "domain", "description", title="synthetic families (levels 1-5)")
    for fam in synth.FAMILIES.values():
        f.add_row(fam.name, fam.domain, fam.description)
    console.print(f)
    b = Table("benchmark", "local file", "Hub", title="benchmarks (eval scores them; decontamination removes matches)")
    for spec in list_benchmarks():
        b.add_row(spec.name, spec.file, spec.hub.path if spec.hub else "-")
    console.print(b)
    return 0
