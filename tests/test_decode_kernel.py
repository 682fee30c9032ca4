"""The C decode-attention kernel: against SDPA on its own, inside the hf backend's decode steps
(greedy text as one-at-a-time `generate`), and its fallbacks (no compiler, switched off)."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
from test_generation import QUESTIONS, assert_greedy_matches, chaotic  # noqa: F401  (fixture)

from mathtune.generation import SamplingParams, decode_kernel, hf
from mathtune.generation.hf import HFGenerator, _DecodeLoop
from mathtune.prompts import get_style

needs_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                              reason="no C compiler: the kernel is not built and decoding stays on SDPA")


@pytest.fixture(autouse=True)
def _kernel_on(monkeypatch):
    """The kernel on whatever this CPU (by default it is on only with AVX2 or AVX-512): its
    results are checked everywhere."""
    monkeypatch.setenv("MATHTUNE_DECODE_KERNEL", "1")
    decode_kernel._library.cache_clear()
    yield
    monkeypatch.delenv("MATHTUNE_DECODE_KERNEL")
    decode_kernel._library.cache_clear()


def _sdpa(q, k, v, mask, scale):
    g = q.shape[1] // k.shape[1]
    out = F.scaled_dot_product_attention(q.float(), k.float().repeat_interleave(g, 1),
                                         v.float().repeat_interleave(g, 1), attn_mask=mask, scale=scale)
    return out.transpose(1, 2)


@needs_cc
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
# (heads, key/value heads, head dim): the vector paths (dims 64 and 128, 1-8 query heads a
# key/value head) and the plain loop (10 a head, dim 32)
@pytest.mark.parametrize("shape", [(9, 3, 64), (4, 4, 128), (8, 1, 64), (14, 2, 128), (10, 1, 64), (6, 2, 32)])
# 217 columns: blocks of 16 keys and pairs with a tail; 16: one whole block; 3: less than one
@pytest.mark.parametrize("cols", [217, 16, 3])
def test_kernel_equals_sdpa_on_strided_caches_and_masks_with_holes(dtype, shape, cols):
    assert decode_kernel.available()
    h, hk, dim = shape
    gen = torch.Generator().manual_seed(h + cols)
    q = torch.randn(5, h, 1, dim, generator=gen).to(dtype)
    # a preallocated cache read up to its filled width, as the hf backend's KV cache is
    k, v = (torch.randn(5, hk, 300, dim, generator=gen).to(dtype)[:, :, :cols] for _ in range(2))
    mask = torch.rand(5, 1, 1, cols, generator=gen) > 0.25  # holes anywhere (shared-prefix prefill)
    mask[0, ..., :cols * 2 // 3] = False  # left padding (whole blocks of 16 keys masked at 217)
    mask[..., -1] = True  # every row sees at least its own token
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    scale = dim ** -0.5  # 1/8 and, for 128, not a power of two
    for m in (mask, None):
        assert decode_kernel.supports(q, k, v, m)
        got = decode_kernel.attention(q, k, v, m, scale)
        assert got.shape == (5, 1, h, dim) and got.dtype == dtype
        torch.testing.assert_close(got.float(), _sdpa(q, k, v, m, scale), **tol)
    # masked columns are not read: garbage there changes nothing
    k2, v2 = k.clone(), v.clone()
    for t in (k2, v2):
        t[~mask.reshape(5, 1, cols, 1).expand_as(t)] = float("nan")
    assert torch.equal(decode_kernel.attention(q, k2, v2, mask, scale), decode_kernel.attention(q, k, v, mask, scale))


def test_kernel_declines_what_it_does_not_compute():
    q, k = torch.randn(2, 4, 1, 8), torch.randn(2, 2, 5, 8)
    assert decode_kernel.supports(q, k, k, None)
    assert not decode_kernel.supports(torch.randn(2, 4, 3, 8), k, k, None)  # several query tokens (prefill)
    assert not decode_kernel.supports(q.half(), k.half(), k.half(), None)
    assert not decode_kernel.supports(q, k, k, torch.zeros(2, 1, 1, 5))  # an additive float mask
    assert not decode_kernel.supports(torch.randn(2, 3, 1, 8), k, k, None)  # 3 heads over 2 key/value heads
    assert not decode_kernel.supports(q, k.transpose(2, 3).contiguous().transpose(2, 3), k, None)


@needs_cc
def test_decode_steps_run_on_the_kernel_with_greedy_text_unchanged(chaotic, monkeypatch):  # noqa: F811
    model, tok = chaotic
    if model.dtype == torch.bfloat16 and decode_kernel.why_on() != "avx512f":
        # measured on an AVX2-only AMD EPYC (2026-12-02): 4 of 6 chaotic-model texts fork from
        # one-at-a-time SDPA generate, one where the reference's top-2 gap is 1.0 of 4.2, though
        # the kernel's bf16 output is as close to fp32 attention as SDPA's (checked above on every
        # CPU). Unexplained, so bf16 stays off by default there (`decode_kernel.dtypes`).
        pytest.skip("bf16 decode kernel: off by default without AVX-512, greedy agreement open there")
    calls = []
    real = decode_kernel.attention
    monkeypatch.setattr(decode_kernel, "attention", lambda *a: calls.append(a[0].shape) or real(*a))
    monkeypatch.setattr(_DecodeLoop, "PREFILL_ROWS", 2)  # rows with different left padding
    planned = []
    monkeypatch.setattr(hf, "row_blocks", lambda mask: planned.append(1) or [(0, mask.shape[0], 0)])
    prompts = [get_style("chat-boxed").render(q, tok) for q in QUESTIONS]
    outs = HFGenerator(model, tok, batch_size=64).generate(prompts, SamplingParams(max_new_tokens=24))
    assert_greedy_matches(model, tok, prompts, [o[0].text for o in outs], 24)
    assert calls and all(s[2] == 1 for s in calls)
    assert not planned  # the kernel skips masked columns itself: no SDPA row blocks are planned


def test_without_a_compiler_or_switched_off_decoding_stays_on_sdpa(chaotic, monkeypatch, tmp_path):  # noqa: F811
    model, tok = chaotic
    monkeypatch.setenv("MATHTUNE_HOME", str(tmp_path))  # no kernel built there yet
    used = []
    monkeypatch.setattr(decode_kernel, "_call", lambda *a: used.append(1))
    for env, value in (("CC", str(tmp_path / "no-such-cc")), ("MATHTUNE_DECODE_KERNEL", "0")):
        monkeypatch.setenv(env, value)
        if env == "CC":
            monkeypatch.setattr(shutil, "which", lambda name, _w=shutil.which: None if name == "gcc" else _w(name))
        decode_kernel._library.cache_clear()
        try:
            assert not decode_kernel.available()
            prompts = [get_style("chat-boxed").render(q, tok) for q in QUESTIONS[:3]]
            outs = HFGenerator(model, tok).generate(prompts, SamplingParams(max_new_tokens=12))
            assert_greedy_matches(model, tok, prompts, [o[0].text for o in outs], 12)
            assert not used  # decode steps went through SDPA
        finally:
            monkeypatch.setenv("MATHTUNE_DECODE_KERNEL", "1")
            if env == "CC":
                monkeypatch.delenv("CC")
            decode_kernel._library.cache_clear()
    assert not list(tmp_path.glob("kernels/*.so"))


@needs_cc
def test_by_default_on_only_where_the_cpu_has_avx2_or_avx512(monkeypatch, tmp_path):
    monkeypatch.setenv("MATHTUNE_HOME", str(tmp_path))  # the fake flags' builds go there
    monkeypatch.delenv("MATHTUNE_DECODE_KERNEL")
    from mathtune.models import device

    # the bf16 path follows what the compiler targets (-march=native), not the fake flags
    bf16 = "bfloat16 on " + ("VDPBF16PS" if "avx512_bf16" in device.cpu_flags() else "float32 FMAs")
    for flags, on in (("fpu sse2 sse4_2", False), ("fpu sse2 avx2 fma", True), ("fpu avx2 avx512f avx512bw", True)):
        monkeypatch.setattr(device, "cpu_flags", lambda _f=flags: frozenset(_f.split()))
        decode_kernel._library.cache_clear()
        assert decode_kernel.available() is on
        assert decode_kernel.describe() == (f"on (avx512f; {bf16}, float32)" if "avx512f" in flags
                                            else "on (avx2; float32)" if on
                                            else "off (no AVX2 / AVX-512; MATHTUNE_DECODE_KERNEL=1 forces it)")
        assert decode_kernel.dtypes() == (("bfloat16", "float32") if "avx512f" in flags else ("float32",) if on else ())
    monkeypatch.setenv("MATHTUNE_DECODE_KERNEL", "1")  # forced: on whatever the flags
    decode_kernel._library.cache_clear()
    assert decode_kernel.available() and decode_kernel.describe() == f"on (forced; {bf16}, float32)"
    monkeypatch.setenv("MATHTUNE_DECODE_KERNEL", "0")
    decode_kernel._library.cache_clear()
    assert not decode_kernel.available() and decode_kernel.describe() == "off (MATHTUNE_DECODE_KERNEL=0)"


def test_an_unknown_switch_value_is_one_clear_error(monkeypatch):
    from mathtune.errors import MathtuneError

    monkeypatch.setenv("MATHTUNE_DECODE_KERNEL", "yes")
    decode_kernel._library.cache_clear()
    with pytest.raises(MathtuneError, match="MATHTUNE_DECODE_KERNEL='yes'.*0 \\(off\\), 1"):
        decode_kernel.available()
