"""Library patches (mathtune.patches): each one takes the library's plain path outside the versions
it was verified with (one log line), its Undo restores the library's own objects, and the MKL
probe makes the call production makes."""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path

import pytest
import torch
from tiny import make_tiny_model

import mathtune.patches as patches
from mathtune.generation import SamplingParams
from mathtune.generation.hf import HFGenerator
from mathtune.patches import gate, mkl_linear

REPO = Path(__file__).resolve().parents[1]
IDS = torch.tensor([[5, 9, 14, 22, 31, 7, 12]])


@pytest.fixture(autouse=True)
def fresh_gate_log(monkeypatch):
    """Each test sees the once-per-process log line anew, and no patch switched off by env."""
    monkeypatch.setattr(gate, "_reported", set())
    monkeypatch.delenv(gate.DISABLE_ENV, raising=False)


@pytest.fixture()
def installed(monkeypatch):
    """`installed(package, version)`: the gate reads `version` for `package` (others as installed)."""
    real, fake = gate.installed_version, {}
    monkeypatch.setattr(gate, "installed_version", lambda p: fake[p] if p in fake else real(p))
    return fake.__setitem__


def plain_lines(caplog, patch: gate.Patch) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "mathtune.patches" and repr(patch.name) in r.getMessage()]


def assert_one_plain_line(caplog, patch: gate.Patch, *fragments: str) -> None:
    lines = plain_lines(caplog, patch)
    assert len(lines) == 1, lines
    assert "plain path" in lines[0] and all(f in lines[0] for f in fragments), lines[0]


# --------------------------------------------------------------------------- the gate itself


def test_gate_reads_ranges_like_pip():
    assert gate.in_range("2.13.0+cpu", ">=2.13,<2.14") and gate.in_range("2.13.1", ">=2.13,<2.14")
    assert not gate.in_range("2.14.0", ">=2.13,<2.14") and not gate.in_range("2.14.0rc1", ">=2.13,<2.14")
    assert not gate.in_range("2.12.9", ">=2.13,<2.14") and not gate.in_range(None, ">=2.13,<2.14")
    assert not gate.in_range("not a version", ">=1")


def test_every_patch_is_on_with_the_installed_libraries():
    assert {p.name: p.why_off() for p in patches.PATCHES} == dict.fromkeys((p.name for p in patches.PATCHES), None)


def test_a_missing_library_or_the_env_switch_takes_the_plain_path(installed, monkeypatch, caplog):
    installed("trl", None)
    assert not patches.TRL_LOSS_HEAD.supported() and not patches.TRL_LOSS_HEAD.supported()
    assert_one_plain_line(caplog, patches.TRL_LOSS_HEAD, "trl missing")
    monkeypatch.setenv(gate.DISABLE_ENV, "growing-kv-cache, lora-fused-linear")
    assert not patches.GROWING_KV_CACHE.supported() and not patches.LORA_LINEAR.supported()
    assert patches.LINEAR_FORWARDS.supported()
    assert_one_plain_line(caplog, patches.GROWING_KV_CACHE, gate.DISABLE_ENV)
    monkeypatch.setenv(gate.DISABLE_ENV, "all")
    assert not any(p.supported() for p in patches.PATCHES)


def test_docstring_lists_every_patch_with_its_versions():
    entries = {e.split("`")[1]: e for e in patches.__doc__.split("\n- ")[1:]}
    assert set(entries) == {p.name for p in patches.PATCHES}
    for p in patches.PATCHES:
        for package, spec in p.verified.items():
            assert f"{package} {spec}" in entries[p.name].replace("\n  ", " "), (p.name, package)


def test_pyproject_ranges_are_the_verified_ones():
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    deps = text[text.index("dependencies = ["):text.index("]", text.index("dependencies = ["))]
    specs: dict[str, set[str]] = {}
    for p in patches.PATCHES:
        for package, spec in p.verified.items():
            specs.setdefault(package, set()).add(spec)
    for package, found in specs.items():
        assert len(found) == 1, (package, found)  # one range per library
        declared = re.findall(rf'"{package}([<>=!~][^"]*)"', deps)
        assert declared == list(found), (package, declared, found)


