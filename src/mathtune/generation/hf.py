"""Batched generation with transformers on CPU or GPU: the default `--backend hf`.

    from mathtune.generation import HFGenerator, SamplingParams
    gen = HFGenerator("smollm2-135m-instruct")
    gen.generate(["What is 7*6?"], SamplingParams(max_new_tokens=64))

Why not `model.generate` with a batch: it runs every batch to its longest row, re-concatenates
the whole KV cache at every step, and pads. Here a small decode loop over the model's forward:

- requests are sorted by prompt length and batched (little padding); the n samples of a prompt
  share one prefill (its KV rows are copied);
- the KV cache is preallocated and written in place (`_GrowingLayer`), not `torch.cat`-ed per step;
- a row leaves the batch the moment it finishes (EOS / end-of-turn, a stop string, or
  max_new_tokens), so the batch shrinks instead of decoding padding; when it has shrunk below
  half, waiting prompts are prefilled and merged into the running batch (continuous batching);
- logits are computed for the last position only; attention masks for decode are built once
  per step as a 4D boolean tensor, skipping transformers' mask machinery;
- on CPU, while `generate` runs: sibling projections fused and every linear layer on a
  pre-packed MKL weight (`fused.py`), and decode attention per block of rows over the columns
  the block needs, skipping left padding (`decode_attention.py`). Both, and the KV cache's
  DynamicLayer subclass, are version-gated library patches (`mathtune.patches`); both are
  undone when `generate` returns.

Greedy decoding picks the same tokens as one-at-a-time `generate` up to floating-point ties
(batched matmuls sum in a different order); `benchmarks/eval_throughput.py` reports agreement.
Sampling draws each row from its own `torch.Generator` seeded by (seed, prompt seed, sample),
so results do not depend on batch size or order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..models.threads import ThreadTuner, thread_candidates
from .base import Completion, Generator, OnComplete, SamplingParams, sample_seed, truncate_at_stop
from .decode_attention import block_attention, row_blocks
from .fused import fused_projections
from .kv_cache import merge, new_cache, trim_left

# End-of-turn markers of common chat templates: generation stops at whichever the vocab has.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "<end_of_turn>", "</s>",
               "<|end|>", "<｜end▁of▁sentence｜>")


@dataclass
class _Row:
    """One (prompt, sample) being decoded."""

    prompt_index: int
    sample: int
    ids: list[int]
    generator: Any = None  # torch.Generator for sampling
    out: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    start: float = 0.0
    done: bool = False


def stop_token_ids(tokenizer: Any, model: Any) -> set[int]:
    """EOS ids from the generation config and tokenizer, plus any end-of-turn token in the vocab."""
    ids: set[int] = set()
    for source in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(i) for i in source)
    vocab = tokenizer.get_vocab()
    specials = set(getattr(tokenizer, "all_special_tokens", []))
    for name in END_OF_TURN:
        if name in vocab and name in specials and vocab[name] != tokenizer.pad_token_id:
            ids.add(vocab[name])
    return ids


class HFGenerator(Generator):
    """transformers backend. Pass a model name/path, or an already loaded (model, tokenizer)."""

    backend = "hf"

    def __init__(
        self,
        model: str | Any = "smollm2-135m-instruct",
        tokenizer: Any = None,
        *,
        batch_size: int = 64,
        dtype: str = "auto",
        device: str = "auto",
        threads: int | None = None,
    ) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        if isinstance(model, str) or tokenizer is None:
            from ..models import load_model

            self.model_name = str(model)
            model, tokenizer = load_model(model, dtype=dtype, device=device)  # type: ignore[arg-type]
        else:
            self.model_name = getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.model, self.tokenizer = model, tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.pad_id = int(tokenizer.pad_token_id)
        self.batch_size = max(1, int(batch_size))
        self.stop_ids = stop_token_ids(tokenizer, model)
        self.cache_kw = cache_argument(model)
        self.device = next(model.parameters()).device
        n_threads = threads or torch.get_num_threads()
        # On a GPU the thread count barely matters; on CPU the thread policy's candidates are timed.
        fixed = threads or self.device.type != "cpu"
        self.tuner = ThreadTuner([n_threads] if fixed else thread_candidates(), workload="generate")

    # ------------------------------------------------------------------ public

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        *,
        on_complete: OnComplete | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        return self.generate_tokens([self._encode(p) for p in prompts], params, on_complete=on_complete, seeds=seeds)

    def generate_tokens(
        self,
        prompt_ids: Sequence[Sequence[int]],
        params: SamplingParams,
        *,
        on_complete: OnComplete | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        """`generate` for prompts already tokenized (e.g. by a trainer, which owns special tokens)."""
        import torch

        encoded = [list(ids) or [self.pad_id] for ids in prompt_ids]
        results: list[list[Completion | None]] = [[None] * params.n for _ in encoded]
        rows: list[_Row] = []
        for i in sorted(range(len(encoded)), key=lambda i: -len(encoded[i])):
            for s in range(params.n):
                gen = None
                if not params.greedy:
                    gen = torch.Generator(device=self.device)
                    gen.manual_seed(sample_seed(params.seed, seeds[i] if seeds else i, s))
                rows.append(_Row(i, s, encoded[i], gen))

        def finish(row: _Row, reason: str) -> None:
            comp = self._completion(row, reason, params)
            results[row.prompt_index][row.sample] = comp
            if on_complete is not None:
                on_complete(row.prompt_index, row.sample, comp)

        threads = torch.get_num_threads()
        on_cpu = self.device.type == "cpu"
        try:
            # skinny decode GEMMs run far below peak on a CPU: fused and pre-packed weights there;
            # decode attention skips the batch's left padding block by block
            with (torch.inference_mode(), fused_projections(self.model, enabled=on_cpu),
                  block_attention(self.model, enabled=on_cpu) as use_blocks):
                _DecodeLoop(self, params, finish, use_blocks).run(rows)
        finally:
            torch.set_num_threads(threads)  # the tuner's choice does not leak to the caller
        return [[c for c in per if c is not None] for per in results]

    # ------------------------------------------------------------------ helpers

    def _encode(self, prompt: str) -> list[int]:
        # Chat-templated prompts already carry their special tokens (BOS included).
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if not ids:
            ids = [self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.pad_id]
        return list(ids)

    def _completion(self, row: _Row, reason: str, params: SamplingParams) -> Completion:
        out = row.out[:-1] if reason == "eos" else row.out
        text = self.tokenizer.decode(out, skip_special_tokens=True)
        stopped = reason in ("eos", "stop")
        if params.stop:
            text, hit = truncate_at_stop(text, params.stop)
            stopped = stopped or hit
        return Completion(
            text=text,
            tokens=len(row.out),
            finish_reason="stop" if stopped else "length",
            time_s=round(time.perf_counter() - row.start, 4),
            token_ids=tuple(row.out) if params.logprobs else None,
            logprobs=tuple(row.logprobs) if params.logprobs else None,
        )


class _DecodeLoop:
    """Continuous batching over a left-padded, in-place KV cache; rows leave as they finish."""

    # Prefill at most this many prompts together: rows are sorted by length, so small groups pad
    # little, and GEMMs over a few hundred tokens already run at full speed while activations
    # stay in cache (8 was fastest of 4, 8 and 16 on 64 GSM8K prompts; benchmarks/eval_throughput.py).
    PREFILL_ROWS = 8
    PREFILL_TOKENS = 4096
    COMPACT_AT = 1 / 16

    def __init__(self, gen: HFGenerator, params: SamplingParams, finish: Any, use_blocks: bool = False) -> None:
        self.gen, self.params, self.finish = gen, params, finish
        self.model = gen.model
        self.use_blocks = use_blocks  # the model runs `decode_attention`: pass it row blocks
        self.blocks: list[tuple[int, int, int]] | None = None
        self.stop_strings = tuple(s for s in params.stop if s)
        # how many trailing tokens to decode when looking for a stop string
        self.tail = max((len(s) for s in self.stop_strings), default=0) + 4
        self._prefix_kv: tuple[tuple[int, ...], list[tuple[Any, Any]]] | None = None

    def run(self, rows: list[_Row]) -> None:
        import torch

        queue = list(rows)
        active: list[_Row] = []  # rows in the batch; finished ones stay until the next compaction
        cache = mask = pos = last = None
        tuner = self.gen.tuner
        while queue or active:
            tuner.tick()
            alive = sum(not r.done for r in active)
            if queue and alive <= self.gen.batch_size // 2:
                if alive < len(active):
                    cache, mask, pos, last, active = self._compact(cache, mask, pos, last, active)
                take = self.gen.batch_size - len(active)
                new, queue = queue[:take], queue[take:]
                tuner.probe()
                parts = [(cache, mask, pos, last)] if active else []
                for group in _length_groups(new, self.PREFILL_ROWS, self.PREFILL_TOKENS):
                    parts.append(self._prefill(group))
                    active += group
                # one merge of all parts: each row's KV is copied once
                cache, mask = merge([(c, m) for c, m, _, _ in parts], self.params.max_new_tokens)
                pos = torch.cat([p for _, _, p, _ in parts])
                last = torch.cat([x for _, _, _, x in parts])
                self._plan_blocks(mask)
            alive = self._advance(active, last)
            dead = len(active) - alive
            # Dropping rows copies the whole KV cache, so finished rows ride along (a few wasted
            # row-steps) until a sixteenth of the batch is done (1/8, 1/16, 1/32: within 2%).
            if dead and (alive == 0 or dead >= max(1, int(len(active) * self.COMPACT_AT))):
                cache, mask, pos, last, active = self._compact(cache, mask, pos, last, active)
                if not active:
                    continue
                self._plan_blocks(mask)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            pos = pos + 1
            logits = self.model(
                input_ids=last[:, None],
                attention_mask=mask[:, None, None, :],
                position_ids=pos[:, None],
                **{self.gen.cache_kw: cache},
                use_cache=True,
                logits_to_keep=1,
                **({"decode_blocks": self.blocks} if self.blocks else {}),
            ).logits[:, -1, :]
            last = self._pick(logits, active)

    def _plan_blocks(self, mask: Any) -> None:
        """Row blocks for decode attention after the batch changed (merge or compaction)."""
        if self.use_blocks:
            blocks = row_blocks(mask)
            self.blocks = blocks if len(blocks) > 1 else None

    @staticmethod
    def _compact(cache: Any, mask: Any, pos: Any, last: Any, active: list[_Row]) -> tuple[Any, ...]:
        """Remove finished rows from the batch (and padding columns no row needs any more)."""
        import torch

        keep = [i for i, r in enumerate(active) if not r.done]
        if not keep:
            return None, None, None, None, []
        idx = torch.tensor(keep, device=mask.device)
        cache.batch_select_indices(idx)
        cache, mask = trim_left(cache, mask[idx])
        return cache, mask, pos[idx], last[idx], [active[i] for i in keep]

    def _prefill(self, rows: list[_Row]) -> tuple[Any, Any, Any, Any]:
        """Prefill each distinct prompt once (samples of one prompt copy its KV rows), computing
        the prefix all prompts share (system prompt, chat header, few-shot examples) only once.

        Cache layout per row: [shared prefix][left padding][own suffix]; position ids skip the
        padding, so every row sees exactly the positions it would see alone.
        """
        import torch

        distinct: dict[int, int] = {}
        for r in rows:
            distinct.setdefault(r.prompt_index, len(distinct))
        firsts = {r.prompt_index: r for r in reversed(rows)}
        uniq = [firsts[p].ids for p in distinct]
        dev = self.gen.device
        n_prefix = _common_prefix_len(uniq)
        n_prefix = n_prefix if n_prefix >= 4 else 0
        width = max(len(ids) for ids in uniq) - n_prefix
        cache = new_cache(self.model, capacity=n_prefix + width + self.params.max_new_tokens)
        if n_prefix:
            self._prefill_prefix(cache, uniq[0][:n_prefix], len(uniq))
        ids = torch.full((len(uniq), width), self.gen.pad_id, dtype=torch.long, device=dev)
        mask = torch.zeros((len(uniq), width), dtype=torch.bool, device=dev)
        for i, row_ids in enumerate(uniq):
            tail = row_ids[n_prefix:]
            ids[i, width - len(tail):] = torch.tensor(tail, device=dev)
            mask[i, width - len(tail):] = True
        pos = n_prefix + (mask.long().cumsum(-1) - 1).clamp(min=0)
        causal = torch.ones(width, width, dtype=torch.bool, device=dev).tril()
        # padded query rows attend to themselves only, so no row of the mask is empty (NaN-free)
        own = (causal[None] & mask[:, None, :]) | torch.eye(width, dtype=torch.bool, device=dev)[None]
        full = torch.cat([own.new_ones((len(uniq), width, n_prefix)), own], dim=-1)
        logits = self.model(
            input_ids=ids, attention_mask=full[:, None], position_ids=pos, **{self.gen.cache_kw: cache},
            use_cache=True, logits_to_keep=1,
        ).logits[:, -1, :]
        mask = torch.cat([mask.new_ones((len(uniq), n_prefix)), mask], dim=1)
        now = time.perf_counter()
        for r in rows:
            r.start = now
        expand = torch.tensor([distinct[r.prompt_index] for r in rows], device=dev)
        if len(uniq) != len(rows):
            cache.batch_select_indices(expand)
        logits, mask, pos = logits[expand], mask[expand], pos[expand][:, -1]
        return cache, mask, pos, self._pick(logits, rows)

    def _prefill_prefix(self, cache: Any, prefix: list[int], copies: int) -> None:
        """Run the shared prefix once (or reuse it from an earlier batch) into `cache`, x copies."""
        import torch

        key = tuple(prefix)
        if self._prefix_kv is None or self._prefix_kv[0] != key:
            one = new_cache(self.model, capacity=len(prefix))
            ids = torch.tensor([prefix], device=self.gen.device)
            self.model(input_ids=ids, position_ids=torch.arange(len(prefix), device=ids.device)[None],
                       **{self.gen.cache_kw: one}, use_cache=True, logits_to_keep=1)
            self._prefix_kv = (key, [(layer.keys.clone(), layer.values.clone()) for layer in one.layers])
        for layer, (k, v) in zip(cache.layers, self._prefix_kv[1], strict=True):
            layer.update(k.expand(copies, -1, -1, -1), v.expand(copies, -1, -1, -1))

    def _pick(self, logits: Any, rows: list[_Row]) -> Any:
        """Next token per row: argmax, or a seeded draw from the tempered, top-p-filtered softmax."""
        import torch

        if self.params.greedy:
            # max() picks the first maximal index like argmax() and is ~1.7x faster on CPU
            picks = logits.max(dim=-1).indices
            if self.params.logprobs:
                self._record(torch.log_softmax(logits.float(), dim=-1), picks, rows)
            return picks
        scaled = logits.float() / self.params.temperature
        probs = torch.softmax(scaled, dim=-1)
        logp = torch.log_softmax(scaled, dim=-1) if self.params.logprobs else None
        if self.params.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > self.params.top_p  # keep the smallest nucleus
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
        picks = draw(probs, [r.generator for r in rows])
        if logp is not None:
            self._record(logp, picks, rows)
        return picks

    @staticmethod
    def _record(logp: Any, picks: Any, rows: list[_Row]) -> None:
        """Each running row's log-probability of its picked token (appended with the token in `_advance`)."""
        for row, value in zip(rows, logp.gather(-1, picks[:, None])[:, 0].tolist(), strict=True):
            if not row.done:
                row.logprobs.append(value)

    def _advance(self, active: list[_Row], last: Any) -> int:
        """Append each running row's new token and finish rows that stopped; returns how many
        rows are still running."""
        alive = 0
        stop_ids, limit = self.gen.stop_ids, self.params.max_new_tokens
        decode = self.gen.tokenizer.decode
        for row, tok in zip(active, last.tolist(), strict=True):
            if row.done:
                continue
            row.out.append(tok)
            if tok in stop_ids:
                reason = "eos"
            elif self.stop_strings and any(
                s in decode(row.out[-self.tail:], skip_special_tokens=True) for s in self.stop_strings
            ):
                reason = "stop"
            elif len(row.out) >= limit:
                reason = "length"
            else:
                alive += 1
                continue
            row.done = True
            self.finish(row, reason)
        return alive


