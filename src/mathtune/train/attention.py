"""Variable-length ("varlen") attention for padding-free training batches, on any device.

TRL's packing and padding-free collators flatten a batch into rows of several examples with
`position_ids` restarting at 0 for each example, and no attention mask. With transformers'
`sdpa` attention, that becomes a 4D block-diagonal mask over the whole row: PyTorch's SDPA
then computes every query against every key of the row (a 4 x 1024-token batch flattened to one
4096-token row costs 4096^2 scores per head, ~18x the ~230^2 per example that matter) and the
masked kernels are slow besides. flash-attn's varlen kernels avoid that on CUDA; nothing does
on a CPU.

`mathtune_varlen` runs SDPA once per example instead, with `is_causal=True` and no mask (the
fast kernels on every device; grouped-query heads via `enable_gqa`, no repeated K/V), and
concatenates the outputs: the scores computed grow with each example's length squared, not the
row's (`benchmarks/train_throughput.py` times whole training steps against TRL's defaults).

On a CPU with AVX-512 each example's causal attention runs in a C kernel instead
(`kernels/train_attention.c`, built on first use and probed against SDPA; the switch every C
kernel shares, `MATHTUNE_DECODE_KERNEL=0/1`, turns it off or forces it elsewhere): score tiles in
registers, whole tiles past the diagonal skipped, FlashAttention-2's backward, every product in
float32 from inputs widened once (bf16 results within one bf16 rounding step of SDPA's). Forward
and backward of one example (9 heads of 64, 3 KV heads, 2 threads, AMD EPYC Zen 4 with
AVX512-BF16, against the SDPA path it replaces): 1.9x at 150-350 tokens in both dtypes, 1.5x at
700; arm c of `train_throughput.py` in alternating processes 161.0 / 172.9 -> 192.4 / 192.8
loss-tokens/s (with the loss head's change of the same day). Its inner loops since 2026-12-08
(the forward's normaliser kept lane by lane and rescaled only when a row's maximum moves; the
backward's dV, dK and dQ as register-blocked products over 16 query rows at a time; AMX Xeon, 2
threads, 250 tokens, alternating processes): forward 0.98 -> 0.65 ms, backward 1.7-1.9 -> 1.5 ms;
arm c 364.6 / 348.9 -> 428.4 / 386.7 loss-tokens/s. Not measured on AVX2-only CPUs, so
off there (fp32 SDPA as before).

**Shared prefixes** (`shared_prefixes(position_ids)`, GRPO's loss forward): a group's completions
all follow the same prompt, so the prompt is packed once and each further completion is packed
after it as a *branch*: a segment whose positions start at the prompt's length p instead of 0.
For a `position_ids` tensor so marked, a segment starting at p > 0 attends to the first p
tokens of the last segment that started at 0 (the prompt, followed there by the group's first
completion) and causally to itself, exactly what each completion sees in the padded batch; autograd sums the prompt's
gradient over the branches. A group of 8 then runs its prompt once instead of 8 times. The mark
sits on the tensor, not in a context, because activation checkpointing recomputes the forward
during backward with the same tensors. Unmarked, a segment starting at p > 0 is an example of
its own, as before.

Anything that is not a padding-free batch (a padding mask, a KV cache, decoding) falls through
to transformers' own `sdpa` path unchanged, so the same model also evaluates and generates.
`use_varlen_attention(model)` switches a model from `sdpa` to it; training does that when the
batches are padding-free. Registering it with transformers and switching the model is the
`varlen-attention` library patch (`mathtune.patches.attention`): version-gated, and undone by
the `Undo` it returns.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
import weakref
from pathlib import Path
from typing import Any

from ..patches.attention import VARLEN_NAME as NAME
from ..patches.undo import Undo

log = logging.getLogger(__name__)
_segments_memo: list[Any] = [None, None]  # [position_ids tensor, its segments]: computed once per forward
_starts_memo: list[Any] = [None, None]  # the same for each segment's first position
_shared: dict[int, Any] = {}  # id -> weak reference of position_ids tensors marked by shared_prefixes


def shared_prefixes(position_ids: Any) -> Any:
    """Mark `position_ids`: its segments whose positions start above 0 are branches of the last
    prompt (see the module docstring). Returns the tensor; the mark lives as long as it does."""
    key = id(position_ids)
    _shared[key] = weakref.ref(position_ids, lambda _, key=key: _shared.pop(key, None))
    return position_ids


def _is_shared(position_ids: Any) -> bool:
    ref = _shared.get(id(position_ids))
    return ref is not None and ref() is position_ids


def segments(position_ids: Any, batch: int) -> list[list[tuple[int, int]]]:
    """Per batch row, the (start, end) spans of the examples: a new one wherever the position
    does not continue the previous one (normally where it restarts at 0). Every layer of one
    forward pass gets the same `position_ids` tensor, so this runs once per forward."""
    import torch

    if _segments_memo[0] is position_ids:
        return _segments_memo[1]
    pos = position_ids.expand(batch, -1)
    starts = torch.ones_like(pos, dtype=torch.bool)
    starts[:, 1:] = pos[:, 1:] != pos[:, :-1] + 1
    width = pos.shape[1]
    out = []
    for row in starts.cpu():
        idx = row.nonzero().flatten().tolist() + [width]
        out.append(list(zip(idx[:-1], idx[1:], strict=True)))
    _segments_memo[0], _segments_memo[1] = position_ids, out
    return out


def varlen_attention_forward(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                             dropout: float = 0.0, scaling: float | None = None, is_causal: bool | None = None,
                             **kwargs: Any) -> tuple[Any, None]:
    """transformers attention-interface function: per-example causal SDPA over padding-free rows."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    q_len = query.shape[2]
    if (attention_mask is not None or position_ids is None or q_len == 1 or key.shape[2] != q_len
            or position_ids.shape[-1] != q_len or not getattr(module, "is_causal", True)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    gqa = key.shape[1] != query.shape[1]
    spans = segments(position_ids, query.shape[0])
    starts = _branch_starts(position_ids, query.shape[0], spans) if _is_shared(position_ids) else None
    # One split per tensor, not a slice per segment: a slice's backward writes its gradient into a
    # zero tensor of the whole row, so a slice per segment made the backward quadratic in the
    # number of segments (the demo's GRPO step, 8 groups x 8: ~6,300 row-sized zero-fill-and-add
    # per step); split's backward is one concatenation.
    by_row = [x.split(1) for x in (query, key, value)]
    rows = []
    for b, row_spans in enumerate(spans):
        qs, ks, vs = (x[b].split([e - s for s, e in row_spans], dim=2) for x in by_row)
        row_starts = starts[b] if starts is not None else [0] * len(row_spans)
        parts: list[Any] = []
        for root, members in _runs(row_spans, row_starts):
            if root is None:
                i, = members
                parts.append(_sdpa(qs[i], ks[i], vs[i], dropout, scaling, gqa, is_causal=True))
            else:
                parts.extend(_branch_attention(qs, ks, vs, root, members, row_starts[members[0]], dropout,
                                               scaling, gqa))
        rows.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=2))
    out = rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)
    return out.transpose(1, 2).contiguous(), None


