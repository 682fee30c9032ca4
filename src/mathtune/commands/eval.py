"""`mathtune eval`: score a model on a math benchmark; writes a resumable run directory.

    mathtune eval --benchmark gsm8k --data-dir ../shared/data/benchmarks --limit 200
    mathtune eval --benchmark my/test.jsonl --fields problem=question,answer=answer
    mathtune eval recipes/eval/smollm2_gsm8k.yaml limit=20 temperature=0.7 samples=4
    mathtune eval --benchmark gsm8k --retrieve exemplars --tools python --prompt chat-tir
    mathtune eval --list        # registered benchmarks
"""

from __future__ import annotations

import argparse
from typing import Any

HELP = "evaluate a model on a math benchmark (resumable run directory)"
DESCRIPTION = __doc__

# flag -> EvalConfig key; flags override the recipe, key=value overrides override both
FLAGS = {
    "model": str, "benchmark": str, "fields": str, "data_dir": str, "limit": int, "prompt": str, "fewshot": int,
    "system": str, "samples": int, "temperature": float, "top_p": float, "max_new_tokens": int,
    "batch_size": int, "backend": str, "base_url": str, "seed": int, "dtype": str, "device": str,
    "output": str, "extract": str, "retrieve": str, "retrieve_k": int, "cards": str, "exemplars": str,
    "tools": str, "max_tool_calls": int,
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", help="optional recipe YAML (recipes/eval/*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of recipe keys, e.g. limit=50")
    p.add_argument("--model", help="catalogue name, Hub id or local dir (default smollm2-135m-instruct)")
    p.add_argument("--benchmark", help="registered name (gsm8k, math500, ...) or a .jsonl path")
    p.add_argument("--fields", help="field mapping for a .jsonl benchmark: problem=question,answer=answer")
    p.add_argument("--data-dir", help="local benchmark dir laid out <dir>/<name>/test.jsonl (or $MATHTUNE_DATA)")
    p.add_argument("--limit", type=int, help="first N problems")
    p.add_argument("--prompt", help="prompt style: chat-boxed, chat, cot, gsm8k (default: the benchmark's)")
    p.add_argument("--fewshot", type=int, help="few-shot exemplars (train split, else a fixed list)")
    p.add_argument("--system", help="system message for chat prompt styles")
    p.add_argument("--samples", type=int, help="samples per problem (needs --temperature > 0)")
    p.add_argument("--temperature", type=float, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--backend", choices=["hf", "vllm", "openai"])
    p.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--seed", type=int)
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--extract", help="grader extractor order, e.g. boxed,answer_is,last_number")
    p.add_argument("--retrieve", choices=["none", "cards", "exemplars"],
                   help="put retrieved formula cards or solved exemplars into each prompt (mathtune.retrieval)")
    p.add_argument("--retrieve-k", type=int, help="cards or exemplars per problem (default 3)")
    p.add_argument("--cards", help="extra formula-card files (YAML, JSONL or LaTeX .tex), comma-separated")
    p.add_argument("--exemplars", help="solved examples for --retrieve exemplars: dataset dir or file "
                                       "(default: the benchmark's train split); decontaminated against the benchmark")
    p.add_argument("--tools", choices=["none", "python"], help="python: tool-integrated reasoning in the sandbox")
    p.add_argument("--max-tool-calls", type=int, help="programs run per response with --tools python (default 4)")
    p.add_argument("--output", "-o", help="run directory (default runs/eval/<model>-<benchmark>-<time>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list", action="store_true", help="list registered benchmarks and exit")


def _overrides(args: argparse.Namespace) -> list[str]:
    recipe, extra = args.recipe, list(args.overrides or [])
    if recipe and "=" in recipe and not recipe.endswith((".yaml", ".yml")):
        extra.insert(0, recipe)  # `mathtune eval limit=5`: no recipe, just overrides
        args.recipe = None
    flags: list[str] = []
    for key in FLAGS:
        value = getattr(args, key, None)
        if value is None:
            continue
        if key in ("extract", "cards"):
            flags.append(f"{key}=[{value}]")
        elif isinstance(value, str):
            flags.append(f"{key}={_quote(value)}")
        else:
            flags.append(f"{key}={value}")
    return flags + extra


def _quote(value: str) -> str:
    """A YAML scalar that stays a string (paths like 1e3 or 'yes' must not turn into numbers)."""
    import json

    return json.dumps(value)


def _list() -> int:
    from rich.console import Console
    from rich.table import Table

    from ..benchmarks import list_benchmarks

    table = Table("benchmark", "description", "Hub dataset", "local file (--data-dir)", "v")
    for s in list_benchmarks():
        table.add_row(s.name, s.description, s.hub.path if s.hub else "-", s.file, str(s.version))
    Console().print(table)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list()
    from ..eval.run import load_config, run_eval

    overrides = _overrides(args)
    cfg = load_config(args.recipe, overrides)
    result = run_eval(cfg, progress=not args.no_progress)
    _summary(result)
    return 0


def _summary(result: Any) -> None:
    acc = result.metrics.get("accuracy", {})
    info = result.run_info
    value = acc.get("value") if isinstance(acc, dict) else acc
    line = f"{info['benchmark']}: accuracy {value:.1%}" if isinstance(value, (int, float)) else f"{info['benchmark']}: {acc}"
    if isinstance(acc, dict) and "ci95" in acc:
        lo, hi = acc["ci95"]
        line += f" (95% CI {lo:.1%}-{hi:.1%})"
    line += f" on {info['problems']} problems"
    maj = result.metrics.get("maj_at_k")
    if isinstance(maj, dict) and isinstance(maj.get("value"), (int, float)):
        line += f", maj@{maj.get('k')} {maj['value']:.1%}"
    for k, val in (result.metrics.get("pass_at_k") or {}).items():
        if k != "1":
            line += f", pass@{k} {val:.1%}"
    rate = info.get("problems_per_s")
    if rate:
        line += f"; {rate * 60:.1f} problems/min"
    print(line)
    print(f"run directory: {result.run_dir}")
