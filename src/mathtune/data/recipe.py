"""The data recipe: which sources to mix, how to filter, dedup, decontaminate and split.

A recipe is YAML validated into these frozen sections (unknown keys are errors). `kind: sft`
(the default) builds train/validation Parquet files of `Example`s; `kind: cpt` builds a packed
continued-pretraining corpus from `.tex`/arXiv archives/Markdown/text (see `corpus:`).

    mathtune data build recipes/data/gsm8k_synth_mix.yaml seed=1 mix.size=5000
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..config import Section


class SourceSpec(Section):
    """One source. `name` is a registered source (gsm8k, math, numina-math-cot, numina-qwq-cot,
    magpie-reasoning, nemotron-math, gsm-hard, synth) or `file` for any JSONL/CSV/Parquet file or
    directory given by `path`."""

    name: str
    split: str = "train"
    limit: int | None = Field(default=None, ge=1, description="keep at most this many examples")
    weight: float = Field(default=1.0, gt=0, description="share of mix.size when mixing")
    fallbacks: list[str | SourceSpec] = Field(default_factory=list, description="tried in order when unavailable")
    data_dir: str | None = Field(default=None, description="local dir laid out as <name>/<split>.jsonl")
    path: str | None = Field(default=None, description="explicit local file or directory")
    mapping: dict[str, str] = Field(default_factory=dict, description="expected column -> column in the file")
    streaming: bool | None = Field(default=None, description="stream from the Hub (default: per source)")
    seed: int | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="source-specific options")


class FilterSpec(Section):
    min_tokens: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    tokenizer: str | None = Field(default=None, description="model name or path; whitespace words if unset")
    domains: list[str] | None = None
    min_difficulty: int | None = Field(default=None, ge=1, le=5)
    max_difficulty: int | None = Field(default=None, ge=1, le=5)
    require_answer: bool = Field(default=True, description="drop examples without a gradable final answer")
    verify_answers: bool = Field(default=False, description="drop examples whose solution does not grade correct against its answer")


class DedupSpec(Section):
    exact: bool = True
    near: bool = True
    threshold: float = Field(default=0.85, gt=0, le=1, description="MinHash Jaccard for near-duplicates")
    num_perm: int = Field(default=64, ge=16)


class DecontamSpec(Section):
    enabled: bool = True
    benchmarks: list[str] | Literal["all"] = "all"
    data_dir: str | None = Field(default=None, description="benchmark dir (<name>/test.jsonl); Hub if unset")
    ngram: int = Field(default=8, ge=3)
    ngram_overlap: float = Field(default=0.5, gt=0, le=1, description="drop when this share of an example's n-grams is in a test set")
    minhash_threshold: float = Field(default=0.6, gt=0, le=1)
    num_perm: int = Field(default=64, ge=16)
    on_unavailable: Literal["error", "warn"] = "warn"


class MixSpec(Section):
    size: int | None = Field(default=None, ge=1, description="total examples; split across sources by weight")
    stratify_by: Literal["difficulty", "domain", "source"] | None = None
    curriculum: bool = Field(default=False, description="order train easy -> hard")


class SplitSpec(Section):
    validation: float = Field(default=0.05, ge=0, description="fraction (<1) or count (>=1) for validation")


class CorpusSpec(Section):
    inputs: list[str] = Field(default_factory=list, description="files or directories (.tex, .tar.gz, .md, .txt, .pdf)")
    tokenizer: str | None = Field(default=None, description="model name or path (default smollm2-135m-instruct)")
    block_size: int = Field(default=2048, ge=8)
    keep_last: bool = Field(default=False, description="keep the final partial block, padded")
    keep_floats: bool = Field(default=False, description="keep figure/table environments")
    dedup: bool = True


class DataRecipe(Section):
    kind: Literal["sft", "cpt"] = "sft"
    sources: list[SourceSpec] = Field(default_factory=list)
    filters: FilterSpec = FilterSpec()
    dedup: DedupSpec = DedupSpec()
    decontaminate: DecontamSpec = DecontamSpec()
    mix: MixSpec = MixSpec()
    split: SplitSpec = SplitSpec()
    corpus: CorpusSpec = CorpusSpec()
    data_dir: str | None = Field(default=None, description="local data dir for every source and benchmark")
    seed: int = 0
    output: str | None = Field(default=None, description="output directory (or pass --out)")


SourceSpec.model_rebuild()
