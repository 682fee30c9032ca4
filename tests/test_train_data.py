"""The train stage consumes the data stage: one row schema, built splits used as built, and a
curriculum whose order reaches the optimizer.

    .venv/bin/python -m pytest tests/test_train_data.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from mathtune.data import build_dataset, read_split
from mathtune.errors import MathtuneError
from mathtune.train import train

torch.set_num_threads(1)


class BatchRecorder(TrainerCallback):
    """Every training batch as the model's forward receives it (what the optimizer steps on)."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []
        self.handle = None

    def on_train_begin(self, args, state, control, model=None, **kw):
        def hook(module, a, kwargs):
            if module.training:
                self.batches.append((kwargs["input_ids"].clone(), kwargs.get("position_ids")))

        self.handle = model.register_forward_pre_hook(hook, with_kwargs=True)

    def on_train_end(self, args, state, control, **kw):
        self.handle.remove()


def seen_problems(recorder: BatchRecorder, tokenizer, problems: list[str]) -> list[str]:
    """The problems in training order: each padding-free row is cut at position_ids == 0."""
    out = []
    for ids, pos in recorder.batches:
        for row, p in zip(ids, pos, strict=True):
            starts = [i for i in range(len(p)) if p[i] == 0] + [len(p)]
            for s, e in zip(starts, starts[1:], strict=False):
                text = tokenizer.decode(row[s:e])
                hits = [q for q in problems if q in text]
                assert len(hits) == 1, text
                out.append(hits[0])
    return out


def data_recipe(curriculum: bool, n: int = 40) -> dict:
    return {"sources": [{"name": "synth", "limit": n, "options": {"levels": [1, 2, 3, 4]}}],
            "mix": {"curriculum": curriculum}, "split": {"validation": 4}, "seed": 1}


def train_recipe(model_dir: Path, out: Path, dtype: str, data: dict, **trainer) -> dict:
    return {"model": {"name": str(model_dir), "dtype": dtype}, "method": {"kind": "lora", "r": 4, "dropout": 0.0},
            "data": {"prompt": "chat-boxed", **data},
            "run": {"output_dir": str(out), "progress": "none", "plot": False, "keep_best": False},
            "trainer": {"num_train_epochs": 1, "learning_rate": 1e-3, "per_device_train_batch_size": 4,
                        "save_strategy": "no", **trainer}}


def test_synth_source_carries_levels(tmp_path, tiny_tokenizer):
    out = build_dataset_from(data_recipe(True), tmp_path / "d", tiny_tokenizer)
    levels = [e.difficulty for e in read_split(out, "train")]
    assert levels == sorted(levels) and len(set(levels)) == 4, levels


def build_dataset_from(recipe: dict, out: Path, tokenizer) -> Path:
    from mathtune.data import DataRecipe

    return build_dataset(DataRecipe.model_validate(recipe), out, tokenizer=tokenizer)


@pytest.mark.parametrize("curriculum", [True, False])
def test_curriculum_order_from_data_build_reaches_the_optimizer(tiny_model_dir, tiny_tokenizer, tmp_path, dtype,
                                                               curriculum):
    built = build_dataset_from(data_recipe(curriculum), tmp_path / "data", tiny_tokenizer)
    level = {e.problem: e.difficulty for e in read_split(built, "train")}
    rec = BatchRecorder()
    res = train(train_recipe(tiny_model_dir, tmp_path / "run", dtype, {"path": str(built)}), callbacks=[rec])
    seen = seen_problems(rec, tiny_tokenizer, list(level))
    assert sorted(seen) == sorted(level)  # every training example once, nothing from validation
    levels = [level[q] for q in seen]
    if curriculum:
        assert levels == sorted(levels), levels
        assert res.metrics["global_step"] == 9  # 36 examples / batch 4, one epoch
    else:  # the test has teeth: without a curriculum Trainer shuffles, and the levels are mixed
        assert levels != sorted(levels)


def test_train_recipe_curriculum_with_baby_steps_pacing(tiny_model_dir, tiny_tokenizer, tmp_path):
    rows = [{"problem": f"What is {i} + {i + 1}?", "solution": f"{i} + {i + 1} = {2 * i + 1}.",
             "answer": str(2 * i + 1), "difficulty": 1 + i % 3} for i in range(24)]
    rec = BatchRecorder()
    train(train_recipe(tiny_model_dir, tmp_path / "run", "fp32",
                       {"examples": rows, "validation": 0, "curriculum": True, "pacing": "baby-steps"}),
          callbacks=[rec])
    level = {r["problem"]: r["difficulty"] for r in rows}
    levels = [level[q] for q in seen_problems(rec, tiny_tokenizer, list(level))]
    # three phases: level 1 (8), levels <= 2 (16), levels <= 3 (24), each its own shuffle
    assert len(levels) == 48
    phases = [levels[:8], levels[8:24], levels[24:]]
    assert [max(p) for p in phases] == [1, 2, 3]
    assert [sorted(p).count(1) for p in phases] == [8, 8, 8]


