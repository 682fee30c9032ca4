"""Export a model (catalogue name, Hub id, local dir or LoRA adapter dir) as HF safetensors or GGUF.

    from mathtune.export import export_model
    result = export_model("runs/train/x/adapter", "out/x-gguf", fmt="gguf", quant="q8_0")
    result.info["verification"]["max_abs_dlogit"]

Reads top to bottom: resolve -> load (fp32 on the CPU; an adapter is merged into its unquantized
base) -> write into a temporary directory -> reload what was written and compare with the source
(unless verify=False: fixed prompts, then `heldout` problems solved by both, paired) ->
export.json + README.md -> rename into place. An error anywhere leaves
no output directory behind (`mathtune.files.atomic_dir`).

    hf:   config.json, model.safetensors, generation_config.json, tokenizer files, chat template
    gguf: model-<quant>.gguf (tokenizer and chat template inside) and an Ollama Modelfile
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..files import atomic_dir, atomic_write_json, atomic_write_text
from ..models import adapter_base, is_adapter_dir, load_model, resolve_model
from .card import render_export_card
from .gguf_writer import check_architecture, check_quant, write_gguf
from .modelfile import modelfile_text
from .verify import compare_models, heldout_line, reload_export, summary_line

ExportFormat = Literal["hf", "gguf"]


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    info: dict[str, Any]


def export_model(model_ref: str | os.PathLike, out_dir: str | os.PathLike, *, fmt: ExportFormat = "hf",
                 quant: str = "f32", verify: bool = True, name: str | None = None, pull: bool = True,
                 max_new_tokens: int = 32, heldout: Callable[..., dict[str, Any]] | None = None,
                 log: Callable[[str], None] | None = None) -> ExportResult:
    """Write the export to `out_dir` (replaced if it exists) and return what was recorded.

    With `verify` and a `heldout` check (`mathtune.eval.heldout.heldout_check(FILE, n=100)`, which the
    CLI passes by default), held-out problems are solved by the source and by the reloaded
    export: `info["verification"]["heldout"]`."""
    say = log or (lambda _msg: None)
    q = check_quant(quant) if fmt == "gguf" else None
    path = resolve_model(model_ref, pull=pull)
    adapter = is_adapter_dir(path)
    if fmt == "gguf":  # before loading: a 7B model should not be loaded only to be refused
        from transformers import AutoConfig

        check_architecture(AutoConfig.from_pretrained(resolve_model(adapter_base(path), pull=pull) if adapter else path))
    say(f"loading {model_ref}" + (" (adapter: merging into its unquantized base)" if adapter else ""))
    model, tok = load_model(path, dtype="fp32", device="cpu", pull=pull)
    out_dir = Path(out_dir)
    info: dict[str, Any] = {
        "name": name or out_dir.name, "format": fmt, "quant": q, "source": str(model_ref), "source_dir": str(path),
        "adapter": str(path) if adapter else None, "base_model": adapter_base(path) if adapter else str(model_ref),
        "architecture": model.config.model_type, "mathtune_version": _version(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with atomic_dir(out_dir) as tmp:
        t0 = time.perf_counter()
        gguf_name = _write(model, tok, tmp, fmt, q, info["name"])
        info["write_seconds"] = round(time.perf_counter() - t0, 2)
        info["gguf"] = gguf_name
        info["verification"] = None
        if verify:
            say("verifying: reloading what was written and comparing with the source")
            reloaded, rtok = reload_export(tmp, fmt, gguf_name)
            info["verification"] = compare_models(model, tok, reloaded, rtok, max_new_tokens=max_new_tokens)
            say(summary_line(info["verification"]))
            if heldout is not None:
                say("verifying: held-out problems solved by the source and by the export")
                with tempfile.TemporaryDirectory(prefix="mathtune-export-heldout-") as work:
                    h = heldout(model, tok, reloaded, rtok, Path(work))
                info["verification"]["heldout"] = h
                say(heldout_line(h))
            del reloaded
        info["files"] = sorted([p.name for p in tmp.iterdir()] + ["export.json", "README.md"])
        atomic_write_json(tmp / "export.json", info)
        source_card = path / "README.md"
        atomic_write_text(tmp / "README.md", render_export_card(
            info, source_card.read_text(encoding="utf-8") if source_card.is_file() else None))
    return ExportResult(out_dir, info)


def _write(model: Any, tok: Any, tmp: Path, fmt: ExportFormat, quant: str | None, name: str) -> str | None:
    if fmt == "hf":
        if model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = tok.pad_token_id
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        return None
    gguf_name = f"model-{quant}.gguf"
    write_gguf(model, tok, tmp / gguf_name, quant=quant or "f32", name=name)
    atomic_write_text(tmp / "Modelfile", modelfile_text(gguf_name, tok))
    return gguf_name


def passed(info: dict[str, Any]) -> bool | None:
    """Whether a lossless export (hf, or GGUF f32) reproduced the source; None when not checkable."""
    v = info.get("verification")
    if v is None or (info["format"] == "gguf" and info["quant"] != "f32"):
        return None
    return bool(v["tokenizer_equal"] and v.get("eos_equal", True) and v["greedy_tokens_equal"] == v["prompts"] and v["max_abs_dlogit"] <= 1e-3)


def _version() -> str:
    from .. import __version__

    return __version__
