"""The hf generation backend on a tiny in-process model: batched == one-at-a-time greedy, stop
strings, EOS, sampling reproducibility, n samples, and the helpers in generation/base.py."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from tiny import make_tiny_model

from mathtune.errors import MathtuneError
from mathtune.generation import SamplingParams, get_generator
from mathtune.generation.base import sample_seed, truncate_at_stop
from mathtune.generation.hf import HFGenerator, _DecodeLoop, stop_token_ids
from mathtune.prompts import get_style

QUESTIONS = [
    "What is 12*7?",
    "Solve for x: 2x + 3 = 11.",
    "gcd",
    "The probability of rolling a sum of 7 with two dice is",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "mean of 2, 4, 9",
]


@pytest.fixture(scope="module", params=["fp32", "bf16"])
def chaotic(tiny_tokenizer, request):
    """The tiny model with large random weights: varied, prompt-dependent greedy outputs; in
    fp32 and in bf16 whatever the host CPU prefers (tests/conftest.py's `dtype`)."""
    model = make_tiny_model(tiny_tokenizer)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.15, generator=gen)
    return model.to(torch.bfloat16 if request.param == "bf16" else torch.float32), tiny_tokenizer


@functools.cache
def _reference_ids(model, tok, prompt: str, max_new: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id)
    n = enc["input_ids"].shape[1]
    return tuple(out[0, :n].tolist()), tuple(out[0, n:].tolist())


def reference(model, tok, prompt: str, max_new: int) -> str:
    """Plain one-prompt-at-a-time greedy `model.generate` (cached per model and prompt)."""
    return tok.decode(_reference_ids(model, tok, prompt, max_new)[1], skip_special_tokens=True)


# bf16 keeps ~3 significant digits: a batched GEMM may round a logit differently from the same
# row alone, so greedy text may fork where the top two logits are this close (relative to the top)
BF16_TIE = 2 ** -6


def assert_greedy_matches(model, tok, prompts: list[str], texts: list[str], max_new: int) -> None:
    """fp32: every text equals one-at-a-time `generate`. bf16: most do, and each one that does not
    forks from the reference at a near-tie of the reference's own top-2 logits (a cache, position
    or masking bug forks where the model is sure)."""
    refs = [reference(model, tok, p, max_new) for p in prompts]
    if model.dtype == torch.float32:
        assert texts == refs
        return
    forks = [i for i, (t, r) in enumerate(zip(texts, refs, strict=True)) if t != r]
    assert len(forks) <= len(prompts) // 2, forks
    for i in forks:
        prompt_ids, ref_ids = _reference_ids(model, tok, prompts[i], max_new)
        k = next(k for k in range(len(ref_ids)) if not texts[i].startswith(tok.decode(ref_ids[: k + 1])))
        with torch.no_grad():
            logits = model(torch.tensor([prompt_ids + ref_ids[:k]])).logits[0, -1].float()
        top2 = logits.topk(2).values
        assert top2[0] - top2[1] <= BF16_TIE * top2[0].abs() + 1e-3, (i, k, top2.tolist())


@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_greedy_batched_equals_one_at_a_time(chaotic, batch_size):
    model, tok = chaotic
    prompts = [get_style("chat-boxed").render(q, tok) for q in QUESTIONS]
    outs = HFGenerator(model, tok, batch_size=batch_size).generate(prompts, SamplingParams(max_new_tokens=24))
    assert_greedy_matches(model, tok, prompts, [o[0].text for o in outs], 24)
    refs = [reference(model, tok, p, 24) for p in prompts]
    assert len({r for r in refs}) == len(refs)  # outputs really differ per prompt
    assert all(o[0].tokens == 24 and o[0].finish_reason == "length" for o in outs)


def test_row_blocks_skip_the_padding_each_block_of_rows_shares():
    from mathtune.generation.decode_attention import row_blocks

    mask = torch.zeros(6, 40, dtype=torch.bool)
    for row, first in enumerate([0, 2, 30, 31, 30, 35]):
        mask[row, first:] = True
    assert row_blocks(mask, call_cost=10) == [(0, 2, 0), (2, 6, 30)]
    assert row_blocks(mask, call_cost=10**6) == [(0, 6, 0)]  # a call costs more than it saves
    assert row_blocks(mask, max_blocks=6, call_cost=0)[-1] == (5, 6, 35)
    assert row_blocks(torch.ones(3, 5, dtype=torch.bool)) == [(0, 3, 0)]
    assert row_blocks(torch.zeros(0, 5, dtype=torch.bool)) == []


