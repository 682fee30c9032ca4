"""A BM25 index over LaTeX-aware tokens, built on the `bm25s` library (sparse, numpy).

    from mathtune.retrieval.bm25 import BM25Index
    index = BM25Index(["x^2 + 1", r"\frac{a}{b}"])
    index.search(r"\frac{1}{2}", k=1)          # [(1, 1.23)]
    index.search("x^2", k=2, exclude={0})      # never returns document 0

bm25s scores a query against every document at once (one sparse column sum), so a query over
10,000 documents takes well under a millisecond; see benchmarks/retrieval.py. `exclude` takes
document numbers that must not be returned (the self-retrieval guard).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import numpy as np

from .tokenize import tokenize


class BM25Index:
    """BM25 (Lucene variant, k1=1.5, b=0.75) over `documents`, tokenized with `tokenizer`."""

    def __init__(self, documents: Sequence[str], tokenizer: Callable[[str], list[str]] = tokenize,
                 k1: float = 1.5, b: float = 0.75) -> None:
        import bm25s

        self.tokenizer = tokenizer
        self.size = len(documents)
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        corpus = [tokenizer(d) or [""] for d in documents]
        if self.size:
            self._bm25.index(corpus, show_progress=False)
        self._vocab: dict[str, int] = dict(self._bm25.vocab_dict or {}) if self.size else {}

    def __len__(self) -> int:
        return self.size

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of `query` against every document (zeros when no query token is known)."""
        ids = [self._vocab[t] for t in self.tokenizer(query) if t in self._vocab and t != ""]
        if not ids or not self.size:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._bm25.get_scores_from_ids(ids), dtype=np.float32)

    def search(self, query: str, k: int = 3, exclude: Collection[int] = ()) -> list[tuple[int, float]]:
        """The `k` best (document number, score) pairs with a positive score, best first."""
        if k <= 0 or not self.size:
            return []
        s = self.scores(query)
        if exclude:
            s = s.copy()
            s[np.fromiter(exclude, dtype=np.int64)] = 0.0
        k = min(k, self.size)
        top = np.argpartition(-s, k - 1)[:k]
        top = top[np.argsort(-s[top], kind="stable")]
        return [(int(i), float(s[i])) for i in top if s[i] > 0]
