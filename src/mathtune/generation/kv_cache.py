"""The KV cache of the hf backend: preallocated per-layer buffers written in place.

transformers' DynamicLayer `torch.cat`s the whole cache at every step (a full copy per token);
`_GrowingLayer` keeps keys/values in a buffer with spare room and returns views of the filled
part. Helpers drop finished rows, trim all-padding columns and merge batches (continuous
batching). Used only by `mathtune.generation.hf`.
"""

from __future__ import annotations

from typing import Any


def growing_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class _GrowingLayer(DynamicLayer):
        """A DynamicLayer whose keys/values live in a preallocated buffer written in place.

        `keys`/`values` are views of the filled part; the buffer grows by `extra` tokens when
        full. Appending one token costs one small copy instead of re-concatenating the cache.
        """

        extra = 256  # growth step (tokens) when the buffer is full
        capacity = 0  # initial size hint

        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
            self.dtype, self.device = key_states.dtype, key_states.device
            self.n = 0
            self.kbuf = self.vbuf = None
            self.is_initialized = True

        def _reserve(self, need: int) -> None:
            import torch

            if self.kbuf is not None and need <= self.kbuf.shape[2]:
                return
            b, h, _, d = self.keys.shape if self.kbuf is not None else self._shape
            cap = max(need + self.extra, self.capacity)
            kbuf = torch.empty((b, h, cap, d), dtype=self.dtype, device=self.device)
            vbuf = torch.empty_like(kbuf)
            if self.kbuf is not None:
                kbuf[:, :, : self.n] = self.kbuf[:, :, : self.n]
                vbuf[:, :, : self.n] = self.vbuf[:, :, : self.n]
            self.kbuf, self.vbuf = kbuf, vbuf

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            self._shape = key_states.shape
            t = key_states.shape[2]
            self._reserve(self.n + t)
            self.kbuf[:, :, self.n : self.n + t] = key_states
            self.vbuf[:, :, self.n : self.n + t] = value_states
            self.n += t
            self.keys, self.values = self.kbuf[:, :, : self.n], self.vbuf[:, :, : self.n]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.n if self.is_initialized else 0

        def batch_select_indices(self, indices: Any) -> None:
            import torch

            if self.get_seq_length() > 0:  # copy only the filled part of the buffer
                shape = (len(indices), *self.kbuf.shape[1:])
                kbuf = torch.empty(shape, dtype=self.dtype, device=self.device)
                vbuf = torch.empty_like(kbuf)
                torch.index_select(self.keys, 0, indices, out=kbuf[:, :, : self.n])
                torch.index_select(self.values, 0, indices, out=vbuf[:, :, : self.n])
                self.kbuf, self.vbuf = kbuf, vbuf
                self.keys, self.values = kbuf[:, :, : self.n], vbuf[:, :, : self.n]

        def drop_left(self, m: int) -> None:
            """Forget the first `m` positions (columns that are padding for every row)."""
            self.kbuf, self.vbuf = self.kbuf[:, :, m:], self.vbuf[:, :, m:]
            self.n -= m
            self.keys, self.values = self.kbuf[:, :, : self.n], self.vbuf[:, :, : self.n]

        def set_buffers(self, kbuf: Any, vbuf: Any, n: int) -> None:
            self.kbuf, self.vbuf, self.n = kbuf, vbuf, n
            self.dtype, self.device = kbuf.dtype, kbuf.device
            self.is_initialized = True
            self.keys, self.values = kbuf[:, :, :n], vbuf[:, :, :n]

    return _GrowingLayer


_LAYER_CLASS: type | None = None


def new_cache(model: Any, capacity: int) -> Any:
    """A cache of growing layers, preallocated for `capacity` positions."""
    from transformers.cache_utils import Cache

    global _LAYER_CLASS
    if _LAYER_CLASS is None:
        _LAYER_CLASS = growing_layer_class()
    n_layers = model.config.get_text_config(decoder=True).num_hidden_layers
    layers = [_LAYER_CLASS() for _ in range(n_layers)]
    for layer in layers:
        layer.capacity = capacity
    return Cache(layers=layers)


def trim_left(cache: Any, mask: Any) -> tuple[Any, Any]:
    """Drop leading columns that are padding in every remaining row."""
    any_real = mask.any(dim=0)
    first = int(any_real.int().argmax()) if bool(any_real.any()) else 0
    if first > 0:
        for layer in cache.layers:
            layer.drop_left(first)
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
    for i, layer in enumerate(first.layers):
        _, h, _, d = layer.kbuf.shape
        # only the left padding must be zeros (finite: masked scores still multiply their
        # values); the free room is written before it is read, so it is not cleared
        kbuf = layer.kbuf.new_empty((rows[-1], h, width + room, d))
        vbuf = torch.empty_like(kbuf)
        for (cache, m), r0, r1 in zip(parts, rows[:-1], rows[1:], strict=True):
            src = cache.layers[i]
            pad = width - m.shape[1]
            for buf, filled in ((kbuf, src.keys), (vbuf, src.values)):
                buf[r0:r1, :, :pad] = 0
                buf[r0:r1, :, pad:width] = filled
        layer.set_buffers(kbuf, vbuf, width)
    return first, out_mask
