"""The `mathtune` command: one subcommand per stage.

Each subcommand lives in `mathtune/commands/<name>.py` with `HELP`, `add_arguments(parser)` and
`run(args) -> int`. Command modules import nothing heavy at module level (torch, transformers
are imported inside `run`), so `mathtune --help` and argument errors are instant.

User errors (`MathtuneError`) print as one line plus a hint and exit 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Order is the order shown in `mathtune --help`.
COMMANDS = [
    "models",
    "pull",
    "solve",
    "grade",
    "data",
    "train",
    "eval",
    "compare",
    "ensemble",
    "report",
    "demo",
    "export",
    "push",
    "serve",
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="mathtune",
        description="Turn a base language model into a mathematics specialist, and prove it got better.",
    )
    parser.add_argument("--version", action="version", version=f"mathtune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        # A missing command module is a bug in the checkout, never a command to hide: let it raise.
        mod = importlib.import_module(f"mathtune.commands.{name}")
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _print_error(message: str, hint: str | None) -> None:
    print(f"mathtune: error: {message}", file=sys.stderr)
    if hint:
        print(f"  hint: {hint}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    from .errors import MathtuneError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 1
    try:
        return int(args._run(args) or 0)
    except MathtuneError as e:
        _print_error(e.message, e.hint)
        return 2
    except KeyboardInterrupt:
        _print_error("interrupted", "re-run the same command to resume where it stopped")
        return 130
    except Exception as e:  # out-of-memory is a user-facing condition, not a bug
        if type(e).__name__ in {"OutOfMemoryError", "MemoryError"} and not os.environ.get("MATHTUNE_DEBUG"):
            _print_error(
                f"out of memory: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                "lower the batch size or max length, enable gradient checkpointing, or use QLoRA on a GPU",
            )
            return 3
        raise


if __name__ == "__main__":
    sys.exit(main())
