"""GRPO step time: mathtune's stage grpo vs TRL's GRPOTrainer with its default rollout, side by side.

    .venv/bin/python benchmarks/grpo_throughput.py                    # 4 steps per arm, ~15 minutes
    .venv/bin/python benchmarks/grpo_throughput.py --steps 6 --arms trl,mathtune

Same model (SmolLM2-135M-Instruct via mathtune.models.load_model, in the dtype the product picks
on this CPU), LoRA r=16/alpha=32/dropout 0.05 on all linear layers, the same prompts (synthetic
problems, levels 1-2, rendered with the `chat-boxed` prompt style), 2 prompts x 8 completions
per step (`--prompts`, `--group`), the same completion length cap, temperature 1.0 and the same rewards (mathtune's
`correctness` 1.0 + `format` 0.1). Arms, each in its own subprocess (its RSS high-water mark is
its own):

  trl       a TRL script as its docs write it: GRPOTrainer(model, reward_funcs, args=GRPOConfig(...),
            peft_config=LoraConfig(...)), TRL's defaults otherwise: its rollout is model.generate
  mathtune  `mathtune train` on a stage-grpo recipe with its defaults: mathtune's decode loop as TRL's
            rollout_func over a plain copy of the model with the adapter merged in per step
  live      the same rollout on the training model itself (grpo.policy: live: LoRA forward, no copy)
  mt-trl    mathtune's recipe with grpo.rollout: trl (attribution: what the rollout alone buys)
  mt-gc     mathtune with trainer.gradient_checkpointing: true (memory vs time)
  trl-lit   TRL with mathtune's literature defaults (Dr. GRPO loss, beta 0, clip-higher, truncated
            completions masked): the same loss as mathtune's, so the ratio to it is work for work
  mt-all    mathtune with mask_truncated_completions: false, as TRL's default: every completion,
            cut off or not, is in the loss (mathtune's loss forward leaves masked rows out, which
            at a short completion cap is most of them)

The loss forward (`train/cpu_speedups.py`) runs padding-free, packs each group's prompt once with
its completions as branches (`train/attention.py`), projects only completion tokens through the
LM head, and leaves out rows with nothing in the loss; TRL's runs [rows, longest prompt + longest
completion] and scores every position.

Measured per arm: seconds per step (median over the steps after the first, which is warm-up),
for mathtune's rollout arms the seconds of it spent sampling (`rollout_s` in metrics.jsonl),
completion tokens generated per second (the arms sample different completions, so this is the
like-for-like rate when lengths differ), mean completion length, and peak RSS. Then the ratios
against `trl`. The first lines name the CPU kind, the dtype and the thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = os.environ.get("BENCH_MODEL", "smollm2-135m-instruct")
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}
PROMPTS, GROUP = 2, 8  # per step; 8 completions per prompt is TRL's default num_generations


def step_meter():
    from transformers import TrainerCallback

    class Meter(TrainerCallback):
        def __init__(self):
            self.times, self.lengths, self.rollout, self.t0 = [], [], [], 0.0

        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self.t0)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                self.lengths.append(float(logs["completions/mean_length"]))
            if logs and "rollout_s" in logs:  # mathtune's rollout arms: seconds sampling within the step
                self.rollout.append(float(logs["rollout_s"]))

    return Meter()


def examples(n: int) -> list[dict]:
    from mathtune.data import synth

    return [{"problem": e.problem, "solution": e.solution, "answer": e.answer}
            for e in synth.generate(n, levels=[1, 2], seed=0)]


def run_mathtune(steps: int, length: int, out: Path, meter, trainer: dict | None = None, **grpo) -> None:
    from mathtune.train import train

    train({"stage": "grpo", "model": {"name": MODEL},
           "method": {"kind": "lora", "r": LORA["r"], "alpha": LORA["alpha"], "dropout": LORA["dropout"]},
           "data": {"examples": examples(64), "prompt": "chat-boxed", "validation": 0},
           "run": {"output_dir": str(out), "progress": "none", "plot": False, "resume": False},
           "rewards": {"correctness": 1.0, "format": 0.1}, "grpo": grpo,
           "trainer": {"max_steps": steps, "per_device_train_batch_size": PROMPTS * GROUP,
                       "num_generations": GROUP, "max_completion_length": length, "temperature": 1.0,
                       "learning_rate": 2e-5, "save_strategy": "no", **(trainer or {})}},
          callbacks=[meter])


def run_trl(steps: int, length: int, out: Path, meter, literature: bool = False) -> None:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from mathtune.models import load_model
    from mathtune.prompts import get_style
    from mathtune.train.grpo import LITERATURE_DEFAULTS, prompt_text
    from mathtune.train.rewards import build_rewards

    model, tok = load_model(MODEL)
    style = get_style("chat-boxed")
    ds = Dataset.from_list([{"prompt": prompt_text(style, e["problem"], tok, None), "answer": e["answer"]}
                            for e in examples(64)])
    funcs, weights = build_rewards({"correctness": 1.0, "format": 0.1}, style, length)
    import torch

    args = GRPOConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=PROMPTS * GROUP,
                      num_generations=GROUP, max_completion_length=length, temperature=1.0, learning_rate=2e-5,
                      reward_weights=weights, logging_steps=1, save_strategy="no", report_to="none",
                      use_cpu=True, bf16=model.dtype == torch.bfloat16, disable_tqdm=True,
                      **(LITERATURE_DEFAULTS if literature else {}))
    lora = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                      target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=ds, processing_class=tok,
                          peft_config=lora, callbacks=[meter])
    trainer.train()


def child(arm: str, steps: int, length: int, out: str) -> None:
    meter = step_meter()
    work = Path(tempfile.mkdtemp(prefix=f"grpo-bench-{arm}-"))
    if arm == "trl":
        run_trl(steps, length, work, meter)
    elif arm == "mathtune":
        run_mathtune(steps, length, work, meter)
    elif arm == "live":
        run_mathtune(steps, length, work, meter, policy="live")
    elif arm == "mt-trl":
        run_mathtune(steps, length, work, meter, rollout="trl")
    elif arm == "mt-gc":
        run_mathtune(steps, length, work, meter, trainer={"gradient_checkpointing": True})
    elif arm == "trl-lit":
        run_trl(steps, length, work, meter, literature=True)
    elif arm == "mt-all":
        run_mathtune(steps, length, work, meter, trainer={"mask_truncated_completions": False})
    else:
        raise SystemExit(f"unknown arm {arm!r}")
    times = meter.times[1:] if len(meter.times) > 1 else meter.times
    lengths = meter.lengths[1:] if len(meter.lengths) > 1 else meter.lengths
    step_s = statistics.median(times)
    tokens = PROMPTS * GROUP * statistics.mean(lengths)
    Path(out).write_text(json.dumps({
        "arm": arm, "steps": len(meter.times), "step_s": step_s, "all_steps_s": meter.times,
        "mean_length": statistics.mean(lengths),
        "rollout_s": statistics.median(meter.rollout[1:] or meter.rollout) if meter.rollout else None,
        "tokens_per_s": PROMPTS * GROUP * sum(lengths) / sum(times) if times else 0.0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "tokens_per_step": tokens}))


def main() -> None:
    global PROMPTS, GROUP
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--length", type=int, default=128, help="max_completion_length")
    ap.add_argument("--arms", default="trl,trl-lit,mathtune,mt-all")
    ap.add_argument("--prompts", type=int, default=PROMPTS, help="prompts per step")
    ap.add_argument("--group", type=int, default=GROUP, help="completions per prompt (num_generations)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    PROMPTS, GROUP = args.prompts, args.group
    if args.child:
        child(args.child, args.steps, args.length, args.out)
        return
    import torch

    from mathtune.models import cpu_kind, pick_dtype

    print(f"CPU: {cpu_kind()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"product dtype {pick_dtype('cpu')}; model {MODEL}; {PROMPTS} prompts x {GROUP} completions x "
          f"<= {args.length} tokens per step, {args.steps} steps per arm", flush=True)
    results: dict[str, dict] = {}
    for arm in args.arms.split(","):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            out = f.name
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--child", arm, "--steps", str(args.steps),
                               "--length", str(args.length), "--prompts", str(PROMPTS), "--group", str(GROUP),
                               "--out", out], capture_output=True, text=True)
        if proc.returncode:
            print(f"{arm}: failed\n{proc.stderr[-3000:]}", flush=True)
            continue
        results[arm] = json.loads(Path(out).read_text())
        r = results[arm]
        print(f"{arm:>9}: {r['step_s']:7.2f} s/step  {r['tokens_per_s']:7.1f} completion tokens/s  "
              f"mean length {r['mean_length']:5.1f}  peak RSS {r['peak_rss_mb']:7.0f} MB  "
              + (f"rollout {r['rollout_s']:.1f} s of the step  " if r.get("rollout_s") is not None else "") +
              f"(steps {', '.join(f'{x:.1f}' for x in r['all_steps_s'])}; {time.perf_counter() - t:.0f} s)",
              flush=True)
    pairs = [("trl", arm) for arm in results if not arm.startswith("trl")]
    pairs += [("trl-lit", "mathtune")] if "mathtune" in results else []
    for ref, arm in pairs:
        base, r = results.get(ref), results[arm]
        if base:
            print(f"{arm} vs {ref}: x{base['step_s'] / r['step_s']:.2f} per step, "
                  f"x{r['tokens_per_s'] / base['tokens_per_s']:.2f} completion tokens/s, "
                  f"memory x{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}", flush=True)


if __name__ == "__main__":
    main()
