"""Data pipeline benchmark: build throughput (tokenize + pack) and padding waste, mathtune's
packing versus padding every example to 1024 tokens (what the reference notebooks did).

    .venv/bin/python benchmarks/data_pipeline.py [--data-dir ../shared/data/benchmarks] [--block-size 1024]

Reads GSM8K train (<data-dir>/gsm8k/train.jsonl) through mathtune's gsm8k adapter and the real
SmolLM2 tokenizer (`mathtune.models.resolve_model("smollm2-135m-instruct", pull=False)`); when the
data or the tokenizer is missing it prints a notice and exits 0. Both variants run in this
process on the same examples, each timed over --repeats runs (best of), and are printed side by
side with their ratios. Nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("MATHTUNE_DATA", str(REPO.parent / "shared" / "data" / "benchmarks")))
    p.add_argument("--block-size", type=int, default=1024, help="packing block size (and the padded length)")
    p.add_argument("--pad-to", type=int, default=1024, help="the baseline pads every example to this length")
    p.add_argument("--repeats", type=int, default=3)
    return p.parse_args()


def _texts(data_dir: Path) -> list[str] | None:
    from mathtune.data.recipe import SourceSpec
    from mathtune.data.sources import load_source

    if not (data_dir / "gsm8k" / "train.jsonl").is_file():
        print(f"NOTICE: {data_dir}/gsm8k/train.jsonl not found; skipping (pass --data-dir)")
        return None
    exs = load_source(SourceSpec(name="gsm8k", split="train"), data_dir=str(data_dir))
    return [f"{e.problem}\n{e.solution}" for e in exs]


def _tokenizer():
    try:
        from transformers import AutoTokenizer

        from mathtune.models import resolve_model

        path = resolve_model("smollm2-135m-instruct", pull=False)
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # not pulled, or models module missing
        print(f"NOTICE: the SmolLM2 tokenizer is not available ({str(e).splitlines()[0]}); "
              "run `mathtune pull smollm2-135m-instruct` first. Skipping.")
        return None


def packed(texts: list[str], tok, block: int) -> tuple[int, int]:
    """mathtune's build: tokenize, append EOS, pack into `block`-token blocks (keep the tail, padded)."""
    from mathtune.data.corpus import pack_blocks, tokenize_texts

    ids = tokenize_texts(texts, tok)
    blocks, counts = pack_blocks(ids, block, tok.eos_token_id, tok.pad_token_id or tok.eos_token_id, keep_last=True)
    return len(blocks) * block, sum(counts)


def padded(texts: list[str], tok, pad_to: int) -> tuple[int, int]:
    """Reference-notebook style: each example padded (and truncated) to `pad_to` tokens."""
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    enc = tok(texts, padding="max_length", truncation=True, max_length=pad_to, add_special_tokens=False)
    return len(enc["input_ids"]) * pad_to, sum(sum(m) for m in enc["attention_mask"])


def _best(fn, repeats: int) -> tuple[float, tuple[int, int]]:
    best, result = float("inf"), (0, 0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> int:
    args = _args()
    texts = _texts(Path(args.data_dir))
    tok = _tokenizer() if texts else None
    if not texts or tok is None:
        return 0
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    n = len(texts)
    t_pack, (slots_pack, real_pack) = _best(lambda: packed(texts, tok, args.block_size), args.repeats)
    t_pad, (slots_pad, real_pad) = _best(lambda: padded(texts, tok, args.pad_to), args.repeats)
    pad_frac_pack = 1 - real_pack / slots_pack
    pad_frac_pad = 1 - real_pad / slots_pad
    print(f"GSM8K train: {n} examples, tokenizer {tok.name_or_path}, best of {args.repeats}")
    print(f"{'':34}{'packing (mathtune)':>22}{f'pad to {args.pad_to} (reference)':>28}")
    print(f"{'build examples/s (tokenize+pack)':34}{n / t_pack:>22,.0f}{n / t_pad:>28,.0f}")
    print(f"{'token slots':34}{slots_pack:>22,}{slots_pad:>28,}")
    print(f"{'real tokens':34}{real_pack:>22,}{real_pad:>28,}")
    print(f"{'padding fraction':34}{pad_frac_pack:>22.2%}{pad_frac_pad:>28.2%}")
    print(f"ratio: packing builds {t_pad / t_pack:.2f}x the examples/s of padding; "
          f"padding spends {slots_pad / slots_pack:.1f}x the token slots "
          f"({pad_frac_pad:.1%} vs {pad_frac_pack:.2%} padding)")
    if real_pad < real_pack - n:  # truncation at pad_to lost text
        print(f"note: padding to {args.pad_to} truncated {real_pack - n - real_pad:,} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
