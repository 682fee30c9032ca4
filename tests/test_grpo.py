"""stage grpo on tiny in-process models: real TRL GRPOTrainer code, seconds per test.

    .venv/bin/python -m pytest tests/test_grpo.py -q
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerCallback

from mathtune.errors import MathtuneError
from mathtune.prompts import get_style
from mathtune.train import TrainRecipe, train
from mathtune.train.callbacks import InterruptAfterCallback, MetricsLogCallback, read_metrics
from mathtune.train.rewards import build_rewards, check_rewards

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """The user's thread count wins, so train() does not time a thread probe on a busy machine."""
    monkeypatch.setenv("MATHTUNE_THREADS", "1")


def examples(n: int = 16) -> list[dict]:
    return [{"problem": f"What is {i} + {i + 1}?", "solution": f"{i} + {i + 1} = {2 * i + 1}.",
             "answer": str(2 * i + 1)} for i in range(n)]


def recipe(model_dir: Path, out: Path, dtype: str = "fp32", rewards: dict | None = None, **trainer) -> dict:
    return {"stage": "grpo",
            "model": {"name": str(model_dir), "dtype": dtype},
            "method": {"kind": "lora", "r": 4, "dropout": 0.0},
            "data": {"examples": examples(), "prompt": "chat-boxed", "validation": 0},
            "run": {"output_dir": str(out), "progress": "none", "plot": False},
            "rewards": rewards or {"random": 1.0},
            # a random tiny model never ends within 8 tokens: masking truncated completions would leave no loss
            "trainer": {"max_steps": 3, "learning_rate": 1e-2, "per_device_train_batch_size": 4,
                        "num_generations": 4, "max_completion_length": 8, "save_steps": 2,
                        "mask_truncated_completions": False, **trainer}}


class Snapshot(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kw):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, **kw):
        self.after = {n: p.detach().clone() for n, p in model.named_parameters()}


# --------------------------------------------------------------------------- training


def test_grpo_trains_lora_only_and_logs_reward_metrics(tiny_model_dir, tmp_path, dtype):
    snap = Snapshot()
    res = train(recipe(tiny_model_dir, tmp_path / "run", dtype, {"random": 1.0, "format_only": 0.5}),
                callbacks=[snap])
    assert snap.trainable and all("lora_" in n for n in snap.trainable)
    for name, before in snap.before.items():
        changed = not torch.equal(before, snap.after[name])
        assert changed == (name in snap.trainable), name
    rows = [r for r in read_metrics(res.run_dir / "metrics.jsonl") if "reward" in r]
    assert len(rows) == 3
    for key in ("reward", "reward_std", "frac_reward_zero_std", "rewards/random/mean", "rewards/format_only/mean"):
        assert all(isinstance(r[key], float) for r in rows), key
    assert any(r["rewards/random/mean"] > 0 for r in rows)
    assert (res.adapter_dir / "adapter_model.safetensors").is_file()
    assert (res.run_dir / "checkpoint-2" / "trainer_state.json").is_file()
    assert "on TRL's GRPOTrainer" in (res.run_dir / "README.md").read_text()
    cfg = TrainRecipe.load(res.run_dir / "config.yaml")
    assert cfg.stage == "grpo" and cfg.rewards == {"random": 1.0, "format_only": 0.5}


def test_interrupted_run_resumes_to_the_same_reward_curve(tiny_model_dir, tmp_path):
    def curve(run: Path) -> list[float]:
        return [r["reward"] for r in read_metrics(run / "metrics.jsonl") if "reward" in r]

    whole = train(recipe(tiny_model_dir, tmp_path / "whole", max_steps=4, save_steps=2))
    with pytest.raises(KeyboardInterrupt):
        train(recipe(tiny_model_dir, tmp_path / "cut", max_steps=4, save_steps=2), callbacks=[InterruptAfterCallback(2)])
    assert len(curve(tmp_path / "cut")) == 2
    resumed = train(recipe(tiny_model_dir, tmp_path / "cut", max_steps=4, save_steps=2))
    assert resumed.resumed_from and resumed.resumed_from.endswith("checkpoint-2")
    assert len(curve(whole.run_dir)) == 4 and len(set(curve(whole.run_dir))) > 1  # a curve, not a constant
    assert curve(resumed.run_dir) == pytest.approx(curve(whole.run_dir))


