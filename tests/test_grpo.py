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
    assert all(0 < r["rollout_s"] < r["step_time"] for r in rows)  # mathtune's rollout, timed inside the step
    assert (res.adapter_dir / "adapter_model.safetensors").is_file()
    assert (res.run_dir / "checkpoint-2" / "trainer_state.json").is_file()
    assert "on TRL's GRPOTrainer" in (res.run_dir / "README.md").read_text()
    cfg = TrainRecipe.load(res.run_dir / "config.yaml")
    assert cfg.stage == "grpo" and cfg.rewards == {"random": 1.0, "format_only": 0.5}
    # sampled completions with what the grader extracted, one file per step, shown by the report
    from mathtune.eval.metrics import load_run
    from mathtune.eval.report import build_report
    from mathtune.files import read_jsonl

    logged = sorted((res.run_dir / "completions").glob("step-*.jsonl"))
    assert [p.name for p in logged] == ["step-000000.jsonl", "step-000001.jsonl", "step-000002.jsonl"]
    got = [r for _, r, _ in read_jsonl(logged[-1])]
    assert len(got) == 4 and all("extracted" in r and r["gold"] and set(r["reward"]) == {"random"} for r in got)
    html = build_report([load_run(Path(__file__).parent / "data" / "runs" / "base")], train_runs=[res.run_dir])
    assert "<h2>Training runs</h2>" in html and "sampled completions at step 2" in html
    assert html.count('alt="RL curves"') == 1 and 'alt="reward functions"' in html
    with pytest.raises(MathtuneError, match="is not a training run"):
        build_report([load_run(Path(__file__).parent / "data" / "runs" / "base")], train_runs=[tmp_path])


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


def test_grpo_checkpoints_activations_by_its_prompts_length(tiny_model_dir, tmp_path, monkeypatch):
    """Sized for the longest real prompt, not a 256-token guess, and on a CPU for the packed loss
    forward (each group's prompt once): checkpointing (a third more compute) only when a step's
    activations would not fit in half the free memory."""
    from mathtune.train import sft
    from mathtune.train.grpo import grpo_settings

    monkeypatch.setattr(sft, "free_memory", lambda device: 20 << 30)
    smollm2 = SimpleNamespace(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                              _attn_implementation="sdpa")
    r = TrainRecipe.from_dict(recipe(tiny_model_dir, tmp_path) | {"trainer": {  # the demo's GRPO step
        "per_device_train_batch_size": 64, "num_generations": 8, "max_completion_length": 96}})
    assert grpo_settings(r, tmp_path, "cpu", torch.bfloat16, smollm2, prompt_tokens=120)["activation_checkpointing"] is False
    assert grpo_settings(r, tmp_path, "cpu", torch.bfloat16, smollm2)["activation_checkpointing"] is True
    # padded rows: a GPU, or a model the packed forward does not run on
    assert grpo_settings(r, tmp_path, "cuda", torch.bfloat16, smollm2, prompt_tokens=120)["activation_checkpointing"] is True
    eager = SimpleNamespace(**{**vars(smollm2), "_attn_implementation": "eager"})
    assert grpo_settings(r, tmp_path, "cpu", torch.bfloat16, eager, prompt_tokens=120)["activation_checkpointing"] is True
    short = TrainRecipe.from_dict(recipe(tiny_model_dir, tmp_path) | {"trainer": {
        "per_device_train_batch_size": 16, "num_generations": 8, "max_completion_length": 128}})
    assert grpo_settings(short, tmp_path, "cuda", torch.bfloat16, smollm2, prompt_tokens=90)["activation_checkpointing"] is False


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


@pytest.mark.parametrize("rollout", ["mathtune", "trl"])
def test_learnable_reward_rises_within_30_steps(movable_model_dir, tmp_path, dtype, rollout):
    from peft import get_peft_model

    from mathtune.train.grpo import (
        build_grpo_trainer,
        grpo_dataset,
        grpo_settings,
        make_grpo_config,
        make_rollout,
    )
    from mathtune.train.peft_setup import load_base, peft_config

    r = TrainRecipe.from_dict(recipe(movable_model_dir, tmp_path, dtype, max_steps=30, learning_rate=3e-2,
                                     save_strategy="no") | {"grpo": {"rollout": rollout}})
    model, tok, device, dt = load_base(r.model, r.method)
    model = get_peft_model(model, peft_config(model, r.method))
    ds = grpo_dataset([SimpleNamespace(**e) for e in examples()], tok, get_style("chat-boxed"), None)
    config = make_grpo_config({**grpo_settings(r, tmp_path, device, dt, model.config), "reward_weights": [1.0]})
    assert config.loss_type == "dr_grpo" and config.scale_rewards == "none"  # mathtune's defaults, not the test's
    trainer = build_grpo_trainer(model, tok, config, ds, [lower_half], [MetricsLogCallback(tmp_path)],
                                 rollout=make_rollout(r, config, tok))
    assert (trainer.rollout_func is not None) == (rollout == "mathtune")
    trainer.train()
    curve = [row["reward"] for row in read_metrics(tmp_path / "metrics.jsonl") if "reward" in row]
    print("reward curve:", [round(x, 2) for x in curve])
    assert len(curve) == 30
    assert sum(curve[-5:]) / 5 >= sum(curve[:5]) / 5 + 0.3, curve


