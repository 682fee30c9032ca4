"""The CPU replacement for TRL's fused LM head trains like the original."""

from __future__ import annotations

import pytest
import torch
from tiny import make_tiny_model

from mathtune.train.cpu_speedups import install_cpu_loss_head


def _batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 60, (2, 24), generator=g)
    labels = ids.clone()
    labels[:, :9] = -100  # a masked prompt
    labels[1, 20:] = -100
    return ids, labels


def _autocast(dtype: str):
    """What Trainer does with `bf16=True` on a CPU: bf16 base weights, fp32 adapters, autocast."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")


def _tolerance(dtype: str) -> dict:
    return {"atol": 1e-6, "rtol": 1e-4} if dtype == "fp32" else {"atol": 1e-3, "rtol": 2e-2}


@pytest.mark.parametrize("chunk", [256, 5])  # one chunk; several, the last one partial
@pytest.mark.parametrize("frozen_head", [False, True])  # True: LoRA's case, d logp / d h computed in forward
def test_cpu_loss_head_matches_trl_fused_head_in_loss_metrics_and_gradients(tiny_tokenizer, monkeypatch, chunk, dtype,
                                                                              frozen_head):
    from trl.trainer.utils import add_fused_lm_head

    from mathtune.train import cpu_speedups

    monkeypatch.setattr(cpu_speedups, "TOKEN_CHUNK", chunk)
    ids, labels = _batch()
    outs = []
    for ours in (False, True):
        model = make_tiny_model(tiny_tokenizer).train().to(torch.bfloat16 if dtype == "bf16" else torch.float32)
        add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
        model.get_output_embeddings().weight.requires_grad_(not frozen_head)  # (tied: the embeddings too)
        if ours:
            assert install_cpu_loss_head(model)
        with _autocast(dtype):
            out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        out.loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        outs.append((out, grads, model))
    (ref, g_ref, _), (got, g_got, model) = outs
    bf16 = {} if dtype == "fp32" else {"atol": 2e-2, "rtol": 2e-2}
    torch.testing.assert_close(got.loss, ref.loss, **bf16)
    torch.testing.assert_close(got.log_probs, ref.log_probs, **bf16)
    torch.testing.assert_close(got.entropy, ref.entropy, **(bf16 or {"atol": 1e-5, "rtol": 1e-5}))
    assert torch.equal(got.label_mask, ref.label_mask)
    if dtype == "fp32":  # bf16 rounding can flip a near-tie between the top two logits
        assert torch.equal(got.is_top1, ref.is_top1)
    assert g_got.dtype == g_ref.dtype
    torch.testing.assert_close(g_got.float(), g_ref.float(), **_tolerance(dtype))
    head_grad = model.get_output_embeddings().weight.grad
    if frozen_head:
        assert head_grad is None
    else:
        assert head_grad.abs().sum() > 0  # the (tied) head's gradient flows too
    # and the plain forward (generation, eval) is the model's own
    with torch.no_grad():
        plain = model(input_ids=ids).logits
    assert plain.shape == (2, 24, model.config.vocab_size)


def _padded_batch():
    """A GRPO-shaped batch: prompts left-padded, completions right-padded, labels on completions."""
    g = torch.Generator().manual_seed(1)
    prompt_lens, completion_lens, width_p, width_c = [5, 9, 7], [6, 3, 8], 9, 8
    ids = torch.randint(5, 60, (3, width_p + width_c), generator=g)
    mask = torch.zeros_like(ids)
    for i, (p, c) in enumerate(zip(prompt_lens, completion_lens, strict=True)):
        mask[i, width_p - p:width_p + c] = 1
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :width_p] = -100
    return ids, mask, labels


def _grouped_batch(shuffled: bool = False):
    """GRPO's layout: 2 prompts (left-padded) x 3 completions each (right-padded), one of which is
    cut to nothing by TRL's masking of truncated completions; `shuffled`, the rows in the order
    TRL trains them (`shuffle_sequence_dict` mixes the groups)."""
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(5, 60, (n,), generator=g) for n in (6, 9)]
    completion_lens, width_p, width_c = [[5, 2, 7], [4, 0, 6]], 9, 7
    ids = torch.zeros(6, width_p + width_c, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for gi, prompt in enumerate(prompts):
        for j, c in enumerate(completion_lens[gi]):
            row = 3 * gi + j
            ids[row, width_p - len(prompt):width_p] = prompt
            ids[row, width_p:] = torch.randint(5, 60, (width_c,), generator=g)
            mask[row, width_p - len(prompt):width_p + c] = 1
            if c == 0:
                mask[row, width_p:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :width_p] = -100
    if shuffled:
        order = torch.tensor([3, 0, 4, 1, 5, 2])
        ids, mask, labels = ids[order], mask[order], labels[order]
    return ids, mask, labels, 6 + 9 + sum(map(sum, completion_lens))


@pytest.mark.parametrize(("batch", "temperature"), [("plain", 1.0), ("plain", 0.7), ("groups", 1.0),
                                                    ("groups-shuffled", 1.0), ("groups-checkpointed", 1.0)])
def test_padded_batches_run_padding_free_with_trls_results(tiny_tokenizer, dtype, batch, temperature):
    """GRPO's loss forward: the same log-probs, entropies, loss and gradients as TRL's fused head
    on the padded batch (sdpa with a padding mask), from one packed row of only the real tokens;
    a group's shared prompt is packed once, also when TRL has shuffled the group's rows apart."""
    from trl.trainer.utils import add_fused_lm_head

    from mathtune.train.attention import use_varlen_attention

    if batch.startswith("groups"):
        ids, mask, labels, packed = _grouped_batch(shuffled=batch == "groups-shuffled")
    else:
        ids, mask, labels = _padded_batch()
        packed = int(mask.sum())
    outs, seen = [], []
    # TRL's head, ours, and (in bf16) TRL's in fp32: the truth both bf16 results round away from
    for ours, run_dtype in [(False, dtype), (True, dtype)] + ([(False, "fp32")] if dtype == "bf16" else []):
        model = make_tiny_model(tiny_tokenizer).train().to(torch.bfloat16 if run_dtype == "bf16" else torch.float32)
        add_fused_lm_head(model, temperature=temperature, outputs=("log_probs", "entropy"))
        if ours:
            assert use_varlen_attention(model) and install_cpu_loss_head(model)
            model.model.register_forward_hook(lambda m, a, kw, out: seen.append(kw["input_ids"].shape), with_kwargs=True)
        if batch == "groups-checkpointed":  # backward recomputes each layer's forward, branches too
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if batch.startswith("groups"):  # as GRPO trains it: LoRA, called through PEFT's forward
            from peft import LoraConfig, get_peft_model

            torch.manual_seed(0)
            model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
        with _autocast(run_dtype):
            out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
        out.loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        outs.append((out, grads.float()))
    assert seen == [torch.Size([1, packed])]  # one row of the real tokens, each prompt once
    (ref, g_ref), (got, g_got) = outs[:2]
    close = {"atol": 1e-5, "rtol": 1e-5} if dtype == "fp32" else {"atol": 3e-2, "rtol": 3e-2}
    valid = ref.label_mask
    assert torch.equal(got.label_mask, valid)
    torch.testing.assert_close(got.log_probs[valid], ref.log_probs[valid], **close)
    torch.testing.assert_close(got.entropy[valid], ref.entropy[valid], **close)
    torch.testing.assert_close(got.loss, ref.loss, **close)
    if dtype == "fp32":
        torch.testing.assert_close(g_got, g_ref, **_tolerance(dtype))
    else:  # other positions and sums round differently in bf16: no further from fp32 than TRL's own
        g32 = outs[2][1]
        assert (g_got - g32).norm() <= 1.5 * (g_ref - g32).norm()
        assert ((g_got - g32).norm() / g32.norm()).item() < 0.05


def test_a_batch_packing_cannot_reproduce_runs_padded(tiny_tokenizer):
    """A row with a hole in its mask (positions would shift) goes through the padded forward."""
    from trl.trainer.utils import add_fused_lm_head

    from mathtune.train.attention import use_varlen_attention

    ids, mask, labels = _padded_batch()
    mask[1, 3] = 0  # inside row 1's prompt
    outs, seen = [], []
    for ours in (False, True):
        model = make_tiny_model(tiny_tokenizer).train()
        add_fused_lm_head(model, outputs=("log_probs", "entropy"))
        if ours:
            assert use_varlen_attention(model) and install_cpu_loss_head(model)
            model.model.register_forward_hook(lambda m, a, kw, out: seen.append(kw["input_ids"].shape), with_kwargs=True)
        with torch.no_grad():
            outs.append(model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True))
    assert seen == [ids.shape]
    torch.testing.assert_close(outs[1].log_probs, outs[0].log_probs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("frozen_head", [False, True])
def test_cpu_loss_head_handles_a_micro_batch_with_no_labelled_token(tiny_tokenizer, dtype, frozen_head):
    from trl.trainer.utils import add_fused_lm_head

    model = make_tiny_model(tiny_tokenizer).train().to(torch.bfloat16 if dtype == "bf16" else torch.float32)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    model.get_output_embeddings().weight.requires_grad_(not frozen_head)
    assert install_cpu_loss_head(model)
    ids = torch.randint(5, 60, (1, 10), generator=torch.Generator().manual_seed(2))
    calls = []
    hook = model.model.register_forward_hook(lambda *a: calls.append(1))
    out = model(input_ids=ids, labels=torch.full_like(ids, -100), fused_lm_head=True)
    out.loss.backward()  # a zero loss still connected to the graph, as TRL's head gives
    assert out.loss.item() == 0.0 and not out.label_mask.any() and out.is_top1.dtype == torch.bool
    assert out.log_probs.shape == (1, 9) and not out.log_probs.any()
    assert calls == []  # nothing in the loss: the backbone is not run
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None and p.grad.shape == p.shape and not p.grad.any() for p in trainable)
    hook.remove()
    model.zero_grad()
    labels = torch.full_like(ids, -100)
    labels[0, 5:] = ids[0, 5:]
    model(input_ids=ids, labels=labels, fused_lm_head=True).loss.backward()
    assert any(p.grad.any() for p in trainable)  # a labelled token: the backbone runs and learns


def test_top1_follows_argmax_on_ties():
    """Duplicate LM-head rows tie their logits: target is top-1 only where argmax (the first of a
    tie) picks it, as TRL's `argmax == target`."""
    from mathtune.train import cpu_speedups

    g = torch.Generator().manual_seed(0)
    weight = torch.randn(50, 8, generator=g)
    weight[10] *= 5
    weight[30] = weight[10]  # tokens 10 and 30 always tie, and lead where h points at them
    weight[31] = weight[3]
    h = torch.randn(64, 8, generator=g)
    h[:32] = weight[10] * 4  # rows whose top-1 is the tie 10 / 30
    targets = torch.randint(0, 50, (64,), generator=g)
    targets[:8], targets[8:16] = 10, 30  # the first of the tie is top-1, the second is not
    bufs = cpu_speedups._scratch(64, weight, 2)
    logits = h @ weight.t()
    _, _, _, top1, _ = cpu_speedups._chunk_stats(h, weight, targets, *bufs)
    assert torch.equal(top1, logits.argmax(-1) == targets)
    assert top1[:8].all() and not top1[8:16].any()