# --------------------------------------------------------------------------- mkl-packed-linear


@pytest.fixture()
def fresh_probe():
    mkl_linear._probe.cache_clear()
    yield
    mkl_linear._probe.cache_clear()


needs_mkl = pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="this PyTorch build has no MKL")


@needs_mkl
def test_mkl_probe_makes_the_production_call(monkeypatch, fresh_probe):
    calls = []
    real = torch.ops.mkl._mkl_linear

    def spy(x, packed, origin_weight, bias, rows):
        calls.append((x.dim(), origin_weight.stride(), bias is not None, rows == x.numel() // x.shape[-1]))
        return real(x, packed, origin_weight, bias, rows)

    monkeypatch.setattr(torch.ops.mkl, "_mkl_linear", spy)
    assert mkl_linear.available()
    assert calls and all(stride == (0, 0) for _, stride, _, _ in calls)  # the zero-stride stand-in
    assert all(rows_ok for *_, rows_ok in calls)  # the packed path's row count, as production passes
    assert {bias for _, _, bias, _ in calls} == {False, True} and {d for d, *_ in calls} == {2, 3}


@needs_mkl
def test_mkl_probe_fails_where_the_stand_in_would_be_read(monkeypatch, fresh_probe):
    """A torch whose `_mkl_linear` computed with `origin_weight` (the old probe passed the real
    weight there, so it could not tell) must keep `F.linear`."""
    monkeypatch.setattr(torch.ops.mkl, "_mkl_linear",
                        lambda x, packed, w, b, rows: torch.nn.functional.linear(x, w, b))
    assert not mkl_linear.available()


def test_mkl_packing_is_off_outside_its_torch(installed, caplog, fresh_probe, tiny_tokenizer, monkeypatch):
    from mathtune.generation.fused import _packing_works, fused_projections

    installed("torch", "2.99.0")
    assert not mkl_linear.available() and not _packing_works(torch.float32)
    assert_one_plain_line(caplog, mkl_linear.PATCH, "torch>=2.13,<2.14", "torch 2.99.0")
    # with only the packing off (both float32 packers), the fused groups still run, on F.linear
    monkeypatch.undo()
    monkeypatch.setattr(gate, "_reported", set())
    monkeypatch.setenv(gate.DISABLE_ENV, f"{mkl_linear.PATCH.name},onednn-packed-linear")
    model = make_tiny_model(tiny_tokenizer)
    with torch.no_grad():
        ref = model(input_ids=IDS).logits
        with fused_projections(model) as n:
            assert n == 2 * 2  # q/k/v and gate/up of 2 layers, nothing packed
            torch.testing.assert_close(model(input_ids=IDS).logits, ref, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------- onednn-packed-linear


def test_float32_packing_keeps_the_packer_timed_fastest_for_each_shape(monkeypatch):
    from mathtune.generation import fused
    from mathtune.patches import onednn_linear

    if not (mkl_linear.available() and onednn_linear.available("float32")):
        pytest.skip("this PyTorch build lacks MKL's or oneDNN's packed float32 linear")
    w = torch.randn(40, 24)
    x = torch.randn(5, 24)
    for cls in fused._packers(torch.float32):  # each verified packer gives F.linear's results
        torch.testing.assert_close(cls(w)(x), torch.nn.functional.linear(x, w), atol=1e-5, rtol=1e-5)
    fused._fastest.cache_clear()
    try:
        # a packer made slow is never the pick, whichever it is
        for slow in fused._packers(torch.float32):
            fused._fastest.cache_clear()
            real_call = slow.__call__
            monkeypatch.setattr(slow, "__call__", lambda self, x, _r=real_call: time.sleep(0.002) or _r(self, x))
            assert fused._packer(w) is not slow
            monkeypatch.setattr(slow, "__call__", real_call)
    finally:
        fused._fastest.cache_clear()


def test_onednn_probe_makes_the_production_call_and_fails_where_it_is_wrong(monkeypatch):
    from mathtune.patches import onednn_linear

    onednn_linear._probe.cache_clear()
    calls = []
    real = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise",
                        lambda *a: calls.append(a[3:]) or real(*a))
    try:
        if not onednn_linear.available():
            pytest.skip("this PyTorch build has no oneDNN bf16 linear")
        assert calls and all(c == ("none", [], "") for c in calls)  # exactly PackedLinearOneDNN's call
        onednn_linear._probe.cache_clear()
        monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda x, w, b, *rest: real(x, w, None, *rest) * 2)
        assert not onednn_linear.available()  # a wrong result keeps F.linear
    finally:
        onednn_linear._probe.cache_clear()


def test_onednn_packing_is_off_outside_its_torch(installed, caplog, tiny_tokenizer):
    from mathtune.generation.fused import _packing_works
    from mathtune.patches import onednn_linear

    installed("torch", "2.99.0")
    assert not onednn_linear.available() and not _packing_works(torch.bfloat16)
    assert_one_plain_line(caplog, onednn_linear.PATCH, "torch>=2.13,<2.14", "torch 2.99.0")


# --------------------------------------------------------------------------- linear-instance-forwards


def test_fused_forwards_are_off_outside_their_transformers(installed, caplog, tiny_model):
    from mathtune.generation.fused import fused_projections

    installed("transformers", "5.99.0")
    with fused_projections(tiny_model) as n:
        assert n == 0 and not any("forward" in vars(m) for m in tiny_model.modules())
    assert_one_plain_line(caplog, patches.LINEAR_FORWARDS, "transformers 5.99.0")


def test_elementwise_ops_are_off_outside_their_transformers(installed, caplog, tiny_model):
    from transformers.models.llama import modeling_llama

    from mathtune.generation.decode_ops import elementwise_in_c

    rope = modeling_llama.apply_rotary_pos_emb
    installed("transformers", "5.99.0")
    with elementwise_in_c(tiny_model) as n:
        assert n == 0 and not any("forward" in vars(m) for m in tiny_model.modules())
        assert modeling_llama.apply_rotary_pos_emb is rope
    assert_one_plain_line(caplog, patches.DECODE_ELEMENTWISE, "transformers 5.99.0")


def test_fused_forwards_undo_restores_the_class_forwards(tiny_model):
    from mathtune.generation.fused import fused_projections

    q = tiny_model.model.layers[0].self_attn.q_proj
    own = tiny_model.model.layers[1].mlp.down_proj
    own.forward = marker = lambda x: x  # someone's instance forward: left alone, kept as it is
    with torch.no_grad(), fused_projections(tiny_model) as n:
        assert n > 0 and "forward" in vars(q)
    assert "forward" not in vars(q) and type(q).forward is torch.nn.Linear.forward
    assert vars(own)["forward"] is marker


def test_undo_restores_exact_objects_and_runs_once():
    from mathtune.patches.undo import Undo

    class Thing:
        pass

    thing, original = Thing(), object()
    thing.kept = original
    registry = {"old": original}
    undo = Undo("x")
    undo.set_attr(thing, "kept", 1)
    undo.set_attr(thing, "added", 2)
    undo.set_item(registry, "old", 3)
    undo.set_item(registry, "new", 4)
    undo.undo()
    assert thing.kept is original and not hasattr(thing, "added")
    assert registry == {"old": original} and registry["old"] is original
    thing.kept = "later"
    undo.undo()  # a second undo changes nothing
    assert thing.kept == "later"


# --------------------------------------------------------------------------- attention registrations


def _registries():
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    return AttentionInterface._global_mapping, AttentionMaskInterface._global_mapping


@pytest.fixture()
def no_varlen_registration(monkeypatch):
    """Training keeps its registration for the life of the process: earlier tests in the same
    run leave one behind, so these tests start without it (put back afterwards)."""
    from mathtune.train.attention import NAME

    for registry in _registries():
        monkeypatch.delitem(registry, NAME, raising=False)


def test_varlen_attention_is_off_outside_its_transformers(installed, caplog, tiny_model, no_varlen_registration):
    from mathtune.train.attention import NAME, use_varlen_attention

    installed("transformers", "5.0.0")
    assert not use_varlen_attention(tiny_model)
    assert tiny_model.config._attn_implementation == "sdpa"
    assert all(NAME not in r for r in _registries())
    assert_one_plain_line(caplog, patches.VARLEN, "transformers>=5.24,<5.25", "transformers 5.0.0")


def test_varlen_attention_undo_restores_model_and_registries(tiny_model, monkeypatch, no_varlen_registration):
    from mathtune.train import attention
    from mathtune.train.attention import NAME, use_varlen_attention

    attn, masks = _registries()
    before = object()  # a registration already there (e.g. from an earlier run) comes back as it was
    monkeypatch.setitem(attn, NAME, before)
    assert NAME not in masks
    undo = use_varlen_attention(tiny_model)
    assert undo and tiny_model.config._attn_implementation == NAME
    assert attn[NAME] is attention.varlen_attention_forward and masks[NAME] is attention.varlen_mask
    undo.undo()
    assert tiny_model.config._attn_implementation == "sdpa"
    assert attn[NAME] is before and NAME not in masks


def test_decode_attention_is_off_outside_its_transformers_and_undone_on_exit(installed, caplog, tiny_model):
    from mathtune.generation import decode_attention

    with decode_attention.block_attention(tiny_model) as on:
        assert on and tiny_model.config._attn_implementation == decode_attention.NAME
        assert _registries()[0][decode_attention.NAME] is decode_attention.decode_attention_forward
    assert tiny_model.config._attn_implementation == "sdpa"
    assert all(decode_attention.NAME not in r for r in _registries())

    installed("transformers", "6.0.0")
    with decode_attention.block_attention(tiny_model) as on:
        assert not on and tiny_model.config._attn_implementation == "sdpa"
    assert_one_plain_line(caplog, patches.DECODE, "transformers 6.0.0")


def test_a_model_on_varlen_attention_decodes_by_blocks_and_returns_to_varlen(tiny_model):
    """A GRPO policy trains on varlen attention; its rollouts still get block decode attention."""
    from mathtune.generation import decode_attention
    from mathtune.train.attention import NAME as VARLEN
    from mathtune.train.attention import use_varlen_attention

    with use_varlen_attention(tiny_model):
        with decode_attention.block_attention(tiny_model) as on:
            assert on and tiny_model.config._attn_implementation == decode_attention.NAME
        assert tiny_model.config._attn_implementation == VARLEN
    assert tiny_model.config._attn_implementation == "sdpa"


# --------------------------------------------------------------------------- growing-kv-cache


def test_cache_layers_are_plain_dynamic_layers_outside_the_verified_transformers(installed, caplog, tiny_model):
    from transformers.cache_utils import DynamicLayer

    from mathtune.generation.kv_cache import new_cache

    assert type(new_cache(tiny_model, 16).layers[0]) is not DynamicLayer
    installed("transformers", "5.23.0")
    cache = new_cache(tiny_model, 16)
    assert {type(layer) for layer in cache.layers} == {DynamicLayer}
    new_cache(tiny_model, 16)
    assert_one_plain_line(caplog, patches.GROWING_KV_CACHE, "transformers 5.23.0")


def test_cache_helpers_treat_plain_and_growing_layers_alike(installed, tiny_model):
    from transformers.cache_utils import DynamicLayer

    from mathtune.generation.kv_cache import merge, new_cache, trim_left

    def run():
        gen, parts = torch.Generator().manual_seed(0), []
        for rows, width in ((2, 5), (3, 3)):
            cache = new_cache(tiny_model, 8)
            for layer in cache.layers:
                layer.update(torch.randn(rows, 2, width, 4, generator=gen), torch.randn(rows, 2, width, 4, generator=gen))
            mask = torch.ones(rows, width, dtype=torch.bool)
            mask[:, 0] = False  # a padding column in every row
            parts.append((cache, mask))
        cache, mask = merge(parts, room=4)
        keep = torch.tensor([0, 3])
        cache.batch_select_indices(keep)
        cache, mask = trim_left(cache, mask[keep])
        return cache, mask

    growing, g_mask = run()
    installed("transformers", "5.0.0")
    plain, p_mask = run()
    assert type(plain.layers[0]) is DynamicLayer and type(growing.layers[0]) is not DynamicLayer
    assert torch.equal(g_mask, p_mask) and p_mask.shape == (2, 4)  # the shared padding column is gone
    for g, p in zip(growing.layers, plain.layers, strict=True):
        assert g.get_seq_length() == p.get_seq_length() == 4
        assert torch.equal(g.keys, p.keys) and torch.equal(g.values, p.values)


@pytest.mark.parametrize("keep", [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8, 9], [0, 2, 3, 4, 5, 6, 9],
                                  [5, 6, 7, 8, 9], [9], [0, 1, 7], [3, 4, 5, 8], [2, 2, 5], [7, 1], [0, 0, 1, 1]])
