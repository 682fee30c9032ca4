"""Train stage on tiny in-process models: real transformers/PEFT/TRL code, seconds per test.

    .venv/bin/python -m pytest tests/test_train.py -q
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from mathtune.errors import MathtuneError
from mathtune.train import TrainRecipe, last_complete_checkpoint, train
from mathtune.train.callbacks import InterruptAfterCallback, read_metrics

torch.set_num_threads(1)


def examples(n: int = 48) -> list[dict]:
    return [{"problem": f"What is {i} + {i + 1}?", "solution": f"{i} + {i + 1} = {2 * i + 1}.",
             "answer": str(2 * i + 1)} for i in range(n)]


def recipe(model_dir: Path, out: Path, dtype: str = "fp32", **over) -> dict:
    r = {"model": {"name": str(model_dir), "dtype": dtype},
         "method": {"kind": "lora", "r": 4, "dropout": 0.0},
         "data": {"examples": examples(), "prompt": "chat-boxed", "validation": 8},
         "run": {"output_dir": str(out), "progress": "none", "plot": False},
         "trainer": {"max_steps": 6, "learning_rate": 3e-3, "per_device_train_batch_size": 4, "save_steps": 3,
                     "eval_steps": 3}}
    for key, value in over.items():
        section, _, field = key.partition("__")
        r[section] = {**r[section], field: value} if field else value
    return r


class Snapshot(TrainerCallback):
    """Parameters at the start and at the end of training, and the first real batch."""

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, optimizer=None, **kw):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        self.batch = next(iter(train_dataloader)) if train_dataloader is not None else None
        self.groups = [(g["lr"], sum(p.numel() for p in g["params"])) for g in optimizer.param_groups] if optimizer else []

    def on_train_end(self, args, state, control, model=None, **kw):
        self.after = {n: p.detach().clone() for n, p in model.named_parameters()}


def test_lora_trains_adapters_only_and_loss_falls(tiny_model_dir, tmp_path, dtype):
    snap = Snapshot()
    res = train(recipe(tiny_model_dir, tmp_path / "run", dtype, trainer__max_steps=12), callbacks=[snap])
    assert snap.trainable and all("lora_" in n for n in snap.trainable)
    for name, before in snap.before.items():
        changed = not torch.equal(before, snap.after[name])
        assert changed == (name in snap.trainable), name
    losses = [r["loss"] for r in read_metrics(res.run_dir / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1
    assert (res.adapter_dir / "adapter_model.safetensors").is_file()
    assert (res.adapter_dir / "tokenizer.json").is_file()
    for f in ("config.yaml", "README.md", "metrics.csv", "result.json"):
        assert (res.run_dir / f).is_file(), f
    assert "eval_loss" in res.metrics and res.best_checkpoint
    assert TrainRecipe.load(res.run_dir / "config.yaml").method.r == 4  # resolved recipe reloads


def test_prompt_tokens_carry_no_loss_and_end_of_turn_does(tiny_model_dir, tiny_tokenizer, tmp_path, dtype):
    snap = Snapshot()
    train(recipe(tiny_model_dir, tmp_path / "run", dtype, trainer__max_steps=1, data__validation=0), callbacks=[snap])
    batch = snap.batch
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # padding-free: one flat row
    ids, labels, pos = batch["input_ids"][0], batch["labels"][0], batch["position_ids"][0]
    starts = [i for i in range(len(pos)) if pos[i] == 0] + [len(pos)]
    assert len(starts) - 1 >= 4  # packed examples, no pad token anywhere
    eot = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    for s, e in zip(starts, starts[1:], strict=False):
        text = tiny_tokenizer.decode(ids[s:e])
        lab = labels[s:e]
        first = int((lab != -100).nonzero()[0])
        assert (lab[first:] != -100).all()  # the whole answer carries loss
        assert tiny_tokenizer.decode(ids[s:s + first]).endswith("<|im_start|>assistant\n")  # prompt masked
        assert int(lab[-1]) == eot and int(ids[e - 1]) == eot  # end-of-turn inside the loss
        assert "\\boxed{" in tiny_tokenizer.decode(ids[s + first:e]) and "What is" in text


@pytest.mark.parametrize("attn", ["sdpa", "eager", "mathtune_varlen"])
def test_packed_sequences_do_not_attend_across_examples(tiny_model, attn):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from mathtune.train.attention import use_varlen_attention

    model = tiny_model.eval()
    if attn == "mathtune_varlen":
        assert use_varlen_attention(model)
    else:
        model.set_attn_implementation(attn)
    seqs = [list(range(5, 22)), list(range(40, 49)), list(range(60, 90))]
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)([{"input_ids": s} for s in seqs])
    batch.pop("labels")
    batch["use_cache"] = False  # as in training (TRL sets it): a KV cache turns packed-mask detection off
    with torch.no_grad():
        packed = model(**batch).logits[0]
        alone = [model(input_ids=torch.tensor([s])).logits[0] for s in seqs]
    torch.testing.assert_close(packed, torch.cat(alone), atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # and the check has teeth: without position_ids the examples do mix
        mixed = model(input_ids=batch["input_ids"]).logits[0]
    assert not torch.allclose(mixed[17:], torch.cat(alone[1:]), atol=1e-3)


def test_varlen_attention_splits_each_row_of_a_packed_batch_by_its_own_examples(tiny_model):
    """Packed blocks as GPU packing makes them ([rows, block] with positions restarting per
    example): each row is split by its own examples, and equals the examples run alone."""
    from mathtune.train.attention import use_varlen_attention

    model = tiny_model.eval()
    assert use_varlen_attention(model)
    rows = [[list(range(5, 22)), list(range(40, 49))], [list(range(60, 70)), list(range(7, 23))]]
    ids = torch.tensor([sum(r, []) for r in rows])
    pos = torch.tensor([sum((list(range(len(s))) for s in r), []) for r in rows])
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=pos, use_cache=False).logits
        for b, r in enumerate(rows):
            alone = torch.cat([model(input_ids=torch.tensor([s])).logits[0] for s in r])
            torch.testing.assert_close(packed[b], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_varlen_attention_matches_sdpa_in_loss_and_gradients_and_keeps_padding(tiny_tokenizer, arch):
    """mathtune_varlen (per-example SDPA) trains exactly like sdpa's block-diagonal mask, and
    batches it cannot split (a padding mask, generation with a KV cache) go through sdpa."""
    from tiny import make_tiny_model
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from mathtune.train import attention
    from mathtune.train.attention import use_varlen_attention

    seqs = [list(range(5, 22)), list(range(40, 49)), list(range(60, 90)), list(range(7, 19))]
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)([{"input_ids": s} for s in seqs])
    batch["use_cache"] = False
    grads, losses = [], []
    for varlen in (False, True):
        model = make_tiny_model(tiny_tokenizer, arch).train()
        if varlen:
            assert use_varlen_attention(model)
        losses.append(model(**batch).loss)
        losses[-1].backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        assert model.config._attn_implementation == ("mathtune_varlen" if varlen else "sdpa")
    assert attention._segments_memo[0] is batch["position_ids"]  # the per-example path really ran
    assert attention._segments_memo[1] == [[(0, 17), (17, 26), (26, 56), (56, 68)]]
    torch.testing.assert_close(losses[1], losses[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-4)

    model = make_tiny_model(tiny_tokenizer, arch)
    ref = make_tiny_model(tiny_tokenizer, arch)
    use_varlen_attention(model)
    ids = torch.tensor([[0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits[:, 2:],
                                   ref(input_ids=ids, attention_mask=mask).logits[:, 2:])
        out = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
        assert torch.equal(out, ref.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False))


def test_shared_prefix_branches_attend_to_their_prompt_only_inside_the_context(tiny_tokenizer):
    """A segment whose positions start at p > 0 is, in `position_ids` marked by `shared_prefixes`,
    the continuation of the last prompt's first p tokens (a GRPO group's further completion);
    unmarked, an example of its own (TRL's padding-free rows never make one)."""
    from tiny import make_tiny_model

    from mathtune.train.attention import shared_prefixes, use_varlen_attention

    model = make_tiny_model(tiny_tokenizer).eval()
    use_varlen_attention(model)
    prompt, first, second = [5, 6, 7, 8], [20, 21, 22], [30, 31]
    ids = torch.tensor([prompt + first + second])
    pos = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 4, 5]])
    with torch.no_grad():
        alone = model(input_ids=ids, position_ids=pos.clone()).logits[0]
        shared = model(input_ids=ids, position_ids=shared_prefixes(pos)).logits[0]
        whole_first = model(input_ids=torch.tensor([prompt + first])).logits[0]
        whole_second = model(input_ids=torch.tensor([prompt + second])).logits[0]
        by_itself = model(input_ids=torch.tensor([second]), position_ids=torch.tensor([[4, 5]])).logits[0]
    torch.testing.assert_close(shared[:7], whole_first, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(shared[7:], whole_second[4:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(alone[7:], by_itself, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(alone[7:], shared[7:], atol=1e-3)


def test_resume_after_interruption_reproduces_loss_curve(tiny_model_dir, tmp_path, dtype):
    base = recipe(tiny_model_dir, tmp_path / "full", dtype, method__dropout=0.1, trainer__max_steps=8, trainer__save_steps=4,
                  trainer__eval_steps=4)
    full = train(base)
    ref = {r["step"]: r["loss"] for r in read_metrics(full.run_dir / "metrics.jsonl") if "loss" in r}

    broken = {**base, "run": {**base["run"], "output_dir": str(tmp_path / "broken")}}
    with pytest.raises(KeyboardInterrupt):
        train(broken, callbacks=[InterruptAfterCallback(4)])
    (tmp_path / "broken" / "checkpoint-6").mkdir()  # a save cut off by kill -9: no trainer_state.json
    assert last_complete_checkpoint(tmp_path / "broken").endswith("checkpoint-4")
    assert (tmp_path / "broken" / ".incomplete-checkpoint-6").is_dir()

    resumed = train(broken)
    assert resumed.resumed_from.endswith("checkpoint-4")
    got = {r["step"]: r["loss"] for r in read_metrics(resumed.run_dir / "metrics.jsonl") if "loss" in r}
    assert sorted(got) == list(range(1, 9))
    for step in range(1, 9):
        assert math.isclose(got[step], ref[step], rel_tol=1e-5), (step, got[step], ref[step])


class PoisonAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step == self.step:
            with torch.no_grad():
                next(p for n, p in model.named_parameters() if "lora_B" in n).fill_(float("nan"))


def test_nan_loss_stops_with_clear_message_and_keeps_last_good_checkpoint(tiny_model_dir, tmp_path, dtype):
    r = recipe(tiny_model_dir, tmp_path / "run", dtype, trainer__max_steps=10, trainer__save_steps=2, trainer__eval_steps=2)
    with pytest.raises(MathtuneError) as e:
        train(r, callbacks=[PoisonAt(3)])
    msg = str(e.value)
    assert "nan at step 4" in msg and "checkpoint-2" in msg and "learning_rate" in msg
    assert not (tmp_path / "run" / "checkpoint-4").exists() and not (tmp_path / "run" / "adapter").exists()


def test_qlora_on_cpu_is_a_clear_error(tiny_model_dir, tmp_path):
    with pytest.raises(MathtuneError, match="CUDA GPU"):
        train(recipe(tiny_model_dir, tmp_path / "run", method__kind="qlora", model__device="cpu"))


def test_embeddings_train_at_their_own_learning_rate(tiny_model_dir, tmp_path, dtype):
    snap = Snapshot()
    train(recipe(tiny_model_dir, tmp_path / "run", dtype, trainer__max_steps=2, data__validation=0,
                 method__train_embeddings=True, method__train_lm_head=True, method__embedding_lr=1e-5),
          callbacks=[snap])
    lrs = [lr for lr, n in snap.groups if n]
    assert 1e-5 in [round(x, 12) for x in lrs] or any(math.isclose(x, 1e-5) for x in lrs)
    emb = [n for n in snap.trainable if "embed_tokens" in n]
    assert emb and any(not torch.equal(snap.before[n], snap.after[n]) for n in emb)


def test_full_finetune_and_dora(tiny_model_dir, tmp_path, dtype):
    full = train(recipe(tiny_model_dir, tmp_path / "full", dtype, method__kind="full", trainer__max_steps=2,
                        trainer__learning_rate=1e-4, data__validation=0))
    assert full.model_dir and (full.model_dir / "model.safetensors").is_file() and full.adapter_dir is None
    dora = train(recipe(tiny_model_dir, tmp_path / "dora", dtype, method__kind="dora", method__merge=True,
                        trainer__max_steps=2, data__validation=0))
    assert json.loads((dora.adapter_dir / "adapter_config.json").read_text())["use_dora"] is True
    assert (dora.merged_dir / "model.safetensors").is_file()


def test_cpt_trains_on_raw_blocks_without_masking(tiny_model_dir, tmp_path, dtype):
    corpus = tmp_path / "papers"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"p{i}.tex").write_text("\\section{Intro} Let $x^2 + 2x = 3$. Then x = 1. " * (10 + i))
    snap = Snapshot()
    res = train({"stage": "cpt", "model": {"name": str(tiny_model_dir), "dtype": dtype},
                 "method": {"r": 4, "train_embeddings": True, "embedding_lr": 1e-5},
                 "data": {"path": str(corpus), "block_size": 64, "validation": 1},
                 "run": {"output_dir": str(tmp_path / "run"), "progress": "none", "plot": False},
                 "trainer": {"max_steps": 2, "per_device_train_batch_size": 2}}, callbacks=[snap])
    assert snap.batch["input_ids"].shape == (2, 64)
    assert torch.equal(snap.batch["labels"], snap.batch["input_ids"])  # every token in the loss
    assert res.metrics["global_step"] == 2


def test_jsonl_gsm8k_format_and_unknown_trainer_key(tiny_model_dir, tmp_path, dtype):
    data = tmp_path / "gsm.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {i}*2?", "answer": f"{i}*2={2 * i}\n#### {2 * i}"}) + "\n"
                            for i in range(12)))  # a malformed line: tests/test_train_data.py
    res = train(recipe(tiny_model_dir, tmp_path / "run", dtype, data={"path": str(data), "validation": 0},
                       trainer__max_steps=1))
    assert res.metrics["global_step"] == 1
    with pytest.raises(MathtuneError, match="did you mean 'trainer.learning_rate'"):
        train(recipe(tiny_model_dir, tmp_path / "run2", dtype, trainer={"learnign_rate": 1e-3}))


def test_cli_check_validates_trainer_block(tmp_path, capsys):
    from mathtune.cli import main

    good = tmp_path / "r.yaml"
    good.write_text("stage: sft\ndata: {synth: {n: 8}}\ntrainer: {max_steps: 2, lr_scheduler_type: cosine}\n")
    assert main(["train", str(good), "--check"]) == 0
    assert main(["train", str(good), "trainer.lr_scheduler_type=cosinus", "--check"]) == 2
    assert "cosinus" in capsys.readouterr().err  # one clear line naming the bad value


def test_early_stopping_with_patience(tiny_model_dir, tmp_path, dtype):
    # learning rate 0: the validation loss never improves, so patience 2 stops after the 3rd eval
    res = train(recipe(tiny_model_dir, tmp_path / "run", dtype, trainer__max_steps=20, trainer__learning_rate=0.0,
                       trainer__eval_steps=2, trainer__save_steps=2, run__early_stopping_patience=2))
    assert res.metrics["global_step"] == 6
    assert res.best_checkpoint.endswith("checkpoint-2")