def draw(probs: Any, generators: Sequence[Any]) -> Any:
    """One token per row of `probs` (rows need not be normalised), from each row's own seeded
    generator, by inverse transform: one uniform per row against the row's cumulative sum.

    Exact sampling like `torch.multinomial`, which instead draws an exponential per vocabulary
    entry (49k for SmolLM2) on one thread per call: for 8 rows x 49k it took 15x longer (182 vs
    12 ms a step on 2 shared cores), a decode step's worth of time at every token."""
    import torch

    u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64, device=probs.device) for g in generators])
    cdf = probs.double().cumsum(-1)
    # right=True: the first token whose cumulative mass exceeds u, so zero-mass tokens are never picked
    picks = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    return picks.clamp_(max=probs.shape[-1] - 1)


def cache_argument(model: Any) -> str:
    """The forward's KV-cache keyword: `cache` from transformers 5.24, `past_key_values` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _length_groups(rows: list[_Row], max_prompts: int, max_tokens: int) -> list[list[_Row]]:
    """Split rows (sorted longest prompt first) into prefill groups of at most `max_prompts`
    distinct prompts and about `max_tokens` padded tokens (attention scores grow with width^2),
    never splitting the samples of one prompt."""
    groups: list[list[_Row]] = []
    seen: set[int] = set()
    cap = max_prompts
    for r in rows:
        if r.prompt_index not in seen and len(seen) >= cap:
            seen = set()
        if not seen:
            groups.append([])
            cap = max(1, min(max_prompts, max_tokens // max(1, len(r.ids))))
        seen.add(r.prompt_index)
        groups[-1].append(r)
    return groups


def _common_prefix_len(seqs: list[list[int]]) -> int:
    """Tokens every sequence starts with, leaving each at least one token of its own."""
    first, n = seqs[0], min(len(x) for x in seqs) - 1
    for i in range(max(n, 0)):
        if any(x[i] != first[i] for x in seqs):
            return i
    return max(n, 0)