def test_block_decode_attention_keeps_greedy_text_and_restores_sdpa(chaotic, monkeypatch):
    """The SDPA block path, with the C decode kernel off (tests/test_decode_kernel.py covers it)."""
    from mathtune.generation import decode_attention, decode_kernel

    model, tok = chaotic
    monkeypatch.setattr(decode_kernel, "available", lambda: False)
    calls = []
    real = decode_attention.decode_attention_forward

    def spy(*args, decode_blocks=None, **kwargs):
        calls.append(decode_blocks)
        return real(*args, decode_blocks=decode_blocks, **kwargs)

    monkeypatch.setattr(decode_attention, "CALL_COST_CELLS", 0)  # split wherever padding differs
    # prefill groups of 2 prompts: the merged batch's groups start at different columns
    monkeypatch.setattr(_DecodeLoop, "PREFILL_ROWS", 2)
    monkeypatch.setattr(decode_attention, "decode_attention_forward", spy)
    prompts = [get_style("chat-boxed").render(q, tok) for q in QUESTIONS]
    outs = HFGenerator(model, tok, batch_size=64).generate(prompts, SamplingParams(max_new_tokens=24))
    assert_greedy_matches(model, tok, prompts, [o[0].text for o in outs], 24)
    assert any(b and len(b) > 1 for b in calls)  # decode steps really ran block by block
    assert model.config._attn_implementation == "sdpa"


def test_stops_at_eos_and_reports_it(chaotic):
    model, tok = copy.deepcopy(chaotic[0]), chaotic[1]
    prompt = get_style("chat").render("What is 12*7?", tok)
    first = reference(model, tok, prompt, 1)
    # make the model's first greedy token the end-of-turn token: bias the output layer to EOS
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        bias = torch.zeros(model.lm_head.weight.shape[0], dtype=model.dtype)
        bias[eos] = 1e4
        model.lm_head.bias = torch.nn.Parameter(bias)
    out = HFGenerator(model, tok).generate([prompt], SamplingParams(max_new_tokens=10))[0][0]
    assert first != "" and out.text == ""
    assert out.tokens == 1 and out.finish_reason == "stop"
    assert eos in stop_token_ids(tok, model)


def test_stop_strings_cut_text_and_end_generation(chaotic):
    model, tok = chaotic
    prompt = "Question: What is 12*7?\nAnswer:"
    full = reference(model, tok, prompt, 30)
    stop = full[8:11]  # a string the model is known to produce a few tokens in
    assert stop and full.find(stop) >= 0
    out = HFGenerator(model, tok).generate([prompt], SamplingParams(max_new_tokens=30, stop=(stop,)))[0][0]
    assert out.text == full[: full.find(stop)]
    assert out.finish_reason == "stop" and out.tokens < 30


def test_sampling_is_seeded_and_independent_of_batching(chaotic):
    model, tok = chaotic
    prompts = [get_style("chat").render(q, tok) for q in QUESTIONS[:4]]
    params = SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.9, n=3, seed=7)
    a = HFGenerator(model, tok, batch_size=64).generate(prompts, params, seeds=[11, 12, 13, 14])
    b = HFGenerator(model, tok, batch_size=2).generate(prompts[2:], params, seeds=[13, 14])
    c = HFGenerator(model, tok).generate(prompts, SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.9, n=3, seed=8),
                                         seeds=[11, 12, 13, 14])
    texts = [[c_.text for c_ in per] for per in a]
    assert [[c_.text for c_ in per] for per in b] == texts[2:]
    assert all(len(per) == 3 for per in a)
    assert any(len(set(per)) > 1 for per in texts)  # samples differ from each other
    assert [[c_.text for c_ in per] for per in c] != texts  # and depend on the seed


def test_on_complete_sees_every_completion(chaotic):
    model, tok = chaotic
    seen = []
    outs = HFGenerator(model, tok, batch_size=2).generate(
        QUESTIONS[:3], SamplingParams(max_new_tokens=5, temperature=0.8, n=2),
        on_complete=lambda i, s, c: seen.append((i, s, c.text)))
    assert sorted(seen) == sorted((i, s, outs[i][s].text) for i in range(3) for s in range(2))


