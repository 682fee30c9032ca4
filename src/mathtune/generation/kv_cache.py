"""The KV cache of the hf backend: preallocated per-layer buffers written in place.

transformers' DynamicLayer `torch.cat`s the whole cache at every step (a full copy per token);
the `growing-kv-cache` patch (`mathtune.patches.growing_cache`) keeps keys/values in a buffer with
spare room and returns views of the filled part. Helpers drop finished rows, trim all-padding
columns and merge batches (continuous batching), on growing layers or, where the patch is off,
on transformers' own DynamicLayer (through its `keys`/`values`). Used only by
`mathtune.generation.hf`.
"""

from __future__ import annotations

from typing import Any


def new_cache(model: Any, capacity: int) -> Any:
    """A cache of growing layers preallocated for `capacity` positions (plain DynamicLayers
    outside the patch's verified transformers versions)."""
    from transformers.cache_utils import Cache

    from ..patches.growing_cache import layer_class

    cls = layer_class()
    n_layers = model.config.get_text_config(decoder=True).num_hidden_layers
    layers = [cls() for _ in range(n_layers)]
    for layer in layers:
        layer.capacity = capacity
    return Cache(layers=layers)


def _drop_left(layer: Any, m: int) -> None:
    if hasattr(layer, "drop_left"):
        layer.drop_left(m)
    else:  # a plain DynamicLayer
        layer.keys, layer.values = layer.keys[:, :, m:], layer.values[:, :, m:]


def _set_filled(layer: Any, kbuf: Any, vbuf: Any, n: int) -> None:
    if hasattr(layer, "set_buffers"):
        layer.set_buffers(kbuf, vbuf, n)
    else:  # a plain DynamicLayer (already initialized: it was prefilled)
        layer.keys, layer.values = kbuf[:, :, :n], vbuf[:, :, :n]


def trim_left(cache: Any, mask: Any) -> tuple[Any, Any]:
    """Drop leading columns that are padding in every remaining row."""
    any_real = mask.any(dim=0)
    first = int(any_real.int().argmax()) if bool(any_real.any()) else 0
    if first > 0:
        for layer in cache.layers:
            _drop_left(layer, first)
        mask = mask[:, first:]
    return cache, mask


def merge(parts: list[tuple[Any, Any]], room: int) -> tuple[Any, Any]:
    """Stack batches' (cache, mask) pairs along the batch axis in one allocation, left-padding
    the shorter ones; `room` is the free space to preallocate for new tokens. The first cache
    object is reused for the result."""
    import torch

    if len(parts) == 1:
        return parts[0]
    masks = [m for _, m in parts]
    width = max(m.shape[1] for m in masks)
    rows = [0]
    for m in masks:
        rows.append(rows[-1] + m.shape[0])
    out_mask = masks[0].new_zeros((rows[-1], width))
    for m, r0, r1 in zip(masks, rows[:-1], rows[1:], strict=True):
        out_mask[r0:r1, width - m.shape[1]:] = m
    first = parts[0][0]
    growing = hasattr(first.layers[0], "set_buffers")  # plain DynamicLayers concatenate: no room
    for i, layer in enumerate(first.layers):
        _, h, _, d = layer.keys.shape
        # only the left padding must be zeros (finite: masked scores still multiply their
        # values); the free room is written before it is read, so it is not cleared
        kbuf = layer.keys.new_empty((rows[-1], h, width + (room if growing else 0), d))
        vbuf = torch.empty_like(kbuf)
        for (cache, m), r0, r1 in zip(parts, rows[:-1], rows[1:], strict=True):
            src = cache.layers[i]
            pad = width - m.shape[1]
            for buf, filled in ((kbuf, src.keys), (vbuf, src.values)):
                buf[r0:r1, :, :pad] = 0
                buf[r0:r1, :, pad:width] = filled
        _set_filled(layer, kbuf, vbuf, width)
    return first, out_mask
