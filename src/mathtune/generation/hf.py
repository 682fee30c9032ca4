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

The loop itself is public, for callers with their own flow of requests (`mathtune serve`): a
`DecodeLoop` decodes `DecodeRow`s, each with its own `SamplingParams` and seed, takes new rows
while it runs (`add`, or a `source` it polls), drops a row whose `cancelled` event is set, and
reports each new token (`on_token`) and each finished row (`on_finish`):

    loop = DecodeLoop(gen, on_finish=lambda row, reason: print(gen.completion(row, reason).text))
    loop.add([DecodeRow(gen.encode("What is 7*6?"), SamplingParams(max_new_tokens=64))])
    loop.run()

`generate_tokens` is this loop with one `SamplingParams` for every row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..models.threads import ThreadTuner, thread_candidates
from .base import Completion, Generator, OnComplete, SamplingParams, sample_seed, truncate_at_stop
from .decode_attention import block_attention, kernel_takes, row_blocks
from .decode_ops import argmax, elementwise_in_c
from .fused import fused_projections
from .kv_cache import merge, new_cache, trim_left

# End-of-turn markers of common chat templates: generation stops at whichever the vocab has.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "<end_of_turn>", "</s>",
               "<|end|>", "<｜end▁of▁sentence｜>")


# Why a row left the decode loop: its last token is a stop id ("eos"), its text holds a stop
# string ("stop"), it reached max_new_tokens ("length"), or its `cancelled` event was set.
RowEnd = Literal["eos", "stop", "length", "cancelled"]


