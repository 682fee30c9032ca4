"""Preference training: `mathtune data pairs`, pair files, `stage: dpo`, `stage: reward`, and the
GRPO rewards `doubt` and `reward_model`, on tiny in-process models (real TRL code, seconds each).

    .venv/bin/python -m pytest tests/test_dpo.py -q
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from mathtune.cli import main
from mathtune.data import Pair, examples_from_rows, make_pairs, read_pairs, split_pairs, write_pairs
from mathtune.errors import MathtuneError
from mathtune.generation.base import Completion, Generator, SamplingParams
from mathtune.grading import rewards as grade
from mathtune.prompts import get_style
from mathtune.train import TrainRecipe, train
from mathtune.train.callbacks import read_metrics
from mathtune.train.rewards import Doubt, build_rewards, check_rewards

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """The user's thread count wins, so train() does not time a thread probe on a busy machine."""
    monkeypatch.setenv("MATHTUNE_THREADS", "1")


# --------------------------------------------------------------------------- a scripted generator


def right(n: int) -> str:
    return f"Adding gives {n}. The final answer is \\boxed{{{n}}}."


def wrong(n: int) -> str:
    return f"Adding gives {n + 1}. The final answer is \\boxed{{{n + 1}}}."


# problem i asks for 2i+1; each script is the k=4 samples (text, finish_reason) of one problem
SCRIPTS: dict[int, list[tuple[str, str]]] = {
    0: [(wrong(1), "stop"), (right(1), "stop"), (wrong(1), "stop"), (right(1), "stop")],  # both
    1: [(right(3), "stop")] * 4,  # all right
    2: [(wrong(5), "stop"), ("I am not sure.", "stop"), (wrong(5), "length"), ("", "length")],  # all wrong
    3: [(right(7) + " Let me also", "length"), (wrong(7), "stop"), (right(7) + " and", "length"),
        (wrong(7), "stop")],  # both, but every right sample was cut off: no pair
    4: [(right(9), "stop"), (right(9), "stop"), (wrong(9), "stop"), ("Hmm, 10?", "length")],  # both
}


def problem(i: int) -> str:
    return f"What is {i} + {i + 1}?"


class ScriptedGenerator(Generator):
    """Returns SCRIPTS[i] for the prompt of problem i, and records what it was asked."""

    backend = "hf"
    model_name = "scripted"

    def __init__(self, *args, **kwargs) -> None:
        self.calls: list[tuple[list[str], SamplingParams]] = []

    def generate(self, prompts: Sequence[str], params: SamplingParams, *, on_complete=None,
                 seeds=None) -> list[list[Completion]]:
        self.calls.append((list(prompts), params))
        out = []
        for p in prompts:
            i = next(i for i in SCRIPTS if problem(i) in p)
            out.append([Completion(text=t, tokens=len(t.split()), finish_reason=f, time_s=0.0)  # type: ignore[arg-type]
                        for t, f in SCRIPTS[i][: params.n]])
        return out


def examples():
    return examples_from_rows([{"problem": problem(i), "answer": str(2 * i + 1)} for i in SCRIPTS])


# --------------------------------------------------------------------------- making pairs


def test_pairs_come_only_from_problems_with_both_outcomes(tiny_tokenizer):
    gen = ScriptedGenerator()
    result = make_pairs(examples(), gen, tiny_tokenizer, k=4, temperature=0.7, max_new_tokens=64,
                        pairs_per_problem=2, model_name="tiny")
    assert (result.problems, result.both, result.all_right, result.all_wrong) == (5, 3, 1, 1)
    assert result.no_clean_chosen == 1  # problem 3: its right samples were all truncated
    assert "3 with both outcomes, 1 all right, 1 all wrong" in result.summary()
    by_problem: dict[str, list[dict]] = {}
    for rec in result.records:
        by_problem.setdefault(rec["problem"], []).append(rec)
    # problem 0: right {1, 3} are one distinct text, wrong {0, 2} too -> one pair; problem 4: one distinct right
    assert sorted(by_problem) == [problem(0), problem(4)]
    assert [len(v) for v in by_problem.values()] == [1, 1]
    recs = result.records
    assert grade([r["chosen"] for r in recs], [r["answer"] for r in recs]) == [1.0] * len(recs)
    assert grade([r["rejected"] for r in recs], [r["answer"] for r in recs]) == [0.0] * len(recs)
    style = get_style("chat-boxed")
    for rec in recs:
        assert rec["prompt"] == style.render(rec["problem"], tiny_tokenizer)
        assert rec["meta"]["model"] == "tiny" and rec["meta"]["k"] == 4 and rec["meta"]["temperature"] == 0.7
        assert rec["meta"]["pass_rate"] == 0.5
    assert by_problem[problem(0)][0]["meta"]["samples"] == [1, 0]  # first right vs first wrong, in sample order
    prompts, params = gen.calls[0]
    assert len(prompts) == 5 and (params.n, params.max_new_tokens, params.temperature) == (4, 64, 0.7)


