"""Export: ship what you tuned -- merged safetensors, GGUF for llama.cpp/Ollama, Hub push.

    run.py          export_model: resolve -> load (adapters merged) -> write -> verify -> export.json
    gguf_writer.py  write_gguf: Llama/Qwen2 + byte-level BPE tokenizer + chat template, f32/f16/bf16/q8_0
    verify.py       compare_models: max |Δlogit|, top-1 agreement, greedy text on fixed prompts
    modelfile.py    the Ollama Modelfile beside a GGUF
    card.py         the model card (README.md)
    push.py         push_folder: one all-or-nothing commit to the Hugging Face Hub

    from mathtune.export import export_model, push_folder
    export_model("smollm2-135m-instruct", "out/smollm2-gguf", fmt="gguf", quant="q8_0")
    push_folder("out/smollm2-gguf", "me/smollm2-gguf")

Importing this package is cheap: torch, transformers, gguf and huggingface_hub load inside the
functions that need them.
"""

from __future__ import annotations

from .gguf_writer import GGUF_QUANTS, GgufQuant, write_gguf
from .push import push_folder
from .run import ExportFormat, ExportResult, export_model, passed

__all__ = ["GGUF_QUANTS", "ExportFormat", "ExportResult", "GgufQuant", "export_model", "passed", "push_folder",
           "write_gguf"]