def test_growing_layer_batch_select_matches_index_select(keep):
    """Dropping rows moves them down in place (runs of kept rows in chunks no longer than their
    shift, so no copy overlaps itself); any other selection (repeats, reordering) copies into a
    new buffer; both give index_select's rows, and later appends land after them."""
    from mathtune.patches.growing_cache import layer_class

    assert layer_class() is layer_class()  # one class a process
    gen = torch.Generator().manual_seed(1)
    layer = layer_class()()
    layer.capacity = 12
    k, v = torch.randn(10, 2, 5, 4, generator=gen), torch.randn(10, 2, 5, 4, generator=gen)
    layer.update(k, v)
    idx = torch.tensor(keep)
    layer.batch_select_indices(idx)
    assert torch.equal(layer.keys, k[idx]) and torch.equal(layer.values, v[idx])
    k2, v2 = torch.randn(len(keep), 2, 1, 4, generator=gen), torch.randn(len(keep), 2, 1, 4, generator=gen)
    keys, values = layer.update(k2, v2)
    assert torch.equal(keys, torch.cat([k[idx], k2], 2)) and torch.equal(values, torch.cat([v[idx], v2], 2))


@pytest.mark.parametrize("off", ["growing-kv-cache", "all"])
def test_generation_on_the_plain_paths_matches_one_at_a_time_generate(tiny_tokenizer, monkeypatch, caplog, off):
    """Continuous batching (shared-prefix prefill, merging batches) on plain DynamicLayers, and
    with every patch off, still gives `generate`'s greedy text."""
    from transformers.cache_utils import DynamicLayer

    from mathtune.generation import hf
    from mathtune.prompts import get_style

    model = make_tiny_model(tiny_tokenizer)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.15, generator=torch.Generator().manual_seed(1))
    questions = ["What is 12*7?", "gcd", "Solve for x: 2x + 3 = 11.", "mean of 2, 4, 9", "The answer", "7 mod 3"]
    prompts = [get_style("chat-boxed").render(q, tiny_tokenizer) for q in questions]
    refs = []
    for prompt in prompts:
        enc = tiny_tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        out = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tiny_tokenizer.pad_token_id)
        refs.append(tiny_tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    merged = []

    def merge(parts, room):
        merged.append((len(parts), {type(layer) for cache, _ in parts for layer in cache.layers}))
        return real_merge(parts, room)

    real_merge = hf.merge
    monkeypatch.setattr(hf, "merge", merge)
    monkeypatch.setattr(hf._DecodeLoop, "PREFILL_ROWS", 2)  # 4 rows in 2 prefill groups: merged
    monkeypatch.setenv(gate.DISABLE_ENV, off)
    outs = HFGenerator(model, tiny_tokenizer, batch_size=4).generate(prompts, SamplingParams(max_new_tokens=12))
    assert [o[0].text for o in outs] == refs
    assert any(n > 1 for n, _ in merged) and all(types == {DynamicLayer} for _, types in merged)
    assert_one_plain_line(caplog, patches.GROWING_KV_CACHE, gate.DISABLE_ENV)


# --------------------------------------------------------------------------- lora-fused-linear


def _lora_model(tiny_tokenizer):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(make_tiny_model(tiny_tokenizer), LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.3, target_modules="all-linear", task_type="CAUSAL_LM")).train()


