"""Write a Hugging Face Llama or Qwen2 model as one GGUF file that llama.cpp and Ollama run.

    from mathtune.export.gguf_writer import write_gguf
    write_gguf(model, tokenizer, "out/model-q8_0.gguf", quant="q8_0", name="my-model")

What goes in, following llama.cpp's `convert_hf_to_gguf.py` (LlamaModel, Qwen2Model):
- hyper-parameters under the `llama.` / `qwen2.` keys llama.cpp reads;
- the byte-level BPE tokenizer: tokens, merges, token types (CONTROL for special added tokens,
  USER_DEFINED for other added tokens), bos/eos/unk/pad ids, add_bos/add_eos, the `pre`
  pre-tokenizer name, and the chat template;
- tensors renamed with gguf's TensorNameMap. Llama's q_proj/k_proj rows are permuted (llama.cpp
  rotates interleaved pairs, HF rotates halves); Qwen2's are not, llama.cpp's Qwen2 graph uses
  the NEOX rope on HF's layout. 1-D tensors (norms, biases) stay F32, as llama.cpp keeps them.

Anything else (other architectures, SentencePiece vocabularies, rope scaling, K-quants) raises a
MathtuneError naming what to use instead, rather than writing a file that produces gibberish.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from ..errors import MathtuneError

GgufQuant = Literal["f32", "f16", "bf16", "q8_0"]
GGUF_QUANTS: tuple[GgufQuant, ...] = ("f32", "f16", "bf16", "q8_0")
SUPPORTED_ARCHS = ("llama", "qwen2")

# Known pre-tokenizer layouts -> the name llama.cpp's vocabulary loader switches on.
_PREFERRED_PRE_NAMES = ("llama-bpe", "qwen2", "gpt-4o", "tekken", "qwen35")


def check_quant(quant: str) -> GgufQuant:
    """The quant name, or one clear error saying what to use for it."""
    q = quant.lower()
    if q in GGUF_QUANTS:
        return q  # type: ignore[return-value]
    if "_k" in q or q.startswith(("iq", "q2", "q3", "q4", "q5", "q6")):
        raise MathtuneError(
            f"GGUF quant {quant!r} is not written natively by mathtune (it needs llama.cpp's quantizer)",
            f"export --quant f16, then run llama.cpp: llama-quantize model-f16.gguf model-{q}.gguf {quant.upper()}",
        )
    raise MathtuneError(f"unknown GGUF quant {quant!r}", f"choose one of: {', '.join(GGUF_QUANTS)}")


def check_architecture(config: Any) -> str:
    """'llama' or 'qwen2', or a MathtuneError naming the converter to use instead."""
    arch = getattr(config, "model_type", None)
    if arch not in SUPPORTED_ARCHS:
        raise MathtuneError(
            f"GGUF export supports the {' and '.join(SUPPORTED_ARCHS)} architectures; this model is {arch!r}",
            "use --format hf and convert that with llama.cpp's convert_hf_to_gguf.py",
        )
    rope = _rope(config)
    if rope.get("rope_type", "default") not in ("default", None):
        raise MathtuneError(
            f"GGUF export does not write rope scaling ({rope.get('rope_type')!r})",
            "use --format hf and convert that with llama.cpp's convert_hf_to_gguf.py",
        )
    if getattr(config, "hidden_act", "silu") != "silu":
        raise MathtuneError(f"GGUF export expects a SiLU MLP; this model uses {config.hidden_act!r}",
                            "use --format hf and llama.cpp's convert_hf_to_gguf.py")
    if arch == "llama" and (getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False)):
        raise MathtuneError("GGUF export of a Llama model with attention/MLP biases is not supported",
                            "use --format hf and llama.cpp's convert_hf_to_gguf.py")
    if arch == "qwen2" and getattr(config, "use_sliding_window", False):
        raise MathtuneError("GGUF export of a Qwen2 model with sliding-window attention is not supported",
                            "use --format hf and llama.cpp's convert_hf_to_gguf.py")
    return arch


def write_gguf(model: Any, tokenizer: Any, path: str | Path, *, quant: str = "f32", name: str = "model") -> Path:
    """Write `model` (a HF LlamaForCausalLM / Qwen2ForCausalLM) and its tokenizer to `path`."""
    import gguf

    qtype = check_quant(quant)
    config = model.config
    arch = check_architecture(config)
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[_model_arch(arch)])
    try:
        writer.add_name(name)
        writer.add_file_type(_FILE_TYPES[qtype])
        if qtype == "q8_0":
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _add_hparams(writer, config)
        _add_tokenizer(writer, tokenizer, config)
        _add_tensors(writer, model, arch, qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return Path(path)


_FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "bf16": 32}  # gguf.LlamaFileType values


def _model_arch(arch: str) -> Any:
    import gguf

    return {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[arch]


def _rope(config: Any) -> dict[str, Any]:
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return dict(rope)


def _head_dim(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _add_hparams(writer: Any, config: Any) -> None:
    n_head = config.num_attention_heads
    head_dim = _head_dim(config)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or n_head)
    writer.add_rope_dimension_count(head_dim)
    theta = _rope(config).get("rope_theta", getattr(config, "rope_theta", 10000.0))
    writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    if head_dim * n_head != config.hidden_size:
        if config.model_type != "llama":
            raise MathtuneError("GGUF export of a Qwen2 model with a non-default head_dim is not supported",
                                "use --format hf and llama.cpp's convert_hf_to_gguf.py")
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)


# --------------------------------------------------------------------------- tokenizer


def _tokenizer_json(tokenizer: Any) -> dict[str, Any]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise MathtuneError("GGUF export needs a fast (tokenizers) tokenizer; this model has a slow one",
                            "save the model with a tokenizer.json, or use --format hf")
    return json.loads(backend.to_str())


def pre_tokenizer_name(tok_json: dict[str, Any]) -> str:
    """The llama.cpp `tokenizer.ggml.pre` name for a byte-level BPE tokenizer's pre-tokenizer."""
    pre = tok_json.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt2"
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    kinds = [p.get("type") for p in parts]
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
        return "smollm"  # llama.cpp's name for gpt2 splitting with single digits (SmolLM/StarCoder)
    if kinds == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True):
        regex = (parts[0].get("pattern") or {}).get("Regex")
        for name, known in _known_splits().items():
            if regex == known:
                return name
    raise MathtuneError(
        f"GGUF export does not recognise this tokenizer's pre-tokenizer: {json.dumps(pre)[:160]}",
        "use --format hf and convert that with llama.cpp's convert_hf_to_gguf.py",
    )


