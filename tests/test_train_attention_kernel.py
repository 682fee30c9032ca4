"""The C causal-attention training kernel (`kernels/train_attention.c`) gives SDPA's outputs and
gradients, in both dtypes, through the varlen attention that training calls."""

from __future__ import annotations

import pytest
import torch

from mathtune.train import attention


@pytest.fixture
def kernel(monkeypatch):
    """The kernel forced on (`MATHTUNE_DECODE_KERNEL=1`: it is on by default only with AVX-512, but
    its C is plain vector code that runs on any x86), so it is tested on every machine with a C
    compiler; skipped only without one."""
    monkeypatch.setenv("MATHTUNE_DECODE_KERNEL", "1")
    attention._kernel.cache_clear()
    lib = attention._kernel()
    if lib is None:
        attention._kernel.cache_clear()
        pytest.skip("no C compiler with OpenMP: training attention stays SDPA here")
    yield lib
    attention._kernel.cache_clear()


def _inputs(lengths, heads, kv_heads, dim, dtype, transposed, seed=0):
    g = torch.Generator().manual_seed(seed)
    total = sum(lengths)

    def make(h):
        if transposed:  # transformers' layout: [1, L, heads, D] viewed as [1, heads, L, D]
            return torch.randn(1, total, h, dim, generator=g).to(dtype).transpose(1, 2).requires_grad_()
        return torch.randn(1, h, total, dim, generator=g).to(dtype).requires_grad_()

    q, k, v = make(heads), make(kv_heads), make(kv_heads)
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    return q, k, v, pos


def _run(q, k, v, pos, go, module):
    for t in (q, k, v):
        t.grad = None
    out, _ = attention.varlen_attention_forward(module, q, k, v, None, scaling=q.shape[-1] ** -0.5,
                                                position_ids=pos)
    out.backward(go)
    return [out.detach(), *(t.grad.clone() for t in (q, k, v))]


@pytest.mark.usefixtures("kernel")
@pytest.mark.parametrize(("lengths", "heads", "kv_heads", "dim", "transposed"), [
    ([37], 9, 3, 64, False),              # grouped-query, a length off the 16-key tiles
    ([1, 16, 130, 5], 4, 4, 64, True),    # several examples in one row, one of a single token
    ([70, 33], 8, 2, 128, True),          # head dim 128
])
def test_kernel_matches_sdpa_in_outputs_and_gradients(monkeypatch, dtype, lengths, heads, kv_heads, dim, transposed):
    dt = torch.bfloat16 if dtype == "bf16" else torch.float32
    module = torch.nn.Module()
    module.is_causal = True
    q, k, v, pos = _inputs(lengths, heads, kv_heads, dim, dt, transposed)
    go = torch.randn(1, sum(lengths), heads, dim, generator=torch.Generator().manual_seed(1)).to(dt)
    got = _run(q, k, v, pos, go, module)
    monkeypatch.setattr(attention, "_kernel_applies", lambda *_: False)  # SDPA, as without the kernel
    want = _run(q, k, v, pos, go, module)
    # float64 SDPA on the same inputs: the truth both are measured against
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    exact = _run(q64, k64, v64, pos, go.double(), module)
    for g, w, e in zip(got, want, exact, strict=True):
        assert g.dtype == w.dtype == dt and g.shape == w.shape
        err_kernel, err_sdpa = (g.double() - e).abs().max().item(), (w.double() - e).abs().max().item()
        if dt == torch.float32:
            assert err_kernel < 1e-4
        else:  # bf16 outputs: SDPA's error, to the one bf16 step a float32 difference can flip a rounding by
            assert err_kernel <= err_sdpa + 2**-7 * e.abs().max().item()


@pytest.mark.usefixtures("kernel")
def test_training_attention_goes_through_the_kernel(monkeypatch):
    """Where it applies (causal, no mask, no dropout, head dim 64/128, one example), `_sdpa` runs
    the kernel; a masked call (GRPO's prompt branches) stays SDPA."""
    calls = []
    fn = attention._kernel_function()
    real_apply = fn.apply
    monkeypatch.setattr(fn, "apply", lambda *a: calls.append(a[0].shape) or real_apply(*a))
    q, k, v, _ = _inputs([20], 4, 2, 64, torch.float32, False)
    attention._sdpa(q, k, v, 0.0, None, True, is_causal=True)
    assert calls == [torch.Size([1, 4, 20, 64])]
    attention._sdpa(q, k, v, 0.0, None, True, attn_mask=torch.ones(20, 20, dtype=torch.bool).tril())
    attention._sdpa(q, k, v, 0.1, None, True, is_causal=True)  # dropout: SDPA's
    assert len(calls) == 1


def test_kernel_switch_off_keeps_sdpa(monkeypatch):
    monkeypatch.setenv("MATHTUNE_DECODE_KERNEL", "0")
    attention._kernel.cache_clear()
    try:
        assert attention._kernel() is None
    finally:
        attention._kernel.cache_clear()


@pytest.mark.usefixtures("kernel")
def test_first_use_inside_activation_checkpointing():
    """The kernel is built and probed on first use, inside a training forward: under activation
    checkpointing the probe's own saved tensors must not count (the recompute, with the kernel
    cached, would save fewer and fail the count check)."""
    from torch.utils.checkpoint import checkpoint

    q, k, v, _ = _inputs([40], 4, 2, 64, torch.float32, False)
    attention._kernel.cache_clear()  # (the fixture's env stays: the first call below builds and probes)
    out = checkpoint(lambda a, b, c: attention._sdpa(a, b, c, 0.0, None, True, is_causal=True) * 2, q, k, v,
                     use_reentrant=False)
    out.sum().backward()
    assert attention._kernel() is not None
    assert q.grad is not None and k.grad.abs().sum() > 0
