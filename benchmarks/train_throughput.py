"""Training throughput: mathtune vs the reference notebooks' way vs TRL defaults, side by side.

    .venv/bin/python benchmarks/train_throughput.py                 # 3 steps per arm, a few minutes each
    .venv/bin/python benchmarks/train_throughput.py --steps 5 --arms a,c

Same data (GSM8K train rows from ../shared/data/benchmarks/gsm8k/train.jsonl, formatted with the
`chat-boxed` prompt style), same model (SmolLM2-135M-Instruct via mathtune.models.load_model),
LoRA r=16/alpha=32 on all linear layers, batch 4, max length 1024. Arms, each in its own
subprocess (so its RSS high-water mark is its own):

  a      the reference notebooks: HF Trainer, every example padded to 1024,
         DataCollatorForLanguageModeling(mlm=False), fp32
  b      TRL SFTTrainer with its defaults + packing=True (bf16 autocast and gradient
         checkpointing on by default; bf16 is ~100x slower than fp32 on CPUs without
         AVX512-BF16/AMX, so this arm is capped by --time-cap and may report an upper bound)
  b32    the same with bf16=False (TRL defaults otherwise), the fairer TRL baseline on such CPUs
  c      mathtune.train.train with its defaults for the device (on a CPU: each batch flattened
         padding-free, per-example attention, labelled-positions-only loss head, fused LoRA
         dropout, the dtype the product picks on this CPU (bf16 where it is fast), no gradient
         checkpointing): what users get
  c32    the same forced to fp32 (run by default when the product picks another dtype)
  cpk    the same with trainer.packing=true (4 packed 1024-token rows a step; not run by default)
  cgc    the same with trainer.gradient_checkpointing=true (memory vs time; not run by default)

Arm c runs first and again after the baselines (default order c, a, b, b32, c, c32), and its
slower run is the one compared: some shared machines slow down during a run (an AMX Xeon's bf16
GEMMs fell from ~2,300 to ~1,100 GFLOP/s under the arms' sustained load, and c/a read 6.8x with c
last against 10.4x with c first), so one run of c would favour whichever part of the run it fell in.

Measured: loss-bearing tokens/s (labels != -100 after the shift, counted on the real batches
each arm's collator produced; the first step is warm-up and excluded when more than one step
ran), peak RSS, and the ratios c/a, c/b, c/b32. Timings on a shared machine are noisy.

Then the matrix-product floor: the fewest FLOPs arm c's batches need (forward and input-gradient
products of the frozen layers over every token, the LM head over the labelled ones; attention,
LoRA and elementwise work counted as free) at the best GEMM rate this CPU reaches in float32 or
bfloat16 (measured before the arms and after them, the higher of the two). No implementation beats it on this machine, so it says which ratio over (a) the
hardware allows; mathtune's share of it is printed. The first lines name the CPU kind, the dtype
the product picks and the thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GSM8K = Path(os.environ.get("MATHTUNE_SHARED_BENCHMARKS", REPO.parent / "shared" / "data" / "benchmarks")) / "gsm8k" / "train.jsonl"
MODEL = os.environ.get("BENCH_MODEL", "smollm2-135m-instruct")  # a model dir, for a smoke run
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}
BATCH, MAXLEN = 4, 1024


def load_rows(n: int) -> list[dict]:
    rows = []
    with open(GSM8K, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            sol, _, ans = rec["answer"].rpartition("####")
            rows.append({"problem": rec["question"], "solution": sol.strip(), "answer": ans.strip()})
            if len(rows) >= n:
                break
    return rows


class Meter:
    """Counts loss-bearing tokens of each training forward pass and times each optimizer step."""

    def __init__(self, time_cap: float) -> None:
        self.batch_tokens: list[int] = []
        self.input_tokens: list[int] = []
        self.shapes: dict = {}
        self.step_times: list[float] = []
        self.t_step = 0.0
        self.t0 = time.time()
        self.time_cap = time_cap

    def count(self, module, args, kwargs):
        labels = kwargs.get("labels")
        if module.training and labels is not None:  # one training micro-batch
            self.batch_tokens.append(int((labels[..., 1:] != -100).sum()))
            self.input_tokens.append(int(kwargs["input_ids"].numel()) if "input_ids" in kwargs else 0)
            if not self.shapes:
                self.shapes = model_shapes(module)

    def callback(self):
        from transformers import TrainerCallback

        meter = self

        class _CB(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kw):
                # count the labels of the batches the model really trains on, whatever the collator
                model.register_forward_pre_hook(meter.count, with_kwargs=True)

            def on_step_begin(self, args, state, control, **kw):
                meter.t_step = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                meter.step_times.append(time.perf_counter() - meter.t_step)
                if time.time() - meter.t0 > meter.time_cap:
                    control.should_training_stop = True

        return _CB()

    def report(self, arm: str, partial: bool = False) -> dict:
        steps = len(self.step_times)
        # batches collated == steps (+1 in progress); tokens of the steps that finished
        toks = self.batch_tokens[:steps]
        if steps > 1:
            tokens, secs, note = sum(toks[1:]), sum(self.step_times[1:]), f"{steps - 1} timed steps (1 warm-up)"
        elif steps == 1:
            tokens, secs, note = toks[0], self.step_times[0], "1 step incl. warm-up"
        else:  # not even one step in the time cap: an upper bound from the batch in progress
            tokens = self.batch_tokens[0] if self.batch_tokens else 0
            secs, note = time.time() - self.t0, "no step finished within the time cap: upper bound"
        inputs = sum(self.input_tokens[1:steps]) if steps > 1 else sum(self.input_tokens[:1])  # same batches
        return {"arm": arm, "steps": steps, "loss_tokens": tokens, "input_tokens": inputs, "shapes": self.shapes,
                "seconds": secs,
                "tokens_per_s": tokens / secs if secs else 0.0, "note": note, "partial": partial,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def model_shapes(model) -> dict:
    """Multiply-accumulates per token of the frozen linear layers (LoRA adapters and the LM head
    excluded) and the LM head's size, for the matrix-product floor."""
    import torch

    head = model.get_output_embeddings()
    body = sum(m.in_features * m.out_features for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and "lora_" not in name and m is not head)
    return {"body_macs": body, "head_macs": head.in_features * head.out_features}


