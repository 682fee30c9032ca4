"""`mathtune demo`: the whole loop on the embedded default model, offline, with a measured gain.

    mathtune demo                    # minutes on a laptop CPU; prints where the report is
    mathtune demo --out runs/demo2 --n-train 600 --n-test 200

pull SmolLM2-135M-Instruct -> build a synthetic training set and a disjoint held-out test set
-> evaluate the base model -> LoRA SFT -> evaluate the tuned model -> paired comparison
(McNemar) -> HTML report. Each step reuses what an interrupted earlier run finished
(eval resumes per problem, training from its last checkpoint), so re-running continues.

    mathtune demo --rl               # then GRPO from the SFT adapter, and its random-reward control

`--rl` continues the SFT adapter with GRPO (the grader's correctness + format reward, problems
kept by pass-rate filtering, mathtune's rollout) and, with the same budget, a control run whose
reward is random (same problems: the pass rates are measured once). The three models (SFT, GRPO,
control) are scored on a larger held-out set than the SFT demo's (`--rl-n-test`, default 800
drawn: the demo's held-out problems first, then more from the same generator and seed, minus
any that are in the training set), because RL's gains are a few points: on 200 problems a paired
difference needs about +4.6 points to reach p < 0.05, on ~750 about +2.5. The report shows both
reward curves.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

HELP = "run the whole loop (data -> eval -> LoRA SFT -> eval -> compare -> report) on the default model"

# Test fields for the held-out JSONL (mathtune eval --benchmark FILE --fields ...).
TEST_FIELDS = "problem=problem,answer=answer,id=id,subject=domain,level=difficulty"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m-instruct", help="model to tune (default: the embedded default)")
    p.add_argument("--out", default="runs/demo", help="run directory (default: runs/demo)")
    p.add_argument("--n-train", type=int, default=320, help="synthetic training problems")
    p.add_argument("--n-test", type=int, default=200, help="held-out test problems")
    p.add_argument("--levels", default="1,2", help="synthetic difficulty levels (1-5), comma separated")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-3, help="LoRA learning rate")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-seed", type=int,
                   help="seed of the LoRA fine-tune alone (adapter init, data order; default: --seed): with the same "
                        "--seed, another value trains a second model on the same data, e.g. for `mathtune ensemble`")
    rl = p.add_argument_group("RL (--rl): GRPO from the SFT adapter, and its random-reward control")
    rl.add_argument("--rl", action="store_true",
                    help="after SFT: GRPO (grader reward) and a random-reward control with the same budget, "
                         "each evaluated on the held-out set against the SFT model")
    rl.add_argument("--rl-steps", type=int, default=20, help="GRPO steps per run (default 20)")
    rl.add_argument("--rl-prompts", type=int, default=8, help="problems per GRPO step (default 8)")
    rl.add_argument("--rl-group", type=int, default=8, help="completions per problem (default 8)")
    rl.add_argument("--rl-lr", type=float, default=1e-4, help="GRPO learning rate (default 1e-4)")
    rl.add_argument("--rl-temperature", type=float, default=0.7,
                    help="sampling temperature of the rollouts and the pass-rate filter (default 0.7: the model is "
                         "scored greedily, and samples nearer its greedy answer move that answer)")
    rl.add_argument("--rl-pass-k", type=int, default=4,
                    help="samples per problem for pass-rate filtering before GRPO (0: no filtering)")
    rl.add_argument("--rl-band", default="0.1,0.6",
                    help="pass rates kept by the filter, low,high (default 0.1,0.6: problems the SFT model "
                         "solves sometimes, more often rarely than mostly)")
    rl.add_argument("--rl-pool", type=int, help="training problems the pass-rate filter looks at (default: all)")
    rl.add_argument("--rl-n-test", type=int, default=800,
                    help="held-out problems drawn for scoring the RL models (the demo's come first; default 800)")


def _step(n: int, text: str, total: int = 6) -> None:
    from rich.console import Console

    Console(stderr=True).rule(f"[bold]step {n}/{total}[/]: {text}")


def _write_sets(out: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    from ..data import synth
    from ..files import atomic_write_jsonl

    levels = [int(x) for x in args.levels.split(",")]
    train, test = synth.train_test(args.n_train, args.n_test, levels=levels, seed=args.seed)
    train_path = atomic_write_jsonl(out / "data" / "train.jsonl", [e.to_row() for e in train])
    test_path = atomic_write_jsonl(out / "data" / "test.jsonl", [e.to_row() for e in test])
    print(f"  {len(train)} training and {len(test)} held-out problems "
          f"({len(synth.FAMILIES)} families, levels {args.levels}) in {out / 'data'}")
    return train_path, test_path


def _write_rl_test(out: Path, train_path: Path, args: argparse.Namespace) -> Path:
    """The RL held-out set: `--rl-n-test` problems drawn as the demo's held-out set is (its
    problems come first), less any whose text is in the training set."""
    from ..data import synth
    from ..files import atomic_write_jsonl, read_jsonl

    levels = [int(x) for x in args.levels.split(",")]
    train = {synth.problem_key(rec["problem"]) for _, rec, err in read_jsonl(train_path) if err is None}
    drawn = synth.generate(max(args.rl_n_test, args.n_test), levels=levels, seed=args.seed + 1_000_003)
    kept = [e for e in drawn if synth.problem_key(e.problem) not in train]
    path = atomic_write_jsonl(out / "data" / "test-rl.jsonl", [e.to_row() for e in kept])
    print(f"  {len(kept)} held-out problems for the RL comparison ({len(drawn) - len(kept)} of {len(drawn)} drawn "
          f"were training problems) in {path}")
    return path


def _evaluate(model: str, test_path: Path, out_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from ..eval import EvalConfig, run_eval

    cfg = EvalConfig(model=model, benchmark=str(test_path), fields=TEST_FIELDS, prompt="chat-boxed",
                     max_new_tokens=args.max_new_tokens, seed=args.seed, output=str(out_dir))
    result = run_eval(cfg)
    m = result.metrics
    print(f"  accuracy {m['accuracy']['value']:.1%} (95% CI {m['accuracy']['ci95'][0]:.1%}-"
          f"{m['accuracy']['ci95'][1]:.1%}) on {m['n']} problems -> {out_dir}")
    return m


def sft_recipe(model: str, train_path: Path, out_dir: Path, args: argparse.Namespace) -> Any:
    """The demo's LoRA SFT recipe (a `TrainRecipe`); --train-seed, when given, seeds it instead of --seed."""
    from ..train import TrainRecipe

    return TrainRecipe.from_dict({
        "name": "demo",
        "seed": args.seed if args.train_seed is None else args.train_seed,
        "model": {"name": model},
        "method": {"kind": "lora", "r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
        "data": {"path": str(train_path), "prompt": "chat-boxed", "validation": 0.05, "validation_limit": 40},
        "run": {"output_dir": str(out_dir), "progress": "rich"},
        "trainer": {
            "num_train_epochs": args.epochs, "learning_rate": args.lr, "lr_scheduler_type": "cosine",
            "warmup_steps": 0.05, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8,
            "eval_strategy": "epoch", "save_strategy": "epoch", "logging_steps": 5, "save_total_limit": 2,
            # Padding-free batches of 8 examples, not packed 8x1024 blocks: with a few hundred
            # short examples packing leaves only ~4 optimizer steps per epoch.
            "packing": False,
        },
    })


def _train(model: str, train_path: Path, out_dir: Path, args: argparse.Namespace) -> Path:
    from ..train import train

    result = train(sft_recipe(model, train_path, out_dir, args))
    if result.adapter_dir is None:
        raise RuntimeError("LoRA training returned no adapter directory")
    print(f"  adapter -> {result.adapter_dir}")
    return result.adapter_dir


def grpo_recipe(adapter: Path, train_path: Path, out_dir: Path, args: argparse.Namespace,
                rewards: dict[str, Any]) -> Any:
    """The demo's GRPO recipe (a `TrainRecipe`): stage grpo continuing the SFT adapter, mathtune's
    rollout, on the training problems, filtered by pass rate unless --rl-pass-k is 0."""
    from ..train import TrainRecipe

    grpo: dict[str, Any] = {}
    if args.rl_pass_k:
        low, high = _band(args.rl_band)
        grpo["pass_rate"] = {"k": args.rl_pass_k, "low": low, "high": high}
    return TrainRecipe.from_dict({
        "stage": "grpo", "name": out_dir.name, "seed": args.seed,
        "model": {"name": str(adapter)},
        "method": {"kind": "lora"},
        "data": {"path": str(train_path), "prompt": "chat-boxed", "validation": 0, "limit": args.rl_pool},
        "run": {"output_dir": str(out_dir), "progress": "rich"},
        "rewards": rewards, "grpo": grpo,
        "trainer": {
            "max_steps": args.rl_steps, "learning_rate": args.rl_lr, "lr_scheduler_type": "constant",
            "per_device_train_batch_size": args.rl_prompts * args.rl_group, "num_generations": args.rl_group,
            "max_completion_length": args.max_new_tokens, "temperature": args.rl_temperature,
            "save_steps": max(1, args.rl_steps // 3), "save_total_limit": 1,
        },
    })


def _grpo(adapter: Path, train_path: Path, out_dir: Path, args: argparse.Namespace,
          rewards: dict[str, Any]) -> Path:
    """GRPO continuing the SFT adapter (`grpo_recipe`)."""
    from ..train import train

    result = train(grpo_recipe(adapter, train_path, out_dir, args, rewards))
    if result.adapter_dir is None:
        raise RuntimeError("GRPO returned no adapter directory")
    print(f"  adapter -> {result.adapter_dir}")
    return result.adapter_dir


def _band(text: str) -> tuple[float, float]:
    """`--rl-band LOW,HIGH` as two pass rates in [0, 1], low <= high."""
    from ..errors import MathtuneError

    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        low = high = -1.0
    if not 0.0 <= low <= high <= 1.0:
        raise MathtuneError(f"--rl-band {text!r} is not two pass rates LOW,HIGH with 0 <= LOW <= HIGH <= 1",
                            "give e.g. --rl-band 0.1,0.6")
    return low, high


def _rl(out: Path, adapter: Path, train_path: Path, args: argparse.Namespace,
        times: dict[str, float]) -> dict[str, Any]:
    """Steps 7-9 of `demo --rl`: the SFT model on the RL held-out set, then GRPO with the grader's
    reward and the random-reward control with the same budget and problems, each evaluated on
    that set and compared with the SFT model."""
    import shutil

    from ..eval.compare import compare_runs
    from ..eval.metrics import load_run
    from ..train.pass_rate import FILE as PASS_RATES
    from .compare import print_comparison

    s = time.time()
    _step(7, "the SFT model on the larger held-out set for the RL comparison", 10)
    test_path = _write_rl_test(out, train_path, args)
    _evaluate(str(adapter), test_path, out / "eval-tuned-rl", args)
    times["eval_tuned_rl"] = round(time.time() - s, 1)
    arms = {"grpo": {"correctness": 1.0, "format": 0.1}, "grpo-random": {"random": 1.0}}
    results: dict[str, Any] = {}
    sft = load_run(out / "eval-tuned-rl")
    for i, (name, rewards) in enumerate(arms.items()):
        s = time.time()
        what = "the grader's reward (correctness + format)" if name == "grpo" else "the control: a random reward"
        _step(8 + i, f"GRPO from the SFT adapter with {what}", 10)
        measured = out / "grpo" / PASS_RATES
        if name != "grpo" and measured.is_file() and not (out / name / PASS_RATES).is_file():
            (out / name).mkdir(parents=True, exist_ok=True)  # the same problems: reuse the measured pass rates
            shutil.copyfile(measured, out / name / PASS_RATES)
        tuned = _grpo(adapter, train_path, out / name, args, rewards)
        _evaluate(str(tuned), test_path, out / f"eval-{name}", args)
        times[name] = round(time.time() - s, 1)
        cmp = compare_runs(sft, load_run(out / f"eval-{name}"))
        print_comparison(cmp, show=3)
        results[name] = {"rewards": rewards, "n": cmp["shared"], "sft_accuracy": cmp["accuracy_a"]["value"],
                         "accuracy": cmp["accuracy_b"]["value"], "delta_vs_sft": cmp["delta"],
                         "delta_ci95": cmp["delta_ci95"], "mcnemar_p": cmp["mcnemar_p"], "fixed": cmp["fixed"],
                         "broken": cmp["broken"]}
    # the attribution: what the grader's reward bought over a random one, same budget and problems
    versus = compare_runs(load_run(out / "eval-grpo-random"), load_run(out / "eval-grpo"))
    results["grpo"]["vs_control"] = {"delta": versus["delta"], "delta_ci95": versus["delta_ci95"],
                                     "mcnemar_p": versus["mcnemar_p"]}
    return results


def run(args: argparse.Namespace) -> int:
    from ..eval.compare import compare_runs
    from ..eval.metrics import load_run
    from ..eval.report import write_report
    from ..files import atomic_write_json
    from ..models import resolve_model
    from .compare import print_comparison

    out = Path(args.out)
    if args.rl:
        _band(args.rl_band)  # a bad band fails now, not after minutes of SFT
    t0, times = time.time(), {}

    def lap(name: str, start: float) -> None:
        times[name] = round(time.time() - start, 1)

    s = time.time()
    total = 10 if args.rl else 6
    _step(1, f"pull {args.model}", total)
    print(f"  {resolve_model(args.model)}")
    lap("pull", s)
    s = time.time()
    _step(2, "build a synthetic training set and a disjoint held-out test set", total)
    train_path, test_path = _write_sets(out, args)
    lap("data", s)
    s = time.time()
    _step(3, "evaluate the base model on the held-out set", total)
    _evaluate(args.model, test_path, out / "eval-base", args)
    lap("eval_base", s)
    s = time.time()
    _step(4, "LoRA supervised fine-tuning", total)
    adapter = _train(args.model, train_path, out / "train", args)
    lap("train", s)
    s = time.time()
    _step(5, "evaluate the tuned model on the same held-out set", total)
    _evaluate(str(adapter), test_path, out / "eval-tuned", args)
    lap("eval_tuned", s)
    _step(6, "compare and report", total)
    base, tuned = load_run(out / "eval-base"), load_run(out / "eval-tuned")
    cmp = compare_runs(base, tuned)
    atomic_write_json(out / "compare.json", cmp)
    print_comparison(cmp, show=5)
    rl = _rl(out, adapter, train_path, args, times) if args.rl else None
    runs, title = [base, tuned], f"mathtune demo: {args.model} + LoRA SFT"
    if rl:
        runs += [load_run(out / f"eval-{name}") for name in ("tuned-rl", *rl)]
        title += " + GRPO (and its random-reward control)"
    report = write_report(runs, out / "report.html", title=title,
                          train_runs=[out / name for name in rl] if rl else [])
    times["total"] = round(time.time() - t0, 1)
    summary = {
        "model": args.model, "base_accuracy": cmp["accuracy_a"]["value"], "tuned_accuracy": cmp["accuracy_b"]["value"],
        "delta": cmp["delta"], "delta_ci95": cmp["delta_ci95"], "mcnemar_p": cmp["mcnemar_p"],
        "fixed": cmp["fixed"], "broken": cmp["broken"], "n": cmp["shared"], "seconds": times,
        "report": str(report),
    }
    if rl:
        summary["rl"] = rl
    atomic_write_json(out / "summary.json", summary)
    verdict = "significant" if cmp["mcnemar_p"] < 0.05 else "NOT significant"
    print(f"\nheld-out accuracy {summary['base_accuracy']:.1%} -> {summary['tuned_accuracy']:.1%} "
          f"({cmp['delta']:+.1%}, McNemar p = {cmp['mcnemar_p']:.2g}, {verdict}) in {times['total'] / 60:.1f} min")
    for name, r in (rl or {}).items():
        verdict_rl = "significant" if r["mcnemar_p"] < 0.05 else "not significant"
        print(f"{name} vs SFT on {r['n']} held-out problems: {r['sft_accuracy']:.1%} -> {r['accuracy']:.1%} "
              f"({r['delta_vs_sft']:+.1%}, McNemar p = {r['mcnemar_p']:.2g}, {verdict_rl})")
    if rl:
        v = rl["grpo"]["vs_control"]
        print(f"grpo vs its random-reward control: {v['delta']:+.1%} (McNemar p = {v['mcnemar_p']:.2g})")
    print(f"stage times (s): {json.dumps(times)}")
    print(f"report: {report.resolve()}")
    return 0
