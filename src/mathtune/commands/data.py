"""`mathtune data`: build datasets and corpora from recipes, show them, list sources.

    mathtune data build recipes/data/gsm8k_synth_mix.yaml --data-dir ../shared/data/benchmarks mix.size=2000
    mathtune data show runs/data/gsm8k_synth_mix -n 3
    mathtune data sources
    mathtune data pairs --model smollm2-135m-instruct --data runs/data/synth_easy -k 4 -o runs/pairs/synth.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "build, inspect and list training data (mix, dedup, decontaminate, CPT corpora, preference pairs)"
DESCRIPTION = (
    "Build a dataset directory (train/validation Parquet + data card) or a packed CPT corpus from "
    "a data recipe, show a built dataset, list the registered sources and synthetic families, or make "
    "preference pairs (for stage dpo / reward) by grading a model's own samples."
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
    p = sub.add_parser("pairs", help="sample k solutions per problem, grade them, write (chosen, rejected) pairs",
                       description="Sample k solutions per problem, grade each against the gold answer, and write "
                                   "a right one (chosen) against a wrong one (rejected) for every problem with both "
                                   "outcomes: the input of stage dpo and stage reward.")
    p.add_argument("--model", help="catalogue name, Hub id, local model dir or adapter dir")
    p.add_argument("--data", help="built dataset dir (its train split) or a JSONL/JSON/CSV/Parquet file")
    p.add_argument("--from-run", metavar="RUN",
                   help="instead of --model/--data: pair the graded samples of an eval run (mathtune eval --samples k)")
    p.add_argument("-o", "--output", required=True, help="pairs JSONL to write")
    p.add_argument("-k", type=int, default=4, help="samples per problem (default 4)")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--prompt", default="chat-boxed", help="prompt style (default chat-boxed; cot for base models)")
    p.add_argument("--system", help="system message for chat styles")
    p.add_argument("--limit", type=int, help="use the first N problems")
    p.add_argument("--pairs-per-problem", type=int, default=1, help="distinct (chosen, rejected) pairs per problem")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="hf", choices=["hf", "vllm"], help="generation backend (vllm: GPU, faster)")
    p.add_argument("--batch-size", type=int, default=64, help="generation batch size (hf)")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.data_command == "build":
        return _build(args)
    if args.data_command == "show":
        return _show(args)
    if args.data_command == "pairs":
        return _pairs(args)
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


def _pairs(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from ..data import make_pairs, read_examples, read_split, write_pairs
    from ..errors import MathtuneError
    from ..generation import HFGenerator
    from ..models import load_model, load_tokenizer
    from ..prompts import get_style

    if args.from_run:
        return _pairs_from_run(args)
    if not (args.model and args.data):
        raise MathtuneError("data pairs needs --model and --data (or --from-run RUN)",
                            "e.g. mathtune data pairs --model smollm2-135m-instruct --data runs/data/x -o pairs.jsonl")
    get_style(args.prompt)  # a misspelt style fails before the model loads
    source = Path(args.data).expanduser()
    if not source.exists():
        raise MathtuneError(f"data not found: {source}", "pass --data a built dataset dir or a JSONL/Parquet file")
    examples = read_split(source, "train") if (source / "train.parquet").is_file() else read_examples(source)
    if args.limit:
        examples = examples[: args.limit]
    if args.backend == "hf":
        model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
        generator = HFGenerator(model, tokenizer, batch_size=args.batch_size)
    else:
        from ..generation import get_generator

        tokenizer = load_tokenizer(args.model)  # renders the chat prompts the backend then completes
        generator = get_generator(args.backend, model=args.model, dtype=args.dtype)
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]sampling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("", total=len(examples) * args.k)
        result = make_pairs(examples, generator, tokenizer, k=args.k, max_new_tokens=args.max_new_tokens,
                            temperature=args.temperature, top_p=args.top_p, style=args.prompt, system=args.system,
                            seed=args.seed, pairs_per_problem=args.pairs_per_problem, model_name=args.model,
                            on_complete=lambda *_: bar.advance(task))
    generator.close()
    if not result.records:
        raise MathtuneError(f"no pairs made, nothing written: {result.summary()}",
                            "raise -k or --temperature, or use problems nearer the model's level")
    out = write_pairs(args.output, result.records)
    Console().print(f"[green]wrote[/] {out}: {result.summary()}")
    return 0


def _pairs_from_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..data import write_pairs
    from ..data.pairs import pairs_from_run
    from ..errors import MathtuneError
    from ..eval.metrics import load_run

    if args.model or args.data:
        raise MathtuneError("--from-run pairs an eval run's own samples; --model and --data do not apply",
                            "drop --model/--data, or drop --from-run to sample anew")
    result = pairs_from_run(load_run(args.from_run), pairs_per_problem=args.pairs_per_problem)
    if not result.records:
        raise MathtuneError(f"no pairs in {args.from_run}: {result.summary()}",
                            "evaluate with more --samples or a higher --temperature")
    out = write_pairs(args.output, result.records)
    Console().print(f"[green]wrote[/] {out}: {result.summary()}")
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
