"""Continuous batching for `mathtune serve`: concurrent requests share one running decode loop.

    batcher = Batcher({"base": HFGenerator(model, tok), "sft": HFGenerator(sft_model, tok)}, max_queue=64)
    batcher.start()
    batcher.submit(Job(ids=[...], model="sft", n=1, max_tokens=64, emit=callback))

One worker thread owns the models. Requests wait in a bounded queue (`submit` raises `QueueFull`:
the app answers 429); the worker takes the oldest, collects what arrives for the same model
within a short window, and runs mathtune's hf decode loop (`generation.hf.DecodeLoop`) on them.
While it decodes, newly arrived requests for that model are prefilled and merged into the
running batch, and a row leaves the batch as soon as it finishes or its client goes away
(`Job.cancelled`), so a disconnected client frees its row at the next step.

Several models (the base and its adapters, `serve.adapters`): rows of different weights cannot
share a forward, so a loop serves one model. Fairness: once a request for another model waits,
the running loop admits no new rows; it finishes the rows it has (at most `max_tokens` steps)
and the worker moves on to the model of the oldest waiting request. With one model this never
happens and the loop runs as long as requests keep coming.

Each row carries its own request's sampling values (`SamplingParams`: temperature, top_p,
max_tokens, stop strings) and seed; the arithmetic is `HFGenerator.generate`'s, so a greedy
request gives the text `generate` gives, and a seeded one draws from the same per-row generator
(`sample_seed(0, seed, sample)`, as `generate(..., seeds=[seed])` does).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..generation.base import SamplingParams, sample_seed
from ..generation.hf import DecodeLoop, DecodeRow, HFGenerator, RowEnd

QueueFull = queue.Full

# Events sent to a job's `emit`: ("delta", sample, text) while streaming, ("done", sample,
# Completion) when a sample ends, ("error", -1, message) when the worker failed.
Event = tuple[str, int, Any]


@dataclass
class Job:
    """One request: `n` samples of one prompt (token ids) for one model, with its own sampling values."""

    ids: list[int]
    emit: Callable[[Event], None]
    model: str | None = None  # a name the batcher serves; None: its first (the base model)
    n: int = 1
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    stream: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)
    key: int = -1  # set by the batcher
    sent: dict[int, str] = field(default_factory=dict)  # streamed text per sample

    def rows(self) -> list[DecodeRow]:
        params = SamplingParams(max_new_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                                stop=self.stop)
        return [DecodeRow(self.ids, params, key=self.key, sample=s, seed=sample_seed(0, self.seed, s),
                          cancelled=self.cancelled) for s in range(self.n)]


class Batcher:
    """The worker thread that decodes all requests (see the module docstring)."""

    def __init__(self, models: HFGenerator | Mapping[str, HFGenerator], *, max_queue: int = 64,
                 window_s: float = 0.01, max_tokens_cap: int = 512) -> None:
        self.models = dict(models) if isinstance(models, Mapping) else {"": models}
        if not self.models:
            raise ValueError("a batcher needs at least one model")
        self.default = next(iter(self.models))
        self.max_queue = max_queue
        self.window_s = window_s
        self.max_tokens_cap = max_tokens_cap
        self.loops = 0  # decode loops started (each serves every request that joins it)
        self.loops_by_model = dict.fromkeys(self.models, 0)
        self.jobs_served = 0
        self.rows_cancelled = 0
        self._waiting: deque[Job] = deque()
        self._cond = threading.Condition()
        self._next_key = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="mathtune-batcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, job: Job) -> None:
        """Queue a job; raises `QueueFull` when `max_queue` jobs are waiting, `KeyError` for a
        model it does not serve."""
        job.model = self.default if job.model is None else job.model
        if job.model not in self.models:
            raise KeyError(job.model)
        with self._cond:
            if len(self._waiting) >= self.max_queue:
                raise QueueFull
            self._waiting.append(job)
            self._cond.notify_all()

    @property
    def queued(self) -> int:
        """Jobs waiting for a decode loop."""
        return len(self._waiting)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ worker

    def _pop(self, model: str | None) -> Job | None:
        """The oldest live job (of `model`, when given), removed from the queue; call holding `_cond`."""
        for job in list(self._waiting):
            if job.cancelled.is_set():  # its client gave up while it waited
                self._waiting.remove(job)
            elif model is None or job.model == model:
                self._waiting.remove(job)
                job.key, self._next_key = self._next_key, self._next_key + 1
                return job
        return None

    def _take(self, model: str, limit: int, wait_s: float = 0.0, *, yield_to_others: bool = False) -> list[Job]:
        """Jobs for `model`, up to `limit` rows, waiting at most `wait_s` for more; none at all
        with `yield_to_others` while a job for another model waits (its loop should end)."""
        jobs: list[Job] = []
        rows = 0
        deadline = time.perf_counter() + wait_s
        with self._cond:
            if yield_to_others and any(j.model != model and not j.cancelled.is_set() for j in self._waiting):
                return []
            while rows < limit:
                job = self._pop(model)
                if job is None:
                    left = deadline - time.perf_counter()
                    if left <= 0 or not self._cond.wait(left):
                        break
                    continue
                jobs.append(job)
                rows += job.n
        return jobs

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                first = self._pop(None)
                if first is None:
                    self._cond.wait(0.1)
                    continue
            model = first.model if first.model is not None else self.default
            gen = self.models[model]
            run = _Run(self, model, [first, *self._take(model, gen.batch_size - first.n, self.window_s)])
            self.loops += 1
            self.loops_by_model[model] += 1
            try:
                run.loop.run()
            except Exception as e:  # the model failed: every waiting client gets an error
                for job in run.jobs.values():
                    job.emit(("error", -1, f"generation failed: {type(e).__name__}: {e}"))


class _Run:
    """One decode loop of the worker: the jobs of one model that join it, streamed and finished."""

    def __init__(self, batcher: Batcher, model: str, jobs: list[Job]) -> None:
        self.batcher, self.model = batcher, model
        self.gen = batcher.models[model]
        self.jobs: dict[int, Job] = {}
        self.left: dict[int, int] = {}  # samples still running per job
        # `room`: the KV cache's free space for the largest max_tokens a request may ask for
        self.loop = DecodeLoop(self.gen, on_finish=self._finish, on_token=self._stream, source=self._more,
                               room=batcher.max_tokens_cap, admit="free")
        self.loop.add(self._rows(jobs))

    def _rows(self, jobs: list[Job]) -> list[DecodeRow]:
        rows: list[DecodeRow] = []
        for job in sorted(jobs, key=lambda j: -len(j.ids)):  # longest first: prefill groups pad little
            self.jobs[job.key] = job
            self.left[job.key] = job.n
            rows += job.rows()
        return rows

    def _more(self, free: int) -> list[DecodeRow]:
        """Requests that arrived meanwhile join now (unless another model's request waits)."""
        return self._rows(self.batcher._take(self.model, free, yield_to_others=True))

    def _stream(self, row: DecodeRow) -> None:
        """Send the new text, holding back what could still turn into a stop string or is an
        incomplete UTF-8 character."""
        job = self.jobs[row.key]  # type: ignore[index]
        if not job.stream:
            return
        text = self.gen.tokenizer.decode(row.out, skip_special_tokens=True)
        hold = max((len(s) for s in job.stop), default=1) - 1
        safe = text[: len(text) - hold] if hold else text
        safe = safe.rstrip("\ufffd")
        sent = job.sent.get(row.sample, "")
        if len(safe) > len(sent) and safe.startswith(sent):
            job.sent[row.sample] = safe
            job.emit(("delta", row.sample, safe[len(sent):]))

    def _finish(self, row: DecodeRow, reason: RowEnd) -> None:
        job = self.jobs[row.key]  # type: ignore[index]
        if reason == "cancelled":  # the client went away: its row is free, nobody to answer
            self.batcher.rows_cancelled += 1
            self._release(job)
            return
        comp = self.gen.completion(row, reason)
        if job.stream:
            sent = job.sent.get(row.sample, "")
            if len(comp.text) > len(sent) and comp.text.startswith(sent):
                job.emit(("delta", row.sample, comp.text[len(sent):]))
        self._release(job)  # counted before the client hears: /health never lags a finished response
        job.emit(("done", row.sample, comp))

    def _release(self, job: Job) -> None:
        self.left[job.key] -= 1
        if self.left[job.key] == 0:
            self.batcher.jobs_served += 1
