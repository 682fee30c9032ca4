"""`mathtune export` / `mathtune push`: GGUF and HF export of tiny in-process Llama/Qwen2 models,
reloaded through transformers and compared with the source; Hub push against fake HfApi objects.

    .venv/bin/python -m pytest tests/test_export.py -q
    .venv/bin/python -m pytest tests/test_export.py -q -m integration     # the pulled SmolLM2 only
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny import make_tiny_tokenizer

from mathtune.cli import main
from mathtune.commands.export import synthetic_heldout
from mathtune.errors import MathtuneError
from mathtune.eval.heldout import heldout_check
from mathtune.export import export_model, push_folder
from mathtune.export.gguf_writer import permute_qk
from mathtune.export.modelfile import default_system_prompt, modelfile_text

TOKENS = 8  # greedy tokens per verification prompt in unit tests: enough to diverge, still seconds


def synthetic(tmp_path: Path, n: int = 100, tokens: int = 128):
    """The held-out check `mathtune export` runs by default: n synthetic held-out problems."""
    bench, fields, label = synthetic_heldout(n, tmp_path)
    return heldout_check(bench, n=n, fields=fields, max_new_tokens=tokens, label=label)


def _hf(path: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def _reader(path: Path):
    from gguf import GGUFReader

    return GGUFReader(str(path))


def _field(reader, key):
    f = reader.fields[key]
    value = f.parts[f.data[0]]
    return bytes(value).decode() if f.types[0].name == "STRING" else value.tolist()[0]


# --------------------------------------------------------------------------- GGUF


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_gguf_f32_roundtrip_is_exact(arch, tiny_model_dir, tiny_qwen2_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src_dir = tiny_model_dir if arch == "llama" else tiny_qwen2_dir
    out = tmp_path / "gguf"
    info = export_model(src_dir, out, fmt="gguf", quant="f32", max_new_tokens=TOKENS, heldout=synthetic(tmp_path)).info
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "README.md", "export.json", "model-f32.gguf"]
    assert json.loads((out / "export.json").read_text())["verification"] == info["verification"]
    v = info["verification"]
    assert v["prompts"] == 8 and v["greedy_tokens_equal"] == 8 and v["greedy_text_equal"] == 8
    assert v["tokenizer_equal"] and v["eos_equal"]
    assert v["max_abs_dlogit"] <= 1e-4 and v["top1_agreement"] == 1.0 == v["top1_agreement_all"]
    h = v["heldout"]  # 100 synthetic held-out problems solved by both: the same responses, p = 1
    assert h["n"] == 100 and h["identical_responses"] == 100 and h["top1_agreement"] == 1.0 and h["positions"] > 100
    assert h["mcnemar_p"] == 1.0 and h["fixed"] == h["broken"] == 0
    assert "Held-out check: 100 problems" in (out / "README.md").read_text()

    # Independently of the verifier: reload here and compare logits with the source.
    src = _hf(src_dir)
    tok = AutoTokenizer.from_pretrained(src_dir)
    gg = AutoModelForCausalLM.from_pretrained(out, gguf_file="model-f32.gguf", dtype=torch.float32).eval()
    gtok = AutoTokenizer.from_pretrained(out, gguf_file="model-f32.gguf")
    text = tok.apply_chat_template([{"role": "user", "content": "What is 48 + 24?"}], tokenize=False,
                                   add_generation_prompt=True)
    ids = tok(text)["input_ids"]
    assert gtok(text)["input_ids"] == ids
    assert gtok.chat_template == tok.chat_template and gtok.eos_token == tok.eos_token == "<|im_end|>"
    assert float((_logits(src, ids) - _logits(gg, ids)).abs().max()) <= 1e-4

    reader = _reader(out / "model-f32.gguf")
    assert _field(reader, "general.architecture") == arch
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == ("gpt2" if arch == "llama" else "qwen2")
    assert _field(reader, "tokenizer.ggml.eos_token_id") == tok.eos_token_id
    assert "output.weight" not in {t.name for t in reader.tensors}  # tied embeddings are not duplicated


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_gguf_qk_layout_is_what_llama_cpp_expects(arch, tiny_model_dir, tiny_qwen2_dir, tmp_path):
    """Llama's q/k rows are permuted into llama.cpp's interleaved rotary layout; Qwen2's are not."""
    import numpy as np

    src_dir = tiny_model_dir if arch == "llama" else tiny_qwen2_dir
    export_model(src_dir, tmp_path / "g", fmt="gguf", quant="f32", verify=False)
    tensors = {t.name: t for t in _reader(tmp_path / "g" / "model-f32.gguf").tensors}
    sd = _hf(src_dir).state_dict()
    cfg = _hf(src_dir).config
    for proj, kv in (("q", cfg.num_attention_heads), ("k", cfg.num_key_value_heads)):
        hf = sd[f"model.layers.0.self_attn.{proj}_proj.weight"].numpy()
        stored = np.asarray(tensors[f"blk.0.attn_{proj}.weight"].data).reshape(hf.shape)
        expected = permute_qk(hf, cfg.num_attention_heads, kv) if arch == "llama" else hf
        assert np.array_equal(stored, expected)
        assert np.array_equal(stored, hf) == (arch == "qwen2")


