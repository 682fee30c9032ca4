"""The fused LoRA layer computes PEFT's function and gradients, with a dropout that is dropout."""

from __future__ import annotations

import pytest
import torch
from tiny import lm_step, make_tiny_model

from mathtune.train import lora_linear
from mathtune.train.lora_linear import (
    _draw,
    dropout_add_,
    dropout_select,
    fuse_lora_layers,
    threshold,
)


@pytest.fixture(params=["c", "torch"])
def backend(request, monkeypatch):
    """Each test runs with the C kernel and with the PyTorch fallback."""
    if request.param == "c":
        if lora_linear._library() is None:
            pytest.skip("no C compiler: the PyTorch fallback is tested")
    else:
        monkeypatch.setattr(lora_linear, "_library", lambda: None)
    return request.param


def test_the_c_kernel_draws_the_reference_bits():
    if lora_linear._library() is None:
        pytest.skip("no C compiler")
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(37, 1001).to(dtype)
        for key, p in (((1, 2), 0.05), ((0xFFFFFFFF, 12345), 0.5), ((7, 0), 0.9)):
            thr = threshold(p)
            keep = (_draw(x.numel(), *key) >= thr).view(x.shape)
            assert torch.equal(dropout_select(x, key, thr), torch.where(keep, x, torch.zeros((), dtype=dtype)))
            acc, t = torch.randn_like(x), torch.randn_like(x)
            want = acc + torch.where(keep, t, torch.zeros((), dtype=dtype))  # PyTorch's rounding in bf16
            assert torch.equal(dropout_add_(acc.clone(), t, key, thr), want)


def test_dropout_drops_each_element_independently_with_probability_p(backend):
    n = 1 << 20
    x = torch.ones(n)
    for p in (0.05, 0.3):
        kept = dropout_select(x, lora_linear.new_key(), threshold(p))
        sigma = (p * (1 - p) / n) ** 0.5
        assert abs(kept.mean().item() - (1 - p)) < 5 * sigma
        both = (kept[1:] * kept[:-1]).mean().item()  # neighbours: independent
        assert abs(both - (1 - p) ** 2) < 5 * (2 * sigma)
        q2 = (1 - p) ** 2  # elements 2j and 2j + 1 take the two halves of one hash: independent too
        assert abs((kept[0::2] * kept[1::2]).mean().item() - q2) < 5 * (q2 * (1 - q2) / (n // 2)) ** 0.5
        cols = kept.view(1024, 1024).mean(0)  # no column (a feature) kept more than the others
        assert (cols - (1 - p)).abs().max().item() < 6 * (p * (1 - p) / 1024) ** 0.5
    a, b = (dropout_select(x, lora_linear.new_key(), threshold(0.3)) for _ in range(2))
    assert not torch.equal(a, b)  # a new key per call
    torch.manual_seed(5)
    k1 = lora_linear.new_key()
    torch.manual_seed(5)
    assert lora_linear.new_key() == k1  # keys come from PyTorch's generator
    assert dropout_select(x[:10], (1, 2), threshold(0.0)).all()


def _layer(in_f, out_f, dtype, dropout, bias=False):
    from peft import LoraConfig, get_peft_model

    class One(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(in_f, out_f, bias=bias)

        def forward(self, x):
            return self.lin(x)

    torch.manual_seed(0)
    model = get_peft_model(One().to(dtype), LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["lin"]))
    layer = model.base_model.model.lin
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, 0.1)
    return model.train(), layer


def _run(model, x, grad, autocast):
    x = x.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = model(x)
    y.backward(grad)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return y.detach(), x.grad, grads


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", ["fp32", "bf16-autocast"])
def test_fused_layer_matches_peft_without_dropout(backend, dtype, bias):
    autocast = dtype != "fp32"
    model, layer = _layer(24, 40, torch.bfloat16 if autocast else torch.float32, 0.0, bias)
    x = torch.randn(2, 7, 24).to(torch.bfloat16 if autocast else torch.float32)
    grad = torch.randn(2, 7, 40).to(x.dtype)
    ref = _run(model, x, grad, autocast)
    assert len(fuse_lora_layers(model)) == 1
    got = _run(model, x, grad, autocast)
    tol = {"atol": 1e-5, "rtol": 1e-5} if not autocast else {"atol": 2e-2, "rtol": 2e-2}
    assert got[0].dtype == ref[0].dtype and got[1].dtype == ref[1].dtype
    torch.testing.assert_close(got[0], ref[0], **tol)
    torch.testing.assert_close(got[1], ref[1], **tol)
    assert got[2].keys() == ref[2].keys() == {"base_model.model.lin.lora_A.default.weight",
                                              "base_model.model.lin.lora_B.default.weight"}
    for n in ref[2]:
        assert got[2][n].dtype == torch.float32  # fp32 adapters, fp32 gradients
        torch.testing.assert_close(got[2][n], ref[2][n], **tol, msg=n)


def test_fused_dropout_equals_peft_with_the_same_mask(backend, monkeypatch):
    """fp32, p = 0.3: PEFT's formula with nn.Dropout replaced by the mask the key gives."""
    model, layer = _layer(24, 40, torch.float32, 0.3)
    x, grad = torch.randn(3, 5, 24), torch.randn(3, 5, 40)
    key = (123, 456)
    monkeypatch.setattr(lora_linear, "new_key", lambda: key)
    keep = (_draw(x.numel(), *key) >= threshold(0.3)).view(x.shape).float()
    fuse_lora_layers(model)
    got = _run(model, x, grad, False)
    del layer.forward
    layer.lora_dropout["default"] = torch.nn.Identity()
    layer.lora_A["default"].register_forward_pre_hook(lambda m, args: (args[0] * keep / 0.7,))
    ref = _run(model, x, grad, False)
    for a, b in zip(got[:2], ref[:2], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for n in ref[2]:
        torch.testing.assert_close(got[2][n], ref[2][n], atol=1e-5, rtol=1e-5, msg=n)


def test_dropout_is_on_in_training_only_and_repeats_under_a_seed(backend):
    model, layer = _layer(16, 16, torch.float32, 0.5)
    fuse_lora_layers(model)
    x = torch.randn(4, 16)
    outs = []
    for _ in range(2):
        torch.manual_seed(1)
        outs.append(model(x))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], model(x))  # another key
    model.eval()
    assert torch.equal(model(x), model(x))
    with torch.no_grad():
        base = layer.base_layer(x) + layer.lora_B["default"](layer.lora_A["default"](x)) * layer.scaling["default"]
    torch.testing.assert_close(model(x), base)