def test_sampling_params_validation():
    with pytest.raises(MathtuneError, match="identical copies"):
        SamplingParams(n=4)
    with pytest.raises(MathtuneError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(MathtuneError, match="max_new_tokens"):
        SamplingParams(max_new_tokens=0)


def test_helpers():
    assert truncate_at_stop("abc\nQuestion: x", ("\nQuestion:",)) == ("abc", True)
    assert truncate_at_stop("abc", ("zz",)) == ("abc", False)
    assert sample_seed(0, 1, 2) == sample_seed(0, 1, 2) != sample_seed(0, 1, 3)


def test_unknown_backend_suggests():
    with pytest.raises(MathtuneError, match="did you mean 'openai'"):
        get_generator("opena", "m")


def test_vllm_missing_is_a_clear_error():
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(MathtuneError, match="pip install"):
            get_generator("vllm", "smollm2-135m-instruct")
    else:
        pytest.skip("vllm is installed (a GPU machine): the missing-package error cannot be shown")


@pytest.mark.parametrize("arch", ["llama", "qwen2"])  # qwen2: q/k/v carry biases
def test_fused_projections_give_the_same_outputs_and_restore_the_model(tiny_tokenizer, arch, dtype):
    from mathtune.generation.fused import _packing_works, fused_projections

    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    model = make_tiny_model(tiny_tokenizer, arch).to(torch_dtype)
    ids = torch.randint(5, 60, (3, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        step = model(input_ids=ids[:, :1]).logits  # a decode-sized input: one row per sequence
        with fused_projections(model) as n:
            # 2 layers x (q/k/v, gate/up); with packing (MKL fp32, oneDNN bf16) also o_proj and
            # down_proj of each layer and lm_head, each on its own packed weight
            assert n == (2 * 2 + 2 * 2 + 1 if _packing_works(torch_dtype) else 2 * 2)
            fused = model(input_ids=ids).logits
            fused_step = model(input_ids=ids[:, :1]).logits
        after = model(input_ids=ids).logits
    tol = {"atol": 1e-6, "rtol": 1e-5} if dtype == "fp32" else {"atol": 5e-2, "rtol": 2e-2}
    torch.testing.assert_close(fused, ref, **tol)
    torch.testing.assert_close(fused_step, step, **tol)
    assert torch.equal(after, ref)
    assert all("forward" not in vars(m) for m in model.modules())  # class forwards are back


def test_fused_projections_leave_a_forward_patched_on_the_instance_alone(tiny_model):
    from mathtune.generation.fused import fused_projections

    layer = tiny_model.model.layers[0].mlp.down_proj

    def patched(x):  # e.g. training's fused LoRA dropout on `lora_A`
        return torch.zeros(x.shape[:-1] + (layer.out_features,))

    layer.forward = patched
    with torch.no_grad(), fused_projections(tiny_model):
        assert layer.forward is patched
    assert layer.forward is patched


def test_one_packed_weight_serves_every_row_count(dtype):
    from mathtune.generation.fused import _Group, _packing_works

    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    if not _packing_works(torch_dtype):
        pytest.skip(f"this PyTorch build has no packed {dtype} GEMM (MKL / oneDNN)")
    gen = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(576, 192).to(torch_dtype)
    group = _Group([layer], pack=True)
    assert group.weight.stride() == (0, 0)  # no second plain copy of the weight is kept
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == "fp32" else {"atol": 1e-2, "rtol": 1e-2}
    with torch.no_grad():
        for rows in (1, 2, 7, 16, 33, 64, 65, 130, 1024):
            x = torch.randn(rows, 576, generator=gen).to(torch_dtype)
            torch.testing.assert_close(group.linear(x), layer(x), **tol, msg=f"{rows} rows")
        x3 = torch.randn(4, 3, 576, generator=gen).to(torch_dtype)  # batch x sequence x features
        torch.testing.assert_close(group.linear(x3), layer(x3), **tol)
        assert group.linear(torch.zeros(0, 576, dtype=torch_dtype)).shape == (0, 192)


def test_thread_choice_keeps_all_threads_unless_fewer_are_clearly_faster():
    from mathtune.models.threads import ThreadTuner, choose

    assert choose({1: 0.010, 2: 0.011}) == 2  # noise: keep both cores
    assert choose({1: 0.010, 2: 0.240}) == 1  # a busy second core: 24x slower with 2 threads
    assert choose({1: 0.020, 2: 0.010}) == 2
    tuner = ThreadTuner([1, 2])
    assert tuner.probe() in (1, 2) and tuner.history == [tuner.current]


def test_fused_projections_skip_when_the_weight_copy_would_not_fit(tiny_model):
    from mathtune.generation.fused import fused_projections

    with fused_projections(tiny_model, max_share=0.0) as n:
        assert n == 0
    with fused_projections(tiny_model, enabled=False) as n:
        assert n == 0
