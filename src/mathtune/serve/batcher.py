"""Continuous batching for `mathtune serve`: every request joins one running decode loop.

    batcher = Batcher(HFGenerator(model, tokenizer), max_queue=64)
    batcher.start()
    batcher.submit(Job(ids=[...], n=1, max_tokens=64, emit=callback))

One worker thread owns the model. Requests wait in a bounded queue (`submit` raises
`QueueFull`: the app answers 429); the worker collects what arrives within a short window, prefills
it and decodes; while it decodes, newly arrived requests are prefilled and merged into the running
batch (mathtune's hf decode loop, `generation.hf._DecodeLoop`, with rows entering mid-flight), and a
row leaves the batch as soon as it finishes or its client goes away (`Job.cancelled`), so a
disconnected client frees its row at the next step.

Unlike `HFGenerator.generate`, each row carries its own request's sampling values (temperature,
top_p, max_tokens, stop strings, seed); the arithmetic is the same, so a greedy request gives the
text `HFGenerator.generate` gives, and a seeded one draws from the same per-row generator
(`sample_seed(0, seed, sample)`, as `generate(..., seeds=[seed])` does).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..generation.base import Completion, SamplingParams, sample_seed, truncate_at_stop
from ..generation.hf import HFGenerator, _DecodeLoop, _length_groups, _Row, draw
from ..generation.kv_cache import merge

QueueFull = queue.Full

# Events sent to a job's `emit`: ("delta", sample, text) while streaming, ("done", sample,
# Completion) when a sample ends, ("error", -1, message) when the worker failed.
Event = tuple[str, int, Any]


@dataclass
class Job:
    """One request: `n` samples of one prompt (token ids), with its own sampling values."""

    ids: list[int]
    emit: Callable[[Event], None]
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

    @property
    def tail(self) -> int:
        return max((len(s) for s in self.stop), default=0) + 4


class Batcher:
    """The worker thread that decodes all requests together (see the module docstring)."""

    def __init__(self, generator: HFGenerator, *, max_queue: int = 64, window_s: float = 0.01,
                 max_tokens_cap: int = 512) -> None:
        self.gen = generator
        self.queue: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self.window_s = window_s
        self.max_tokens_cap = max_tokens_cap
        self.loops = 0  # decode loops started (each serves every request that joins it)
        self.jobs_served = 0
        self.rows_cancelled = 0
        self._next_key = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="mathtune-batcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, job: Job) -> None:
        """Queue a job; raises `QueueFull` when the queue is at its bound."""
        self.queue.put_nowait(job)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ worker

    def _take(self, limit: int, wait_s: float = 0.0) -> list[Job]:
        """Jobs from the queue, up to `limit` rows, waiting at most `wait_s` for more."""
        jobs: list[Job] = []
        rows = 0
        deadline = time.perf_counter() + wait_s
        while rows < limit:
            left = deadline - time.perf_counter()
            try:
                job = self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if job.cancelled.is_set():
                continue
            job.key, self._next_key = self._next_key, self._next_key + 1
            jobs.append(job)
            rows += job.n
        return jobs

    def _work(self) -> None:
        import torch

        while not self._stop.is_set():
            try:
                first = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if first.cancelled.is_set():
                continue
            first.key, self._next_key = self._next_key, self._next_key + 1
            jobs = [first, *self._take(self.gen.batch_size - first.n, self.window_s)]
            loop = ServeLoop(self, jobs)
            self.loops += 1
            threads = torch.get_num_threads()
            try:
                loop.serve()
            except Exception as e:  # the model failed: every waiting client gets an error
                for job in loop.jobs.values():
                    job.emit(("error", -1, f"generation failed: {type(e).__name__}: {e}"))
            finally:
                torch.set_num_threads(threads)


class ServeLoop(_DecodeLoop):
    """The hf decode loop with per-row sampling values, streaming, cancellation and rows that
    join while it runs."""

    def __init__(self, batcher: Batcher, jobs: list[Job]) -> None:
        gen = batcher.gen
        # the loop-wide params only size the KV cache's free room; each row's own limits apply
        super().__init__(gen, SamplingParams(max_new_tokens=batcher.max_tokens_cap), self._finish)
        self.batcher = batcher
        self.jobs: dict[int, Job] = {}
        self.left: dict[int, int] = {}  # samples still running per job
        self.pending = self._rows(jobs)

    def _rows(self, jobs: list[Job]) -> list[_Row]:
        import torch

        rows: list[_Row] = []
        for job in sorted(jobs, key=lambda j: -len(j.ids)):
            self.jobs[job.key] = job
            self.left[job.key] = job.n
            for s in range(job.n):
                g = None
                if job.temperature > 0:
                    g = torch.Generator(device=self.gen.device)
                    g.manual_seed(sample_seed(0, job.seed, s))
                rows.append(_Row(job.key, s, job.ids, g))
        return rows

    def serve(self) -> None:
        import torch

        from ..generation.decode_attention import block_attention
        from ..generation.fused import fused_projections

        on_cpu = self.gen.device.type == "cpu"
        with (torch.inference_mode(), fused_projections(self.model, enabled=on_cpu),
              block_attention(self.model, enabled=on_cpu) as use_blocks):
            self.use_blocks = use_blocks
            self.run(self.pending)

    def run(self, rows: list[_Row]) -> None:  # noqa: C901 - the decode loop, as in hf.py
        import torch

        queue_rows = list(rows)
        active: list[_Row] = []
        cache = mask = pos = last = None
        tuner, size = self.gen.tuner, self.gen.batch_size
        while True:
            alive = sum(not r.done for r in active)
            if alive < size:  # continuous batching: requests that arrived meanwhile join now
                queue_rows += self._rows(self.batcher._take(size - alive - len(queue_rows)))
            if not queue_rows and not alive:
                return
            tuner.tick()
            if queue_rows and alive < size:
                if alive < len(active):
                    cache, mask, pos, last, active = self._compact(cache, mask, pos, last, active)
                take = size - len(active)
                new, queue_rows = queue_rows[:take], queue_rows[take:]
                parts = [(cache, mask, pos, last)] if active else []
                for group in _length_groups(new, self.PREFILL_ROWS, self.PREFILL_TOKENS):
                    parts.append(self._prefill(group))
                    active += group
                cache, mask = merge([(c, m) for c, m, _, _ in parts], self.params.max_new_tokens)
                pos = torch.cat([p for _, _, p, _ in parts])
                last = torch.cat([x for _, _, _, x in parts])
                self._plan_blocks(mask)
            alive = self._advance(active, last)
            dead = len(active) - alive
            if dead and (alive == 0 or dead >= max(1, int(len(active) * self.COMPACT_AT))):
                cache, mask, pos, last, active = self._compact(cache, mask, pos, last, active)
                if not active:
                    continue
                self._plan_blocks(mask)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            pos = pos + 1
            logits = self.model(
                input_ids=last[:, None], attention_mask=mask[:, None, None, :], position_ids=pos[:, None],
                **{self.gen.cache_kw: cache}, use_cache=True, logits_to_keep=1,
                **({"decode_blocks": self.blocks} if self.blocks else {}),
            ).logits[:, -1, :]
            last = self._pick(logits, active)

    def _pick(self, logits: Any, rows: list[_Row]) -> Any:
        """Argmax for greedy rows; a seeded draw from the row's own tempered, top-p softmax else."""
        import torch

        picks = logits.max(dim=-1).indices
        for i, r in enumerate(rows):
            job = self.jobs[r.prompt_index]
            if job.temperature <= 0 or r.done:
                continue
            probs = torch.softmax(logits[i:i + 1].float() / job.temperature, dim=-1)
            if job.top_p < 1.0:
                sorted_p, order = probs.sort(dim=-1, descending=True)
                drop = sorted_p.cumsum(-1) - sorted_p > job.top_p
                probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p.masked_fill(drop, 0.0))
            picks[i] = draw(probs, [r.generator])[0]
        return picks

    def _advance(self, active: list[_Row], last: Any) -> int:
        alive = 0
        decode = self.gen.tokenizer.decode
        for row, tok in zip(active, last.tolist(), strict=True):
            if row.done:
                continue
            job = self.jobs[row.prompt_index]
            if job.cancelled.is_set():  # the client went away: free the row
                row.done = True
                self.batcher.rows_cancelled += 1
                self._release(job)
                continue
            row.out.append(tok)
            if tok in self.gen.stop_ids:
                reason = "eos"
            elif job.stop and any(s in decode(row.out[-job.tail:], skip_special_tokens=True) for s in job.stop):
                reason = "stop"
            elif len(row.out) >= job.max_tokens:
                reason = "length"
            else:
                alive += 1
                if job.stream:
                    self._stream(job, row)
                continue
            row.done = True
            self._finish(row, reason)
        return alive

    def _stream(self, job: Job, row: _Row) -> None:
        """Send the new text, holding back what could still turn into a stop string or is an
        incomplete UTF-8 character."""
        text = self.gen.tokenizer.decode(row.out, skip_special_tokens=True)
        hold = max((len(s) for s in job.stop), default=1) - 1
        safe = text[: len(text) - hold] if hold else text
        safe = safe.rstrip("\ufffd")
        sent = job.sent.get(row.sample, "")
        if len(safe) > len(sent) and safe.startswith(sent):
            job.sent[row.sample] = safe
            job.emit(("delta", row.sample, safe[len(sent):]))

    def _finish(self, row: _Row, reason: str) -> None:
        job = self.jobs[row.prompt_index]
        out = row.out[:-1] if reason == "eos" else row.out
        text = self.gen.tokenizer.decode(out, skip_special_tokens=True)
        stopped = reason in ("eos", "stop")
        if job.stop:
            text, hit = truncate_at_stop(text, job.stop)
            stopped = stopped or hit
        comp = Completion(text=text, tokens=len(row.out), finish_reason="stop" if stopped else "length",
                          time_s=round(time.perf_counter() - row.start, 4))
        if job.stream:
            sent = job.sent.get(row.sample, "")
            if len(text) > len(sent) and text.startswith(sent):
                job.emit(("delta", row.sample, text[len(sent):]))
        self._release(job)  # counted before the client hears: /health never lags a finished response
        job.emit(("done", row.sample, comp))

    def _release(self, job: Job) -> None:
        self.left[job.key] -= 1
        if self.left[job.key] == 0:
            self.batcher.jobs_served += 1
