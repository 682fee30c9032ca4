"""Loading a model: `resolve_model` (name -> local directory) and `load_model` (-> model, tokenizer).

A model is named by a catalogue name (`smollm2-135m-instruct`, pulled on first use), a Hugging
Face Hub id (`Qwen/Qwen2.5-Math-1.5B`, snapshotted into the Hugging Face cache) or a local
directory (a full model written by `save_pretrained`, or a PEFT adapter: its base model is
loaded and, for inference, the adapter merged in).

    from mathtune.models import load_model
    model, tok = load_model("smollm2-135m-instruct")          # dtype/device "auto"
    model, tok = load_model("runs/train/x/adapter", for_training=True)

Device and dtype come from `mathtune.models.device`; CPU threads from `mathtune.models.threads`.
4-bit/8-bit loading (QLoRA) needs a CUDA GPU and bitsandbytes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import MathtuneError, unknown_name_error
from .catalogue import CATALOGUE, HUB_ID
from .device import DtypeName, pick_device, pick_dtype
from .pull import cache_dir, gguf_model_dir, hub_snapshot, is_cached, pull_model
from .threads import configure_cpu_threads

if TYPE_CHECKING:
    import torch

Quantize = Literal["4bit", "8bit"]


def resolve_model(name_or_path: str | os.PathLike, *, pull: bool = True) -> Path:
    """Turn a catalogue name, local directory, local .gguf file or Hub id into a local model directory.

    Catalogue models and Hub ids are fetched on first use when `pull` is true.
    """
    ref = str(name_or_path)
    path = Path(ref).expanduser()
    if ref in CATALOGUE:
        if is_cached(ref):
            return cache_dir(ref)
        if not pull:
            raise MathtuneError(f"model {ref!r} is not pulled yet", f"run: mathtune pull {ref}")
        return pull_model(ref)
    if path.is_file() and path.suffix == ".gguf":
        return gguf_model_dir(path)
    if path.is_dir():
        if not (path / "config.json").is_file() and not is_adapter_dir(path):
            raise MathtuneError(
                f"{path} is not a Hugging Face model directory (no config.json)",
                "point at a directory written by save_pretrained, or use a catalogue name (mathtune models)",
            )
        return path
    if ref.startswith((".", "/", "~")) or path.exists() or ref.count("/") > 1:
        raise MathtuneError(f"model directory not found: {path}", "check the path, or use a catalogue name (mathtune models)")
    if not HUB_ID.fullmatch(ref):
        raise unknown_name_error(
            "model", ref, CATALOGUE,
            hint="use a catalogue name (mathtune models), a Hub id such as Qwen/Qwen2.5-Math-1.5B, or a local directory",
        )
    return hub_snapshot(ref, pull=pull)


def is_adapter_dir(path: Path) -> bool:
    """A PEFT adapter directory (adapter_config.json, no full model config)."""
    return (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


def adapter_base(path: Path) -> str:
    """The base model an adapter was trained on (as recorded by PEFT)."""
    cfg = json.loads((path / "adapter_config.json").read_text())
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise MathtuneError(f"adapter {path} does not record its base model",
                            "set base_model_name_or_path in adapter_config.json")
    return base


def load_tokenizer(name_or_path: str | os.PathLike, *, pull: bool = True) -> Any:
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path, pull=pull)
    if is_adapter_dir(path) and not (path / "tokenizer_config.json").is_file():
        path = resolve_model(adapter_base(path), pull=pull)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # generation; training collators pad on their own terms
    return tok


def load_model(
    name_or_path: str | os.PathLike,
    *,
    dtype: DtypeName = "auto",
    device: str = "auto",
    quantize: Quantize | None = None,
    for_training: bool = False,
    pull: bool = True,
) -> tuple[Any, Any]:
    """Load (model, tokenizer) from a catalogue name, Hub id or local directory."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = resolve_model(name_or_path, pull=pull)
    dev = pick_device(device)
    if dev == "cpu":
        configure_cpu_threads()
    torch_dtype = pick_dtype(dev, dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if quantize:
        kwargs["quantization_config"] = _quantization_config(quantize, dev, torch_dtype)
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    tok = load_tokenizer(path)
    if is_adapter_dir(path):
        return _load_adapter(path, tok, dtype=dtype, device=device, quantize=quantize,
                             for_training=for_training, pull=pull)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise MathtuneError(f"could not load model from {path}: {str(e).splitlines()[0][:200]}",
                            "check the directory holds config.json and weights, or pull again with --force") from None
    if not quantize and dev != "cpu":
        model.to(dev)
    if not for_training:
        model.eval()
    return model, tok


def _load_adapter(path: Path, tok: Any, **load_kwargs: Any) -> tuple[Any, Any]:
    """Base model + PEFT adapter. For inference the adapter is merged (no per-layer LoRA
    overhead while generating); for training it stays a trainable PeftModel."""
    from peft import PeftModel

    base, _ = load_model(adapter_base(path), **load_kwargs)
    model = PeftModel.from_pretrained(base, path, is_trainable=load_kwargs.get("for_training", False))
    if load_kwargs.get("for_training") or load_kwargs.get("quantize"):
        return model, tok
    return model.merge_and_unload().eval(), tok


def _quantization_config(quantize: Quantize, device: str, compute_dtype: torch.dtype) -> Any:
    if not device.startswith("cuda"):
        raise MathtuneError(
            f"{quantize} quantization (QLoRA) needs a CUDA GPU; this run is on {device}",
            "on a CPU use LoRA or DoRA without quantization (method: lora), or run on a GPU",
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise MathtuneError("4-bit/8-bit quantization needs bitsandbytes", "pip install 'mathtune[gpu]'") from None
    from transformers import BitsAndBytesConfig

    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )
