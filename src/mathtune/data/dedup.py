"""Exact and near-duplicate removal, and decontamination against benchmark test sets.

Text is normalised to lowercase word and number tokens plus math operators (so "41 - 18" and
"41 + 18" stay different, while LaTeX `$`, braces and spacing are ignored). Near-duplicates are
found with MinHash LSH over word 3-gram shingles: the scheme of datasketch's MinHash and
MinHashLSH, vectorised with numpy over all documents at once (datasketch itself is not a
dependency: side by side on the shared GSM8K + MATH problems it was slower and caught no more
planted near-copies). An example is contaminated when its problem
  * equals a test problem after normalisation (`exact`), or
  * shares at least `ngram_overlap` of its n-grams with the test sets, or covers that share of
    one test problem's n-grams (`ngram`, default normalised 8-grams: catches copies embedded in
    longer text), or
  * has an estimated 3-gram Jaccard similarity >= `minhash_threshold` with a test problem
    (`minhash`: paraphrases with small edits).
Every drop is recorded with its reason and the matching benchmark item.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .schema import Example

TOKEN_RE = re.compile(r"[a-z0-9]+|[+\-*/=^<>%]")
_LATEX_OPS = {r"\times": " * ", r"\cdot": " * ", r"\div": " / ", r"\le": " <= ", r"\ge": " >= "}


def tokens(text: str) -> list[str]:
    text = text.lower()
    for k, v in _LATEX_OPS.items():
        text = text.replace(k, v)
    return TOKEN_RE.findall(text)


def normalize(text: str) -> str:
    return " ".join(tokens(text))


def ngrams(toks: Sequence[str], n: int) -> list[str]:
    """Word n-grams; a text shorter than n is its own single gram."""
    if len(toks) < n:
        return [" ".join(toks)] if toks else []
    return [" ".join(toks[i : i + n]) for i in range(len(toks) - n + 1)]


def shingles(toks: Sequence[str]) -> list[str]:
    return sorted(set(ngrams(toks, 3))) or [""]


_MERSENNE = (1 << 61) - 1
_MAX32 = (1 << 32) - 1


class MinHasher:
    """Vectorised MinHash (the affine-permutation scheme datasketch uses), computed for many
    documents at once with numpy; shingles are hashed with crc32 so signatures are the same in
    every process and run."""

    def __init__(self, num_perm: int = 64, seed: int = 1) -> None:
        gen = np.random.RandomState(seed)
        self.num_perm = num_perm
        self.a = gen.randint(1, _MERSENNE, size=num_perm, dtype=np.uint64)
        self.b = gen.randint(0, _MERSENNE, size=num_perm, dtype=np.uint64)

    def signatures(self, docs: Sequence[Sequence[str]], chunk: int = 20_000) -> np.ndarray:
        hashed = [np.fromiter((zlib.crc32(g.encode("utf-8")) for g in d), dtype=np.uint64, count=len(d)) for d in docs]
        out = np.empty((len(docs), self.num_perm), dtype=np.uint64)
        start = 0
        while start < len(docs):
            end, total = start, 0
            while end < len(docs) and (total == 0 or total + len(hashed[end]) <= chunk):
                total += len(hashed[end])
                end += 1
            h = np.concatenate(hashed[start:end])[:, None]
            with np.errstate(over="ignore"):
                vals = ((h * self.a + self.b) % np.uint64(_MERSENNE)) & np.uint64(_MAX32)
            offsets = np.cumsum([0] + [len(x) for x in hashed[start : end - 1]])
            out[start:end] = np.minimum.reduceat(vals, offsets, axis=0)
            start = end
        return out


def jaccard(s1: np.ndarray, s2: np.ndarray) -> float:
    """Estimated Jaccard similarity of two MinHash signatures."""
    return float(np.count_nonzero(s1 == s2)) / len(s1)


def _area(y: np.ndarray, x: np.ndarray) -> float:
    """The trapezoid-rule integral of y over x, written out: numpy 2 names it `trapezoid`,
    numpy 1 only `trapz` (gone from numpy 2.4), and pyproject allows both."""
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


@functools.cache
def _band_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands x rows minimising false positives + false negatives around `threshold` (as in
    datasketch's MinHashLSH)."""
    xs = np.linspace(0, 1, 201)
    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1 - (1 - xs**r) ** b
            fp = _area(p[xs <= threshold], xs[xs <= threshold])
            fn = _area(1 - p[xs >= threshold], xs[xs >= threshold])
            if fp + fn < best_err:
                best, best_err = (b, r), fp + fn
    return best


class LSHIndex:
    """Banded locality-sensitive hashing over MinHash signatures."""

    def __init__(self, threshold: float, num_perm: int) -> None:
        self.bands, self.rows = _band_params(threshold, num_perm)
        self.tables: list[dict[bytes, list[int]]] = [{} for _ in range(self.bands)]

    def _keys(self, sig: np.ndarray) -> list[bytes]:
        return [sig[i * self.rows : (i + 1) * self.rows].tobytes() for i in range(self.bands)]

    def insert(self, key: int, sig: np.ndarray) -> None:
        for table, k in zip(self.tables, self._keys(sig), strict=True):
            table.setdefault(k, []).append(key)

    def query(self, sig: np.ndarray) -> set[int]:
        found: set[int] = set()
        for table, k in zip(self.tables, self._keys(sig), strict=True):
            found.update(table.get(k, ()))
        return found