@dataclass
class DecodeRow:
    """One sequence for `DecodeLoop`: prompt token ids and its own sampling values.

    Rows with the same `key` are samples of one prompt (same `ids`) and share its prefill. `seed`
    seeds the row's sampler (unused when greedy). `cancelled` (anything with `is_set()`, e.g. a
    `threading.Event`) ends the row at the next step. The loop fills in `out` (new token ids),
    `logprobs` (with `params.logprobs`), `start` (perf_counter at its prefill) and `done`.
    """

    ids: list[int]
    params: SamplingParams
    key: Hashable = 0
    sample: int = 0
    seed: int = 0
    cancelled: Any = None
    out: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    start: float = 0.0
    done: bool = False
    generator: Any = field(default=None, repr=False)  # torch.Generator for sampling, made by the loop
    stops: tuple[str, ...] = field(init=False, repr=False)
    tail: int = field(init=False, repr=False)  # trailing tokens decoded when looking for a stop string

    def __post_init__(self) -> None:
        self.stops = tuple(s for s in self.params.stop if s)
        self.tail = max((len(s) for s in self.stops), default=0) + 4


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
        return self.generate_tokens([self.encode(p) for p in prompts], params, on_complete=on_complete, seeds=seeds)

    def generate_tokens(
        self,
        prompt_ids: Sequence[Sequence[int]],
        params: SamplingParams,
        *,
        on_complete: OnComplete | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[list[Completion]]:
        """`generate` for prompts already tokenized (e.g. by a trainer, which owns special tokens)."""
        encoded = [list(ids) or [self.pad_id] for ids in prompt_ids]
        results: list[list[Completion | None]] = [[None] * params.n for _ in encoded]

        def finish(row: DecodeRow, reason: RowEnd) -> None:
            comp = self.completion(row, reason)
            results[row.key][row.sample] = comp  # type: ignore[index]
            if on_complete is not None:
                on_complete(row.key, row.sample, comp)  # type: ignore[arg-type]

        loop = DecodeLoop(self, on_finish=finish, room=params.max_new_tokens)
        loop.add(DecodeRow(encoded[i], params, key=i, sample=s,
                           seed=0 if params.greedy else sample_seed(params.seed, seeds[i] if seeds else i, s))
                 for i in sorted(range(len(encoded)), key=lambda i: -len(encoded[i])) for s in range(params.n))
        loop.run()
        return [[c for c in per if c is not None] for per in results]

    def encode(self, prompt: str) -> list[int]:
        """A prompt's token ids as `generate` feeds them (no special tokens added: chat-templated
        prompts already carry theirs, BOS included)."""
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if not ids:
            ids = [self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.pad_id]
        return list(ids)

    _encode = encode

    def completion(self, row: DecodeRow, reason: RowEnd) -> Completion:
        """A finished row as a `Completion`: its text decoded (without the stopping EOS), cut at
        the first stop string of its params."""
        params = row.params
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


class DecodeLoop:
    """The decode loop of the hf backend: continuous batching over a left-padded, in-place KV
    cache; rows join while it runs and leave as they finish.

    - `on_finish(row, reason)`: a row ended (`RowEnd`); "cancelled" rows got no new token.
    - `on_token(row)`: a row got a new token (`row.out[-1]`) and goes on decoding.
    - `source(free)`: polled before each step while fewer than `batch_size` rows run, with how
      many more would fit; the rows it returns join the batch (e.g. requests from a queue).
    - `room`: KV-cache space preallocated for new tokens (the largest `max_new_tokens` to come).
    - `admit`: "half" prefills waiting rows once the batch has shrunk to half and re-times the
      thread count then (throughput: `generate`); "free" as soon as a row is free (latency: a server).

    Rows of one step pick their tokens together: rows sharing a `SamplingParams` object (all of
    `generate`) in one batched pick, the others grouped by their values. One thread runs the loop:
    call `add` before `run` or from a callback.
    """

    # Prefill at most this many prompts together: rows are sorted by length, so small groups pad
    # little, and GEMMs over a few hundred tokens already run at full speed while activations
    # stay in cache (8 was fastest of 4, 8 and 16 on 64 GSM8K prompts; benchmarks/eval_throughput.py).
    PREFILL_ROWS = 8
    PREFILL_TOKENS = 4096
    COMPACT_AT = 1 / 16

    def __init__(
        self,
        gen: HFGenerator,
        *,
        on_finish: Callable[[DecodeRow, RowEnd], None],
        on_token: Callable[[DecodeRow], None] | None = None,
        source: Callable[[int], Iterable[DecodeRow]] | None = None,
        room: int = 512,
        admit: Literal["half", "free"] = "half",
    ) -> None:
        self.gen, self.model = gen, gen.model
        self.on_finish, self.on_token, self.source = on_finish, on_token, source
        self.room, self.admit = room, admit
        self.queue: list[DecodeRow] = []  # rows waiting for a place in the batch
        self.use_blocks = False  # the model runs `decode_attention`: pass it row blocks
        self.blocks: list[tuple[int, int, int]] | None = None
        self._prefix_kv: tuple[tuple[int, ...], list[tuple[Any, Any]]] | None = None

    def add(self, rows: Iterable[DecodeRow]) -> None:
        """Queue rows; they join the batch at the next refill."""
        import torch

        for row in rows:
            if not row.params.greedy and row.generator is None:
                row.generator = torch.Generator(device=self.gen.device)
                row.generator.manual_seed(row.seed)
            self.queue.append(row)

    def run(self) -> None:
        """Decode until no row is left (and `source` has none to give); the model's CPU fast
        paths (fused projections, block decode attention) are on meanwhile, and the thread
        count is given back afterwards."""
        import torch

        threads = torch.get_num_threads()
        on_cpu = self.gen.device.type == "cpu"
        try:
            # skinny decode GEMMs run far below peak on a CPU: fused and pre-packed weights there;
            # decode attention skips masked columns (the C kernel, else SDPA block by block);
            # RMSNorm and rotary embeddings in C (one call each instead of 8-14 ops)
            with (torch.inference_mode(), fused_projections(self.model, enabled=on_cpu),
                  block_attention(self.model, enabled=on_cpu) as use_blocks,
                  elementwise_in_c(self.model, enabled=on_cpu)):
                self.use_blocks = use_blocks and not kernel_takes(self.model)
                self._run()
        finally:
            torch.set_num_threads(threads)  # the tuner's choice does not leak to the caller

    def _run(self) -> None:
        import torch

        active: list[DecodeRow] = []  # rows in the batch; finished ones stay until the next compaction
        cache = mask = pos = last = None
        tuner, size = self.gen.tuner, self.gen.batch_size
        refill_at = size // 2 if self.admit == "half" else size - 1
        while True:
            alive = sum(not r.done for r in active)
            free = size - alive - len(self.queue)
            if self.source is not None and free > 0:
                self.add(self.source(free))
            if not self.queue and not alive:
                return
            tuner.tick()
            if self.queue and alive <= refill_at:
                if alive < len(active):
                    cache, mask, pos, last, active = self._compact(cache, mask, pos, last, active)
                take = size - len(active)
                new, self.queue = self.queue[:take], self.queue[take:]
                if self.admit == "half":
                    tuner.probe()
                parts = [(cache, mask, pos, last)] if active else []
                for group in _length_groups(new, self.PREFILL_ROWS, self.PREFILL_TOKENS):
                    parts.append(self._prefill(group))
                    active += group
                # one merge of all parts: each row's KV is copied once
                cache, mask = merge([(c, m) for c, m, _, _ in parts], self.room)
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
    def _compact(cache: Any, mask: Any, pos: Any, last: Any, active: list[DecodeRow]) -> tuple[Any, ...]:
        """Remove finished rows from the batch (and padding columns no row needs any more)."""
        import torch

        keep = [i for i, r in enumerate(active) if not r.done]
        if not keep:
            return None, None, None, None, []
        idx = torch.tensor(keep, device=mask.device)
        cache.batch_select_indices(idx)
        cache, mask = trim_left(cache, mask[idx])
        return cache, mask, pos[idx], last[idx], [active[i] for i in keep]

    def _prefill(self, rows: list[DecodeRow]) -> tuple[Any, Any, Any, Any]:
        """Prefill each distinct prompt once (samples of one prompt copy its KV rows), computing
        the prefix all prompts share (system prompt, chat header, few-shot examples) only once.

        Cache layout per row: [shared prefix][left padding][own suffix]; position ids skip the
        padding, so every row sees exactly the positions it would see alone.
        """
        import torch

        distinct: dict[int, int] = {}
        for r in rows:
            distinct.setdefault(r.key, len(distinct))
        firsts = {r.key: r for r in reversed(rows)}
        uniq = [firsts[p].ids for p in distinct]
        dev = self.gen.device
        n_prefix = _common_prefix_len(uniq)
        n_prefix = n_prefix if n_prefix >= 4 else 0
        width = max(len(ids) for ids in uniq) - n_prefix
        cache = new_cache(self.model, capacity=n_prefix + width + self.room)
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
        expand = torch.tensor([distinct[r.key] for r in rows], device=dev)
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

    def _pick(self, logits: Any, rows: list[DecodeRow]) -> Any:
        """Next token per row: argmax, or a seeded draw from the row's tempered, top-p-filtered softmax."""
        import torch

        first = rows[0].params
        if all(r.params is first for r in rows):  # one set of values (all of `generate`): one pick
            return self._pick_with(first, logits, rows)
        picks = _first_max(logits)
        groups: dict[tuple[float, float, bool], list[int]] = {}
        for i, r in enumerate(rows):
            p = r.params
            if not r.done and (not p.greedy or p.logprobs):
                groups.setdefault((max(p.temperature, 0.0), p.top_p, p.logprobs), []).append(i)
        for idx in groups.values():
            sel = torch.tensor(idx, device=logits.device)
            picks[sel] = self._pick_with(rows[idx[0]].params, logits[sel], [rows[i] for i in idx])
        return picks

    def _pick_with(self, params: SamplingParams, logits: Any, rows: list[DecodeRow]) -> Any:
        """`_pick` for rows that share `params`'s temperature, top_p and logprobs."""
        import torch

        if params.greedy:
            picks = _first_max(logits)
            if params.logprobs:
                self._record(torch.log_softmax(logits.float(), dim=-1), picks, rows)
            return picks
        scaled = logits.float() / params.temperature
        probs = torch.softmax(scaled, dim=-1)
        logp = torch.log_softmax(scaled, dim=-1) if params.logprobs else None
        if params.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > params.top_p  # keep the smallest nucleus
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
        picks = draw(probs, [r.generator for r in rows])
        if logp is not None:
            self._record(logp, picks, rows)
        return picks

    @staticmethod
    def _record(logp: Any, picks: Any, rows: list[DecodeRow]) -> None:
        """Each running row's log-probability of its picked token (appended with the token in `_advance`)."""
        for row, value in zip(rows, logp.gather(-1, picks[:, None])[:, 0].tolist(), strict=True):
            if not row.done:
                row.logprobs.append(value)

    def _advance(self, active: list[DecodeRow], last: Any) -> int:
        """Append each running row's new token and finish rows that stopped (or were cancelled);
        returns how many rows are still running."""
        alive = 0
        stop_ids, on_token = self.gen.stop_ids, self.on_token
        decode = self.gen.tokenizer.decode
        for row, tok in zip(active, last.tolist(), strict=True):
            if row.done:
                continue
            reason: RowEnd
            if row.cancelled is not None and row.cancelled.is_set():  # e.g. its client went away
                reason = "cancelled"
            else:
                row.out.append(tok)
                if tok in stop_ids:
                    reason = "eos"
                elif row.stops and any(s in decode(row.out[-row.tail:], skip_special_tokens=True) for s in row.stops):
                    reason = "stop"
                elif len(row.out) >= row.params.max_new_tokens:
                    reason = "length"
                else:
                    alive += 1
                    if on_token is not None:
                        on_token(row)
                    continue
            row.done = True
            self.on_finish(row, reason)
        return alive


# the name before the loop was public (kept for callers that tune its class constants)
_DecodeLoop = DecodeLoop


def draw(probs: Any, generators: Sequence[Any]) -> Any:
    """One token per row of `probs` (rows need not be normalised), from each row's own seeded
    generator: the exponential race `argmax p_i / E_i` with `E_i = -log U_i`, which picks token i
    with probability p_i / sum(p), like `torch.multinomial`.

    `torch.multinomial` runs the same race but draws its exponentials with `exponential_`, which
    took 7.7 ms per 49k-entry row against 0.18 ms for `torch.rand` (one thread): for 8 rows about
    a decode step's worth of time at every token. An inverse-CDF draw (one uniform against the
    cumulative sum) is cheaper still, but a row's cumulative sum carries the rounding of every
    entry before it, so bfloat16 logits that differ in the last bit between batch sizes moved its
    picks (the batch-independence test failed in bf16); the race only turns on the top ratios."""
    import torch

    u = torch.stack([torch.rand(probs.shape[-1], generator=g, device=probs.device) for g in generators])
    return (probs.float() / u.log_().neg_()).argmax(dim=-1)


def cache_argument(model: Any) -> str:
    """The forward's KV-cache keyword: `cache` from transformers 5.24, `past_key_values` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _length_groups(rows: list[DecodeRow], max_prompts: int, max_tokens: int) -> list[list[DecodeRow]]:
    """Split rows (sorted longest prompt first) into prefill groups of at most `max_prompts`
    distinct prompts and about `max_tokens` padded tokens (attention scores grow with width^2),
    never splitting the samples of one prompt."""
    groups: list[list[DecodeRow]] = []
    seen: set[int] = set()
    cap = max_prompts
    for r in rows:
        if r.key not in seen and len(seen) >= cap:
            seen = set()
        if not seen:
            groups.append([])
            cap = max(1, min(max_prompts, max_tokens // max(1, len(r.ids))))
        seen.add(r.key)
        groups[-1].append(r)
    return groups


def _first_max(logits: Any) -> Any:
    """Each row's greedy pick: the first index of its largest logit. In C where it applies (one
    pass, 64 x 49,152 bf16 logits 2.09 -> 0.27 ms on 2 Zen 5 cores); else `max()`, which picks
    the same index as `argmax()` and is ~1.7x faster on a CPU."""
    picks = argmax(logits)
    return logits.max(dim=-1).indices if picks is None else picks


def _common_prefix_len(seqs: list[list[int]]) -> int:
    """Tokens every sequence starts with, leaving each at least one token of its own."""
    first, n = seqs[0], min(len(x) for x in seqs) - 1
    for i in range(max(n, 0)):
        if any(x[i] != first[i] for x in seqs):
            return i
    return max(n, 0)