def _runs(row_spans: list[tuple[int, int]], starts: list[int]) -> list[tuple[int | None, list[int]]]:
    """A row's segments (by index) as attention calls: (None, [i]) for a prompt or a plain example,
    (root, [branches]) for consecutive branches of the prompt `root` with the same prefix length p.
    A segment starting at p > 0 is a branch when a prompt of at least p tokens came before it."""
    runs: list[tuple[int | None, list[int]]] = []
    root = None
    for i, p in enumerate(starts):
        if p > 0 and root is not None and row_spans[root][1] - row_spans[root][0] >= p:
            if runs and runs[-1][0] == root and starts[runs[-1][1][0]] == p:
                runs[-1][1].append(i)
            else:
                runs.append((root, [i]))
            continue
        runs.append((None, [i]))
        if p == 0:
            root = i
    return runs


# On a CPU, bf16 SDPA's backward is slow for short sequences: forward + backward of one causal
# segment (9 heads of 64, 3 KV heads; 2 threads, AMX Xeon) took 3.8 / 4.8 / 12.2 ms in bf16 and
# 1.9 / 3.9 / 16.2 ms in fp32 at 135 / 230 / 512 tokens. Segments up to this length run in fp32
# where the C kernel below does not run. (The demo's whole GRPO step, 8 x 8 completions: 32.9 s
# against 32.8 s in bf16, no measurable change.)
FP32_SEGMENT_TOKENS = 256
KERNEL_SOURCE = Path(__file__).parents[1] / "generation" / "kernels" / "train_attention.c"
KERNEL_FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512", "-fno-math-errno", "-fopenmp", "-shared", "-fPIC")