@dataclass(frozen=True)
class Drop:
    id: str
    source: str
    reason: str  # exact_duplicate | near_duplicate | exact | ngram | minhash
    matched: str  # the kept example id, or benchmark:index
    score: float
    problem: str

    def as_dict(self) -> dict:
        d = asdict(self)
        d["problem"] = self.problem[:160]
        return d


def exact_dedup(examples: list[Example]) -> tuple[list[Example], list[Drop]]:
    """Keep the first example of each normalised problem text."""
    seen: dict[str, str] = {}
    kept, drops = [], []
    for e in examples:
        key = normalize(e.problem)
        if key in seen:
            drops.append(Drop(e.id, e.source, "exact_duplicate", seen[key], 1.0, e.problem))
        else:
            seen[key] = e.id
            kept.append(e)
    return kept, drops


def near_dedup(
    examples: list[Example], threshold: float, num_perm: int = 64, skip_sources: Sequence[str] = ()
) -> tuple[list[Example], list[Drop]]:
    """Drop examples whose 3-gram Jaccard with an earlier kept example is >= threshold.

    Sources in `skip_sources` (templated synthetic data, where problems differ only in their
    numbers) are neither dropped nor used as references."""
    cand = [i for i, e in enumerate(examples) if e.source not in skip_sources]
    sigs = MinHasher(num_perm).signatures([shingles(tokens(examples[i].problem)) for i in cand])
    lsh = LSHIndex(threshold, num_perm)
    dropped: dict[int, Drop] = {}
    for row, i in enumerate(cand):
        sims = [(jaccard(sigs[row], sigs[j]), j) for j in lsh.query(sigs[row])]
        best = max(sims, default=None)
        if best is not None and best[0] >= threshold:
            e = examples[i]
            dropped[i] = Drop(e.id, e.source, "near_duplicate", examples[cand[best[1]]].id, round(best[0], 3), e.problem)
        else:
            lsh.insert(row, sigs[row])
    return [e for i, e in enumerate(examples) if i not in dropped], list(dropped.values())


class Decontaminator:
    """An index over benchmark test problems; `match(text)` says whether and why a text is
    contaminated."""

    def __init__(
        self,
        tests: dict[str, list[str]],
        n: int = 8,
        ngram_overlap: float = 0.5,
        minhash_threshold: float = 0.6,
        num_perm: int = 64,
    ) -> None:
        self.n, self.overlap, self.mh_threshold, self.num_perm = n, ngram_overlap, minhash_threshold, num_perm
        self.refs: list[str] = []  # benchmark:index
        self.exact: dict[str, int] = {}
        self.grams: dict[str, list[int]] = {}
        self.doc_grams: list[int] = []
        toks_all = []
        for bench, texts in tests.items():
            for i, text in enumerate(texts):
                doc = len(self.refs)
                self.refs.append(f"{bench}:{i}")
                toks = tokens(text)
                toks_all.append(toks)
                self.exact.setdefault(" ".join(toks), doc)
                grams = set(ngrams(toks, n))
                self.doc_grams.append(len(grams))
                for g in grams:
                    bucket = self.grams.setdefault(g, [])
                    if len(bucket) < 64:  # boilerplate grams shared by many problems: cap the list
                        bucket.append(doc)
        self.hasher = MinHasher(num_perm)
        self.sigs = self.hasher.signatures([shingles(t) for t in toks_all])
        self.lsh = LSHIndex(minhash_threshold, num_perm)
        for doc in range(len(self.refs)):
            self.lsh.insert(doc, self.sigs[doc])

    def __len__(self) -> int:
        return len(self.refs)

    def match(self, text: str, sig: np.ndarray | None = None) -> tuple[str, str, float] | None:
        """(reason, benchmark:index, score) for a contaminated text, else None."""
        toks = tokens(text)
        key = " ".join(toks)
        if key in self.exact:
            return "exact", self.refs[self.exact[key]], 1.0
        grams = set(ngrams(toks, self.n))
        if grams:
            hits: Counter[int] = Counter()
            matched = 0
            for g in grams:
                docs = self.grams.get(g)
                if docs:
                    matched += 1
                    hits.update(docs)
            if matched:
                doc, cnt = hits.most_common(1)[0]
                own = matched / len(grams)
                cover = cnt / max(1, self.doc_grams[doc])
                if max(own, cover) >= self.overlap:
                    return "ngram", self.refs[doc], round(max(own, cover), 3)
        if sig is None:
            sig = self.hasher.signatures([shingles(toks)])[0]
        best = max(((jaccard(sig, self.sigs[d]), d) for d in self.lsh.query(sig)), default=None)
        if best and best[0] >= self.mh_threshold:
            return "minhash", self.refs[best[1]], round(best[0], 3)
        return None

    def filter(self, examples: list[Example]) -> tuple[list[Example], list[Drop]]:
        sigs = self.hasher.signatures([shingles(tokens(e.problem)) for e in examples])
        kept, drops = [], []
        for e, sig in zip(examples, sigs, strict=True):
            m = self.match(e.problem, sig)
            if m is None:
                kept.append(e)
            else:
                drops.append(Drop(e.id, e.source, m[0], m[1], m[2], e.problem))
        return kept, drops
