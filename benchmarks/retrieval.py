"""Retrieval speed and card recall, side by side with bm25s' own tokenizer in the same run.

    .venv/bin/python benchmarks/retrieval.py            # 10,000 exemplars, 500 queries, 800-problem card set
    .venv/bin/python benchmarks/retrieval.py --exemplars 2000 --queries 200

Prints, for our LaTeX-aware index (mathtune.retrieval) and for the baseline (bm25s.tokenize with
English stop words, then bm25s.retrieve: the library's documented pipeline):
  * ms per query over N solved exemplars (median, mean, p95; each query tokenized and scored
    against every exemplar, top 3 taken),
  * recall@1 and recall@3 of the needed card on the "formula needed" set
    (mathtune.retrieval.formula_set: card known by construction).
"""

from __future__ import annotations

import argparse
import statistics
import time

import bm25s
import numpy as np

from mathtune.data import synth
from mathtune.retrieval import CardStore, ExemplarStore
from mathtune.retrieval.formula_set import formula_needed_set


def timed(fn, queries: list[str]) -> list[float]:
    fn(queries[0])  # warm-up
    out = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def summary(ms: list[float]) -> str:
    return f"median {statistics.median(ms):.3f}  mean {statistics.fmean(ms):.3f}  p95 {np.percentile(ms, 95):.3f}"


def baseline_index(texts: list[str]) -> bm25s.BM25:
    index = bm25s.BM25()
    index.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    return index


def baseline_search(index: bm25s.BM25, query: str, k: int) -> list[int]:
    toks = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)
    known = [t for t in toks[0] if t in index.vocab_dict] if toks else []
    if not known:
        return []
    scores = index.get_scores(known)
    return list(np.argsort(-scores, kind="stable")[:k])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exemplars", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--cards-set", type=int, default=800)
    args = ap.parse_args()

    examples = synth.generate(args.exemplars, seed=5)
    queries = [e.problem for e in synth.generate(args.queries, seed=99)]
    t0 = time.perf_counter()
    ours = ExemplarStore(examples)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = baseline_index([e.problem for e in examples])
    t_base = time.perf_counter() - t0
    print(f"exemplar search, {len(examples)} exemplars, {len(queries)} queries, top 3 (ms per query)")
    print(f"  mathtune.retrieval   {summary(timed(lambda q: ours.search(q, 3), queries))}   (index built in {t_ours:.2f} s)")
    print(f"  bm25s default        {summary(timed(lambda q: baseline_search(base, q, 3), queries))}   (index built in {t_base:.2f} s)")

    cards = CardStore.load()
    labelled = formula_needed_set(args.cards_set, seed=11)
    base_cards = baseline_index([c.index_text() for c in cards.cards])
    ids = [c.id for c in cards.cards]
    rows = {"mathtune.retrieval": [[c.id for c in cards.search(e.problem, 3)] for e, _ in labelled],
            "bm25s default": [[ids[i] for i in baseline_search(base_cards, e.problem, 3)] for e, _ in labelled]}
    print(f"\ncard retrieval, {len(cards)} cards, {len(labelled)} formula-needed problems")
    for name, got in rows.items():
        r1 = np.mean([g[:1] == [c] for g, (_, c) in zip(got, labelled, strict=True)])
        r3 = np.mean([c in g for g, (_, c) in zip(got, labelled, strict=True)])
        print(f"  {name:<20} recall@1 {r1:.3f}   recall@3 {r3:.3f}")


if __name__ == "__main__":
    main()