@functools.cache
def _kernel() -> Any:
    """The causal-attention training kernel (`kernels/train_attention.c`), loaded and probed against
    SDPA, or None: off (`MATHTUNE_DECODE_KERNEL=0`, the switch every C kernel shares), a CPU
    without AVX-512 (measured only with it; `MATHTUNE_DECODE_KERNEL=1` forces it), no compiler,
    a failed build or probe."""
    from ..generation import decode_kernel

    switch = decode_kernel._switch()
    if switch == "0" or (switch != "1" and decode_kernel.why_on() != "avx512f"):
        return None
    lib = decode_kernel.load(KERNEL_SOURCE, KERNEL_FLAGS)
    if lib is None:
        return None
    i64, ptr, f32, c_int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float, ctypes.c_int
    lib.train_attention_forward.argtypes = [c_int, ptr, i64, i64, ptr, i64, i64, ptr, i64, i64, ptr, ptr] + [i64] * 4 + [f32, ptr]
    lib.train_attention_backward.argtypes = ([c_int, ptr, i64, i64, ptr, i64, i64, ptr, i64, i64, ptr, ptr, i64, i64, ptr, ptr,
                                              ptr, ptr] + [i64] * 5 + [f32, ptr])
    lib.train_attention_forward_scratch.argtypes = [i64] * 4
    lib.train_attention_backward_scratch.argtypes = [i64] * 5
    for name in ("forward", "backward", "forward_scratch", "backward_scratch"):
        getattr(lib, f"train_attention_{name}").restype = c_int if "scratch" not in name else i64
    return lib if _probe(lib) else None


def _probe(lib: Any) -> bool:
    """The kernel's outputs and gradients match float64 SDPA on a small grouped-query case. Its
    saved tensors go through hooks of its own: the first call comes inside a training forward,
    where activation checkpointing counts every tensor saved and expects the same count when it
    recomputes (without the probe, cached by then)."""
    import torch

    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        return _probe_once(lib)


def _probe_once(lib: Any) -> bool:
    import torch

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, h, 37, 64, generator=g, dtype=torch.float64) for h in (4, 2, 2))
    go = torch.randn(1, 4, 37, 64, generator=g, dtype=torch.float64)
    ref = [t.clone().requires_grad_() for t in (q, k, v)]
    want = torch.nn.functional.scaled_dot_product_attention(*ref, is_causal=True, enable_gqa=True)
    want.backward(go)
    got = [t.float().requires_grad_() for t in (q, k, v)]
    out = _kernel_function().apply(*got, 0.125, lib)
    out.backward(go.float())
    ok = all(torch.allclose(a.double(), b, atol=1e-4) for a, b in
             zip([out, *(t.grad for t in got)], [want.detach(), *(t.grad for t in ref)], strict=True))
    if not ok:
        log.warning("train_attention kernel disagrees with SDPA; training attention stays SDPA")
    return ok


_kept = threading.local()


def _scratch_floats(n: int) -> Any:
    """This thread's kept float32 scratch of at least n elements: a fresh multi-megabyte buffer per
    call is fresh pages from the kernel each time (glibc maps large allocations anew)."""
    import torch

    buf = getattr(_kept, "buf", None)
    if buf is None or buf.numel() < n:
        buf = _kept.buf = torch.empty(max(n, 1 << 16), dtype=torch.float32)
    return buf


