"""Eval generation throughput: mathtune's hf backend vs two plain transformers baselines.

    .venv/bin/python benchmarks/eval_throughput.py                       # 64 problems, full run
    .venv/bin/python benchmarks/eval_throughput.py --limit 16 --baseline-limit 4   # quick look

SmolLM2-135M-Instruct, GSM8K test problems (../shared/data/benchmarks/gsm8k/test.jsonl), chat-boxed
prompt, greedy, 256 new tokens, on the same machine in the same run, every arm in the dtype the
product picks on this CPU (`pick_dtype`: bf16 where the CPU runs it fast, else fp32; `--dtype`
overrides), plus mathtune in fp32 as a second row when that differs:

  (a) one problem at a time with `model.generate` (how the reference notebooks do it),
  (b) a plain batched `model.generate` (batch 16, left padding),
  (c) transformers' own continuous batching, `model.generate_batch` (the library's answer),
  mathtune: `HFGenerator` (continuous batching, in-place KV cache, rows leave when done).

The first lines name the CPU (vendor, AVX2/AVX-512/AVX512-BF16/AMX), the dtype and the threads.

(a) is slow (~8 s a problem), so `--baseline-limit N` times it on the first N problems only and
reports its per-problem rate; answer agreement with (a) is measured on those N. mathtune and (b)
take about a minute each, short enough for a neighbour's load to swing one run by 10-20% on a
shared machine, so each runs `--repeat` times (default 3): every run is printed and the median
one counts; (a) is a single run of several minutes.
Prints problems/min for each, the ratios, and the fraction of problems where mathtune's extracted
answer (and full text) equals each baseline's, with a control: how often two of the baselines agree
with each other (in bf16, greedy text forks at rounding ties whatever the implementation), and each
arm's count of answers right against GSM8K's gold ones (whether those forks cost accuracy).
`MATHTUNE_DECODE_KERNEL=0` runs mathtune without its C decode-attention kernel.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "benchmarks" / "gsm8k" / "test.jsonl"


def load_gsm8k(path: Path, limit: int) -> tuple[list[str], list[str]]:
    """The first `limit` questions of a GSM8K-format file and their gold answers (the registry's
    loader, with GSM8K's field names)."""
    from mathtune.benchmarks import load_problems, resolve_benchmark
    from mathtune.errors import MathtuneError

    try:
        problems = load_problems(resolve_benchmark(str(path), "problem=question,answer=answer"), limit=limit)
    except MathtuneError as e:
        sys.exit(str(e))
    return [p.problem for p in problems], [p.gold for p in problems]


def correct(texts: list[str], golds: list[str]) -> int:
    """How many completions mathtune's grader finds right against the GSM8K gold answers."""
    from mathtune.grading import grade_many

    return sum(g.correct for g in grade_many(list(zip(texts, golds, strict=False)), workers=1))


def one_at_a_time(model, tok, prompts: list[str], max_new: int) -> list[str]:
    import torch

    out = []
    with torch.inference_mode():
        for p in prompts:
            enc = tok(p, return_tensors="pt", add_special_tokens=False)
            ids = model.generate(**enc, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id)
            out.append(tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    return out


def plain_batched(model, tok, prompts: list[str], max_new: int, batch: int) -> list[str]:
    import torch

    tok.padding_side = "left"
    out = []
    with torch.inference_mode():
        for i in range(0, len(prompts), batch):
            enc = tok(prompts[i:i + batch], return_tensors="pt", padding=True, add_special_tokens=False)
            ids = model.generate(**enc, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id)
            out += tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def continuous_batching(model, tok, prompts: list[str], max_new: int) -> list[str]:
    """transformers' `generate_batch` (paged KV cache, continuous batching), greedy."""
    import torch
    from transformers import GenerationConfig

    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    cfg = GenerationConfig(max_new_tokens=max_new, do_sample=False, eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.pad_token_id)
    with torch.inference_mode():
        out = model.generate_batch(inputs=ids, generation_config=cfg, progress_bar=False)
    by_prompt = {tuple(r.prompt_ids): r.generated_tokens for r in out.values()}  # GSM8K prompts are distinct
    return [tok.decode(by_prompt[tuple(i)], skip_special_tokens=True) for i in ids]


def timed(fn, *args):
    """(result, wall seconds, CPU seconds of this process). On a machine shared with other jobs the
    wall time depends on their load; with a fixed thread count (--threads 1) the CPU time is the
    steadier measure of the work each method needs, so both are reported."""
    t, c = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - t, time.process_time() - c


def median_run(runs: list[tuple]) -> tuple:
    """The run with the median wall time (the lower middle one of an even count)."""
    return sorted(runs, key=lambda r: r[1])[(len(runs) - 1) // 2]


def spread(runs: list[tuple], n: int) -> str:
    if len(runs) < 2:
        return ""
    return f"; median of {len(runs)} runs: " + ", ".join(f"{n / r[1] * 60:.1f}" for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=64, help="problems for mathtune and baseline (b)")
    ap.add_argument("--baseline-limit", type=int, default=None, help="problems for baseline (a) (default: --limit)")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64, help="mathtune's batch size")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of mathtune and of (b), each reported, the median used for the ratios (short runs "
                         "are the most exposed to the load of other processes; (a) is one long run)")
    ap.add_argument("--skip-a", action="store_true", help="skip baseline (a)")
    ap.add_argument("--skip-b", action="store_true", help="skip baseline (b)")
    ap.add_argument("--skip-c", action="store_true", help="skip baseline (c), transformers' generate_batch")
    ap.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default="auto",
                    help="dtype of every arm (auto: what the product picks on this CPU)")
    ap.add_argument("--no-fp32-row", action="store_true", help="skip mathtune's second row in fp32")
    ap.add_argument("--threads", type=int, default=None,
                    help="fix torch threads for all three (default: baselines use torch's default, "
                         "mathtune tunes its own between 1 and that)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from mathtune.generation import HFGenerator, SamplingParams
    from mathtune.grading.extract import extract_answer
    from mathtune.models import cpu_kind, load_model, pick_dtype
    from mathtune.prompts import get_style

    dtype = {"torch.float32": "fp32", "torch.bfloat16": "bf16"}[str(pick_dtype("cpu", args.dtype))]
    problems, golds = load_gsm8k(args.data, args.limit)  # a wrong --data fails before the model loads
    model, tok = load_model("smollm2-135m-instruct", dtype=dtype, device="cpu")
    style = get_style("chat-boxed")
    prompts = [style.render(q, tok) for q in problems]
    n_a = min(args.baseline_limit or len(prompts), len(prompts))
    from mathtune.generation import decode_kernel, decode_ops

    print(f"CPU: {cpu_kind()}; mathtune's C decode-attention kernel: "
          f"{decode_kernel.describe()}; C elementwise ops: {decode_ops.describe()}", flush=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(prompts)} GSM8K problems, "
          f"{args.max_new_tokens} new tokens, greedy, {dtype} ({'product pick' if args.dtype == 'auto' else 'forced'}); "
          f"baseline (a) on {n_a}", flush=True)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, stop=style.stop_strings)

    def mathtune_arm(m, label: str):
        gen = HFGenerator(m, tok, batch_size=args.batch_size, threads=args.threads)
        gen.generate(prompts[:2], SamplingParams(max_new_tokens=4))  # warm-up (thread pools, allocator)
        runs = [timed(gen.generate, prompts, params) for _ in range(max(1, args.repeat))]
        outs, t, c = median_run(runs)
        if args.threads is None:
            torch.set_num_threads(gen.tuner.candidates[-1])  # give the baselines torch's default back
        texts = [o[0].text for o in outs]
        if any([o[0].text for o in r[0]] != texts for r in runs):
            print("warning: mathtune's runs did not all produce the same text")
        tokens = sum(o[0].tokens for o in outs)
        picks = sorted(set(gen.tuner.history)) or [torch.get_num_threads()]
        print(f"{label:16s}: {len(prompts) / t * 60:7.1f} problems/min  ({t:.1f}s, {tokens / t:.0f} new tokens/s; "
              f"threads used {picks}; {len(prompts) / c * 60:.1f} per CPU-min){spread(runs, len(prompts))}", flush=True)
        return texts, len(prompts) / t * 60, len(prompts) / c * 60

    texts_m, rate_m, cpu_m = mathtune_arm(model, f"mathtune {dtype}")
    if dtype != "fp32" and not args.no_fp32_row:
        fp32_model, _ = load_model("smollm2-135m-instruct", dtype="fp32", device="cpu")
        texts_32, rate_32, _ = mathtune_arm(fp32_model, "mathtune fp32")
        del fp32_model
        same = sum(extract_answer(x) == extract_answer(y) for x, y in zip(texts_m, texts_32, strict=True))
        print(f"  {dtype} vs fp32: {rate_m / rate_32:.2f}x; same extracted answer {same}/{len(texts_m)}", flush=True)

    rows = []
    if not args.skip_c:
        runs_c = [timed(continuous_batching, model, tok, prompts, args.max_new_tokens) for _ in range(max(1, args.repeat))]
        texts_c, t_c, c_c = median_run(runs_c)
        print(f"(c) generate_batch: {len(prompts) / t_c * 60:5.1f} problems/min  ({t_c:.1f}s; "
              f"{len(prompts) / c_c * 60:.1f} per CPU-min){spread(runs_c, len(prompts))}", flush=True)
        rows.append(("(c)", len(prompts) / t_c * 60, len(prompts) / c_c * 60, texts_c))
    if not args.skip_b:
        runs_b = [timed(plain_batched, model, tok, prompts, args.max_new_tokens, 16) for _ in range(max(1, args.repeat))]
        texts_b, t_b, c_b = median_run(runs_b)
        rate_b = len(prompts) / t_b * 60
        print(f"(b) batched x16 : {rate_b:7.1f} problems/min  ({t_b:.1f}s; {len(prompts) / c_b * 60:.1f} per CPU-min)"
              f"{spread(runs_b, len(prompts))}", flush=True)
        rows.append(("(b)", rate_b, len(prompts) / c_b * 60, texts_b))
    if not args.skip_a:
        texts_a, t_a, c_a = timed(one_at_a_time, model, tok, prompts[:n_a], args.max_new_tokens)
        rate_a = n_a / t_a * 60
        print(f"(a) one-at-a-time: {rate_a:6.1f} problems/min  ({t_a:.1f}s for {n_a}; {n_a / c_a * 60:.1f} per CPU-min)", flush=True)
        rows.insert(0, ("(a)", rate_a, n_a / c_a * 60, texts_a))

    print()
    if len(rows) > 1:  # how far two plain transformers arms agree in this dtype: the bar for mathtune's agreement
        (l1, _, _, t1), (l2, _, _, t2) = rows[-2:]
        same = sum(extract_answer(x) == extract_answer(y) for x, y in zip(t1, t2, strict=False))
        print(f"control: {l1} vs {l2} (both plain transformers): same extracted answer {same}/{min(len(t1), len(t2))}")
    for label, rate, cpu_rate, texts in rows:
        n = len(texts)
        same_answer = sum(extract_answer(x) == extract_answer(y) for x, y in zip(texts_m[:n], texts, strict=True))
        same_text = sum(x.strip() == y.strip() for x, y in zip(texts_m[:n], texts, strict=True))
        print(f"mathtune vs {label}: {rate_m / rate:5.1f}x faster (wall), {cpu_m / cpu_rate:5.1f}x (CPU time); same extracted answer {same_answer}/{n} "
              f"({same_answer / n:.0%}), identical text {same_text}/{n}")
    # where greedy text forks at rounding ties (bf16), whether the forks cost accuracy
    right = [f"mathtune {correct(texts_m, golds)}/{len(texts_m)}"]
    for label, _, _, texts in rows:
        n = len(texts)
        right.append(f"{label} {correct(texts, golds)}/{n}"
                     + (f" (mathtune {correct(texts_m[:n], golds)}/{n} on those)" if n < len(texts_m) else ""))
    print("right against the gold answers: " + ", ".join(right))


if __name__ == "__main__":
    main()