def trainer_logprobs(trainer, out):
    """The completions' per-token log-probs as the trainer computes them (its own method), padded
    the way it pads: prompts left, completions right."""
    plen = max(len(p) for p in out["prompt_ids"])
    keep = max(len(c) for c in out["completion_ids"])
    batch = torch.zeros(len(out["prompt_ids"]), plen + keep, dtype=torch.long)
    mask = torch.zeros_like(batch)
    for i, (p, c) in enumerate(zip(out["prompt_ids"], out["completion_ids"], strict=True)):
        batch[i, plen - len(p):plen + len(c)] = torch.tensor(p + c)
        mask[i, plen - len(p):plen + len(c)] = 1
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, batch, mask, keep,
                                                                  batch_size=len(batch))
    return [logps[i, :len(c)].tolist() for i, c in enumerate(out["completion_ids"])]


def gaps(a, b):
    """(worst, mean) absolute gap between two lists of per-token log-prob lists."""
    assert len(a) == len(b) and all(len(x) == len(y) > 0 for x, y in zip(a, b, strict=True))
    d = [abs(u - v) for x, y in zip(a, b, strict=True) for u, v in zip(x, y, strict=True)]
    return max(d), sum(d) / len(d)


@pytest.mark.parametrize("policy", ["merged", "live"])
def test_rollout_logprobs_equal_the_trainers_recomputed_logprobs(movable_model_dir, tmp_path, dtype, policy):
    """Rollout log-probs equal the trainer's recomputation, also after the LoRA weights moved
    (a stale policy would match the adapter-free model instead)."""
    from peft import get_peft_model

    from mathtune.train.grpo import (
        build_grpo_trainer,
        grpo_dataset,
        grpo_settings,
        make_grpo_config,
        make_rollout,
    )
    from mathtune.train.peft_setup import load_base, peft_config

    r = TrainRecipe.from_dict(recipe(movable_model_dir, tmp_path, dtype, max_completion_length=12, temperature=0.9,
                                     max_steps=1, save_strategy="no") | {"grpo": {"policy": policy}})
    model, tok, device, dt = load_base(r.model, r.method)
    model = get_peft_model(model, peft_config(model, r.method))
    ds = grpo_dataset([SimpleNamespace(**e) for e in examples()], tok, get_style("chat-boxed"), None)
    config = make_grpo_config({**grpo_settings(r, tmp_path, device, dt, model.config), "reward_weights": [1.0]})
    rollout = make_rollout(r, config, tok)
    trainer = build_grpo_trainer(model, tok, config, ds, [lower_half], [], rollout=rollout)
    trainer.train()  # one step: the model is now wrapped by accelerate as in a real run
    prompts = [p for p in ds["prompt"][:2] for _ in range(4)]
    lora_calls = []
    q = next(m for n, m in model.named_modules() if n.endswith("q_proj") and hasattr(m, "lora_A"))
    q.register_forward_hook(lambda *a: lora_calls.append(1))
    # bf16: the cached batched decode and the trainer's full forward round differently; once the
    # perturbed policy's logits reach ~100, single tokens move by ~1.5 nats (live and merged alike,
    # measured 1.5-1.7 worst, 0.10-0.14 mean), still far from a stale policy's ~9 nats mean
    # fp32: W + BA against x W + (x A) B sums differently; with logits near 100 that is up to ~1e-4
    tol = (1e-3, 1e-4) if dtype == "fp32" else (3.0, 0.25)
    for _ in range(2):
        before = len(lora_calls)
        out = rollout(prompts, trainer)
        rollout_calls = len(lora_calls) - before
        assert len(out["completion_ids"]) == len(prompts) == len(out["prompt_ids"])
        assert out["prompt_ids"] == tok(text=prompts)["input_ids"]  # tokenized as TRL tokenizes text prompts
        worst, mean = gaps(out["logprobs"], trainer_logprobs(trainer, out))
        assert worst <= tol[0] and mean <= tol[1]
        torch.manual_seed(0)
        with torch.no_grad():  # move the policy: every lora_B far from zero
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.add_(torch.randn_like(p) * 2.0)
    with model.disable_adapter():
        stale = trainer_logprobs(trainer, out)
    assert gaps(out["logprobs"], stale)[1] > 10 * tol[1]  # the check can tell a stale policy
    assert (rollout._shadow is not None) == (policy == "merged")
    assert bool(rollout_calls) == (policy == "live")  # merged: the plain copy generates, not the LoRA forward
    assert model.training  # the trainer's mode came back after the rollout


