"""The data stage: sources -> examples -> filter, dedup, decontaminate, mix -> Parquet + card.

Public API for other stages (import only these):

    from mathtune.data import build_dataset, read_split, read_blocks, Example, synth
    out = build_dataset("recipes/data/gsm8k_synth_mix.yaml", "runs/data/mix")
    train = read_split(out, "train")            # list[Example]
    extra = synth.generate(100, families=["arithmetic"], levels=[1, 2], seed=0)

CLI: `mathtune data build RECIPE [key=value ...]`, `mathtune data show DIR`.
"""

from __future__ import annotations

from . import synth
from .build import build_dataset, read_blocks, read_split
from .recipe import DataRecipe, SourceSpec
from .schema import Example

__all__ = ["DataRecipe", "Example", "SourceSpec", "build_dataset", "read_blocks", "read_split", "synth"]