@functools.cache
def _kernel_function() -> Any:
    import torch

    def rows(x: Any) -> Any:  # [1, heads, L, D] with D contiguous elements a row (any row and head strides)
        return x if x.stride(-1) == 1 else x.contiguous()

    def _strided(x: Any) -> tuple[int, int, int]:
        return x.data_ptr(), x.stride(1), x.stride(2)

    class CausalAttention(torch.autograd.Function):
        """Causal grouped-query attention of one example through `kernels/train_attention.c`."""

        @staticmethod
        def forward(ctx, q, k, v, scale, lib):  # type: ignore[override]
            q, k, v = rows(q), rows(k), rows(v)
            _, H, L, D = q.shape
            Hk = k.shape[1]
            o = torch.empty((1, H, L, D), dtype=q.dtype)
            lse = torch.empty((H, L), dtype=torch.float32)
            scratch = _scratch_floats(lib.train_attention_forward_scratch(H, Hk, L, D))
            rc = lib.train_attention_forward(int(q.dtype == torch.bfloat16), *_strided(q), *_strided(k), *_strided(v),
                                             o.data_ptr(), lse.data_ptr(), H, Hk, L, D, scale, scratch.data_ptr())
            if rc:
                raise RuntimeError(f"train_attention_forward failed ({rc}) for q {tuple(q.shape)}, k {tuple(k.shape)}")
            ctx.save_for_backward(q, k, v, o, lse)
            ctx.scale, ctx.lib = scale, lib
            return o

        @staticmethod
        def backward(ctx, go):  # type: ignore[override]
            q, k, v, o, lse = ctx.saved_tensors
            go = rows(go.to(q.dtype))
            _, H, L, D = q.shape
            Hk, T = k.shape[1], torch.get_num_threads()
            lib = ctx.lib
            dq, dk, dv = torch.empty_like(o), torch.empty((1, Hk, L, D), dtype=q.dtype), torch.empty((1, Hk, L, D), dtype=q.dtype)
            scratch = _scratch_floats(lib.train_attention_backward_scratch(H, Hk, L, D, T))
            rc = lib.train_attention_backward(int(q.dtype == torch.bfloat16), *_strided(q), *_strided(k), *_strided(v),
                                              o.data_ptr(), *_strided(go), lse.data_ptr(), dq.data_ptr(), dk.data_ptr(),
                                              dv.data_ptr(), H, Hk, L, D, T, ctx.scale, scratch.data_ptr())
            if rc:
                raise RuntimeError(f"train_attention_backward failed ({rc}) for q {tuple(q.shape)}, k {tuple(k.shape)}")
            return dq, dk, dv, None, None

    return CausalAttention


# The backward's per-thread dq partials (threads x heads x L x D floats) above this many bytes:
# SDPA instead (a 7B model's 32 heads of 128 at 4,096 tokens on 16 threads would need 1 GB).
KERNEL_MAX_PARTIALS = 256 << 20


def _kernel_applies(q: Any, k: Any, v: Any, dropout: float, is_causal: bool, attn_mask: Any) -> bool:
    import torch

    return (is_causal and attn_mask is None and not dropout and q.device.type == "cpu" and q.shape[0] == 1
            and q.dtype in (torch.bfloat16, torch.float32) and k.dtype == v.dtype == q.dtype
            and q.shape[-1] in (64, 128) and q.shape[1] % k.shape[1] == 0 and q.shape[2] == k.shape[2]
            and 4 * torch.get_num_threads() * q[0].numel() <= KERNEL_MAX_PARTIALS and _kernel() is not None)


def _sdpa(q: Any, k: Any, v: Any, dropout: float, scaling: float | None, gqa: bool, *,
          is_causal: bool = False, attn_mask: Any = None) -> Any:
    """Causal attention of one example through the C kernel where it applies (module docstring);
    else SDPA, in fp32 for bf16 inputs on a CPU of up to FP32_SEGMENT_TOKENS queries, with autocast
    off there (TRL's bf16 autocast would cast the inputs back to bf16); output in q's dtype."""
    import torch

    if _kernel_applies(q, k, v, dropout, is_causal, attn_mask):
        scale = scaling if scaling is not None else q.shape[-1] ** -0.5
        return _kernel_function().apply(q, k, v, float(scale), _kernel())
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if q.device.type != "cpu" or q.dtype != torch.bfloat16 or q.shape[2] > FP32_SEGMENT_TOKENS:
        return sdpa(q, k, v, attn_mask=attn_mask, dropout_p=dropout, scale=scaling, is_causal=is_causal,
                    enable_gqa=gqa)
    with torch.autocast("cpu", enabled=False):
        return sdpa(q.float(), k.float(), v.float(), attn_mask=attn_mask, dropout_p=dropout, scale=scaling,
                    is_causal=is_causal, enable_gqa=gqa).to(q.dtype)