def _known_splits() -> dict[str, str]:
    try:  # transformers keeps the regexes its GGUF loader rebuilds; matching them keeps round trips exact
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS
    except ImportError:
        return {}
    return {n: GGUF_PRE_TOKENIZER_SPLITS[n] for n in _PREFERRED_PRE_NAMES if n in GGUF_PRE_TOKENIZER_SPLITS}


def _add_tokenizer(writer: Any, tokenizer: Any, config: Any) -> None:
    import gguf

    tj = _tokenizer_json(tokenizer)
    model = tj.get("model") or {}
    normalizer = (tj.get("normalizer") or {}).get("type")
    # NFC (Qwen2's) leaves ordinary text unchanged; anything else would change what the merges see.
    if model.get("type") != "BPE" or model.get("byte_fallback") or normalizer not in (None, "NFC"):
        raise MathtuneError(
            "GGUF export writes byte-level BPE tokenizers (GPT-2/Llama-3/Qwen2 style); this one is "
            f"{model.get('type')}{' with byte fallback' if model.get('byte_fallback') else ''}",
            "use --format hf and convert that with llama.cpp's convert_hf_to_gguf.py",
        )
    vocab = tokenizer.get_vocab()
    size = max(config.vocab_size, max(vocab.values()) + 1)
    if size > config.vocab_size:
        raise MathtuneError(f"the tokenizer has {size} tokens but the model only {config.vocab_size} embeddings",
                            "resize the model's embeddings to the tokenizer (model.resize_token_embeddings)")
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED] * size
    for tok, i in vocab.items():
        tokens[i], types[i] = tok, gguf.TokenType.NORMAL
    for added in tj.get("added_tokens", []):
        types[added["id"]] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(tj))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    _add_special_tokens(writer, tokenizer)


def _add_special_tokens(writer: Any, tokenizer: Any) -> None:
    for attr, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                      ("unk_token_id", writer.add_unk_token_id), ("pad_token_id", writer.add_pad_token_id)):
        token_id = getattr(tokenizer, attr, None)
        if token_id is not None:
            add(int(token_id))
    # Whether the tokenizer itself adds BOS/EOS, measured rather than read from flags that vary by class.
    plain = tokenizer("1", add_special_tokens=False)["input_ids"]
    full = tokenizer("1", add_special_tokens=True)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    writer.add_add_bos_token(bool(bos is not None and len(full) > len(plain) and full[0] == bos))
    writer.add_add_eos_token(bool(eos is not None and len(full) > len(plain) and full[-1] == eos))
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and template:
        writer.add_chat_template(template)


# --------------------------------------------------------------------------- tensors


def permute_qk(weights: Any, n_head: int, n_head_kv: int | None = None) -> Any:
    """llama.cpp's `LlamaModel.permute`: HF's half-split rotary rows -> interleaved pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    shape = weights.shape
    return weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def _add_tensors(writer: Any, model: Any, arch: str, qtype: GgufQuant) -> None:
    import gguf

    config = model.config
    name_map = gguf.get_tensor_name_map(_model_arch(arch), config.num_hidden_layers)
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
            continue
        data = tensor.detach().to("cpu").float().numpy()
        if arch == "llama" and hf_name.endswith("q_proj.weight"):
            data = permute_qk(data, n_head, n_head)
        elif arch == "llama" and hf_name.endswith("k_proj.weight"):
            data = permute_qk(data, n_head, n_kv)
        name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise MathtuneError(f"GGUF export cannot map the tensor {hf_name!r} to a llama.cpp name",
                                "use --format hf and llama.cpp's convert_hf_to_gguf.py")
        _add_one(writer, name, data, qtype)


def _add_one(writer: Any, name: str, data: Any, qtype: GgufQuant) -> None:
    import gguf
    import numpy as np

    if data.ndim <= 1 or qtype == "f32":
        writer.add_tensor(name, data.astype(np.float32))
        return
    if qtype == "f16":
        writer.add_tensor(name, data.astype(np.float16))
        return
    raw = gguf.GGMLQuantizationType.BF16 if qtype == "bf16" else gguf.GGMLQuantizationType.Q8_0
    try:
        packed = gguf.quants.quantize(data, raw)
    except gguf.quants.QuantError:  # rows not a multiple of the 32-wide Q8_0 block: F16, as llama.cpp does
        writer.add_tensor(name, data.astype(np.float16))
        return
    writer.add_tensor(name, packed, raw_dtype=raw)
