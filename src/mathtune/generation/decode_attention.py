"""Decode attention that skips the left padding of a continuous batch, block by block.

The hf backend's batch is left-padded to its longest prompt: every decode step, SDPA reads each
row's keys and values over the full width, padding included. Decode attention is memory-bound,
so those reads are time. Rows arrive in
prefill groups of similar prompt lengths, so the batch splits into a few contiguous blocks of
rows whose padding ends at about the same column; `row_blocks` picks the blocks (fewest cells
read, plus a per-call cost) and `decode_attention_forward` runs transformers' own SDPA attention
on each block over its columns only and stacks the outputs.

Skipped columns are masked for every row of the block, so each row attends to exactly the same
keys; only the summation blocking inside the kernel can differ (last bits). Padding inside a
row (between the shared prompt prefix and the row's own suffix, see `hf._prefill`) is still
read. Anything that is not a one-token decode step with blocks given falls through to `sdpa`.

Where the C kernel of `decode_kernel` is on (AVX-512, a C compiler, Linux) and takes the model's
dtype, it runs every one-token decode step instead and no row blocks are planned: it skips each
masked column itself, without reading it.

Registering the function with transformers and switching the model to it is the
`decode-block-attention` library patch (`mathtune.patches.attention`): version-gated, undone
when `block_attention` exits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

NAME = "mathtune_decode"
# One more SDPA call per layer costs about as much as reading this many (row, column) cells of a
# 576-wide model's KV cache (a per-call overhead against a per-cell read, measured on a CPU).
CALL_COST_CELLS = 400


def decode_attention_forward(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                             decode_blocks: list[tuple[int, int, int]] | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers attention-interface function: the C decode kernel where it is built and takes
    the inputs (it skips every masked column itself), else SDPA per block of rows (r0, r1, first
    column)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from . import decode_kernel

    if (query.shape[2] == 1 and not kwargs.get("dropout") and kwargs.get("softcap") is None
            and kwargs.get("position_bias") is None and decode_kernel.available()
            and decode_kernel.supports(query, key, value, attention_mask)):
        scaling = kwargs.get("scaling")
        return decode_kernel.attention(query, key, value, attention_mask,
                                       query.shape[-1] ** -0.5 if scaling is None else scaling), None
    if (decode_blocks is None or len(decode_blocks) < 2 or query.shape[2] != 1 or attention_mask is None
            or attention_mask.shape[0] != query.shape[0] or decode_blocks[-1][1] != query.shape[0]):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    outs = [
        sdpa_attention_forward(module, query[r0:r1], key[r0:r1, :, c0:], value[r0:r1, :, c0:],
                               attention_mask[r0:r1, ..., c0:], **kwargs)[0]
        for r0, r1, c0 in decode_blocks
    ]
    return torch.cat(outs), None


def row_blocks(mask: Any, max_blocks: int = 4, call_cost: int | None = None) -> list[tuple[int, int, int]]:
    """Split the rows of a left-padded [rows, width] bool mask into at most `max_blocks` contiguous
    blocks (r0, r1, first column any of its rows needs), minimizing cells read + `call_cost`
    (default `CALL_COST_CELLS`) per block, by dynamic programming over the rows."""
    call_cost = CALL_COST_CELLS if call_cost is None else call_cost
    rows, width = mask.shape
    if rows == 0:
        return []
    first = [int(i) for i in mask.int().argmax(dim=1).tolist()]
    inf = float("inf")
    # best[k][j]: least cost of rows [0, j) in k blocks; cut[k][j]: where the last block starts
    best = [[inf] * (rows + 1) for _ in range(max_blocks + 1)]
    cut = [[0] * (rows + 1) for _ in range(max_blocks + 1)]
    best[0][0] = 0.0
    for k in range(1, max_blocks + 1):
        for j in range(1, rows + 1):
            lo = width
            for i in range(j - 1, -1, -1):  # last block is rows [i, j)
                lo = min(lo, first[i])
                if best[k - 1][i] < inf:
                    cost = best[k - 1][i] + (j - i) * (width - lo) + call_cost
                    if cost < best[k][j]:
                        best[k][j], cut[k][j] = cost, i
    k = min(range(1, max_blocks + 1), key=lambda n: best[n][rows])
    blocks, j = [], rows
    while k:
        i = cut[k][j]
        blocks.append((i, j, min(first[i:j])))
        j, k = i, k - 1
    return blocks[::-1]


@contextlib.contextmanager
def block_attention(model: Any, enabled: bool = True) -> Iterator[bool]:
    """Within the block, a plain decoder running `sdpa` (or training's varlen attention, which is
    sdpa outside padding-free batches: a GRPO policy) runs `decode_attention_forward` instead;
    yields whether it does (the caller then passes `decode_blocks=` to decode steps, unless
    `kernel_takes(model)`)."""
    from transformers.masking_utils import sdpa_mask

    from ..patches.attention import DECODE, SDPA_LIKE, use_attention
    from ..patches.undo import Undo

    config = getattr(model, "config", None)
    enabled = (enabled and config is not None and getattr(config, "_attn_implementation", None) in SDPA_LIKE
               and config.get_text_config() is config and hasattr(model, "set_attn_implementation"))
    undo = use_attention(model, DECODE, NAME, decode_attention_forward, sdpa_mask) if enabled else Undo(DECODE.name)
    with undo:  # back to sdpa, registrations as they were
        yield bool(undo)


def kernel_takes(model: Any) -> bool:
    """Whether the C kernel of `decode_kernel` runs this model's decode steps inside
    `block_attention`: it skips masked columns itself, so no row blocks need planning (~1.3 ms a
    batch change at 64 rows)."""
    from . import decode_kernel

    return str(getattr(model, "dtype", "")).removeprefix("torch.") in decode_kernel.dtypes()