def test_permute_qk_is_undone_by_transformers_gguf_loader():
    import numpy as np
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    w = np.random.default_rng(0).standard_normal((2 * 3 * 8, 5)).astype(np.float32)  # 3 kv heads, head_dim 16
    undo = LlamaTensorProcessor(config={"num_attention_heads": 6, "num_key_value_heads": 3})._reverse_permute_weights
    assert not np.array_equal(permute_qk(w, 6, 3), w)
    assert np.array_equal(undo(permute_qk(w, 6, 3), 6, 3), w)


@pytest.mark.parametrize("quant,qtype", [("f16", "F16"), ("bf16", "BF16"), ("q8_0", "Q8_0")])
def test_gguf_lossy_quants_write_reload_and_report_agreement(quant, qtype, tiny_model_dir, tmp_path):
    info = export_model(tiny_model_dir, tmp_path / quant, fmt="gguf", quant=quant, max_new_tokens=TOKENS,
                        heldout=synthetic(tmp_path)).info
    v = info["verification"]
    assert 0.0 < v["max_abs_dlogit"] < 0.5  # really quantized, and still close
    assert v["top1_agreement"] >= 0.95 and v["tokenizer_equal"]
    types = {t.name: t.tensor_type.name for t in _reader(tmp_path / quant / f"model-{quant}.gguf").tensors}
    assert types["blk.0.attn_q.weight"] == qtype and types["token_embd.weight"] == qtype
    assert types["blk.0.attn_norm.weight"] == "F32"  # 1-D tensors stay F32, as llama.cpp keeps them
    card = (tmp_path / quant / "README.md").read_text()
    assert f"{v['top1_agreement']:.2%}" in card and quant in card
    assert v["heldout"]["n"] == 100 and 0.0 < v["heldout"]["top1_agreement"] <= 1.0


def test_heldout_check_on_a_benchmark_file_and_skipped_with_zero(tiny_model_dir, tmp_path):
    bench = tmp_path / "b.jsonl"
    bench.write_text("".join(json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(6)))
    check = heldout_check(str(bench), n=4, fields="problem=question,answer=answer", max_new_tokens=8)
    v = export_model(tiny_model_dir, tmp_path / "a", fmt="gguf", quant="q8_0", max_new_tokens=TOKENS,
                     heldout=check).info["verification"]
    assert v["heldout"]["n"] == 4 and v["heldout"]["benchmark"] == str(bench)
    v = export_model(tiny_model_dir, tmp_path / "b", fmt="gguf", quant="q8_0", max_new_tokens=TOKENS,
                     heldout=None).info["verification"]
    assert "heldout" not in v and "Held-out check" not in (tmp_path / "b" / "README.md").read_text()


def test_gguf_unsupported_architecture_is_one_clear_error(tmp_path, capsys):
    from transformers import AutoModelForCausalLM, GPT2Config

    tok = make_tiny_tokenizer()
    src = tmp_path / "gpt2"
    AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=len(tok))).save_pretrained(src)
    tok.save_pretrained(src)
    with pytest.raises(MathtuneError, match=r"llama and qwen2 architectures; this model is 'gpt2'") as e:
        export_model(src, tmp_path / "out", fmt="gguf")
    assert "convert_hf_to_gguf" in e.value.hint and "--format hf" in e.value.hint
    assert not (tmp_path / "out").exists()
    assert main(["export", str(src), "-o", str(tmp_path / "out"), "--format", "gguf"]) == 2
    assert "this model is 'gpt2'" in capsys.readouterr().err


