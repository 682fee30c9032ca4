"""The cpt stage: continued pretraining on raw token blocks, every token in the loss.

Blocks come from a built corpus (`blocks.parquet`, column `input_ids`, written by
`mathtune data build` with a `kind: cpt` recipe, e.g. LaTeX papers) or from raw .txt/.tex/.md
text, which is tokenized here, joined with EOS and cut into `data.block_size` blocks. Labels are
the input ids (no prompt masking); blocks are all the same length, so no padding or packing
is needed. Typical CPT recipes also train embed_tokens/lm_head at a lower learning rate
(`method.train_embeddings`, `method.embedding_lr`).
"""

from __future__ import annotations

from typing import Any

from ..errors import MathtuneError

Row = dict[str, Any]


def cpt_dataset(rows: list[Row], tokenizer: Any, block_size: int) -> Any:
    """Token blocks with labels = input_ids (no masking): raw continued pretraining."""
    from datasets import Dataset

    blocks = [r["input_ids"] for r in rows if "input_ids" in r]
    texts = [r["text"] for r in rows if "text" in r]
    if texts:
        stream: list[int] = []
        for t in texts:
            stream += tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        blocks += [stream[i:i + block_size] for i in range(0, len(stream) - block_size + 1, block_size)]
    if not blocks:
        raise MathtuneError(f"the CPT corpus is shorter than one block of {block_size} tokens",
                            "add text or lower data.block_size")
    return Dataset.from_dict({"input_ids": blocks, "labels": [list(b) for b in blocks]})
