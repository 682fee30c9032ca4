"""Pass-rate filtering for stage grpo: keep the problems whose groups will carry signal.

    grpo: {pass_rate: {k: 8, low: 0.2, high: 0.8}}

A GRPO group whose completions are all right or all wrong has zero advantage everywhere and
teaches nothing (`frac_reward_zero_std`). Before training, the starting policy samples `k`
completions per problem (mathtune's decode loop, the trainer's temperature and top-p, seeded),
the grader scores them against the gold, and only problems with a pass rate in [low, high] are
trained on (as in DAPO's dynamic sampling and the "online difficulty filtering" literature, done
once up front). The rates are written to `pass_rates.jsonl` in the run directory, with the
settings they were measured under, and reused when the run resumes or is re-run with the same
settings, so an interrupted run trains on exactly the same problems.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import MathtuneError
from ..files import atomic_write_jsonl, read_jsonl

FILE = "pass_rates.jsonl"


def _key(spec: Any, prompts: list[str], answers: list[str], temperature: float, top_p: float, seed: int,
         max_new_tokens: int, model_name: str) -> str:
    h = hashlib.sha256(json.dumps([spec.model_dump(), temperature, top_p, seed, max_new_tokens, model_name],
                                  sort_keys=True).encode())
    for p, a in zip(prompts, answers, strict=True):
        h.update(p.encode())
        h.update(b"\0")
        h.update(str(a).encode())
        h.update(b"\1")
    return h.hexdigest()[:16]


def _cached(path: Path, key: str, n: int) -> list[float] | None:
    if not path.is_file():
        return None
    rows = [rec for _, rec, err in read_jsonl(path) if err is None]
    if len(rows) != n or any(r.get("key") != key for r in rows):
        return None
    return [float(r["pass_rate"]) for r in rows]


def measure(sampler: Any, model: Any, tokenizer: Any, prompts: list[str], answers: list[str], k: int,
            max_new_tokens: int) -> list[float]:
    """Each problem's pass rate over `k` sampled completions, graded against its gold."""
    from ..generation.base import stable_seed
    from ..grading import rewards

    ids = [list(x) for x in tokenizer(text=prompts)["input_ids"]]
    out = sampler.sample(model, ids, k, [stable_seed(f"pass-rate:{i}") for i in range(len(prompts))],
                         max_new_tokens=max_new_tokens)
    rates = []
    for comps, gold in zip(out, answers, strict=True):
        got = rewards([c.text for c in comps], [gold] * len(comps))
        rates.append(sum(g or 0.0 for g in got) / len(comps))
    return rates


def filter_by_pass_rate(train_ds: Any, model: Any, tokenizer: Any, spec: Any, config: Any, run_dir: Path,
                        seed: int, sampler: Any = None) -> Any:
    """`train_ds` (prompt, answer columns) without the problems whose pass rate lies outside the band."""
    from .rollout import DecodeRollout

    prompts, answers = list(train_ds["prompt"]), [str(a) for a in train_ds["answer"]]
    max_new = spec.max_new_tokens or config.max_completion_length
    name = str(getattr(getattr(model, "config", None), "_name_or_path", ""))
    key = _key(spec, prompts, answers, config.temperature, config.top_p, seed, max_new, name)
    path = Path(run_dir) / FILE
    rates = _cached(path, key, len(prompts))
    if rates is None:
        sampler = sampler or DecodeRollout(tokenizer, max_new_tokens=max_new, temperature=config.temperature,
                                           top_p=config.top_p, seed=seed)
        print(f"mathtune: pass-rate filter: sampling {spec.k} completions for each of {len(prompts)} problems",
              file=sys.stderr, flush=True)
        rates = measure(sampler, model, tokenizer, prompts, answers, spec.k, max_new)
        atomic_write_jsonl(path, [{"key": key, "index": i, "answer": a, "pass_rate": r, "k": spec.k}
                                  for i, (a, r) in enumerate(zip(answers, rates, strict=True))])
    keep = [i for i, r in enumerate(rates) if spec.low <= r <= spec.high]
    solved, failed = sum(r == 1.0 for r in rates), sum(r == 0.0 for r in rates)
    print(f"mathtune: pass-rate filter: kept {len(keep)} of {len(rates)} problems with a pass rate in "
          f"[{spec.low}, {spec.high}] over {spec.k} samples ({solved} always solved, {failed} never solved; "
          f"rates in {path})", file=sys.stderr, flush=True)
    if not keep:
        raise MathtuneError(f"the pass-rate filter kept none of {len(rates)} problems "
                            f"(band [{spec.low}, {spec.high}], {solved} always solved, {failed} never solved)",
                            "widen grpo.pass_rate.low/high, raise grpo.pass_rate.k, or use problems nearer the "
                            "model's level")
    return train_ds.select(keep)
