"""Training's C RMSNorm and rotary embedding: transformers' forward bits, autograd's gradients."""

from __future__ import annotations

import pytest
import torch
from tiny import lm_step, make_tiny_model

from mathtune.generation import decode_ops
from mathtune.train import elementwise

pytestmark = pytest.mark.skipif(not decode_ops.available(), reason="no C compiler: the decode ops are off")


@pytest.fixture(params=[torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def dt(request):
    return request.param


def _tol(dt):
    return {"atol": 1e-5, "rtol": 1e-5} if dt == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}


@pytest.mark.parametrize("weight_grad", [False, True])
@pytest.mark.parametrize("shape", [(2, 13, 96), (3, 150, 100)], ids=["one-thread", "threads-and-a-tail"])
def test_rms_norm_forward_is_transformers_and_backward_is_autograds(dt, weight_grad, shape, monkeypatch):
    """Against autograd through transformers' module; the second shape is large enough for the C
    backward's threads (dw from per-thread partial sums) and its rows are not whole 16-lane blocks."""
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    n = shape[-1]
    norm = LlamaRMSNorm(n, eps=1e-5).to(dt)
    with torch.no_grad():
        norm.weight.normal_(1, 0.2, generator=torch.Generator().manual_seed(0))
    norm.weight.requires_grad_(weight_grad)
    x = (torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * 2).to(dt).requires_grad_(True)
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(2)).to(dt)
    c_calls = []
    real_backward = decode_ops.rms_norm_backward
    monkeypatch.setattr(decode_ops, "rms_norm_backward",
                        lambda *a, **k: c_calls.append(1) or real_backward(*a, **k))
    ref = norm(x)
    ref.backward(g)
    ref_gx, ref_gw = x.grad.clone(), None if not weight_grad else norm.weight.grad.clone()
    x.grad = None
    norm.weight.grad = None
    out = elementwise.rms_norm(x, norm.weight, norm.variance_epsilon)
    assert out is not None and out.grad_fn is not None
    assert torch.equal(out, ref)  # the forward's bits
    out.backward(g)
    assert c_calls  # the backward went through the C op (which took these inputs)
    # float64 on the same inputs: the truth both are measured against (in bf16 a sum over 450 rows
    # of products of magnitude ~3 lands within a few bf16 steps of 66 for either order)
    x64, w64 = x.detach().double().requires_grad_(True), norm.weight.detach().double().requires_grad_(True)
    (w64 * (x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + 1e-5))).backward(g.double())
    pairs = [(x.grad, ref_gx, x64.grad)] + ([(norm.weight.grad, ref_gw, w64.grad)] if weight_grad else [])
    for got, want, exact in pairs:
        if dt == torch.float32:
            torch.testing.assert_close(got, want, **_tol(dt))
        else:  # no further from the truth than autograd's bf16 result, to one bf16 step of the largest value
            err_c, err_ref = (got.double() - exact).abs().max().item(), (want.double() - exact).abs().max().item()
            assert err_c <= err_ref + 2**-8 * exact.abs().max().item()
    if not weight_grad:
        assert norm.weight.grad is None


