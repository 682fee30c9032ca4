"""`mathtune demo`: the whole loop on the embedded default.

The integration test runs it small (plumbing: every artefact written, the tuned model
evaluated on the same held-out problems). The slow test is the acceptance run: default sizes,
at most 20 minutes on a 2-core CPU, a held-out gain of at least 10 points with McNemar p < 0.05.
"""

from __future__ import annotations

import json
import time

import pytest

from mathtune.cli import main


def _run_demo(out, *extra: str) -> dict:
    assert main(["demo", "--out", str(out), *extra]) == 0
    return json.loads((out / "summary.json").read_text())


@pytest.mark.integration
def test_demo_small_writes_every_artefact(default_model_dir, tmp_path):
    out = tmp_path / "demo"
    summary = _run_demo(out, "--n-train", "24", "--n-test", "8", "--max-new-tokens", "24")
    for rel in ("data/train.jsonl", "data/test.jsonl", "eval-base/predictions.jsonl", "eval-base/metrics.json",
                "eval-tuned/predictions.jsonl", "compare.json", "report.html", "train/config.yaml"):
        assert (out / rel).is_file(), rel
    assert summary["n"] == 8
    assert 0.0 <= summary["base_accuracy"] <= 1.0 and 0.0 <= summary["tuned_accuracy"] <= 1.0
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html


@pytest.mark.integration
def test_demo_rl_small_trains_both_arms_and_reports_their_curves(default_model_dir, tmp_path):
    out = tmp_path / "demo"
    summary = _run_demo(out, "--n-train", "16", "--n-test", "6", "--max-new-tokens", "16", "--rl",
                        "--rl-steps", "2", "--rl-prompts", "1", "--rl-group", "2", "--rl-pass-k", "2",
                        "--rl-band", "0,1", "--rl-pool", "8", "--rl-n-test", "10")
    rl_test = [json.loads(line) for line in (out / "data" / "test-rl.jsonl").read_text().splitlines()]
    demo_test = [json.loads(line) for line in (out / "data" / "test.jsonl").read_text().splitlines()]
    train_problems = {json.loads(line)["problem"] for line in (out / "data" / "train.jsonl").read_text().splitlines()}
    assert [r["problem"] for r in rl_test[:6]] == [r["problem"] for r in demo_test]  # the demo's held-out first
    assert not train_problems & {r["problem"] for r in rl_test}
    for name in ("grpo", "grpo-random"):
        assert (out / name / "adapter" / "adapter_model.safetensors").is_file(), name
        assert (out / f"eval-{name}" / "metrics.json").is_file(), name
        assert (out / name / "completions").is_dir(), name
        r = summary["rl"][name]
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["mcnemar_p"] <= 1.0 and r["n"] == len(rl_test)
    # the control trained on the same problems: the pass rates were measured once
    assert (out / "grpo" / "pass_rates.jsonl").read_text() == (out / "grpo-random" / "pass_rates.jsonl").read_text()
    assert summary["rl"]["grpo-random"]["rewards"] == {"random": 1.0}
    assert 0.0 <= summary["rl"]["grpo"]["vs_control"]["mcnemar_p"] <= 1.0
    html = (out / "report.html").read_text()
    assert "<h2>Training runs</h2>" in html and "grpo-random" in html


@pytest.mark.slow
def test_demo_default_shows_significant_gain_within_20_minutes(default_model_dir, tmp_path):
    start = time.monotonic()
    summary = _run_demo(tmp_path / "demo")
    minutes = (time.monotonic() - start) / 60
    assert minutes <= 20, f"demo took {minutes:.1f} min"
    assert summary["delta"] >= 0.10, summary
    assert summary["mcnemar_p"] < 0.05, summary


def test_train_seed_seeds_the_fine_tune_and_nothing_else(tmp_path):
    """--train-seed changes the SFT recipe's seed (adapter init, data order) and leaves the data,
    which --seed builds, and every other setting alone; unset, the fine-tune takes --seed."""
    import argparse

    from mathtune.commands import demo

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    base = parser.parse_args(["--seed", "3"])
    other = parser.parse_args(["--seed", "3", "--train-seed", "7"])
    a = demo.sft_recipe("m", tmp_path / "train.jsonl", tmp_path / "run", base)
    b = demo.sft_recipe("m", tmp_path / "train.jsonl", tmp_path / "run", other)
    assert (a.seed, b.seed) == (3, 7)
    assert a.model_dump(exclude={"seed"}) == b.model_dump(exclude={"seed"})


def test_rl_temperature_and_pass_k_reach_the_grpo_recipe(tmp_path):
    """--rl-temperature samples the rollouts and the pass-rate filter (both read the trainer's
    temperature); --rl-pass-k sizes the filter, 0 turns it off."""
    import argparse

    from mathtune.commands import demo

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)

    def recipe(*argv: str):
        return demo.grpo_recipe(tmp_path / "adapter", tmp_path / "train.jsonl", tmp_path / "grpo",
                                parser.parse_args(list(argv)), {"correctness": 1.0})

    default, hot = recipe(), recipe("--rl-temperature", "1.0", "--rl-pass-k", "8")
    assert (default.trainer["temperature"], default.grpo.pass_rate.k) == (0.7, 4)
    assert (hot.trainer["temperature"], hot.grpo.pass_rate.k) == (1.0, 8)
    assert recipe("--rl-pass-k", "0").grpo.pass_rate is None


@pytest.mark.parametrize("band", ["0.1", "0.6,0.1", "a,b", "0,1.5"])
def test_a_bad_rl_band_is_one_clear_error_before_any_work(tmp_path, capsys, band):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--rl", "--rl-band", band]) == 2
    assert "--rl-band" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()
