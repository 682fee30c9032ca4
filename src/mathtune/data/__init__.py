"""The data stage: sources -> examples -> filter, dedup, decontaminate, mix -> Parquet + card.

Public API for other stages (import only these):

    from mathtune.data import build_dataset, read_split, read_blocks, Example, synth
    out = build_dataset("recipes/data/gsm8k_synth_mix.yaml", "runs/data/mix")
    train = read_split(out, "train")            # list[Example]
    extra = synth.generate(100, families=["arithmetic"], levels=[1, 2], seed=0)
    rows = read_examples("my.jsonl")            # any local file, the `file` source's layouts
    ordered = curriculum_order(train, random.Random(0), pacing="baby-steps")
    pairs = read_pairs("pairs.jsonl")          # preference pairs (list[Pair]); make_pairs samples + grades

CLI: `mathtune data build RECIPE [key=value ...]`, `mathtune data show DIR`,
`mathtune data pairs --model M --data SRC -o OUT.jsonl`.
"""

from __future__ import annotations

from . import synth
from .build import build_dataset, read_blocks, read_card, read_split
from .dedup import Decontaminator
from .mix import PACINGS, Pacing, curriculum_order, train_validation_split
from .pairs import Pair, PairsResult, make_pairs, read_pairs, split_pairs, write_pairs
from .recipe import CorpusSpec, DataRecipe, SourceSpec
from .schema import Example
from .sources import examples_from_rows, read_examples

__all__ = ["PACINGS", "CorpusSpec", "DataRecipe", "Decontaminator", "Example", "Pacing", "Pair", "PairsResult",
           "SourceSpec", "build_dataset", "curriculum_order", "examples_from_rows", "make_pairs", "read_blocks",
           "read_card", "read_examples", "read_pairs", "read_split", "split_pairs", "synth", "train_validation_split",
           "write_pairs"]
