"""Text generation behind one interface: transformers (`hf`), vLLM (`vllm`), or any
OpenAI-compatible server (`openai`).

    from mathtune.generation import get_generator, SamplingParams
    gen = get_generator("hf", model="smollm2-135m-instruct", batch_size=64)
    completions = gen.generate(prompts, SamplingParams(max_new_tokens=512))

Backends import their heavy dependencies lazily: importing this package is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    BackendName,
    Completion,
    FinishReason,
    Generator,
    OnComplete,
    SamplingParams,
    stable_seed,
)

if TYPE_CHECKING:
    from .hf import HFGenerator

BACKENDS: tuple[str, ...] = ("hf", "vllm", "openai")

__all__ = [
    "BACKENDS", "BackendName", "Completion", "FinishReason", "Generator", "HFGenerator", "OnComplete",
    "SamplingParams", "get_generator", "stable_seed",
]


def get_generator(backend: str, model: str, **options: Any) -> Generator:
    """Build a backend by name. Options: hf: batch_size, dtype, device, threads; vllm: dtype,
    gpu_memory_utilization; openai: base_url, api_key, concurrency, timeout_s."""
    from ..errors import unknown_name_error

    if backend == "hf":
        from .hf import HFGenerator

        return HFGenerator(model, **options)
    if backend == "vllm":
        from .vllm import VLLMGenerator

        return VLLMGenerator(model, **options)
    if backend == "openai":
        from .openai_api import OpenAIGenerator

        return OpenAIGenerator(model, **options)
    raise unknown_name_error("generation backend", backend, BACKENDS)


def __getattr__(name: str) -> Any:
    if name == "HFGenerator":
        from .hf import HFGenerator

        return HFGenerator
    raise AttributeError(name)