def test_grpo_literature_defaults_reach_grpo_config(tiny_model_dir, tmp_path):
    from mathtune.train.grpo import grpo_settings, make_grpo_config

    r = TrainRecipe.from_dict(recipe(tiny_model_dir, tmp_path) | {"trainer": {"epsilon": 0.1}})
    cfg = make_grpo_config(grpo_settings(r, tmp_path, "cpu", torch.float32, SimpleNamespace(hidden_size=64)))
    assert (cfg.loss_type, cfg.scale_rewards, cfg.beta, cfg.epsilon_high, cfg.mask_truncated_completions) == \
        ("dr_grpo", "none", 0.0, 0.28, True)
    assert cfg.epsilon == 0.1 and cfg.logging_steps == 1
    over = TrainRecipe.from_dict(recipe(tiny_model_dir, tmp_path) | {"trainer": {"loss_type": "grpo", "beta": 0.04}})
    cfg = make_grpo_config(grpo_settings(over, tmp_path, "cpu", torch.float32, SimpleNamespace(hidden_size=64)))
    assert (cfg.loss_type, cfg.beta) == ("grpo", 0.04)


def lower_half(completions, completion_ids, **_):
    """Learnable: the share of completion tokens in the lower half of the tiny vocabulary (400)."""
    return [sum(t < 200 for t in ids) / max(1, len(ids)) for ids in completion_ids]


@pytest.fixture(scope="module")
def movable_model_dir(tmp_path_factory) -> Path:
    """The tiny Llama with its (tied) embeddings scaled x10. At std 0.02 behind the final RMSNorm
    no hidden state LoRA can produce moves a logit by more than ~1.3, so the policy stays uniform
    whatever the reward; x10 gives it the room to move a pretrained model has."""
    from tiny import make_tiny_model, make_tiny_tokenizer

    directory = tmp_path_factory.mktemp("tiny-movable")
    tok = make_tiny_tokenizer()
    model = make_tiny_model(tok, "llama")
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(10.0)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def test_learnable_reward_rises_within_30_steps(movable_model_dir, tmp_path, dtype):
    from peft import get_peft_model

    from mathtune.train.grpo import (
        build_grpo_trainer,
        grpo_dataset,
        grpo_settings,
        make_grpo_config,
    )
    from mathtune.train.peft_setup import load_base, peft_config

    r = TrainRecipe.from_dict(recipe(movable_model_dir, tmp_path, dtype, max_steps=30, learning_rate=3e-2,
                                     save_strategy="no"))
    model, tok, device, dt = load_base(r.model, r.method)
    model = get_peft_model(model, peft_config(model, r.method))
    ds = grpo_dataset([SimpleNamespace(**e) for e in examples()], tok, get_style("chat-boxed"), None)
    config = make_grpo_config({**grpo_settings(r, tmp_path, device, dt, model.config), "reward_weights": [1.0]})
    assert config.loss_type == "dr_grpo" and config.scale_rewards == "none"  # mathtune's defaults, not the test's
    trainer = build_grpo_trainer(model, tok, config, ds, [lower_half], [MetricsLogCallback(tmp_path)])
    trainer.train()
    curve = [row["reward"] for row in read_metrics(tmp_path / "metrics.jsonl") if "reward" in row]
    print("reward curve:", [round(x, 2) for x in curve])
    assert len(curve) == 30
    assert sum(curve[-5:]) / 5 >= sum(curve[:5]) / 5 + 0.3, curve


def test_zero_signal_groups_warn(tiny_model_dir, tmp_path, capsys):
    res = train(recipe(tiny_model_dir, tmp_path / "run", rewards={"correctness": 1.0}, max_steps=2, save_steps=2))
    rows = [r for r in read_metrics(res.run_dir / "metrics.jsonl") if "reward" in r]
    assert [r["frac_reward_zero_std"] for r in rows] == [1.0, 1.0]  # a random model never answers right
    assert "most groups give no learning signal" in capsys.readouterr().err


# --------------------------------------------------------------------------- recipe errors