def test_curriculum_with_a_reordering_sampler_is_an_error(tiny_model_dir, tmp_path):
    rows = [{"problem": f"What is {i}?", "solution": f"{i}.", "answer": str(i), "difficulty": 1 + i % 2}
            for i in range(8)]
    with pytest.raises(MathtuneError, match="reorders the curriculum"):
        train(train_recipe(tiny_model_dir, tmp_path / "run", "fp32",
                           {"examples": rows, "validation": 0, "curriculum": True},
                           train_sampling_strategy="group_by_length"))


def test_built_validation_split_is_used_as_built(tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch):
    from mathtune.train import data as train_data

    built = build_dataset_from(data_recipe(False, n=24), tmp_path / "data", tiny_tokenizer)
    loaded = train_data.load_data(train_data.DataSpec(path=str(built), validation=0.5), "sft", tmp_path, None)
    assert [e.id for e in loaded.validation] == [e.id for e in read_split(built, "validation")]
    assert [e.id for e in loaded.train] == [e.id for e in read_split(built, "train")]


def test_jsonl_is_read_by_the_data_stage_and_a_bad_line_is_named(tmp_path):
    from mathtune.train import data as train_data

    good = tmp_path / "gsm.jsonl"
    good.write_text("".join(json.dumps({"question": f"What is {i}*2?", "answer": f"{i}*2={2 * i}\n#### {2 * i}"}) + "\n"
                            for i in range(6)))
    loaded = train_data.load_data(train_data.DataSpec(path=str(good), validation=0), "sft", tmp_path, None)
    assert [e.answer for e in loaded.train] == [str(2 * i) for i in range(6)]
    assert all(e.solution.endswith(f"\\boxed{{{e.answer}}}.") for e in loaded.train)  # the Example schema
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text() + "not json\n")
    with pytest.raises(MathtuneError, match="line 7"):
        train_data.load_data(train_data.DataSpec(path=str(bad)), "sft", tmp_path, None)


def test_benchmark_after_training_gets_an_object_even_for_odd_run_dirs(tmp_path, monkeypatch):
    import mathtune.eval as eval_stage
    from mathtune.train.recipe import TrainRecipe
    from mathtune.train.run import _benchmark_eval

    seen = []

    class Result:
        metrics = {"accuracy": 1.0}

    monkeypatch.setattr(eval_stage, "run_eval", lambda cfg, progress: seen.append(cfg) or Result(), raising=False)
    odd = tmp_path / "runs" / "my run #2: a=b"
    recipe = TrainRecipe.from_dict({"method": {"merge": True}, "run": {"output_dir": str(odd),
                                                                      "eval_benchmark": "gsm8k", "eval_limit": 3}})
    assert _benchmark_eval(recipe, odd / "merged") == {"accuracy": 1.0}
    assert seen[0].output == str(odd / "eval") and seen[0].model == str(odd / "merged") and seen[0].limit == 3


def test_cli_output_dir_with_yaml_characters_reaches_the_recipe_as_given(tmp_path, monkeypatch):
    import mathtune.train as train_stage
    from mathtune.cli import main

    seen = []

    class Result:
        metrics = {"global_step": 0}
        adapter_dir = model_dir = merged_dir = None
        run_dir = tmp_path

    monkeypatch.setattr(train_stage, "train", lambda recipe: seen.append(recipe) or Result())
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stage: sft\ndata: {synth: {n: 8}}\n")
    odd = str(tmp_path / "runs" / "my run #2: a=b")
    assert main(["train", str(recipe), "--output-dir", odd, "--no-resume"]) == 0
    assert seen[0].run.output_dir == odd and seen[0].run.resume is False


def test_inline_data_recipe_is_built_once_into_the_run_dir(tiny_model_dir, tmp_path, dtype):
    recipe = train_recipe(tiny_model_dir, tmp_path / "run", dtype, {"recipe": data_recipe(True, n=12)}, max_steps=1)
    res = train(recipe)
    built = res.run_dir / "data"
    assert (built / "train.parquet").is_file() and res.metrics["global_step"] == 1
    stamp = (built / "train.parquet").stat().st_mtime_ns
    train({**recipe, "run": {**recipe["run"], "resume": False}})
    assert (built / "train.parquet").stat().st_mtime_ns == stamp  # reused, not rebuilt