def _lora_layers(model):
    from peft.tuners.lora.layer import Linear

    return [m for m in model.modules() if isinstance(m, Linear)]


def test_lora_layers_stay_peft_outside_its_versions(installed, caplog, tiny_tokenizer):
    from mathtune.train.lora_linear import fuse_lora_layers

    model = _lora_model(tiny_tokenizer)
    installed("peft", "0.22.0")
    assert len(fuse_lora_layers(model)) == 0
    assert _lora_layers(model) and all("forward" not in vars(m) for m in _lora_layers(model))
    assert_one_plain_line(caplog, patches.LORA_LINEAR, "peft>=0.21,<0.22", "peft 0.22.0")


def test_lora_fused_undo_gives_back_peft_modules_and_behaviour(tiny_tokenizer):
    from mathtune.train.lora_linear import fuse_lora_layers

    model = _lora_model(tiny_tokenizer)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(3))
    untouched = copy.deepcopy(model)
    undo = fuse_lora_layers(model)
    assert len(undo) == 14 and all("forward" in vars(m) for m in _lora_layers(model))
    assert len(fuse_lora_layers(model)) == 0  # already fused: not twice
    undo.undo()
    assert all("forward" not in vars(m) for m in _lora_layers(model))
    assert model.state_dict().keys() == untouched.state_dict().keys()
    outs = []
    for m in (model, untouched):  # PEFT's own dropout again: the same draws from the same seed
        torch.manual_seed(0)
        outs.append(m(input_ids=IDS).logits)
    assert torch.equal(outs[0], outs[1])