def test_unknown_reward_name_suggests_closest(tiny_model_dir, tmp_path):
    with pytest.raises(MathtuneError, match="unknown reward 'corectness'; did you mean 'correctness'"):
        train(recipe(tiny_model_dir, tmp_path, rewards={"corectness": 1.0}))
    with pytest.raises(MathtuneError, match="did you mean 'budget'"):
        check_rewards({"length": {"weight": 1.0, "budgte": 10}})
    with pytest.raises(MathtuneError, match="control reward 'random' mixed with 'correctness'"):
        check_rewards({"correctness": 1.0, "random": 1.0})
    with pytest.raises(MathtuneError, match="needs rewards"):
        check_rewards({})


def test_trainer_block_is_validated_by_grpo_config(tiny_model_dir, tmp_path):
    with pytest.raises(MathtuneError, match=r"unknown key 'trainer.num_generation' \(not a trl.GRPOConfig") as e:
        train(recipe(tiny_model_dir, tmp_path, num_generation=4))
    assert "trainer.num_generations" in e.value.hint
    from mathtune.train.run import check

    bad = TrainRecipe.from_dict(recipe(tiny_model_dir, tmp_path, num_generations=3))  # 4 prompts x 1 not divisible
    with pytest.raises(MathtuneError, match="invalid trainer settings: generation_batch_size"):
        check(bad)
    with pytest.raises(MathtuneError, match="rewards are for stage grpo"):
        TrainRecipe.from_dict({"stage": "sft", "rewards": {"correctness": 1.0}})


# --------------------------------------------------------------------------- rewards


COMPLETIONS = ["So the answer is \\boxed{7}.", "\\boxed{7} or \\boxed{8}", "I think 7", "\\boxed{}",
               "x = 3 so \\boxed{3}", "#### 7"]
GOLDS = ["7", "7", "7", "7", "4", ""]


def all_rewards() -> list:
    spec = {"correctness": 1.0, "format": 1.0, "length": {"weight": 1.0, "budget": 4}}
    funcs, weights = build_rewards(spec, get_style("chat-boxed"), 8)
    controls, _ = build_rewards({"random": {"weight": 1.0, "seed": 3}, "format_only": 1.0}, get_style("chat-boxed"), 8)
    assert weights == [1.0, 1.0, 1.0]
    return funcs + controls


def call(func) -> list:
    ids = [[1] * n for n in (2, 4, 5, 6, 8, 12)]
    return func(COMPLETIONS, answer=GOLDS, completion_ids=ids, trainer_state=SimpleNamespace(global_step=5))


def test_reward_values():
    values = {f.__name__: call(f) for f in all_rewards()}
    assert values["correctness"] == [1.0, 0.0, 0.0, 0.0, 0.0, None]  # two boxes: not one answer; empty gold: None
    assert values["format"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0] == values["format_only"]
    assert values["length"] == [0.0, 0.0, -0.25, -0.5, -1.0, -1.0]
    assert set(values["random"]) <= {0.0, 1.0} and values["random"] == call(all_rewards()[3])  # seeded, stateless
    gsm8k, _ = build_rewards({"format": 1.0}, get_style("gsm8k"), 8)
    assert gsm8k[0](["2 + 5 = 7\n#### 7", "#### 7\n#### 8", "7"]) == [1.0, 0.0, 0.0]


def test_rewards_agree_between_worker_thread_and_main_thread():
    funcs = all_rewards()
    main = [call(f) for f in funcs]
    got: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            got[k] = [call(f) for f in funcs]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert all(got[k] == main for k in range(4))


def test_pathological_answer_is_a_bounded_verdict():
    (correctness,), _ = build_rewards({"correctness": {"weight": 1.0, "timeout": 1.0, "budget": 2.0}},
                                      get_style("chat-boxed"), 8)
    correctness(["\\boxed{x+1}"], answer=["1+x"])  # a warm worker, so only the checks are timed
    slow = "\\boxed{\\prod_{k=1}^{20000} (1+\\frac{1}{k^3})}"  # minutes of exact sympy work
    hostile = "\\boxed{" + "(" * 30_000 + "1" + ")" * 30_000 + "}"
    t = time.monotonic()
    got = correctness([slow, hostile, "\\boxed{2}"], answer=["\\prod_{k=1}^{20000} (1+\\frac{1}{k^2})", "1", "2"])
    assert got == [0.0, 0.0, 1.0]
    assert time.monotonic() - t < 5.0
