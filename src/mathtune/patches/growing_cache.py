"""Patch `growing-kv-cache`: a subclass of transformers' `DynamicLayer` whose keys/values live in a
preallocated buffer written in place.

transformers' DynamicLayer `torch.cat`s the whole cache at every step (a full copy per token);
`_GrowingLayer` keeps keys/values in a buffer with spare room and returns views of the filled
part. It overrides DynamicLayer's `lazy_initialization`, `update`, `get_seq_length` and
`batch_select_indices`, relying on how transformers 5.24 calls them and on the attributes
`keys`, `values`, `is_initialized`, `dtype`, `device` that the rest of `Cache` reads.

`layer_class()` is the class `generation/kv_cache.py` builds caches from: `_GrowingLayer` on the
verified transformers versions, transformers' own `DynamicLayer` elsewhere (the plain path; the
helpers there handle both). The subclass changes no library object, so there is nothing to
undo: caches built while the gate is shut are plain.
"""

from __future__ import annotations

import functools
from typing import Any

from .gate import Patch

PATCH = Patch(
    "growing-kv-cache",
    "transformers: subclasses cache_utils.DynamicLayer (lazy_initialization, update, get_seq_length, "
    "batch_select_indices) for the hf backend's caches",
    {"transformers": ">=5.24,<5.25"},
)


def layer_class() -> type:
    """`_GrowingLayer` where verified, else transformers' `DynamicLayer`."""
    if PATCH.supported():
        return _growing_layer_class()
    from transformers.cache_utils import DynamicLayer

    return DynamicLayer


@functools.cache
def _growing_layer_class() -> type:
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

            if self.get_seq_length() == 0 or self._drop_rows(indices):
                return
            # any other selection (repeats, reordering): the filled part into new buffers
            kbuf = torch.empty((len(indices), *self.kbuf.shape[1:]), dtype=self.dtype, device=self.device)
            vbuf = torch.empty_like(kbuf)
            torch.index_select(self.keys, 0, indices, out=kbuf[:, :, : self.n])
            torch.index_select(self.values, 0, indices, out=vbuf[:, :, : self.n])
            self.kbuf, self.vbuf = kbuf, vbuf
            self.keys, self.values = kbuf[:, :, : self.n], vbuf[:, :, : self.n]

        def _drop_rows(self, indices: Any) -> bool:
            """Keep rows `indices` when they only drop rows (strictly increasing), moving the kept
            rows down in these buffers, in order; each copy is between disjoint rows (a source
            row lies at or after its target, and a run moves in chunks no longer than its
            shift). False, with nothing done, for any other selection. Dropped rows' memory stays
            held until the next merge or growth reallocates. No new buffer: `index_select` into a
            fresh one faults in every page of it. Dropping 3-4 of 64 rows at 300 positions, 30
            bf16 layers (AMD Zen 5, 2 cores): the first compaction of a process 143-205 -> 38-40
            ms, later ones 41-57 -> 33-36 ms."""
            idx = [int(i) for i in indices.tolist()]
            if not idx or any(b <= a for a, b in zip(idx, idx[1:], strict=False)) or idx[-1] >= self.kbuf.shape[0]:
                return False
            j = 0
            while j < len(idx):
                run = 1  # rows j .. j + run - 1 come from the consecutive rows idx[j] ..
                while j + run < len(idx) and idx[j + run] == idx[j] + run:
                    run += 1
                shift = idx[j] - j
                for c in range(0, run, shift) if shift else ():
                    n = min(shift, run - c)
                    for buf in (self.kbuf, self.vbuf):
                        buf[j + c : j + c + n, :, : self.n].copy_(buf[idx[j] + c : idx[j] + c + n, :, : self.n])
                j += run
            self.kbuf, self.vbuf = self.kbuf[: len(idx)], self.vbuf[: len(idx)]
            self.keys, self.values = self.kbuf[:, :, : self.n], self.vbuf[:, :, : self.n]
            return True

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