# --------------------------------------------------------------------------- trl-cpu-loss-head


def _trl_model(tiny_tokenizer, **kwargs):
    from trl.trainer.utils import add_fused_lm_head

    model = make_tiny_model(tiny_tokenizer).train()
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"), **kwargs)
    return model, vars(model)["forward"]


def test_trl_forward_stays_outside_its_versions(installed, caplog, tiny_tokenizer):
    from mathtune.train.cpu_speedups import install_cpu_loss_head

    model, trl_forward = _trl_model(tiny_tokenizer)
    installed("trl", "1.17.0")
    assert not install_cpu_loss_head(model)
    assert vars(model)["forward"] is trl_forward
    assert_one_plain_line(caplog, patches.TRL_LOSS_HEAD, "trl>=1.16,<1.17", "trl 1.17.0")


def test_trl_forward_is_only_overridden_as_verified_and_undo_restores_it(tiny_tokenizer):
    from mathtune.train.cpu_speedups import install_cpu_loss_head

    plain = make_tiny_model(tiny_tokenizer)
    assert not install_cpu_loss_head(plain) and "forward" not in vars(plain)  # TRL never patched it
    fp32_head, trl_forward = _trl_model(tiny_tokenizer, cast_lm_head_to_fp32=True)  # not what our head computes
    assert not install_cpu_loss_head(fp32_head) and vars(fp32_head)["forward"] is trl_forward

    model, trl_forward = _trl_model(tiny_tokenizer)
    labels = IDS.clone()
    labels[:, :3] = -100
    with torch.no_grad():
        ref = model(input_ids=IDS, labels=labels, fused_lm_head=True)
    undo = install_cpu_loss_head(model)
    assert undo and vars(model)["forward"] is not trl_forward
    assert not install_cpu_loss_head(model)  # ours is not TRL's: never wrapped twice
    undo.undo()
    assert vars(model)["forward"] is trl_forward
    with torch.no_grad():
        again = model(input_ids=IDS, labels=labels, fused_lm_head=True)
    assert torch.equal(again.log_probs, ref.log_probs) and torch.equal(again.loss, ref.loss)
