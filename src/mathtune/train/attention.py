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

Anything that is not a padding-free batch (a padding mask, a KV cache, decoding) falls through
to transformers' own `sdpa` path unchanged, so the same model also evaluates and generates.
`use_varlen_attention(model)` switches a model from `sdpa` to it; training does that when the
batches are padding-free. Registering it with transformers and switching the model is the
`varlen-attention` library patch (`mathtune.patches.attention`): version-gated, and undone by
the `Undo` it returns.
"""

from __future__ import annotations

from typing import Any

from ..patches.attention import VARLEN_NAME as NAME
from ..patches.undo import Undo

_segments_memo: list[Any] = [None, None]  # [position_ids tensor, its segments]: computed once per forward


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
    rows = []
    for b, row_spans in enumerate(spans):
        parts = [
            torch.nn.functional.scaled_dot_product_attention(
                query[b:b + 1, :, s:e], key[b:b + 1, :, s:e], value[b:b + 1, :, s:e],
                dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=gqa)
            for s, e in row_spans
        ]
        rows.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=2))
    out = rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)
    return out.transpose(1, 2).contiguous(), None


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
