"""Request bodies and limits of `mathtune serve` (the OpenAI completions and chat APIs).

Bodies are validated with pydantic; any violation becomes a 400 in OpenAI's error shape
(`{"error": {"message", "type", "param", "code"}}`) naming the field. Fields OpenAI defines that
we do not implement (logprobs, penalties, user ...) are accepted and ignored, so stock clients
work; mathtune's own options live under `"mathtune": {...}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; the server refuses more with a 4xx."""

    max_body_bytes: int = 1_000_000
    max_prompt_tokens: int = 4096
    max_tokens: int = 512  # per completion
    max_n: int = 16
    max_prompts: int = 16  # a list `prompt` in /v1/completions
    max_queue: int = 64  # jobs waiting for the decode loop; more -> 429


class MathtuneOptions(BaseModel):
    """`"mathtune": {...}` in a request: math extras."""

    model_config = ConfigDict(extra="forbid")
    vote: bool = False  # with n > 1: a majority vote over equivalent extracted answers
    prompt: str | None = None  # chat only: render the conversation with a mathtune prompt style


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False  # a last chunk with `usage` (OpenAI's convention)


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    mathtune: MathtuneOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str] | None:
        stops = [v] if isinstance(v, str) else v
        if stops is None:
            return None
        if len(stops) > 4 or any(not s or len(s) > 200 for s in stops):
            raise ValueError("stop takes at most 4 non-empty strings of at most 200 characters")
        return stops

    @model_validator(mode="after")
    def _greedy_n(self) -> _Sampling:
        if self.n > 1 and self.temperature == 0:
            raise ValueError(f"n={self.n} with temperature 0 would be {self.n} identical copies; "
                             "pass temperature > 0 (e.g. 0.7)")
        return self

    @property
    def stop_tuple(self) -> tuple[str, ...]:
        return tuple(self.stop or ())  # type: ignore[arg-type]


class CompletionRequest(_Sampling):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError("prompt must be a string or a non-empty list of strings")
        return v

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatCompletionRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [{"role": m.role, "content": m.text} for m in self.messages]


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