def gemm_rate(dtype_name: str) -> float:
    """Best GFLOP/s of this process's torch at the training step's GEMM shapes (tokens x hidden by
    hidden x intermediate, labelled tokens x hidden by hidden x vocab), best of 5 runs each."""
    import torch

    dtype = getattr(torch, dtype_name)
    best = 0.0
    for m, k, n in ((1024, 576, 1536), (1024, 1536, 576), (256, 576, 49152)):
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        a @ b
        for _ in range(5):
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * m * k * n / (time.perf_counter() - t) / 1e9)
    return best


def gemm_rates() -> dict[str, float]:
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    return {d: gemm_rate(d) for d in ("float32", "bfloat16")}


def matmul_floor(c: dict, a: dict | None, before: dict[str, float]) -> None:
    """Print the loss-tokens/s no implementation can beat on this CPU for arm c's real batches: the
    frozen layers' forward and input-gradient products (2 x 2 x tokens x MACs) plus the LM head on
    the labelled tokens (forward and input gradient), at the best GEMM rate measured (before the
    arms and again after them, the higher of the two per dtype: a shared machine's rate drifts,
    and the higher one is the stricter floor); attention, LoRA and every elementwise op are
    counted as free."""
    after = gemm_rates()
    rates = {d: max(before[d], after[d]) for d in after}
    print("GEMM rates before / after the arms: " + ", ".join(f"{d} {before[d]:.0f} / {after[d]:.0f}" for d in after)
          + " GFLOP/s")
    best = max(rates.values())
    shapes = c["shapes"]
    flops = 4 * c["input_tokens"] * shapes["body_macs"] + 4 * c["loss_tokens"] * shapes["head_macs"]
    floor_s = flops / (best * 1e9)
    top = c["loss_tokens"] / floor_s
    rate_txt = ", ".join(f"{d} {r:.0f}" for d, r in rates.items())
    print(f"matrix-product floor for c's batches: {flops / 1e12:.2f} TFLOP at the best measured GEMM rate "
          f"({rate_txt} GFLOP/s) = {floor_s:.1f} s for {c['seconds']:.1f} s measured -> at most {top:.0f} loss-tokens/s"
          + (f" = x{top / a['tokens_per_s']:.1f} (a)" if a and a["tokens_per_s"] else ""))
    print(f"mathtune (c) reaches {c['tokens_per_s'] / top:.0%} of the matrix-product floor")