def test_pairs_per_problem_pairs_distinct_samples(tiny_tokenizer):
    class Varied(ScriptedGenerator):
        def generate(self, prompts, params, **kw):
            return [[Completion(text=t, tokens=1, finish_reason="stop", time_s=0.0)  # type: ignore[arg-type]
                     for t in (right(1), wrong(1), right(1) + " Done.", wrong(1) + " Sure.")] for _ in prompts]

    ex = examples()[:1]
    assert len(make_pairs(ex, Varied(), tiny_tokenizer, k=4).records) == 1
    two = make_pairs(ex, Varied(), tiny_tokenizer, k=4, pairs_per_problem=3).records
    assert len(two) == 2 and len({r["chosen"] for r in two}) == 2 and len({r["rejected"] for r in two}) == 2
    with pytest.raises(MathtuneError, match="at least 2 samples"):
        make_pairs(ex, Varied(), tiny_tokenizer, k=1)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_data_pairs_command_writes_pairs_and_prints_the_split(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import mathtune.generation

    monkeypatch.setattr(mathtune.generation, "HFGenerator", ScriptedGenerator, raising=False)
    src = write_jsonl(tmp_path / "problems.jsonl", [{"problem": problem(i), "answer": str(2 * i + 1)} for i in SCRIPTS])
    out = tmp_path / "pairs" / "out.jsonl"
    code = main(["data", "pairs", "--model", str(tiny_model_dir), "--data", str(src), "-o", str(out), "-k", "4",
                 "--temperature", "0.9"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "2 pairs from 5 problems: 3 with both outcomes, 1 all right, 1 all wrong" in " ".join(printed.split())
    pairs = read_pairs(out)
    assert [p.problem for p in pairs] == [problem(0), problem(4)]
    assert all(p.meta["temperature"] == 0.9 for p in pairs)
    # nothing to pair: a clear error, no file
    code = main(["data", "pairs", "--model", str(tiny_model_dir), "--data", str(src), "-o", str(tmp_path / "none.jsonl"),
                 "--limit", "2", "-k", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "at least 2 samples" in err and "Traceback" not in err
    one = write_jsonl(tmp_path / "one.jsonl", [{"problem": problem(1), "answer": "3"}])
    code = main(["data", "pairs", "--model", str(tiny_model_dir), "--data", str(one), "-o", str(tmp_path / "n.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and "no pairs made" in err and "1 all right" in err and not (tmp_path / "n.jsonl").exists()


# --------------------------------------------------------------------------- reading pairs


def test_pairs_round_trip_and_human_formats(tiny_tokenizer, tmp_path):
    made = make_pairs(examples(), ScriptedGenerator(), tiny_tokenizer, k=4).records
    back = read_pairs(write_pairs(tmp_path / "made.jsonl", made))
    assert [p.to_record() for p in back] == made and not back[0].conversational
    user = [{"role": "user", "content": "What is 2+2?"}]
    human = write_jsonl(tmp_path / "human.jsonl", [
        {"prompt": "Q: 1+1?", "chosen": "2", "rejected": "3"},
        {"prompt": user, "chosen": [{"role": "assistant", "content": "4"}],
         "rejected": [{"role": "assistant", "content": "5"}]},
        {"prompt": user, "chosen": "4", "rejected": "22"},  # strings beside a chat prompt become messages
        {"chosen": user + [{"role": "assistant", "content": "4"}],  # implicit prompt: the shared first turn
         "rejected": user + [{"role": "assistant", "content": "3"}]},
    ])
    text, chat, mixed, implicit = read_pairs(human)
    assert (text.prompt, text.chosen, text.rejected, text.conversational) == ("Q: 1+1?", "2", "3", False)
    assert chat.conversational and chat.chosen == [{"role": "assistant", "content": "4"}]
    assert mixed.chosen == [{"role": "assistant", "content": "4"}]
    assert implicit.prompt == user and implicit.rejected == [{"role": "assistant", "content": "3"}]


def test_malformed_pair_lines_are_reported_by_number(tmp_path, caplog):
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "Q1", "chosen": "a", "rejected": "b"},
        "{not json",
        {"prompt": "Q2", "chosen": "a"},
        {"prompt": "Q3", "chosen": "same", "rejected": "same"},
        {"prompt": "Q4", "chosen": [{"role": "assistant"}], "rejected": "b"},
        {"prompt": "Q5", "chosen": "c", "rejected": "d"},
    ])
    with caplog.at_level(logging.WARNING, logger="mathtune.data"):
        pairs = read_pairs(path)
    assert [p.prompt for p in pairs] == ["Q1", "Q5"]
    msg = caplog.text
    assert "skipped 4 malformed line(s) of 6" in msg
    for needle in ("line 2: invalid JSON", "line 3: no 'rejected'", "line 4: chosen and rejected are the same",
                   "line 5: 'chosen' must be a list of {role, content}"):
        assert needle in msg
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "Q", "answer": "1"}, "[1, 2]"])
    with pytest.raises(MathtuneError, match=r"no usable preference pair in .*bad\.jsonl.*line 1: no 'chosen'.*line 2") as e:
        read_pairs(bad)
    assert "prompt, chosen and rejected" in (e.value.hint or "")
    with pytest.raises(MathtuneError, match="pairs file not found") as e:
        read_pairs(tmp_path / "missing.jsonl")
    assert "mathtune data pairs" in (e.value.hint or "")


def test_validation_split_keeps_a_problems_pairs_together():
    pairs = [Pair(prompt=f"p{i // 3}", chosen=f"c{i}", rejected=f"r{i}", problem=f"problem {i // 3}")
             for i in range(30)]
    train_, val = split_pairs(pairs, 0.2, seed=1)
    assert len(val) == 6 and len(train_) == 24
    assert not {p.problem for p in val} & {p.problem for p in train_}
    assert train_ == [p for p in pairs if p in train_]  # the file's order
    assert split_pairs(pairs[:3], 0.5) == (pairs[:3], [])  # one problem: nothing to hold out


# --------------------------------------------------------------------------- stage dpo


def easy_pairs(path: Path, n: int = 16, start: int = 0) -> Path:
    """Separable: the chosen answer is a short sum, the rejected one the same babble every time."""
    return write_jsonl(path, [{"prompt": "unused", "problem": problem(i), "answer": str(2 * i + 1),
                               "chosen": f"{i} + {i + 1} = {2 * i + 1}. The final answer is \\boxed{{{2 * i + 1}}}.",
                               "rejected": "Hmm hmm hmm, I do not know."} for i in range(start, start + n)])


def recipe(stage: str, model_dir: Path, pairs: Path, out: Path, dtype: str = "fp32", validation: float = 0.25,
           **trainer) -> dict:
    return {"stage": stage, "model": {"name": str(model_dir), "dtype": dtype},
            "method": {"kind": "lora", "r": 4, "dropout": 0.0},
            "data": {"pairs": str(pairs), "validation": validation},
            "run": {"output_dir": str(out), "progress": "none", "plot": False},
            "trainer": {"max_steps": 8, "learning_rate": 1e-2, "per_device_train_batch_size": 4, "save_steps": 4,
                        "max_length": 128, **trainer}}


class Snapshot(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kw):
        self.model = model
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, **kw):
        self.after = {n: p.detach().clone() for n, p in model.named_parameters()}


def test_dpo_trains_lora_only_and_reward_accuracy_rises(tiny_model_dir, tmp_path, dtype):
    snap = Snapshot()
    res = train(recipe("dpo", tiny_model_dir, easy_pairs(tmp_path / "pairs.jsonl"), tmp_path / "run", dtype),
                callbacks=[snap])
    assert snap.trainable and all("lora_" in n for n in snap.trainable)
    for name, before in snap.before.items():
        assert (not torch.equal(before, snap.after[name])) == (name in snap.trainable), name
    assert set(snap.model.peft_config) == {"default"}  # no reference copy: the adapter disabled is the reference
    rows = [r for r in read_metrics(res.run_dir / "metrics.jsonl") if "rewards/accuracies" in r]
    assert len(rows) == 8
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen"):
        assert all(isinstance(r[key], float) for r in rows), key
    accuracies = [r["rewards/accuracies"] for r in rows]
    assert accuracies[0] <= 0.5 < 0.6 < accuracies[-1]  # starts at the reference (all ties), ends separating
    assert rows[-1]["rewards/margins"] > rows[0]["rewards/margins"]
    evals = [r for r in read_metrics(res.run_dir / "metrics.jsonl") if "eval_rewards/accuracies" in r]
    assert evals and evals[-1]["eval_rewards/accuracies"] > 0.6
    assert (res.adapter_dir / "adapter_model.safetensors").is_file() and not (res.adapter_dir / "ref").exists()
    assert "on TRL's DPOTrainer" in (res.run_dir / "README.md").read_text()
    cfg = TrainRecipe.load(res.run_dir / "config.yaml")
    assert cfg.stage == "dpo" and cfg.data.pairs == str(tmp_path / "pairs.jsonl")


def test_dpo_defaults_are_rpo_and_overridable(tiny_model_dir, tmp_path):
    from types import SimpleNamespace

    from mathtune.train.dpo import dpo_settings, make_dpo_config

    pairs = easy_pairs(tmp_path / "p.jsonl")
    cfg_of = lambda r: make_dpo_config(dpo_settings(TrainRecipe.from_dict(r), tmp_path, "cpu", torch.float32,  # noqa: E731
                                                    SimpleNamespace(hidden_size=64), True))
    cfg = cfg_of(recipe("dpo", tiny_model_dir, pairs, tmp_path))
    assert (cfg.loss_type, cfg.loss_weights, cfg.beta) == (["sigmoid", "sft"], [1.0, 1.0], 0.1)
    assert cfg.logging_steps == 1 and cfg.load_best_model_at_end and cfg.eval_strategy == "steps"
    plain = cfg_of(recipe("dpo", tiny_model_dir, pairs, tmp_path, loss_type="sigmoid", beta=0.3))
    assert (plain.loss_type, plain.loss_weights, plain.beta) == (["sigmoid"], None, 0.3)


def test_unknown_trainer_keys_name_the_closest_field(tiny_model_dir, tmp_path):
    from mathtune.train.run import check

    pairs = easy_pairs(tmp_path / "p.jsonl")
    with pytest.raises(MathtuneError, match=r"trainer\.bta.*trl\.DPOConfig") as e:
        train(recipe("dpo", tiny_model_dir, pairs, tmp_path / "a", bta=0.2))
    assert "trainer.beta" in (e.value.hint or "")
    with pytest.raises(MathtuneError, match="RewardConfig") as e:
        check(TrainRecipe.from_dict(recipe("reward", tiny_model_dir, pairs, tmp_path / "b",
                                           center_reward_coefficient=0.1)))
    assert "trainer.center_rewards_coefficient" in (e.value.hint or "")
    with pytest.raises(MathtuneError, match="invalid trainer settings"):
        check(TrainRecipe.from_dict(recipe("dpo", tiny_model_dir, pairs, tmp_path / "c", loss_type=["sigmoid", "sft"],
                                           loss_weights=[1.0])))


def test_preference_stages_need_pairs_and_only_they_take_them(tmp_path):
    with pytest.raises(MathtuneError, match="stage dpo trains on preference pairs"):
        TrainRecipe.from_dict({"stage": "dpo", "data": {"synth": {"n": 4}}})
    with pytest.raises(MathtuneError, match="data.pairs and data.eval_pairs are for stages dpo and reward"):
        TrainRecipe.from_dict({"stage": "sft", "data": {"pairs": "p.jsonl"}})
    with pytest.raises(MathtuneError, match="one data source"):
        TrainRecipe.from_dict({"stage": "reward", "data": {"pairs": "p.jsonl", "path": "x.jsonl"}})


# --------------------------------------------------------------------------- stage reward


def test_reward_model_trains_its_head_and_ranks_held_out_pairs(tiny_model_dir, tmp_path, dtype):
    from mathtune.models import load_tokenizer
    from mathtune.train.grpo import prompt_text

    snap = Snapshot()
    res = train(recipe("reward", tiny_model_dir, easy_pairs(tmp_path / "pairs.jsonl", 24), tmp_path / "rm", dtype,
                       validation=0, max_steps=10), callbacks=[snap])
    heads = {n for n in snap.trainable if ".score." in n}
    assert heads and all("lora_" in n or n in heads for n in snap.trainable)
    for name, before in snap.before.items():
        assert (not torch.equal(before, snap.after[name])) == (name in snap.trainable), name
    rows = [r for r in read_metrics(res.run_dir / "metrics.jsonl") if "accuracy" in r]
    assert len(rows) == 10 and rows[-1]["margin"] > rows[0]["margin"]
    assert json.loads((res.adapter_dir / "adapter_config.json").read_text())["task_type"] == "SEQ_CLS"
    # held-out problems, through the GRPO reward a recipe would name
    funcs, weights = build_rewards({"reward_model": {"weight": 0.5, "path": str(res.run_dir)}}, get_style("chat-boxed"),
                                   64)
    tok = load_tokenizer(tiny_model_dir)
    held = [problem(i) for i in range(40, 44)]
    prompts = [prompt_text(get_style("chat-boxed"), p, tok, None) for p in held]
    chosen = [f"{i} + {i + 1} = {2 * i + 1}. The final answer is \\boxed{{{2 * i + 1}}}." for i in range(40, 44)]
    rejected = ["Hmm hmm hmm, I do not know."] * 4
    scores = funcs[0](chosen + rejected, prompts=prompts + prompts)
    assert weights == [0.5] and len(scores) == 8
    assert min(scores[:4]) - max(scores[4:]) > 1.0, scores  # at initialisation the margin is ~0.04
    # another policy's templated prompts, with each sample's problem (GRPO's `problem` column): the
    # reward model renders the problem as its pairs were rendered, so the scores are the same
    assert json.loads((res.adapter_dir / "scoring.json").read_text()) == {"prompt": "chat-boxed", "system": None}
    foreign = [f"### Instruction (another model's template)\n{p}\n### Response:\n" for p in held]
    assert funcs[0](chosen + rejected, prompts=foreign * 2, problem=held * 2) == pytest.approx(scores, abs=1e-5)
    assert funcs[0](chosen + rejected, prompts=foreign * 2) != pytest.approx(scores, abs=1e-5)  # without: other text


def test_only_a_reward_model_trained_on_rendered_problems_records_its_prompt_style(tmp_path):
    """scoring.json says how training prompts were rendered from problems: a model trained on
    verbatim (or chat-message) prompts gets none, and is scored on the prompts it is given."""
    from mathtune.train.reward_model import SCORING_FILE, write_scoring

    rendered = TrainRecipe.from_dict(recipe("reward", tmp_path, easy_pairs(tmp_path / "p.jsonl", 4), tmp_path / "rm"))
    write_scoring(tmp_path, rendered)
    assert json.loads((tmp_path / SCORING_FILE).read_text()) == {"prompt": "chat-boxed", "system": None}
    verbatim = write_jsonl(tmp_path / "v.jsonl", [{"prompt": f"Q{i}: ", "chosen": "a", "rejected": "b"} for i in range(4)])
    (tmp_path / SCORING_FILE).unlink()
    write_scoring(tmp_path, TrainRecipe.from_dict(recipe("reward", tmp_path, verbatim, tmp_path / "rm")))
    assert not (tmp_path / SCORING_FILE).exists()


def test_reward_model_reward_needs_a_path_that_exists(tmp_path):
    with pytest.raises(MathtuneError, match="needs option 'path'"):
        check_rewards({"correctness": 1.0, "reward_model": 0.2})
    with pytest.raises(MathtuneError, match="option of reward 'reward_model'"):
        check_rewards({"reward_model": {"path": "x", "paht": "y"}})
    with pytest.raises(MathtuneError, match="reward model not found"):
        build_rewards({"reward_model": {"path": str(tmp_path / "missing")}}, get_style("chat-boxed"), 64)
    with pytest.raises(MathtuneError, match="stage reward does not support method.kind: qlora"):
        from mathtune.train.run import check

        check(TrainRecipe.from_dict({"stage": "reward", "method": {"kind": "qlora"}, "data": {"pairs": "p.jsonl"}}))


# --------------------------------------------------------------------------- doubt reward


def test_doubt_reward_is_zero_when_clean_and_falls_with_loops():
    (doubt,), _ = build_rewards({"doubt": 0.3}, get_style("chat-boxed"), 64)
    clean = "2 + 3 = 5, so the final answer is \\boxed{5}."
    healthy = "2 + 3 = 6. Wait, no: 2 + 3 = 5. Let me double-check: yes. The final answer is \\boxed{5}."
    circling = "2 + 3 = 6. Wait, no, 5. Hmm, or 6? Actually, 5. Wait, no. Hmm. \\boxed{5}"
    spiral = " ".join(["Wait, no, let me re-check."] * 12)
    loop = "We compute the sum. " + " ".join(["Then we add the two numbers to get the total."] * 8)
    clean_v, healthy_v, circling_v, spiral_v, loop_v = doubt([clean, healthy, circling, spiral, loop])
    assert clean_v == 0.0 and healthy_v == 0.0  # one or two self-corrections are free
    assert -1.0 < circling_v < 0.0 and spiral_v == -1.0 and loop_v == -1.0
    assert Doubt(free=0)([healthy])[0] < 0.0 and Doubt(repetition=False)([loop])[0] == 0.0
    assert doubt([[{"role": "assistant", "content": spiral}]]) == [-1.0]  # chat completions too
    with pytest.raises(MathtuneError, match="free=9 must be >= 0 and below limit=8"):
        build_rewards({"doubt": {"weight": 0.1, "free": 9}}, get_style("chat-boxed"), 64)
    with pytest.raises(MathtuneError, match="did you mean 'limit'"):
        check_rewards({"correctness": 1.0, "doubt": {"weight": 0.1, "limt": 4}})


def test_dpo_from_an_sft_adapter_continues_it_against_a_frozen_copy(tiny_model_dir, tmp_path, dtype):
    """model.name = an adapter dir: DPO trains that adapter, and its reference is the adapter as
    it started (TRL's frozen "ref" copy), not the base model; only the trained adapter is saved."""
    from test_serve_adapters import make_adapter

    from mathtune.models import load_model

    sft = make_adapter(tiny_model_dir, tmp_path / "sft", seed=3)
    snap = Snapshot()
    res = train(recipe("dpo", sft, easy_pairs(tmp_path / "pairs.jsonl"), tmp_path / "run", dtype, validation=0.0,
                       max_steps=4), callbacks=[snap])
    model = snap.model
    assert set(model.peft_config) == {"default", "ref"}
    start = {n: p for n, p in snap.before.items() if ".default." in n}
    assert start and all(torch.equal(p, snap.before[n.replace(".default.", ".ref.")]) for n, p in start.items())
    ref_after = {n: snap.after[n.replace(".default.", ".ref.")] for n in start}
    assert all(torch.equal(start[n], ref_after[n]) for n in start)  # the reference stayed the SFT adapter
    assert any(not torch.equal(start[n], snap.after[n]) for n in start if "lora_" in n)  # the policy moved
    rows = [r for r in read_metrics(res.run_dir / "metrics.jsonl") if "rewards/chosen" in r]
    assert abs(rows[0]["rewards/chosen"]) < 1e-4 and abs(rows[0]["rewards/rejected"]) < 1e-4  # policy == ref at step 1
    assert not (res.adapter_dir / "ref").exists()
    tuned, _ = load_model(str(res.adapter_dir), dtype="fp32", device="cpu")  # base + the DPO-trained SFT adapter
    started, _ = load_model(str(sft), dtype="fp32", device="cpu")
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(tuned.state_dict()[key], started.state_dict()[key])


def _eval_run(path: Path, samples: dict[int, list[str]]) -> Path:
    """An eval run directory whose problem i (gold 2i+1) has the given sample responses."""
    path.mkdir(parents=True)
    recs = [{"id": f"p{i}", "index": i, "benchmark": "b", "problem": problem(i), "gold": str(2 * i + 1), "sample": s,
             "prompt": f"<prompt {i}>", "response": text, "correct": str(2 * i + 1) in text, "status": "ok",
             "finish_reason": "stop"} for i, texts in samples.items() for s, text in enumerate(texts)]
    write_jsonl(path / "predictions.jsonl", recs)
    (path / "config.yaml").write_text("model: m\nbenchmark: b\nsamples: 2\ntemperature: 0.8\n")
    return path


def test_pairs_from_an_eval_runs_graded_samples(tmp_path, capsys):
    run = _eval_run(tmp_path / "run", {0: [wrong(1), right(1)], 1: [right(3), right(3)], 2: [wrong(5), wrong(5)],
                                       4: [right(9), wrong(9)]})
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "pairs", "--from-run", str(run), "-o", str(out)]) == 0
    assert "2 pairs from 4 problems: 2 with both outcomes, 1 all right, 1 all wrong" in " ".join(
        capsys.readouterr().out.split())
    pairs = read_pairs(out)
    assert [(p.id, p.chosen, p.rejected, p.prompt) for p in pairs] == [
        ("p0", right(1), wrong(1), "<prompt 0>"), ("p4", right(9), wrong(9), "<prompt 4>")]
    assert pairs[0].meta["source_run"] == str(run) and pairs[0].meta["temperature"] == 0.8
    one = _eval_run(tmp_path / "one", {0: [right(1)], 1: [wrong(3)]})
    assert main(["data", "pairs", "--from-run", str(one), "-o", str(out)]) == 2
    assert "one sample per problem" in capsys.readouterr().err
    assert main(["data", "pairs", "--from-run", str(run), "--model", "x", "-o", str(out)]) == 2
    assert main(["data", "pairs", "-o", str(out)]) == 2