def test_rollout_refuses_sampling_options_it_does_not_implement(tiny_model_dir, tmp_path):
    with pytest.raises(MathtuneError, match="top_k=5 is not supported by mathtune's rollout") as e:
        train(recipe(tiny_model_dir, tmp_path, top_k=5))
    assert "grpo.rollout: trl" in e.value.hint


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
    with pytest.raises(MathtuneError, match="grpo: settings are for stage grpo"):
        TrainRecipe.from_dict({"stage": "sft", "grpo": {"pass_rate": {"k": 4}}})


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


# --------------------------------------------------------------------------- pass-rate filtering


class ScriptedSampler:
    """Answers problem i right in `right[i]` of its k samples (stands in for the policy)."""

    def __init__(self, right):
        self.right, self.calls = right, 0

    def sample(self, model, prompt_ids, n, seeds, max_new_tokens=None):
        from mathtune.generation.base import Completion

        self.calls += 1
        return [[Completion(f"\\boxed{{{2 * i + 1 if s < self.right[i] else -1}}}", 3, "stop", 0.0)
                 for s in range(n)] for i in range(len(prompt_ids))]


def test_pass_rate_filter_keeps_the_band_and_reuses_its_measurement(tiny_model_dir, tmp_path, capsys):
    from mathtune.models import load_model
    from mathtune.train.grpo import grpo_dataset
    from mathtune.train.pass_rate import filter_by_pass_rate
    from mathtune.train.recipe import PassRateSpec

    model, tok = load_model(str(tiny_model_dir), dtype="fp32")
    ds = grpo_dataset([SimpleNamespace(**e) for e in examples(6)], tok, get_style("chat-boxed"), None)
    cfg = SimpleNamespace(max_completion_length=8, temperature=1.0, top_p=1.0)
    spec = PassRateSpec(k=4, low=0.25, high=0.75)
    sampler = ScriptedSampler([0, 1, 2, 3, 4, 2])  # rates 0, .25, .5, .75, 1, .5
    kept = filter_by_pass_rate(ds, model, tok, spec, cfg, tmp_path, 0, sampler)
    assert list(kept["answer"]) == ["3", "5", "7", "11"]
    assert "kept 4 of 6 problems" in capsys.readouterr().err
    again = filter_by_pass_rate(ds, model, tok, spec, cfg, tmp_path, 0, sampler)  # a resume: measured once
    assert sampler.calls == 1 and list(again["answer"]) == list(kept["answer"])
    filter_by_pass_rate(ds, model, tok, PassRateSpec(k=4, low=0.5, high=0.5), cfg, tmp_path, 0, sampler)
    assert sampler.calls == 2  # other settings: measured again
    with pytest.raises(MathtuneError, match="kept none of 6 problems") as e:
        filter_by_pass_rate(ds, model, tok, spec, cfg, tmp_path, 0, ScriptedSampler([0] * 6))
    assert "widen grpo.pass_rate" in e.value.hint


def test_pass_rate_filter_runs_in_a_grpo_recipe(tiny_model_dir, tmp_path):
    """Wired into stage grpo with the real sampler: a random tiny model never solves anything, so
    the band [0, 0] keeps every problem and the rates file records k samples per problem."""
    res = train(recipe(tiny_model_dir, tmp_path / "run", max_steps=1) | {"grpo": {"pass_rate": {"k": 2, "low": 0,
                                                                                               "high": 0}}})
    from mathtune.files import read_jsonl

    rows = [r for _, r, _ in read_jsonl(res.run_dir / "pass_rates.jsonl")]
    assert len(rows) == 16 and all(r["pass_rate"] == 0.0 and r["k"] == 2 for r in rows)
    with pytest.raises(MathtuneError, match="kept none"):
        train(recipe(tiny_model_dir, tmp_path / "run2", max_steps=1) | {"grpo": {"pass_rate": {"k": 2, "low": 0.5}}})


# --------------------------------------------------------------------------- kill -9


CHILD = """
import json, sys, time
sys.path.insert(0, {tests!r})
from transformers import TrainerCallback
from mathtune.train import train

class Hang(TrainerCallback):  # after checkpoint-2 is saved, wait to be killed
    def on_save(self, args, state, control, **kw):
        if state.global_step == 2:
            print("SAVED", flush=True)
            time.sleep(300)

train(json.loads(sys.argv[1]), callbacks=[Hang()])
"""


