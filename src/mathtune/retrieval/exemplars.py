"""Solved examples from a training split, retrieved as few-shot exemplars for a problem.

    from mathtune.retrieval import ExemplarStore
    store = ExemplarStore.from_path("runs/data/mix")          # a built dataset dir (train split)
    store = ExemplarStore.from_path("my_solved.jsonl")        # any file `mathtune.data.read_examples` reads
    store, drops = store.decontaminate({"gsm8k": test_problem_texts})
    for ex in store.search(problem_text, k=3, exclude_ids={problem_id}):
        print(ex.problem, ex.solution)

A problem never retrieves itself: hits whose id is in `exclude_ids`, or whose normalised problem
text equals the query's, are masked out before the top k is taken. `decontaminate` drops every
exemplar the data stage's `Decontaminator` matches to a benchmark test problem (exact,
n-gram overlap or MinHash near-copy), so a benchmark's own items (or paraphrases of them) never
reach its prompts.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .bm25 import BM25Index

if TYPE_CHECKING:
    from ..data import Example

_KEY = re.compile(r"[a-z0-9]+|[+\-*/=^<>%!]")


def problem_key(text: str) -> str:
    """Lowercased words, numbers and operators: LaTeX `$`, braces and spacing ignored."""
    return " ".join(_KEY.findall(text.lower()))


class ExemplarStore:
    """Solved `Example`s with a BM25 index over their problem text."""

    def __init__(self, examples: Sequence[Example]) -> None:
        self.examples = [e for e in examples if e.problem.strip() and e.solution.strip()]
        self.index = BM25Index([e.problem for e in self.examples])
        self._keys: dict[str, list[int]] = {}
        for i, e in enumerate(self.examples):
            self._keys.setdefault(problem_key(e.problem), []).append(i)
        self._ids: dict[str, list[int]] = {}
        for i, e in enumerate(self.examples):
            self._ids.setdefault(e.id, []).append(i)

    @classmethod
    def from_path(cls, path: str | Path, split: str = "train") -> ExemplarStore:
        """A built dataset directory (its `split`, default train) or any example file."""
        from ..data import read_examples, read_split

        path = Path(path)
        if path.is_dir() and (path / f"{split}.parquet").exists():
            return cls(read_split(path, split))
        return cls(read_examples(path))

    def __len__(self) -> int:
        return len(self.examples)

    def decontaminate(self, tests: Mapping[str, Sequence[str]], **settings: Any) -> tuple[ExemplarStore, list[Any]]:
        """A store without the exemplars that match a test problem of `tests` ({benchmark:
        [problem, ...]}), and the drops (reason, matched benchmark:index). `settings` go to
        `mathtune.data.Decontaminator` (n, ngram_overlap, minhash_threshold, num_perm)."""
        from ..data import Decontaminator

        if not any(tests.values()) or not self.examples:
            return self, []
        kept, drops = Decontaminator(dict(tests), **settings).filter(self.examples)
        return ExemplarStore(kept), drops

    def search(self, problem: str, k: int = 3, exclude_ids: Collection[str] = ()) -> list[Example]:
        """The `k` most similar solved examples, never `problem` itself (by text or by id)."""
        masked = set(self._keys.get(problem_key(problem), ()))
        for pid in exclude_ids:
            masked.update(self._ids.get(pid, ()))
        return [self.examples[i] for i, _ in self.index.search(problem, k, exclude=masked)]
