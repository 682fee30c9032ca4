"""Benchmark test problems for decontamination: exactly the problem texts eval scores.

Every text comes from the one benchmark registry (`mathtune.benchmarks.load_problems`), from a
local data dir (`<dir>/<name>/test.jsonl`; a benchmark whose file is missing there comes from
the Hub) or the Hugging Face Hub. This module adds only the data stage's policy for a test set
that cannot be read: warn and note it on the data card, or stop (`on_unavailable: error`).

    from mathtune.data.testsets import load_test_problems
    tests, notes = load_test_problems(["gsm8k", "math500"], Path("DIR"))
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ..benchmarks import BENCHMARKS, get_benchmark, load_problems
from ..errors import MathtuneError

log = logging.getLogger("mathtune.data")


def load_test_problems(
    names: Sequence[str] | Literal["all"],
    data_dir: Path | None,
    on_unavailable: Literal["error", "warn"] = "warn",
) -> tuple[dict[str, list[str]], list[str]]:
    """{benchmark: [problem text, ...]} and notes on benchmarks that could not be read."""
    specs = [get_benchmark(n) for n in (list(BENCHMARKS) if names == "all" else names)]  # typos fail first
    out: dict[str, list[str]] = {}
    notes: list[str] = []
    for spec in specs:
        try:
            problems = load_problems(spec, data_dir, missing_local="hub")
        except MathtuneError as e:
            msg = f"benchmark {spec.name!r} test set unavailable: {e.message}"
            if on_unavailable == "error":
                hint = f"{e.hint}; or " if e.hint else ""
                raise MathtuneError(msg, f"{hint}set decontaminate.on_unavailable=warn") from None
            log.warning("%s; not decontaminated against it", msg)
            notes.append(msg)
            continue
        out[spec.name] = [p.problem for p in problems]
    return out, notes
