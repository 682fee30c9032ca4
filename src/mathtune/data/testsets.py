"""Where each evaluation benchmark's test problems live, for decontamination.

This table MIRRORS the eval benchmark registry (mathtune/eval/benchmarks.py); the data stage
keeps its own small copy so it never imports eval internals. When a benchmark is added there,
add its test-set location here too. Local layout is ../shared/data/benchmarks
(`<dir>/test.jsonl`, fields per SOURCES.md there); the Hub is used when no local dir is given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MathtuneError, unknown_name_error
from .readers import iter_rows

log = logging.getLogger("mathtune.data")


def _fields(*names: str) -> Callable[[dict[str, Any]], str]:
    """Problem text = the named fields joined (SVAMP/ASDiv split body and question)."""
    return lambda row: " ".join(str(row[n]).strip() for n in names if row.get(n))


def _first(*names: str) -> Callable[[dict[str, Any]], str]:
    """Problem text = the first of the named fields that is present."""
    return lambda row: next((str(row[n]).strip() for n in names if row.get(n)), "")


@dataclass(frozen=True)
class TestSet:
    name: str
    local_dir: str
    text: Callable[[dict[str, Any]], str]
    hub_id: str
    hub_config: str | None = None
    hub_split: str = "test"


TESTSETS: dict[str, TestSet] = {
    t.name: t
    for t in [
        TestSet("gsm8k", "gsm8k", _fields("question"), "openai/gsm8k", "main"),
        TestSet("math500", "math500", _fields("problem"), "HuggingFaceH4/MATH-500"),
        TestSet("math", "math", _fields("problem"), "EleutherAI/hendrycks_math", "algebra"),
        TestSet("gsm_hard", "gsm_hard", _fields("input"), "reasoning-machines/gsm-hard", hub_split="train"),
        TestSet("svamp", "svamp", _fields("Body", "Question"), "ChilleD/SVAMP"),
        TestSet("asdiv", "asdiv", _fields("body", "question"), "EleutherAI/asdiv", hub_split="validation"),
        TestSet("mawps", "mawps", _fields("input"), "MU-NLPC/Calc-mawps"),
        TestSet("aime24", "aime24", _fields("problem"), "HuggingFaceH4/aime_2024", hub_split="train"),
        TestSet("amc23", "amc23", _first("problem", "question"), "math-ai/amc23"),
    ]
}


def _texts_from_local(ts: TestSet, root: Path) -> list[str] | None:
    path = root / ts.local_dir / "test.jsonl"
    if not path.is_file():
        return None
    texts = []
    for _, row in iter_rows(path):
        text = ts.text(row)
        if text:
            texts.append(text)
    return texts


def _texts_from_hub(ts: TestSet) -> list[str]:
    from .sources import load_hub_dataset

    ds = load_hub_dataset(ts.hub_id, ts.hub_config, ts.hub_split)
    return [t for t in (ts.text(row) for row in ds) if t]


def load_test_problems(
    names: list[str] | str, data_dir: Path | None, on_unavailable: str = "warn"
) -> tuple[dict[str, list[str]], list[str]]:
    """{benchmark: [problem text, ...]} and notes on benchmarks that could not be read."""
    selected = list(TESTSETS) if names == "all" else list(names)
    out: dict[str, list[str]] = {}
    notes: list[str] = []
    for name in selected:
        if name not in TESTSETS:
            raise unknown_name_error("benchmark", name, TESTSETS)
        ts = TESTSETS[name]
        texts = _texts_from_local(ts, data_dir) if data_dir else None
        if texts is None:
            try:
                texts = _texts_from_hub(ts)
            except Exception as e:
                msg = (f"benchmark {name!r} test set unavailable (no {ts.local_dir}/test.jsonl"
                       f"{' in ' + str(data_dir) if data_dir else ''}; Hub {ts.hub_id}: "
                       f"{(str(e).splitlines() or [type(e).__name__])[0][:160]})")
                if on_unavailable == "error":
                    raise MathtuneError(msg, "pass --data-dir with the benchmark files, or set decontaminate.on_unavailable=warn") from None
                log.warning(msg + "; not decontaminated against it")
                notes.append(msg)
                continue
        out[name] = texts
    return out, notes