def test_rotary_forward_is_transformers_and_backward_is_its_adjoint(dt):
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    b, h, t, d = 1, 3, 11, 16
    freqs = torch.randn(t, d // 2, generator=torch.Generator().manual_seed(3))
    emb = torch.cat((freqs, freqs), -1)[None]  # as transformers builds it: equal halves
    cos, sin = emb.cos().to(dt), emb.sin().to(dt)
    proj = torch.randn(b, t, h, d, generator=torch.Generator().manual_seed(4)).to(dt)
    g = torch.randn(b, h, t, d, generator=torch.Generator().manual_seed(5)).to(dt)
    q = proj.transpose(1, 2).requires_grad_(True)  # [b, h, t, d] over [b, t, h, d] memory, as attention has it
    ref, _ = apply_rotary_pos_emb(q, q, cos, sin)
    ref.backward(g)
    ref_g = q.grad.clone()
    q.grad = None
    out = elementwise.rope(q, cos, sin)
    assert out is not None and out.grad_fn is not None and torch.equal(out, ref)
    out.backward(g)
    torch.testing.assert_close(q.grad, ref_g, **_tol(dt))
    # unequal halves: declined for differentiable inputs (transformers' function runs)
    assert elementwise.rope(q, cos, torch.randn(1, t, d).to(dt)) is None
    assert elementwise.rope(q.detach(), cos, sin) is not None  # no grad: the plain C op


@pytest.mark.parametrize("mlp", [False, True], ids=["norms-rotary", "with-swiglu"])
def test_a_training_step_with_the_c_ops_matches_transformers(tiny_tokenizer, mlp):
    """Tiny Llama, fp32, every weight trainable: allclose gradients, and the same loss bits with
    the norms and the rotary function alone (the SwiGLU's exp is not PyTorch's: allclose loss)."""
    model = make_tiny_model(tiny_tokenizer).train()
    ids = torch.randint(5, 60, (2, 24), generator=torch.Generator().manual_seed(0))
    ref = lm_step(model, ids)
    undo = elementwise.elementwise_for_training(model, mlp=mlp)
    mlps = sum(type(m).__name__ == "LlamaMLP" for m in model.modules())
    assert mlps and len(undo) == (mlps if mlp else 0) + sum(
        type(m).__name__ == "LlamaRMSNorm" for m in model.modules()) + 1  # (+ the rotary function)
    got = lm_step(model, ids)
    if mlp:
        torch.testing.assert_close(got[0], ref[0], atol=0, rtol=1e-6)
    else:
        assert torch.equal(got[0], ref[0])
    assert got[1].keys() == ref[1].keys()
    for n in ref[1]:
        torch.testing.assert_close(got[1][n], ref[1][n], atol=1e-5, rtol=1e-4, msg=n)
    undo.undo()
    assert all("forward" not in vars(m) for m in model.modules())


@pytest.mark.parametrize("shape", [(2, 7, 48), (3, 200, 100)], ids=["one-thread", "threads-and-a-tail"])
def test_swiglu_is_silu_times_up_and_backward_is_autograds(dt, shape):
    g = (torch.randn(*shape, generator=torch.Generator().manual_seed(6)) * 3).to(dt).requires_grad_(True)
    u = torch.randn(*shape, generator=torch.Generator().manual_seed(7)).to(dt).requires_grad_(True)
    dh = torch.randn(*shape, generator=torch.Generator().manual_seed(8)).to(dt)
    ref = torch.nn.functional.silu(g) * u
    ref.backward(dh)
    ref_g, ref_u = g.grad.clone(), u.grad.clone()
    g.grad = u.grad = None
    out = elementwise.swiglu(g, u)
    assert out is not None and out.grad_fn is not None and out.dtype == dt
    out.backward(dh)
    g64, u64 = g.detach().double().requires_grad_(True), u.detach().double().requires_grad_(True)
    exact = torch.nn.functional.silu(g64) * u64
    exact.backward(dh.double())
    for got, want, truth in ((out.detach(), ref.detach(), exact.detach()), (g.grad, ref_g, g64.grad),
                             (u.grad, ref_u, u64.grad)):
        if dt == torch.float32:
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        else:  # no further from the truth than PyTorch's bf16 ops, to one bf16 step of the largest value
            err, err_ref = (got.double() - truth).abs().max().item(), (want.double() - truth).abs().max().item()
            assert err <= err_ref + 2**-8 * truth.abs().max().item()
    # inputs the C op does not take (mixed dtypes, float16): declined, so the MLP runs PyTorch's ops
    assert elementwise.swiglu(g.detach(), u.detach().half()) is None
    assert elementwise.swiglu(g.detach().half(), u.detach().half()) is None
