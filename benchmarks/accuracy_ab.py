"""Accuracy A/B runs on real models, each a paired McNemar comparison: the inference-time methods
(voting, ensembles, retrieval, tool-integrated reasoning), preference training from the model's own
graded samples (DPO, a reward model), and transfer to real public benchmarks.

    python benchmarks/accuracy_ab.py --arms majk,ensemble,retrieval,tir --out runs/ab
    python benchmarks/accuracy_ab.py --arms tir --tir-limit 200 --data-dir ../shared/data/benchmarks
    python benchmarks/accuracy_ab.py --arms dpo,reward,transfer --out runs/ab

Every arm is a chain of the same `mathtune` commands a user runs (demo, eval, ensemble, compare),
started as subprocesses; each step's output directory is reused when it is already complete, so
an interrupted run picks up where it stopped. The table at the end prints, per comparison, both
accuracies, the delta with its 95% CI, the McNemar p and the fixed/broken counts, whatever the sign.

Arms:
  majk       the demo's SFT model (train seed 0) on the demo's held-out set: greedy vs maj@8 of
             8 samples at temperature --temperature (the vote clusters answers by the grader).
  ensemble   a second demo fine-tune, same data, train seed 1 (`demo --train-seed 1`); the
             ensemble of both models' samples (16 votes, equal weights) against the better
             single model's greedy answers and against its maj@8.
  retrieval  --retrieval-model on the demo's held-out set: no retrieval vs formula cards vs
             solved exemplars from the demo's training set (k = 3).
  tir        --tir-model (default Qwen2.5-Coder-0.5B-Instruct) on the first --tir-limit GSM8K test
             problems: chain-of-thought (chat-boxed) vs tool-integrated reasoning (chat-tir,
             --tools python, the sandboxed executor).
  dpo        pairs of the SFT model's own samples on the demo's training problems (`data pairs`,
             k=8), held-out pairs from its samples on the test problems (`data pairs --from-run`);
             DPO (RPO loss) continuing the SFT adapter, the held-out pairs as its validation set;
             then greedy held-out accuracy, SFT -> SFT+DPO.
  reward     a reward model (stage reward, backbone --rm-model) on pairs of the SFT model's samples
             (k=8, 2 pairs a problem) on --rm-train-problems fresh synthetic problems; its ranking
             accuracy (chosen scored above rejected, pooled, Wilson CI) on pairs from
             --rm-test-problems held-out ones.
  transfer   the base and the SFT model on real public benchmarks they did not train on
             (--transfer, e.g. svamp,mawps; offline from --data-dir).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIELDS = "problem=problem,answer=answer,id=id,subject=domain,level=difficulty"
MATHTUNE = [sys.executable, "-m", "mathtune"]
RM_MODEL = "smollm2-135m-instruct"  # the reward arm's default backbone (its run dir: reward/)


def sh(args: list[str], log: Path) -> None:
    """Run one mathtune command, its output appended to `log`; a failure stops the benchmark."""
    print("$ mathtune " + " ".join(args), flush=True)
    t0 = time.time()
    with log.open("a") as f:
        f.write("$ mathtune " + " ".join(args) + "\n")
        f.flush()
        rc = subprocess.call([*MATHTUNE, *args], stdout=f, stderr=subprocess.STDOUT)
    print(f"  ({time.time() - t0:.0f} s)", flush=True)
    if rc:
        raise SystemExit(f"command failed (exit {rc}); see {log}")


def complete(run_dir: Path, n: int) -> bool:
    """Whether an eval run directory holds metrics for at least `n` problems."""
    m = run_dir / "metrics.json"
    return m.is_file() and json.loads(m.read_text()).get("n", 0) >= n


def evaluate(out: Path, log: Path, n: int, *args: str) -> Path:
    if not complete(out, n):
        sh(["eval", *args, "-o", str(out), "--no-progress"], log)
    return out


def demo(out: Path, log: Path, train_seed: int, n_test: int) -> Path:
    if not complete(out / "eval-tuned", n_test):
        sh(["demo", "--out", str(out), "--train-seed", str(train_seed), "--n-test", str(n_test)], log)
    return out


def compare(label: str, a: Path, b: Path) -> dict:
    from mathtune.eval.compare import compare_runs
    from mathtune.eval.metrics import load_run

    c = compare_runs(load_run(a), load_run(b))
    row = {"comparison": label, "a": str(a), "b": str(b), "n": c["shared"], "acc_a": c["accuracy_a"]["value"],
           "acc_b": c["accuracy_b"]["value"], "delta": c["delta"], "delta_ci95": c["delta_ci95"],
           "mcnemar_p": c["mcnemar_p"], "fixed": c["fixed"], "broken": c["broken"]}
    print(f"  {label}: {row['acc_a']:.1%} -> {row['acc_b']:.1%} ({row['delta']:+.1%}, "
          f"95% CI {row['delta_ci95'][0]:+.1%}..{row['delta_ci95'][1]:+.1%}), McNemar p = {row['mcnemar_p']:.3g}, "
          f"fixed {row['fixed']} broken {row['broken']} (n={row['n']})", flush=True)
    return row


def vote(out: Path, log: Path, *runs: Path) -> Path:
    if not (out / "metrics.json").is_file():
        sh(["ensemble", *map(str, runs), "-o", str(out)], log)
    return out


def sampled(out: Path, log: Path, model: str, test: Path, args: argparse.Namespace) -> Path:
    return evaluate(out, log, args.n_test, "--model", model, "--benchmark", str(test), "--fields", FIELDS,
                    "--prompt", "chat-boxed", "--samples", str(args.samples), "--temperature", str(args.temperature),
                    "--max-new-tokens", "96", "--seed", "0")


def rm_problems(out: Path, n_train: int, n_test: int) -> tuple[Path, Path]:
    """Synthetic problems for the reward arm, drawn as the demo draws its sets (levels 1-2, seed 0):
    the held-out ones with the demo's test seed, so the demo's held-out problems come first, and
    training problems that share no problem text with them."""
    from mathtune.data import synth
    from mathtune.files import atomic_write_jsonl

    train_path, test_path = out / "rm-train.jsonl", out / "rm-test.jsonl"
    if not (train_path.is_file() and test_path.is_file()):
        train, test = synth.train_test(n_train, n_test, levels=[1, 2], seed=0)
        atomic_write_jsonl(test_path, [e.to_row() for e in test])
        atomic_write_jsonl(train_path, [e.to_row() for e in train])
    return train_path, test_path


def lines(path: Path) -> int:
    with path.open() as f:
        return sum(1 for _ in f)


def accuracy(run_dir: Path) -> float:
    return json.loads((run_dir / "metrics.json").read_text())["accuracy"]["value"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", default="majk,ensemble,retrieval,tir")
    p.add_argument("--out", default="runs/ab")
    p.add_argument("--n-test", type=int, default=200, help="demo held-out problems")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--retrieval-model", default="smollm2-135m-instruct")
    p.add_argument("--tir-model", default="qwen2.5-coder-0.5b-instruct")
    p.add_argument("--tir-limit", type=int, default=200)
    p.add_argument("--tir-max-new-tokens", type=int, default=512)
    p.add_argument("--data-dir", default=os.environ.get("MATHTUNE_DATA", "../shared/data/benchmarks"))
    p.add_argument("--dpo-lr", type=float, default=5e-5)
    p.add_argument("--dpo-epochs", type=float, default=2)
    p.add_argument("--rm-model", default=RM_MODEL,
                   help="the reward model's backbone (catalogue name, Hub id or local dir), e.g. qwen2.5-coder-0.5b-instruct")
    p.add_argument("--rm-lr", type=float, default=1e-4)
    p.add_argument("--rm-epochs", type=float, default=1)
    p.add_argument("--rm-train-problems", type=int, default=1600,
                   help="synthetic problems the reward model's training pairs are sampled on")
    p.add_argument("--rm-test-problems", type=int, default=800,
                   help="held-out problems for its test pairs (the first --n-test are the demo's held-out set)")
    p.add_argument("--transfer", default="svamp,mawps")
    p.add_argument("--transfer-limit", type=int, default=300)
    args = p.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    known = {"majk", "ensemble", "retrieval", "tir", "dpo", "reward", "transfer"}
    unknown = set(arms) - known
    if unknown:
        p.error(f"unknown arms {sorted(unknown)}; choose from {', '.join(sorted(known))}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    rows: list[dict] = []

    if {"majk", "ensemble", "retrieval", "dpo", "reward", "transfer"} & set(arms):
        d0 = demo(out / "demo-s0", log, 0, args.n_test)
        test = d0 / "data" / "test.jsonl"
    if {"majk", "ensemble", "dpo"} & set(arms):
        s0 = sampled(out / "samples-s0", log, str(d0 / "train" / "adapter"), test, args)
        maj0 = vote(out / "maj-s0", log, s0)
        if "majk" in arms:
            rows.append(compare(f"greedy -> maj@{args.samples} (SFT seed 0)", d0 / "eval-tuned", maj0))
    if "ensemble" in arms:
        d1 = demo(out / "demo-s1", log, 1, args.n_test)
        s1 = sampled(out / "samples-s1", log, str(d1 / "train" / "adapter"), test, args)
        maj1 = vote(out / "maj-s1", log, s1)
        ens = vote(out / "ensemble-s0-s1", log, s0, s1)
        best = 0 if accuracy(d0 / "eval-tuned") >= accuracy(d1 / "eval-tuned") else 1
        best_greedy, best_maj = (d0 / "eval-tuned", maj0) if best == 0 else (d1 / "eval-tuned", maj1)
        rows.append(compare("seed 1 greedy vs seed 0 greedy", d0 / "eval-tuned", d1 / "eval-tuned"))
        rows.append(compare(f"better single (seed {best}) greedy -> ensemble of both, {2 * args.samples} votes",
                            best_greedy, ens))
        rows.append(compare(f"better single (seed {best}) maj@{args.samples} -> ensemble of both", best_maj, ens))
    if "retrieval" in arms:
        common = ["--model", args.retrieval_model, "--benchmark", str(test), "--fields", FIELDS,
                  "--prompt", "chat-boxed", "--max-new-tokens", "96"]
        none = evaluate(out / "retrieval-none", log, args.n_test, *common)
        cards = evaluate(out / "retrieval-cards", log, args.n_test, *common, "--retrieve", "cards")
        exemplars = evaluate(out / "retrieval-exemplars", log, args.n_test, *common, "--retrieve", "exemplars",
                             "--exemplars", str(d0 / "data" / "train.jsonl"))
        rows.append(compare("no retrieval -> formula cards", none, cards))
        rows.append(compare("no retrieval -> solved exemplars", none, exemplars))
    if "tir" in arms:
        common = ["--model", args.tir_model, "--benchmark", "gsm8k", "--data-dir", args.data_dir,
                  "--limit", str(args.tir_limit), "--max-new-tokens", str(args.tir_max_new_tokens)]
        cot = evaluate(out / "tir-cot", log, args.tir_limit, *common, "--prompt", "chat-boxed")
        tir = evaluate(out / "tir-python", log, args.tir_limit, *common, "--prompt", "chat-tir", "--tools", "python")
        rows.append(compare(f"{args.tir_model} GSM8K: CoT -> TIR (python)", cot, tir))
        tools = json.loads((tir / "metrics.json").read_text()).get("tools")
        if tools:
            print(f"  tool use: {json.dumps(tools)}")

    if "dpo" in arms:
        sft = d0 / "train" / "adapter"
        pairs = out / "pairs-train.jsonl"
        if not pairs.is_file():
            sh(["data", "pairs", "--model", str(sft), "--data", str(d0 / "data" / "train.jsonl"), "-k", "8",
                "--temperature", str(args.temperature), "--max-new-tokens", "96", "--pairs-per-problem", "2",
                "-o", str(pairs)], log)
        held = out / "pairs-heldout.jsonl"
        if not held.is_file():
            sh(["data", "pairs", "--from-run", str(s0), "--pairs-per-problem", "2", "-o", str(held)], log)
        print(f"  pairs: {lines(pairs)} training, {lines(held)} held-out", flush=True)
    if "dpo" in arms:
        run = out / "dpo"
        if not (run / "adapter" / "adapter_config.json").is_file():
            sh(["train", str(REPO / "recipes" / "smollm2-135m_dpo_pairs.yaml"), f"model.name={sft}", f"data.pairs={pairs}",
                f"data.eval_pairs={held}", f"run.output_dir={run}", f"trainer.learning_rate={args.dpo_lr}",
                f"trainer.num_train_epochs={args.dpo_epochs}", "run.progress=none"], log)
        logged = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        last = [r for r in logged if "rewards/accuracies" in r][-5:]
        held_acc = [r["eval_rewards/accuracies"] for r in logged if "eval_rewards/accuracies" in r]
        print(f"  DPO rewards/accuracies, mean of the last {len(last)} logged steps: "
              f"{sum(r['rewards/accuracies'] for r in last) / len(last):.3f}; on the held-out pairs: "
              f"{held_acc[0]:.3f} (first eval) -> {held_acc[-1]:.3f} (last)", flush=True)
        tuned = evaluate(out / "eval-dpo", log, args.n_test, "--model", str(run / "adapter"), "--benchmark", str(test),
                         "--fields", FIELDS, "--prompt", "chat-boxed", "--max-new-tokens", "96")
        rows.append(compare("SFT -> SFT + DPO (greedy, held-out)", d0 / "eval-tuned", tuned))
    if "reward" in arms:
        # its own, larger pair sets: the DPO arm's 110 held-out pairs are too few to tell 0.69 from
        # 0.58 (what the same model ranked on these 324)
        sft = d0 / "train" / "adapter"
        rm_train, rm_test = rm_problems(out, args.rm_train_problems, args.rm_test_problems)
        pairs, held = out / "pairs-rm-train.jsonl", out / "pairs-rm-test.jsonl"
        for path, data, per, seed in ((pairs, rm_train, 2, 0), (held, rm_test, 1, 1)):
            if not path.is_file():
                sh(["data", "pairs", "--model", str(sft), "--data", str(data), "-k", "8", "--temperature",
                    str(args.temperature), "--max-new-tokens", "96", "--pairs-per-problem", str(per),
                    "--seed", str(seed), "-o", str(path)], log)
        run = out / ("reward" if args.rm_model == RM_MODEL else f"reward-{Path(args.rm_model).name}")
        if not (run / "result.json").is_file():
            sh(["train", str(REPO / "recipes" / "smollm2-135m_reward_pairs.yaml"), f"model.name={args.rm_model}",
                f"data.pairs={pairs}",
                f"data.eval_pairs={held}", f"data.validation_limit={lines(held)}",  # all of them
                f"run.output_dir={run}", f"trainer.learning_rate={args.rm_lr}",
                f"trainer.num_train_epochs={args.rm_epochs}", "trainer.eval_steps=0.25", "trainer.save_steps=0.25",
                "run.progress=none"], log)
        logged = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        curve = [r["eval_accuracy"] for r in logged if "eval_accuracy" in r]
        ranking = json.loads((run / "result.json").read_text())["metrics"]["eval_ranking"]
        print(f"  reward model ({args.rm_model}): {lines(pairs)} training pairs; held-out ranking accuracy "
              f"{ranking['accuracy']:.3f} ({ranking['correct']}/{ranking['n']} pairs, 95% CI "
              f"{ranking['ci95'][0]:.3f}-{ranking['ci95'][1]:.3f}); trainer's eval curve "
              f"{' '.join(f'{a:.3f}' for a in curve)}", flush=True)
        rows.append({"comparison": f"reward model ({args.rm_model}) held-out ranking accuracy", **ranking,
                     "curve": curve})
    if "transfer" in arms:
        for bench in [b.strip() for b in args.transfer.split(",") if b.strip()]:
            common = ["--benchmark", bench, "--data-dir", args.data_dir, "--limit", str(args.transfer_limit),
                      "--prompt", "chat-boxed", "--max-new-tokens", "256"]
            base_run = evaluate(out / f"transfer-{bench}-base", log, 1, "--model", "smollm2-135m-instruct", *common)
            sft_run = evaluate(out / f"transfer-{bench}-sft", log, 1, "--model", str(d0 / "train" / "adapter"), *common)
            rows.append(compare(f"{bench}: base -> SFT (did not train on it)", base_run, sft_run))

    results = out / "results.json"  # this invocation's rows replace earlier ones of the same comparison
    earlier = json.loads(results.read_text()) if results.is_file() else []
    labels = {r["comparison"] for r in rows}
    results.write_text(json.dumps([r for r in earlier if r["comparison"] not in labels] + rows, indent=1))
    print(f"\nwrote {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