def test_gguf_k_quant_names_llama_quantize(tiny_model_dir, tmp_path):
    with pytest.raises(MathtuneError) as e:
        export_model(tiny_model_dir, tmp_path / "out", fmt="gguf", quant="q4_k_m")
    assert "llama-quantize" in e.value.hint and "Q4_K_M" in e.value.hint
    with pytest.raises(MathtuneError, match="unknown GGUF quant"):
        export_model(tiny_model_dir, tmp_path / "out", fmt="gguf", quant="f8")
    assert not (tmp_path / "out").exists()


def test_modelfile_from_chatml_template_with_default_system():
    tok = make_tiny_tokenizer()
    text = modelfile_text("model-q8_0.gguf", tok)
    assert "FROM ./model-q8_0.gguf" in text and "<|im_start|>user\n{{ .Prompt }}<|im_end|>" in text
    assert 'PARAMETER stop "<|im_end|>"' in text and "SYSTEM" not in text
    # SmolLM2's template inserts a system prompt when none is given: Ollama must get it too.
    tok.chat_template = ("{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nBe brief.<|im_end|>\n' }}"
                         "{% endif %}" + tok.chat_template)
    assert default_system_prompt(tok) == "Be brief."
    assert 'SYSTEM """Be brief."""' in modelfile_text("m.gguf", tok)
    tok.chat_template = "{{ messages[0]['content'] }}"
    assert "TEMPLATE" not in modelfile_text("m.gguf", tok).replace("no TEMPLATE", "")


def test_card_names_the_hub_base_model(tmp_path):
    from mathtune.export.card import hub_base_model, render_export_card

    pulled = tmp_path / "pulled"
    pulled.mkdir()
    (pulled / "mathtune.json").write_text(json.dumps({"hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct"}))
    assert hub_base_model("smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_base_model(str(pulled)) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_base_model("Qwen/Qwen2.5-Math-1.5B") == "Qwen/Qwen2.5-Math-1.5B"
    assert hub_base_model(str(tmp_path)) is None
    info = {"name": "x", "format": "hf", "quant": None, "source": "runs/a", "adapter": "runs/a",
            "base_model": str(pulled), "mathtune_version": "0", "files": ["model.safetensors"], "verification": None}
    card = render_export_card(info, source_card="---\ntags:\n- old\n---\n# Training run\nlr 1e-4\n")
    assert card.startswith("---\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\nlibrary_name: transformers\n")
    assert "# Training run\nlr 1e-4" in card and "- old" not in card


# --------------------------------------------------------------------------- HF (merge)


def test_hf_export_of_lora_adapter_equals_peft_merge(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    adapter = tmp_path / "adapter"
    peft = get_peft_model(_hf(tiny_model_dir), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                         init_lora_weights=False))
    peft.save_pretrained(adapter)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_model_dir)

    out = tmp_path / "merged"
    info = export_model(adapter, out, fmt="hf", max_new_tokens=TOKENS).info
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md"):
        assert (out / name).is_file(), name
    reference = PeftModel.from_pretrained(_hf(tiny_model_dir), adapter).merge_and_unload().state_dict()
    exported = _hf(out).state_dict()
    base = _hf(tiny_model_dir).state_dict()
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(reference[key], base[key])  # the adapter changes something
    assert set(exported) == set(reference)
    assert all(torch.allclose(exported[k], reference[k], atol=1e-6) for k in reference)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).chat_template == AutoTokenizer.from_pretrained(tiny_model_dir).chat_template
    v = info["verification"]
    assert v["greedy_tokens_equal"] == 8 and v["max_abs_dlogit"] <= 1e-4
    assert info["adapter"] == str(adapter) and info["base_model"] == str(tiny_model_dir)
    assert "merged into the unquantized weights" in (out / "README.md").read_text()


