"""A held-out check of two in-memory models of one family (e.g. a model and its reloaded export):
both solve the same problems with mathtune's eval (batched greedy decoding, the grader), each
through its own tokenizer and chat template; reported: both accuracies with the paired McNemar
test, identical responses, and top-1 agreement teacher-forced on the first model's responses.

    check = heldout_check("gsm8k", n=100, data_dir=DIR)         # for export_model(heldout=check)
    report = check(source, source_tok, reloaded, reloaded_tok, work_dir)

The problems: a registered benchmark or a JSONL file (`mathtune export` writes mathtune's
synthetic held-out set to one by default).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

HeldoutCheck = Callable[[Any, Any, Any, Any, Path], dict[str, Any]]


def compare_heldout(source: Any, source_tok: Any, reloaded: Any, reloaded_tok: Any, work_dir: Path, *,
                    n: int = 100, benchmark: str = "gsm8k", fields: str | None = None, data_dir: str | None = None,
                    max_new_tokens: int = 128, batch_size: int = 32, label: str | None = None) -> dict[str, Any]:
    """Accuracy of `source` and `reloaded` on `n` held-out problems, paired; the eval runs stay in `work_dir`."""
    import torch

    from ..generation.hf import HFGenerator
    from .compare import compare_runs
    from .metrics import load_run
    from .run import EvalConfig, run_eval

    runs = {}
    for which, model, tok in (("source", source, source_tok), ("export", reloaded, reloaded_tok)):
        cfg = EvalConfig(model=which, benchmark=benchmark, fields=fields, data_dir=data_dir, limit=n,
                         prompt="chat-boxed", max_new_tokens=max_new_tokens, batch_size=batch_size, dtype="fp32",
                         output=str(Path(work_dir) / which))
        runs[which] = run_eval(cfg, progress=False, generator=HFGenerator(model, tok, batch_size=batch_size)).records
    cmp = compare_runs(load_run(Path(work_dir) / "source"), load_run(Path(work_dir) / "export"))
    agree = positions = 0
    for rec in runs["source"]:
        prompt = source_tok(rec["prompt"], add_special_tokens=False)["input_ids"]
        response = source_tok(rec["response"], add_special_tokens=False)["input_ids"]
        if not response:
            continue
        seq = torch.tensor([prompt + response])
        with torch.no_grad():
            a = source(input_ids=seq).logits[0, len(prompt) - 1:-1]
            b = reloaded(input_ids=seq).logits[0, len(prompt) - 1:-1]
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        positions += a.shape[0]
    same_text = sum(ra["response"] == rb["response"] for ra, rb in zip(runs["source"], runs["export"], strict=True))
    return {
        "benchmark": label or benchmark,
        "n": cmp["shared"], "max_new_tokens": max_new_tokens,
        "accuracy_source": cmp["accuracy_a"]["value"], "accuracy_export": cmp["accuracy_b"]["value"],
        "delta": cmp["delta"], "delta_ci95": cmp["delta_ci95"], "mcnemar_p": cmp["mcnemar_p"],
        "fixed": cmp["fixed"], "broken": cmp["broken"], "identical_responses": same_text,
        "top1_agreement": agree / max(positions, 1), "positions": positions,
    }


def heldout_check(benchmark: str, n: int = 100, fields: str | None = None, data_dir: str | None = None,
                  max_new_tokens: int = 128, label: str | None = None) -> HeldoutCheck:
    """`compare_heldout` with these settings, as the callable `export_model(heldout=...)` takes."""
    return functools.partial(compare_heldout, n=n, benchmark=benchmark, fields=fields, data_dir=data_dir,
                             max_new_tokens=max_new_tokens, label=label)
