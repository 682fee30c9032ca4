"""Retrieval for prompts: formula/theorem cards and solved exemplars behind a LaTeX-aware BM25.

    from mathtune.retrieval import CardStore, ExemplarStore
    cards = CardStore.load()                                   # shipped cards (+ user files)
    facts = [c.text() for c in cards.search("Find the larger root of x^2 - x - 42 = 0.", k=3)]
    store = ExemplarStore.from_path("runs/data/mix").decontaminate({"gsm8k": tests})[0]
    shots = [(e.problem, e.solution) for e in store.search(problem, k=3, exclude_ids={pid})]

tokenize.py (LaTeX commands and operators as tokens), bm25.py (the `bm25s` index),
cards.py (card files: YAML, JSONL, LaTeX theorem environments; shipped ones in cards/*.yaml),
formula_set.py (synthetic problems labelled with the card they need), exemplars.py (training-split examples,
decontaminated, never retrieving the query itself). Eval and solve place the cards into a
prompt with `PromptStyle.render(..., facts=[card.text(), ...])` and exemplars as few-shot pairs
(`--retrieve cards|exemplars`).
"""

from __future__ import annotations

from typing import Literal

from .bm25 import BM25Index
from .cards import Card, CardStore, cards_from_latex, read_cards
from .exemplars import ExemplarStore, problem_key
from .tokenize import tokenize

RetrieveMode = Literal["none", "cards", "exemplars"]
RETRIEVE_MODES: tuple[str, ...] = ("none", "cards", "exemplars")

__all__ = ["RETRIEVE_MODES", "BM25Index", "Card", "CardStore", "ExemplarStore", "RetrieveMode", "cards_from_latex",
           "problem_key", "read_cards", "tokenize"]