def test_export_cli_no_verify_and_atomic_replace(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    assert main(["export", str(tiny_model_dir), "-o", str(out), "--format", "gguf", "--no-verify"]) == 0
    assert not (out / "stale.txt").exists() and (out / "model-f32.gguf").is_file()
    assert json.loads((out / "export.json").read_text())["verification"] is None
    assert "Not run (`--no-verify`)" in (out / "README.md").read_text()
    assert "wrote" in capsys.readouterr().out
    # verification by default, the held-out check on synthetic problems included
    assert main(["export", str(tiny_model_dir), "-o", str(out), "--format", "gguf", "--verify-tokens", "4",
                 "--heldout", "6", "--heldout-tokens", "8"]) == 0
    h = json.loads((out / "export.json").read_text())["verification"]["heldout"]
    assert h["n"] == 6 and h["benchmark"].startswith("synthetic held-out set") and h["identical_responses"] == 6
    assert h["max_new_tokens"] == 8 and h["positions"] <= 6 * 8 + 6  # --heldout-tokens caps what is generated
    assert "held-out (synthetic" in capsys.readouterr().err


# --------------------------------------------------------------------------- push


class FakeApi:
    """Records the calls push_folder makes; `fail` names a method that raises `error`."""

    def __init__(self, fail: str | None = None, error: Exception | None = None, exists: bool = False):
        self.calls: list[tuple[str, dict]] = []
        self.fail, self.error, self.exists = fail, error, exists

    def _record(self, name: str, **kw):
        self.calls.append((name, kw))
        if name == self.fail:
            raise self.error

    def whoami(self, **kw):
        self._record("whoami", **kw)
        return {"name": "me"}

    def repo_exists(self, repo_id, **kw):
        self._record("repo_exists", repo_id=repo_id)
        return self.exists

    def create_repo(self, repo_id, **kw):
        self._record("create_repo", repo_id=repo_id, **kw)

    def create_commit(self, repo_id, operations, **kw):
        self._record("create_commit", repo_id=repo_id, operations=list(operations), **kw)

    def delete_repo(self, repo_id, **kw):
        self._record("delete_repo", repo_id=repo_id)


def _folder(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (d / "sub" / "weights.bin").write_bytes(b"\0" * 8)
    (d / ".partial").write_text("hidden files are not uploaded")
    return d


def test_push_success_is_one_commit_with_a_card(tmp_path):
    api = FakeApi()
    url = push_folder(_folder(tmp_path), "me/tiny-math", api=api)
    assert url == "https://huggingface.co/me/tiny-math"
    assert [c[0] for c in api.calls] == ["whoami", "repo_exists", "create_repo", "create_commit"]
    ops = api.calls[-1][1]["operations"]
    paths = sorted(op.path_in_repo for op in ops)
    assert paths == ["README.md", "config.json", "sub/weights.bin"]
    card = next(op for op in ops if op.path_in_repo == "README.md").path_or_fileobj
    assert b"mathtune" in card and b"# tiny-math" in card


def test_push_existing_repo_and_existing_card(tmp_path):
    d = _folder(tmp_path)
    (d / "README.md").write_text("# my card")
    api = FakeApi(exists=True)
    push_folder(d, "me/tiny-math", api=api)
    assert "create_repo" not in [c[0] for c in api.calls]
    ops = api.calls[-1][1]["operations"]
    assert [op.path_or_fileobj for op in ops if op.path_in_repo == "README.md"] == [str(d / "README.md")]


def test_push_unauthenticated_or_offline_fails_before_anything_is_created(tmp_path, monkeypatch, capsys):
    import huggingface_hub
    from huggingface_hub.errors import LocalTokenNotFoundError, OfflineModeIsEnabled

    d = _folder(tmp_path)
    for error, words in ((LocalTokenNotFoundError("Token is required"), "not logged in"),
                         (OfflineModeIsEnabled("offline"), "unreachable"),
                         (ConnectionError("Failed to resolve 'huggingface.co'"), "unreachable")):
        api = FakeApi(fail="whoami", error=error)
        monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None, api=api: api)
        with pytest.raises(MathtuneError, match=words) as e:
            push_folder(d, "me/tiny-math")
        assert "nothing was uploaded" in e.value.message
        assert [c[0] for c in api.calls] == ["whoami"]
    assert main(["push", str(d), "me/tiny-math"]) == 2
    assert "unreachable" in capsys.readouterr().err


def test_push_failed_commit_removes_the_repo_it_created(tmp_path):
    api = FakeApi(fail="create_commit", error=RuntimeError("500 server error"))
    with pytest.raises(MathtuneError, match="failed: 500 server error; nothing was uploaded"):
        push_folder(_folder(tmp_path), "me/tiny-math", api=api)
    assert [c[0] for c in api.calls][-1] == "delete_repo"


def test_push_refuses_bad_input_and_hf_hub_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    with pytest.raises(MathtuneError, match="not a directory"):
        push_folder(tmp_path / "missing", "me/x", api=FakeApi())
    with pytest.raises(MathtuneError, match="not a Hub repo id"):
        push_folder(_folder(tmp_path), "no-owner", api=FakeApi())
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    api = FakeApi()
    with pytest.raises(MathtuneError, match="HF_HUB_OFFLINE"):
        push_folder(_folder(tmp_path), "me/x", api=api)
    assert api.calls == []


def test_train_push_uses_the_same_implementation(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalTokenNotFoundError

    from mathtune.train.run import _push

    api = FakeApi(fail="whoami", error=LocalTokenNotFoundError("Token is required"))
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: api)
    with pytest.raises(MathtuneError, match="training finished, but cannot push") as e:
        _push("me/tiny-math", _folder(tmp_path))
    assert "mathtune push" in e.value.hint and api.calls == [("whoami", {})]


# --------------------------------------------------------------------------- integration


@pytest.mark.integration
def test_smollm2_f32_gguf_reproduces_greedy_text(default_model_dir, tmp_path):
    info = export_model(default_model_dir, tmp_path / "smol", fmt="gguf", quant="f32", max_new_tokens=16).info
    v = info["verification"]
    assert v["tokenizer_equal"] and v["eos_equal"]
    assert v["greedy_text_equal"] == v["prompts"] == 8
    assert v["max_abs_dlogit"] <= 1e-3


@pytest.mark.integration
@pytest.mark.slow
def test_smollm2_q8_0_gguf_agrees_on_its_own_tokens_and_accuracy(default_model_dir, tmp_path):
    """The base SmolLM2-135M at q8_0 (measured 2026-12-01): top-1 agreement 99.2% on the tokens it
    writes for the fixed prompts, 98.8% teacher-forced on 100 held-out responses, held-out
    accuracy unchanged (McNemar p >= 0.05). The demo's SFT adapter exported the same way measured
    99.2% / 99.4% (README). A wrong Q/K layout or tokenizer drops these far below."""
    v = export_model(default_model_dir, tmp_path / "q8", fmt="gguf", quant="q8_0", max_new_tokens=32,
                     heldout=synthetic(tmp_path, 100, 96)).info["verification"]
    h = v["heldout"]
    assert v["top1_agreement"] >= 0.99 and h["top1_agreement"] >= 0.985 and h["positions"] > 3000
    assert h["mcnemar_p"] >= 0.05


def test_exported_gguf_runs_with_solve_and_load_model(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """`mathtune solve --model PATH.gguf`: the file is converted once into the cache and loads
    with the source's weights (the greedy text solve prints is the source model's)."""
    import torch

    from mathtune.cli import main
    from mathtune.models import load_model, resolve_model

    monkeypatch.setenv("MATHTUNE_HOME", str(tmp_path / "home"))
    export_model(tiny_model_dir, tmp_path / "g", fmt="gguf", quant="f32", verify=False)
    gguf = tmp_path / "g" / "model-f32.gguf"
    first = resolve_model(gguf)
    assert resolve_model(gguf) == first and (first / "config.json").is_file()  # converted once
    model, _ = load_model(str(gguf), dtype="fp32", device="cpu")
    src, _ = load_model(str(tiny_model_dir), dtype="fp32", device="cpu")
    for (name, a), b in zip(src.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert main(["solve", "What is 12*7?", "--model", str(gguf), "--max-new-tokens", "8"]) == 0
    assert main(["solve", "x", "--model", str(tmp_path / "g" / "README.md")]) == 2  # not a model: one error
    assert "error" in capsys.readouterr().err