def texts(rows: list[dict], tok) -> tuple[list[str], list[str]]:
    from mathtune.prompts import get_style

    style = get_style("chat-boxed")
    prompts = [style.render(r["problem"], tok) for r in rows]
    completions = [style.completion(r["solution"], r["answer"]) + tok.eos_token for r in rows]
    return prompts, completions


def lora_model(model):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                            target_modules="all-linear", task_type="CAUSAL_LM"))


def arm_a(rows, steps, meter, out):
    """Reference notebooks: pad every example to max length, train on every non-pad token, fp32."""
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from mathtune.models import load_model

    model, tok = load_model(MODEL, dtype="fp32", device="cpu", for_training=True)
    p, c = texts(rows, tok)
    enc = tok([a + b for a, b in zip(p, c, strict=True)], padding="max_length", truncation=True, max_length=MAXLEN,
              add_special_tokens=False)
    ds = Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    args = TrainingArguments(output_dir=out, per_device_train_batch_size=BATCH, max_steps=steps, learning_rate=2e-4,
                             logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=lora_model(model), args=args, train_dataset=ds,
                      data_collator=DataCollatorForLanguageModeling(tok, mlm=False), callbacks=[meter.callback()])
    trainer.train()


def arm_b(rows, steps, meter, out, bf16: bool | None):
    """TRL SFTTrainer with its defaults and packing (prompt/completion data: loss on completions)."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from mathtune.models import load_model

    model, tok = load_model(MODEL, dtype="fp32", device="cpu", for_training=True)
    p, c = texts(rows, tok)
    kw = {} if bf16 is None else {"bf16": bf16}
    args = SFTConfig(output_dir=out, packing=True, max_length=MAXLEN, per_device_train_batch_size=BATCH,
                     max_steps=steps, learning_rate=2e-4, save_strategy="no", report_to="none", use_cpu=True,
                     disable_tqdm=True, **kw)
    peft = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                      target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, processing_class=tok, peft_config=peft,
                         train_dataset=Dataset.from_dict({"prompt": p, "completion": c}), callbacks=[meter.callback()])
    trainer.train()


def arm_c(rows, steps, meter, out, trainer_extra: dict | None = None, dtype: str = "auto"):
    from mathtune.train import train

    train({"model": {"name": MODEL, "dtype": dtype},
           "method": {"kind": "lora", "r": LORA["r"], "alpha": LORA["alpha"], "dropout": LORA["dropout"],
                      "target_modules": "all-linear"},
           "data": {"examples": rows, "prompt": "chat-boxed", "validation": 0},
           "run": {"output_dir": out, "progress": "none", "plot": False, "resume": False, "keep_best": False},
           "trainer": {"max_steps": steps, "per_device_train_batch_size": BATCH, "max_length": MAXLEN,
                       "learning_rate": 2e-4, "save_strategy": "no", **(trainer_extra or {})}},
          callbacks=[meter.callback()])


def child(arm: str, steps: int, n_rows: int, time_cap: float, hard_cap: float, out: str) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    meter = Meter(time_cap)
    rows = load_rows(n_rows)

    def watchdog():  # a step that never ends (bf16 on a slow CPU): report what we have
        time.sleep(hard_cap)
        print("RESULT " + json.dumps(meter.report(arm, partial=True)), flush=True)
        os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    meter.t0 = time.time()
    {"a": lambda: arm_a(rows, steps, meter, out), "b": lambda: arm_b(rows, steps, meter, out, None),
     "b32": lambda: arm_b(rows, steps, meter, out, False), "c": lambda: arm_c(rows, steps, meter, out),
     "c32": lambda: arm_c(rows, steps, meter, out, dtype="fp32"),
     "cgc": lambda: arm_c(rows, steps, meter, out, {"gradient_checkpointing": True}),
     "cpk": lambda: arm_c(rows, steps, meter, out, {"packing": True})}[arm]()
    print("RESULT " + json.dumps(meter.report(arm)), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3,
                    help="optimizer steps per arm (first is warm-up); arm c's steps are ~4x smaller (4 examples, "
                         "not 4 packed rows), so it runs 4x as many")
    ap.add_argument("--arms", default=None,
                    help="default: c,a,b,b32,c (+ c32 when the product picks bf16); an arm named twice runs twice and "
                         "its slower run counts")
    ap.add_argument("--rows", type=int, default=0, help="GSM8K rows to load (default: enough for packing)")
    ap.add_argument("--time-cap", type=float, default=600, help="stop an arm after the step that passes this many s")
    ap.add_argument("--hard-cap", type=float, default=900, help="kill an arm (reporting partial results) after this")
    ap.add_argument("--bf16-cap", type=float, default=300, help="hard cap for arm b (bf16 autocast on a CPU)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="/tmp/mathtune-bench-train")
    args = ap.parse_args()
    rows = args.rows or 70 * (args.steps + 1)
    if args.child:
        cap = min(args.hard_cap, args.bf16_cap) if args.child == "b" else args.hard_cap
        child(args.child, args.steps, rows, args.time_cap, cap, f"{args.out}/{args.child}")
        return
    if not GSM8K.is_file():
        sys.exit(f"GSM8K train file not found at {GSM8K} (set MATHTUNE_SHARED_BENCHMARKS)")
    import torch

    from mathtune.models import cpu_kind, pick_dtype

    dtype = pick_dtype("cpu")
    print(f"CPU: {cpu_kind()}; torch {torch.__version__}, {os.environ.get('BENCH_THREADS', os.cpu_count())} threads; "
          f"the product picks {str(dtype).replace('torch.', '')} on this CPU (arm c)", flush=True)
    # c before and after the baselines: a machine whose speed drifts during the run (some fall to half
    # their bf16 GEMM rate under sustained load) would otherwise favour whichever arm ran in its fast
    # part; the slower of c's two runs is the one compared
    arms = args.arms or ("c,a,b,b32,c" + (",c32" if dtype != torch.float32 else ""))
    rates_before = gemm_rates() if "c" in arms.split(",") else {}
    results = {}
    for arm in arms.split(","):
        t = time.time()
        steps = args.steps * 4 if arm in ("c", "c32", "cgc") else args.steps
        proc = subprocess.run([sys.executable, __file__, "--child", arm, "--steps", str(steps), "--rows", str(rows),
                               "--time-cap", str(args.time_cap), "--hard-cap", str(args.hard_cap), "--bf16-cap", str(args.bf16_cap),
                               "--out", args.out],
                              capture_output=True, text=True, cwd=REPO)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"arm {arm} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
            continue
        r = json.loads(line[7:])
        print(f"{arm:>4}: {r['tokens_per_s']:8.1f} loss-tokens/s  peak RSS {r['peak_rss_mb']:7.0f} MB  "
              f"({r['loss_tokens']} tokens / {r['seconds']:.1f} s; {r['note']}; wall {time.time() - t:.0f} s)", flush=True)
        runs = results[arm]["runs"] if arm in results else []
        results[arm] = dict(min([*runs, r], key=lambda x: x["tokens_per_s"]), runs=[*runs, r])
    for arm, r in results.items():
        if len(r["runs"]) > 1:
            rates = [x["tokens_per_s"] for x in r["runs"]]
            print(f"{arm}: its slower run counts below ({', '.join(f'{x:.1f}' for x in rates)} loss-tokens/s; "
                  f"the machine's speed moved {max(rates) / min(rates):.2f}x between them)")
    if "c" in results:
        c = results["c"]
        for base in ("a", "b", "b32", "c32"):
            if base in results and results[base]["tokens_per_s"]:
                b = results[base]
                bound = " (b is an upper bound, so this is a lower bound)" if b["steps"] == 0 else ""
                print(f"c/{base}: throughput x{c['tokens_per_s'] / b['tokens_per_s']:.1f}{bound}, "
                      f"peak memory x{c['peak_rss_mb'] / b['peak_rss_mb']:.2f}")
    if "c" in results and results["c"].get("shapes"):
        matmul_floor(results["c"], results.get("a"), rates_before)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
