"""Patches `varlen-attention` and `decode-block-attention`: our attention functions registered with
transformers' AttentionInterface (and AttentionMaskInterface) and a model switched to them.

    undo = use_attention(model, VARLEN, "mathtune_varlen", attention_fn, mask_fn)
    ...
    undo.undo()   # the model's previous implementation, both registries as they were

transformers looks attention functions up by the name in `config._attn_implementation`, in the
class-wide registries `AttentionInterface._global_mapping` and `AttentionMaskInterface.
_global_mapping` (what `register()` writes to). `use_attention` writes both entries, switches the
model with `set_attn_implementation`, and its Undo switches back and restores each entry (deleted
when it was absent). Nested uses undo last-first; two threads switching models at once are not
supported.

- `varlen-attention` (`train/attention.py`): per-example causal SDPA over padding-free rows. It
  relies on transformers passing `position_ids` through to the attention function and on the
  signatures of `sdpa_attention_forward` and `sdpa_mask`.
- `decode-block-attention` (`generation/decode_attention.py`): SDPA per block of rows over the
  columns the block needs. It relies on the model forwarding an extra `decode_blocks=` keyword to
  the attention function and on `sdpa_attention_forward`'s signature.

Both verified with transformers 5.24 (and torch 2.13); outside those, `use_attention` changes
nothing and the model keeps `sdpa`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .gate import Patch
from .undo import Undo

VARLEN = Patch(
    "varlen-attention",
    "transformers: registers `mathtune_varlen` (per-example SDPA for padding-free batches) and switches "
    "the training model to it",
    {"transformers": ">=5.24,<5.25", "torch": ">=2.13,<2.14"},
)
DECODE = Patch(
    "decode-block-attention",
    "transformers: registers `mathtune_decode` (SDPA per block of rows, skipping left padding) and "
    "switches the model to it while `generate` runs",
    {"transformers": ">=5.24,<5.25", "torch": ">=2.13,<2.14"},
)

# The training models' attention: per-example SDPA for padding-free rows, transformers' sdpa for
# every other call, so decode attention may stand in for it as for sdpa while generating
VARLEN_NAME = "mathtune_varlen"
SDPA_LIKE = frozenset({"sdpa", VARLEN_NAME})


def use_attention(model: Any, patch: Patch, name: str, attention: Callable[..., Any],
                  mask: Callable[..., Any]) -> Undo:
    """Register `attention` and `mask` under `name` and switch `model` to them (see above)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    undo = Undo(patch.name)
    if not patch.supported():
        return undo
    undo.set_item(AttentionInterface._global_mapping, name, attention)
    undo.set_item(AttentionMaskInterface._global_mapping, name, mask)
    previous = model.config._attn_implementation
    try:
        model.set_attn_implementation(name)
    except Exception:
        undo.undo()
        raise
    undo.call(lambda: model.set_attn_implementation(previous))
    undo.targets = 1
    return undo
