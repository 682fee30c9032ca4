"""Any OpenAI-compatible completions server (vLLM serve, llama.cpp server, SGLang, TGI ...):
`--backend openai --base-url http://127.0.0.1:8000/v1`.

    from mathtune.generation.openai_api import OpenAIGenerator
    gen = OpenAIGenerator("Qwen/Qwen2.5-Math-1.5B-Instruct", base_url="http://127.0.0.1:8000/v1")

Prompts are already rendered (chat template applied locally), so this uses POST /v1/completions
with the raw prompt, `concurrency` requests in flight (threads over stdlib urllib: no extra
dependency). Each (prompt, sample) is one request with its own seed. Connection errors and
HTTP errors become one MathtuneError naming the server; transient failures (429/5xx, resets)
are retried with backoff.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from ..errors import MathtuneError
from .base import Completion, Generator, OnComplete, SamplingParams, sample_seed, truncate_at_stop

RETRY_STATUS = {429, 500, 502, 503, 504}


class OpenAIGenerator(Generator):
    backend = "openai"

    def __init__(self, model: str, *, base_url: str, api_key: str | None = None, concurrency: int = 8,
                 timeout_s: float = 600.0, retries: int = 3) -> None:
        self.model_name = model
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self.concurrency, self.timeout_s, self.retries = max(1, concurrency), timeout_s, retries

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        *,
        on_complete: OnComplete | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        results: list[list[Completion | None]] = [[None] * params.n for _ in prompts]
        jobs = [(i, s) for i in range(len(prompts)) for s in range(params.n)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self._one, prompts[i], params, sample_seed(params.seed, seeds[i] if seeds else i, s)): (i, s)
                       for i, s in jobs}
            try:
                for fut in as_completed(futures):
                    i, s = futures[fut]
                    comp = fut.result()
                    results[i][s] = comp
                    if on_complete:
                        on_complete(i, s, comp)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        return [[c for c in per if c is not None] for per in results]

    def _payload(self, prompt: str, params: SamplingParams, seed: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_name, "prompt": prompt, "max_tokens": params.max_new_tokens,
            "temperature": params.temperature, "top_p": params.top_p, "n": 1, "seed": seed % (2**31),
        }
        if params.stop:
            body["stop"] = list(params.stop)[:4]  # the OpenAI API accepts at most 4
        return body

    def _one(self, prompt: str, params: SamplingParams, seed: int) -> Completion:
        t0 = time.perf_counter()
        data = self._post("/completions", self._payload(prompt, params, seed))
        try:
            choice = data["choices"][0]
            text = choice.get("text") or ""
        except (KeyError, IndexError, TypeError):
            raise MathtuneError(f"{self.base_url}/completions returned an unexpected body: {str(data)[:200]}",
                                "is this an OpenAI-compatible completions server?") from None
        text, hit = truncate_at_stop(text, params.stop)
        usage = data.get("usage") or {}
        tokens = int(usage.get("completion_tokens") or 0)
        reason = "length" if choice.get("finish_reason") == "length" and not hit else "stop"
        return Completion(text=text, tokens=tokens, finish_reason=reason, time_s=round(time.perf_counter() - t0, 4))

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.base_url + path
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                if e.code in RETRY_STATUS and attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
                    continue
                detail = e.read().decode("utf-8", "replace")[:200]
                raise MathtuneError(f"{url} answered HTTP {e.code}: {detail}",
                                    "check --model (the server's model name) and --base-url") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
                if attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
                    continue
                reason = getattr(e, "reason", e)
                raise MathtuneError(f"cannot reach the completions server at {url}: {reason}",
                                    "start the server (e.g. `vllm serve MODEL`) or fix --base-url") from None
            except ValueError:
                raise MathtuneError(f"{url} did not return JSON", "is --base-url an OpenAI-compatible server?") from None
        raise AssertionError("unreachable")