def test_kill_9_mid_run_then_the_same_command_ends_with_the_uninterrupted_curve(tiny_model_dir, tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys

    def curve(run: Path) -> list[float]:
        return [r["reward"] for r in read_metrics(run / "metrics.jsonl") if "reward" in r]

    whole = train(recipe(tiny_model_dir, tmp_path / "whole", max_steps=4, save_steps=2))
    cut = recipe(tiny_model_dir, tmp_path / "cut", max_steps=4, save_steps=2)
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(tests=str(Path(__file__).parent)), json.dumps(cut)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "MATHTUNE_THREADS": "1"})
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "SAVED" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        assert "SAVED" in line, "the child never reached checkpoint-2"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "cut" / "result.json").exists() and len(curve(tmp_path / "cut")) >= 2
    resumed = train(cut)  # the same command again
    assert resumed.resumed_from and resumed.resumed_from.endswith("checkpoint-2")
    assert len(curve(whole.run_dir)) == 4 and len(set(curve(whole.run_dir))) > 1
    assert curve(resumed.run_dir) == pytest.approx(curve(whole.run_dir))


def test_grpo_continues_an_sft_adapter(tiny_model_dir, tmp_path):
    """model.name = the SFT run's adapter: GRPO trains that adapter on (it starts from the SFT
    weights, not from a fresh zero-initialised LoRA) and the result still names the real base."""
    import json

    from safetensors.torch import load_file

    sft = train({"stage": "sft", "model": {"name": str(tiny_model_dir), "dtype": "fp32"},
                 "method": {"kind": "lora", "r": 4, "dropout": 0.0},
                 "data": {"examples": examples(), "prompt": "chat-boxed", "validation": 0},
                 "run": {"output_dir": str(tmp_path / "sft"), "progress": "none", "plot": False},
                 "trainer": {"max_steps": 2, "learning_rate": 1e-2, "per_device_train_batch_size": 4}})
    start = load_file(sft.adapter_dir / "adapter_model.safetensors")
    assert any(("lora_B" in k) and v.abs().sum() > 0 for k, v in start.items())
    snap = Snapshot()
    r = recipe(sft.adapter_dir, tmp_path / "grpo", max_steps=2)
    r["method"] = {"kind": "lora"}  # the adapter's own r=4 is used
    res = train(r, callbacks=[snap])
    before = {k.replace(".default", ""): v for k, v in snap.before.items() if "lora_B" in k}
    assert before and all(any(torch.equal(v, w) for w in start.values()) for v in before.values())
    cfg = json.loads((res.adapter_dir / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and Path(cfg["base_model_name_or_path"]) == Path(tiny_model_dir)
    # the run's config.yaml names the method as the adapter has it, so it runs again as it is
    saved = TrainRecipe.load(tmp_path / "grpo" / "config.yaml")
    assert (saved.method.r, saved.method.dropout) == (4, 0.0)
    again = train(tmp_path / "grpo" / "config.yaml", [f"run.output_dir={tmp_path / 'grpo-again'}", "trainer.max_steps=1"])
    assert again.adapter_dir is not None
    with pytest.raises(MathtuneError, match=r"method.r=8 \(the adapter has 4\)"):
        train(recipe(sft.adapter_dir, tmp_path / "grpo2", max_steps=1) | {"method": {"kind": "lora", "r": 8}})


def test_reward_functions_get_each_samples_problem_and_gold(tiny_model_dir, tmp_path, monkeypatch):
    """TRL passes the dataset's `answer` and `problem` columns to every reward: `reward_model`
    renders the problem in its own prompt style (its tokenizer may not be the policy's)."""
    from mathtune.train import rewards

    seen: list[dict] = []

    def record(self, completions, prompts=None, problem=None, answer=None, **_):
        seen.append({"prompts": list(prompts), "problem": problem, "answer": answer})
        return [0.0] * len(completions)

    monkeypatch.setattr(rewards.RewardModelReward, "__init__", lambda self, path, batch_size=8: None)
    monkeypatch.setattr(rewards.RewardModelReward, "__call__", record)
    train(recipe(tiny_model_dir, tmp_path / "run", rewards={"reward_model": {"path": "rm"}}, max_steps=1))
    known = {e["problem"]: e["answer"] for e in examples()}
    assert seen and all(len(s["problem"]) == len(s["prompts"]) == 4 for s in seen)
    for s in seen:
        for prompt, problem, answer in zip(s["prompts"], s["problem"], s["answer"], strict=True):
            assert problem in prompt and known[problem] == answer