def test_calls_the_fused_layer_does_not_cover_run_peft(monkeypatch):
    model, layer = _layer(8, 8, torch.float32, 0.0)
    fuse_lora_layers(model)
    calls = []
    real = lora_linear._function
    monkeypatch.setattr(lora_linear, "_function", lambda: calls.append(1) or real())
    x = torch.randn(2, 8)
    model(x)
    assert calls == [1]
    with model.disable_adapter():
        model(x)
    layer.merge()
    model(x)
    layer.unmerge()
    model(x)
    assert calls == [1, 1]  # disabled and merged adapters: PEFT's forward
    model.to(torch.bfloat16)
    layer.lora_A["default"].float()
    layer.lora_B["default"].float()  # fp32 adapters on a bf16 base without autocast: PEFT's casts
    model(x.to(torch.bfloat16))
    assert calls == [1, 1]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x.to(torch.bfloat16))
    assert calls == [1, 1, 1]  # under autocast: fused


def test_a_training_step_on_the_fused_layers_matches_peft(tiny_tokenizer):
    """A whole model, bf16 base under autocast, no dropout: loss and adapter gradients agree."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(make_tiny_model(tiny_tokenizer).to(torch.bfloat16), LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")).train()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(4))
    ids = torch.randint(5, 60, (2, 24), generator=torch.Generator().manual_seed(0))
    ref = lm_step(model, ids, autocast=True)
    assert len(fuse_lora_layers(model)) == 14
    got = lm_step(model, ids, autocast=True)
    torch.testing.assert_close(got[0], ref[0], atol=1e-2, rtol=1e-2)
    assert got[1].keys() == ref[1].keys() and len(ref[1]) == 28
    for n in ref[1]:
        cos = torch.nn.functional.cosine_similarity(got[1][n].flatten(), ref[1][n].flatten(), dim=0)
        assert cos > 0.99, n