def test_eval_pairs_are_the_validation_set_and_must_be_other_problems(tiny_model_dir, tmp_path):
    train_pairs = easy_pairs(tmp_path / "pairs.jsonl", 16)
    held = easy_pairs(tmp_path / "held.jsonl", 8, start=100)
    r = recipe("reward", tiny_model_dir, train_pairs, tmp_path / "rm", max_steps=4)
    r["data"] = {"pairs": str(train_pairs), "eval_pairs": str(held)}
    res = train(TrainRecipe.from_dict(r))
    evals = [m for m in read_metrics(res.run_dir / "metrics.jsonl") if "eval_accuracy" in m]
    assert evals and res.metrics.get("eval_accuracy") is not None
    assert res.best_checkpoint is None  # reported, not used to choose a checkpoint
    # the pooled held-out ranking, scored by the saved model as the GRPO reward scores
    from mathtune.models import load_tokenizer
    from mathtune.train.grpo import prompt_text
    from mathtune.train.reward_model import reward_model_scores

    ranking = res.metrics["eval_ranking"]
    assert json.loads((res.run_dir / "result.json").read_text())["metrics"]["eval_ranking"] == ranking
    tok = load_tokenizer(tiny_model_dir)
    pairs = read_pairs(held)
    prompts = [prompt_text(get_style("chat-boxed"), p.problem, tok, None) for p in pairs]
    good = reward_model_scores(res.run_dir, prompts, [p.chosen for p in pairs])
    bad = reward_model_scores(res.run_dir, prompts, [p.rejected for p in pairs])
    assert ranking["n"] == len(pairs) == 8
    assert ranking["correct"] == sum(g > b for g, b in zip(good, bad, strict=True))
    assert ranking["accuracy"] == ranking["correct"] / 8 and ranking["ci95"][0] <= ranking["accuracy"] <= ranking["ci95"][1]
    card = (res.run_dir / "README.md").read_text()
    assert "## Held-out ranking" in card and f"| correct | {ranking['correct']} |" in card and "{'n'" not in card
    r["data"]["eval_pairs"] = str(easy_pairs(tmp_path / "overlap.jsonl", 4, start=10))
    r["run"]["output_dir"] = str(tmp_path / "rm2")
    with pytest.raises(MathtuneError, match="also in data.pairs"):
        train(TrainRecipe.from_dict(r))
    with pytest.raises(MathtuneError, match="for stages dpo and reward"):
        TrainRecipe.from_dict({"stage": "sft", "model": {"name": "m"}, "data": {"path": "x", "eval_pairs": "y"}})


def test_a_capped_held_out_pair_set_says_so(tiny_tokenizer, tmp_path, capsys):
    from mathtune.train.dpo import pair_datasets

    r = recipe("reward", tmp_path, easy_pairs(tmp_path / "pairs.jsonl", 8), tmp_path / "rm")
    r["data"] = {"pairs": str(tmp_path / "pairs.jsonl"), "eval_pairs": str(easy_pairs(tmp_path / "held.jsonl", 6, start=50)),
                 "validation_limit": 4}
    _, val, _ = pair_datasets(TrainRecipe.from_dict(r), tiny_tokenizer, None)
    assert len(val) == 4 and "scoring the first 4 of 6 held-out pairs (data.validation_limit" in capsys.readouterr().err
    r["data"]["validation_limit"] = 6
    _, val, _ = pair_datasets(TrainRecipe.from_dict(r), tiny_tokenizer, None)
    assert len(val) == 6 and "held-out pairs" not in capsys.readouterr().err
