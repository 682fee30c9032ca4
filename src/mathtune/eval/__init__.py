"""Evaluation: benchmarks (as data) -> prompts -> generation -> grading -> metrics -> compare/report.

    from mathtune.eval import run_eval, load_config
    result = run_eval(load_config(overrides=["benchmark=gsm8k", "limit=8", "data_dir=DIR"]))
    print(result.metrics["accuracy"])

The benchmark registry and its loaders are a shared part (`mathtune.benchmarks`, also read by
decontamination). Submodules: fewshot (exemplars), run (the `mathtune eval` run), metrics,
compare, report, diagnostics (`diagnose`, `doubt_count`: pure Python, also the GRPO `doubt`
reward). Heavy imports (torch, transformers) happen only when a run starts.
"""

from __future__ import annotations

from typing import Any

from .diagnostics import diagnose, doubt_count

__all__ = ["EvalConfig", "diagnose", "doubt_count", "load_config", "run_eval"]


def __getattr__(name: str) -> Any:
    if name in ("EvalConfig", "load_config", "run_eval"):
        from . import run

        return getattr(run, name)
    raise AttributeError(name)