def _branch_attention(qs: Any, ks: Any, vs: Any, root: int, branches: list[int], p: int,
                      dropout: float, scaling: float | None, gqa: bool) -> list[Any]:
    """One SDPA call for the branches (indices into a row's per-segment [1, heads, length, dim]
    pieces `qs`, `ks`, `vs`) of the prompt at index `root`, all with prefix length `p`: each
    attends to the prompt's first p keys and causally to itself (bottom-right aligned), padded
    to the longest branch. Batched rather than one call a branch: for 7 branches of 35 tokens
    after a 100-token prompt (9 heads, 1 thread, forward + backward) 5.2 ms in one fp32 call,
    7 x 1.4 ms in single ones, 14.7 ms in one bf16 call. Returns [1, heads, length, dim] outputs
    in the branches' order."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    lengths = [qs[i].shape[2] for i in branches]
    width, n = max(lengths), len(branches)

    def padded(pieces: Any) -> Any:  # [1, heads, length, dim] pieces -> [branches, heads, width, dim]
        return pad_sequence([pieces[i][0].transpose(0, 1) for i in branches], batch_first=True).transpose(1, 2)

    k = torch.cat([ks[root][:, :, :p].expand(n, -1, -1, -1), padded(ks)], dim=2)
    v = torch.cat([vs[root][:, :, :p].expand(n, -1, -1, -1), padded(vs)], dim=2)
    device = qs[root].device
    i = torch.arange(width, device=device)[:, None]
    j = torch.arange(p + width, device=device)[None, :]
    own = torch.tensor(lengths, device=device)[:, None, None]
    allowed = (j < p) | ((j - p <= i) & (j - p < own))  # [branches, width, p + width]
    out = _sdpa(padded(qs), k, v, dropout, scaling, gqa, attn_mask=allowed[:, None])
    return [out[b:b + 1, :, :length] for b, length in enumerate(lengths)]


def _branch_starts(position_ids: Any, batch: int, spans: list[list[tuple[int, int]]]) -> list[list[int]]:
    """Each segment's first position (0 for a prompt or a plain example, p for a branch); once per forward."""
    if _starts_memo[0] is position_ids:
        return _starts_memo[1]
    pos = position_ids.expand(batch, -1)
    out = [pos[b, [s for s, _ in row]].tolist() for b, row in enumerate(spans)]
    _starts_memo[0], _starts_memo[1] = position_ids, out
    return out


def varlen_mask(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0, kv_offset: int = 0,
                attention_mask: Any = None, local_size: int | None = None, **kwargs: Any) -> Any:
    """No 4D mask for a padding-free batch (the attention splits it by `position_ids`); transformers'
    sdpa mask for everything else (padding, a KV cache, sliding windows)."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None and local_size is None and q_length == kv_length and q_offset == 0 and kv_offset == 0:
        return None
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset,
                     kv_offset=kv_offset, attention_mask=attention_mask, local_size=local_size, **kwargs)


def use_varlen_attention(model: Any) -> Undo:
    """Switch `model` from sdpa to varlen attention; the returned `Undo` is true when it did and
    switches back (registrations included) when undone. False (unchanged) when the model uses
    another implementation (eager, flash-attention, ...), is not a plain decoder, or the
    `varlen-attention` patch is off for this transformers version."""
    from ..patches.attention import VARLEN, use_attention

    config = model.config
    if getattr(config, "_attn_implementation", None) != "sdpa" or config.get_text_config() is not config:
        return Undo(VARLEN.name)
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return Undo(VARLEN.name)
    return use_attention(model, VARLEN, NAME, varlen_attention_forward, varlen_mask)
