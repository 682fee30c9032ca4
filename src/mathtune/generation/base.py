"""The one interface every generation backend implements (transformers, vLLM, OpenAI-compatible HTTP).

    gen = get_generator("hf", model="smollm2-135m-instruct")
    outs = gen.generate(["What is 2+2?"], SamplingParams(max_new_tokens=64))
    print(outs[0][0].text, outs[0][0].finish_reason)

`generate` returns one list per prompt holding `params.n` completions (sample 0..n-1). An
optional `on_complete(prompt_index, sample, completion)` callback fires as each completion
finishes (progress bars, streaming to disk). Sampling is reproducible per (prompt seed, sample),
independent of batching: callers that split work into chunks (resumable eval) pass stable
`seeds`, one per prompt.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length"]
BackendName = Literal["hf", "vllm", "openai"]


@dataclass(frozen=True)
class SamplingParams:
    """How to decode. `temperature == 0` is greedy (then `n` greedy copies would be identical,
    so n > 1 needs temperature > 0)."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int = 0
    stop: tuple[str, ...] = field(default=())
    logprobs: bool = False  # return each completion's token ids and their log-probabilities (hf backend)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def __post_init__(self) -> None:
        from ..errors import MathtuneError

        if self.max_new_tokens < 1:
            raise MathtuneError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}", "pass --max-new-tokens 512")
        if self.n < 1:
            raise MathtuneError(f"the number of samples must be >= 1, got {self.n}", "pass --samples 1 or more")
        if self.n > 1 and self.greedy:
            raise MathtuneError(
                f"{self.n} samples per problem with greedy decoding would be {self.n} identical copies",
                "pass --temperature > 0 (e.g. 0.7) with --samples",
            )
        if not 0.0 < self.top_p <= 1.0:
            raise MathtuneError(f"top_p must be in (0, 1], got {self.top_p}", "pass --top-p 0.95 or 1.0")


@dataclass(frozen=True)
class Completion:
    text: str  # the generated text, without the prompt and without the stop string / EOS
    tokens: int  # new tokens generated (including the one that stopped it)
    finish_reason: FinishReason  # "length": hit max_new_tokens
    time_s: float  # wall time from the start of its batch to its end
    # with `SamplingParams(logprobs=True)`: the generated token ids (the stopping EOS included) and
    # each one's log-probability under the tempered distribution (logits / temperature, no top-p)
    token_ids: tuple[int, ...] | None = None
    logprobs: tuple[float, ...] | None = None


OnComplete = Callable[[int, int, Completion], None]


def sample_seed(seed: int, prompt_seed: int, sample: int) -> int:
    """A 63-bit seed for one (prompt, sample): stable across runs, batch sizes and resumes."""
    digest = hashlib.blake2b(f"{seed}:{prompt_seed}:{sample}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def stable_seed(key: str) -> int:
    """A stable integer for a string key (a problem id), for `seeds=`."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") & ((1 << 63) - 1)


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` at the earliest stop string; returns (text, stopped)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class Generator(ABC):
    """A text generator: prompts in, completions out."""

    backend: BackendName
    model_name: str

    @abstractmethod
    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        *,
        on_complete: OnComplete | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        """Completions for each prompt: `result[i][s]` is sample `s` of prompt `i`."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (servers, GPU memory)."""

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
