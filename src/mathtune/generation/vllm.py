"""vLLM backend (GPU, optional): `--backend vllm`; install with `pip install 'mathtune[vllm]'`.

    from mathtune.generation.vllm import VLLMGenerator
    gen = VLLMGenerator("Qwen/Qwen2.5-Math-1.5B-Instruct")

vLLM is imported only when this backend is built, so the rest of mathtune never needs it.
Per-request seeds make sampling reproducible per (seed, prompt seed, sample), as in `hf`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import MathtuneError
from .base import Completion, Generator, OnComplete, SamplingParams, sample_seed, truncate_at_stop


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise MathtuneError(
            "the vllm backend needs the vllm package, which is not installed",
            "pip install 'mathtune[vllm]' (CUDA GPU), or use --backend hf",
        ) from None
    return vllm


class VLLMGenerator(Generator):
    backend = "vllm"

    def __init__(self, model: str, *, dtype: str = "auto", gpu_memory_utilization: float = 0.85,
                 max_model_len: int | None = None) -> None:
        vllm = import_vllm()
        from ..models import resolve_model

        self.model_name = model
        path = resolve_model(model)
        names = {"auto": "auto", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
        self.llm = vllm.LLM(model=str(path), dtype=names.get(dtype, dtype),
                            gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
        self.tokenizer = self.llm.get_tokenizer()
        self._vllm = vllm

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        *,
        on_complete: OnComplete | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        import time

        requests, owners = [], []
        for i in range(len(prompts)):
            for s in range(params.n):
                requests.append(self._vllm.SamplingParams(
                    n=1,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    max_tokens=params.max_new_tokens,
                    stop=list(params.stop) or None,
                    seed=None if params.greedy else sample_seed(params.seed, seeds[i] if seeds else i, s) % (2**31),
                ))
                owners.append((i, s))
        t0 = time.perf_counter()
        outputs = self.llm.generate([prompts[i] for i, _ in owners], requests, use_tqdm=False)
        took = time.perf_counter() - t0
        results: list[list[Completion]] = [[] for _ in prompts]
        for (i, s), out in zip(owners, outputs, strict=True):
            o = out.outputs[0]
            text, _ = truncate_at_stop(o.text, params.stop)
            comp = Completion(text=text, tokens=len(o.token_ids),
                              finish_reason="length" if o.finish_reason == "length" else "stop", time_s=round(took, 4))
            results[i].append(comp)
            if on_complete:
                on_complete(i, s, comp)
        return results

    def close(self) -> None:
        self.llm = None
