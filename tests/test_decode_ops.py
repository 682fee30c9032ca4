"""RMSNorm, rotary embedding and the greedy argmax in C (`generation/decode_ops.py`): the bits of transformers' own
functions in both dtypes, inside the hf backend (the same greedy text as without them), declined
inputs fall back, and the patch comes off on exit or when switched off."""

from __future__ import annotations

import contextlib
import shutil

import pytest
import torch
from test_generation import QUESTIONS, chaotic  # noqa: F401  (fixture)
from transformers.models.llama import modeling_llama as ml
from transformers.models.qwen2 import modeling_qwen2 as mq

from mathtune.generation import SamplingParams, decode_ops, hf
from mathtune.generation.hf import HFGenerator

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                reason="no C compiler: the ops are not built and the blocks stay in PyTorch")
DTYPES = [torch.float32, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [576, 960, 100, 17, 3])
def test_rms_norm_has_transformers_bits(dtype, n):
    assert decode_ops.available() and decode_ops.describe() == "on (RMSNorm, rotary, greedy argmax)"
    gen = torch.Generator().manual_seed(n)
    norm = ml.LlamaRMSNorm(n, eps=1e-6)
    norm.weight.data = torch.randn(n, generator=gen)
    norm = norm.to(dtype)
    x = (torch.randn(7, 9, n + 5, generator=gen) * torch.rand(7, 9, 1, generator=gen) * 8).to(dtype)[..., :n]
    for inp in (x[:, :1], x[:, 2:8], x[0]):  # decode rows, prefill rows, 2-D; rows with a stride > n
        with torch.inference_mode():
            got = decode_ops.rms_norm(inp, norm.weight, 1e-6)
            assert got is not None and got.dtype == dtype
            assert torch.equal(got, norm(inp))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_cos", [True, False])
def test_rope_has_transformers_bits(dtype, batch_cos):
    gen = torch.Generator().manual_seed(3)
    # the projection's output viewed [B, T, H, D] and transposed, as the attention forwards do
    q = torch.randn(4, 5, 6, 64, generator=gen).to(dtype).transpose(1, 2)
    k = torch.randn(4, 5, 2, 64, generator=gen).to(dtype).transpose(1, 2)
    cos, sin = (torch.randn(4 if batch_cos else 1, 5, 64, generator=gen).to(dtype) for _ in range(2))
    want_q, want_k = ml.apply_rotary_pos_emb(q, k, cos, sin)
    got_q, got_k = decode_ops.rope(q, cos, sin), decode_ops.rope(k, cos, sin)
    assert torch.equal(got_q, want_q) and torch.equal(got_k, want_k)
    assert got_q.stride() == want_q.stride()  # laid out as PyTorch lays out the product


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [49152, 1000, 33, 32, 16, 15, 1])
def test_argmax_is_the_first_index_of_the_maximum(dtype, n):
    """The greedy pick in C: `max(dim=-1).indices` on ties (first index), -inf rows, rows equal
    throughout, tails after the last 16-lane block and rows with a stride; a NaN declines."""
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(6, n + 3, generator=gen).to(dtype)
    x[0, n // 3] = x[0, n - 1] = x[0, n // 2] = 60  # ties: the first
    x[1] = float("-inf")
    x[2] = x[2, 0]
    x[3, n - 1] = 70  # the maximum in the tail
    for inp in (x[:, :n], x[:, 3:], x[4:5, :n]):
        got = decode_ops.argmax(inp)
        assert got is not None and got.dtype == torch.int64
        assert torch.equal(got, inp.max(dim=-1).indices), (got, inp.max(dim=-1).indices)
    x[5, n // 2] = float("nan")
    assert decode_ops.argmax(x[:, :n]) is None  # PyTorch's pick (the NaN's index) is used then


def test_inputs_the_ops_do_not_take_are_declined():
    x = torch.randn(3, 8, dtype=torch.float16)
    assert decode_ops.rms_norm(x, torch.ones(8, dtype=torch.float16), 1e-6) is None
    assert decode_ops.rms_norm(x.float(), torch.ones(8, dtype=torch.bfloat16), 1e-6) is None  # weight dtype
    assert decode_ops.rms_norm(torch.randn(8, 3).t(), torch.ones(8), 1e-6) is None  # strided along the row
    q = torch.randn(2, 3, 4, 8)
    assert decode_ops.rope(q, torch.randn(2, 4, 6), torch.randn(2, 4, 6)) is None  # head dim mismatch
    assert decode_ops.rope(q.half(), torch.randn(2, 4, 8).half(), torch.randn(2, 4, 8).half()) is None
    assert decode_ops.argmax(x) is None and decode_ops.argmax(torch.randn(8, 3).t()) is None  # dtype, stride


def test_patch_routes_norms_and_rotary_and_undoes(chaotic):  # noqa: F811
    model, _ = chaotic
    norms = [m for m in model.modules() if isinstance(m, ml.LlamaRMSNorm)]
    original = ml.apply_rotary_pos_emb
    calls = []
    real_norm, real_rope = decode_ops.rms_norm, decode_ops.rope
    with contextlib.ExitStack() as stack:
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        mp.setattr(decode_ops, "rms_norm", lambda *a, **k: calls.append("norm") or real_norm(*a, **k))
        mp.setattr(decode_ops, "rope", lambda *a, **k: calls.append("rope") or real_rope(*a, **k))
        with decode_ops.elementwise_in_c(model) as n:
            assert n == len(norms) + 1  # every norm, and the modeling module's rotary function
            assert all("forward" in vars(m) for m in norms) and ml.apply_rotary_pos_emb is not original
            assert mq.apply_rotary_pos_emb.__module__ == mq.__name__  # other families untouched
            with torch.inference_mode():
                model(input_ids=torch.tensor([[1, 2, 3]]))
    assert {"norm", "rope"} <= set(calls)
    assert not any("forward" in vars(m) for m in norms) and ml.apply_rotary_pos_emb is original


def test_greedy_text_is_the_same_with_and_without_the_ops(chaotic, monkeypatch):  # noqa: F811
    """Bit-exact ops: the same text in both dtypes (not only within ties)."""
    model, tok = chaotic
    gen = HFGenerator(model, tok, batch_size=4)
    params = SamplingParams(max_new_tokens=24)
    with_ops = [o[0].text for o in gen.generate(QUESTIONS, params)]
    monkeypatch.setattr(hf, "elementwise_in_c", lambda m, enabled=True: contextlib.nullcontext(0))
    without = [o[0].text for o in gen.generate(QUESTIONS, params)]
    assert with_ops == without


def test_switched_off_nothing_is_replaced(chaotic, monkeypatch):  # noqa: F811
    model, _ = chaotic
    monkeypatch.setenv("MATHTUNE_DECODE_KERNEL", "0")
    decode_ops._library.cache_clear()
    try:
        assert decode_ops.describe() == "off (MATHTUNE_DECODE_KERNEL=0)"
        with decode_ops.elementwise_in_c(model) as n:
            assert n == 0 and not any("forward" in vars(m) for m in model.modules())
    finally:
        monkeypatch.delenv("MATHTUNE_DECODE_KERNEL")
        decode_ops._library.cache_clear()
