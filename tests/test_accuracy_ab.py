"""benchmarks/accuracy_ab.py's reward arm: --rm-model picks the backbone the reward model trains on."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("accuracy_ab", REPO / "benchmarks" / "accuracy_ab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rm_model_is_the_reward_arms_backbone_and_its_run_dir(tmp_path, monkeypatch):
    ab = _load()
    (tmp_path / "demo-s0" / "eval-tuned").mkdir(parents=True)
    (tmp_path / "demo-s0" / "eval-tuned" / "metrics.json").write_text(json.dumps({"n": 200}))
    for name in ("rm-train.jsonl", "rm-test.jsonl", "pairs-rm-train.jsonl", "pairs-rm-test.jsonl"):
        (tmp_path / name).write_text('{"x": 1}\n')  # made already: the arm only trains
    commands: list[list[str]] = []

    def fake_sh(args, log):  # what `mathtune train` leaves in its run dir
        commands.append(args)
        run = Path(next(a for a in args if a.startswith("run.output_dir=")).split("=", 1)[1])
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text(json.dumps({"eval_accuracy": 0.7}) + "\n")
        ranking = {"n": 1, "correct": 1, "ties": 0, "accuracy": 1.0, "ci95": [0.2, 1.0], "margin": 1.0}
        (run / "result.json").write_text(json.dumps({"metrics": {"eval_ranking": ranking}}))

    monkeypatch.setattr(ab, "sh", fake_sh)
    for model, run in ((ab.RM_MODEL, "reward"), ("qwen2.5-coder-0.5b-instruct", "reward-qwen2.5-coder-0.5b-instruct")):
        monkeypatch.setattr(sys, "argv", ["accuracy_ab.py", "--arms", "reward", "--out", str(tmp_path),
                                          "--rm-model", model])
        assert ab.main() == 0
        assert commands[-1][0] == "train" and f"model.name={model}" in commands[-1]
        assert f"run.output_dir={tmp_path / run}" in commands[-1]
    results = json.loads((tmp_path / "results.json").read_text())
    assert {r["comparison"] for r in results} == {
        f"reward model ({ab.RM_MODEL}) held-out ranking accuracy",
        "reward model (qwen2.5-coder-0.5b-instruct) held-out ranking accuracy"}
