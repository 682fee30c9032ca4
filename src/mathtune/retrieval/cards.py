"""Formula and theorem cards: a statement in LaTeX, when to use it, and a worked example.

    from mathtune.retrieval import CardStore
    store = CardStore.load()                          # the cards shipped in retrieval/cards/*.yaml
    store = CardStore.load(["my_cards.yaml"])         # shipped cards + the user's (same id: user wins)
    for card in store.search("How many ways to choose 3 of 7 students?", k=2):
        print(card.id, card.text())

A card file is YAML (a list of cards, or a mapping with a `cards:` list), JSONL (one card per
line) or a LaTeX source (.tex): each theorem-like environment (theorem, lemma, proposition,
corollary, definition, formula, fact) becomes a card, its optional [title] the title and the
paragraph before it the when-to-use text. Each card needs `id`, `title` and `statement`; `topic`, `when`, `example` and `keywords`
are optional. Cards are indexed by title, when-to-use text, statement and keywords (numerals
left out: a problem's numbers do not say which formula it needs), with `BM25Index`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MathtuneError
from .bm25 import BM25Index
from .tokenize import words_only

CARDS_DIR = Path(__file__).with_name("cards")
FIELDS = ("id", "title", "topic", "statement", "when", "example", "keywords")


@dataclass(frozen=True)
class Card:
    id: str
    title: str
    statement: str  # LaTeX
    topic: str = "other"
    when: str = ""
    example: str = ""
    keywords: tuple[str, ...] = field(default=())
    source: str = ""  # the file it came from

    def text(self) -> str:
        """The card as it is shown to a model: title, statement, when to use it, example."""
        parts = [f"{self.title}: {self.statement}"]
        if self.when:
            parts.append(f"Use it for: {self.when}.")
        if self.example:
            parts.append(f"Example: {self.example}")
        return " ".join(parts)

    def index_text(self) -> str:
        return " ".join([self.title, self.when, self.statement, " ".join(self.keywords)])


def _card(entry: Any, where: str) -> Card:
    if not isinstance(entry, dict):
        raise MathtuneError(f"{where}: a card must be a mapping, got {type(entry).__name__}",
                            "write each card as id: ..., title: ..., statement: ...")
    missing = [k for k in ("id", "title", "statement") if not str(entry.get(k) or "").strip()]
    unknown = sorted(set(entry) - set(FIELDS))
    if missing or unknown:
        problem = f"missing {', '.join(missing)}" if missing else f"unknown field(s) {', '.join(unknown)}"
        raise MathtuneError(f"{where}: card {entry.get('id', '?')!r}: {problem}",
                            f"a card has the fields {', '.join(FIELDS)} (id, title, statement required)")
    kw = entry.get("keywords") or ()
    return Card(id=str(entry["id"]), title=str(entry["title"]), statement=str(entry["statement"]),
                topic=str(entry.get("topic") or "other"), when=str(entry.get("when") or ""),
                example=str(entry.get("example") or ""),
                keywords=tuple(str(k) for k in ([kw] if isinstance(kw, str) else kw)), source=where.split(",")[0])


LATEX_ENV = re.compile(
    r"\\begin\{(theorem|lemma|proposition|corollary|definition|formula|fact)\*?\}\s*(?:\[([^\]]*)\])?(.*?)\\end\{\1\*?\}",
    re.DOTALL)


def cards_from_latex(text: str, source: str = "latex") -> list[Card]:
    """A card per theorem-like environment of a LaTeX document (see the module doc)."""
    out, last = [], 0
    for n, m in enumerate(LATEX_ENV.finditer(text), start=1):
        env, title = m.group(1), (m.group(2) or "").strip()
        body = " ".join(re.sub(r"\\label\{[^}]*\}", " ", m.group(3)).split())
        before, last = text[last:m.start()].rstrip().split("\n\n")[-1], m.end()
        when = " ".join(re.sub(r"\\(section|subsection|label)\*?\{[^}]*\}", " ", before).split())
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or f"{env}-{n}"
        if body:
            out.append(Card(id=f"{Path(source).stem}:{slug}", title=title or f"{env.title()} {n}", statement=body,
                            when=when[-300:], source=source))
    return out


def read_cards(path: str | Path) -> list[Card]:
    """The cards of one YAML, JSONL or LaTeX file (errors name the file and the card)."""
    path = Path(path)
    if not path.is_file():
        raise MathtuneError(f"card file not found: {path}", "pass a .yaml/.yml, .jsonl or .tex file of cards")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".tex":
        return cards_from_latex(text, str(path))
    if path.suffix == ".jsonl":
        out = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                raise MathtuneError(f"{path}, line {lineno}: invalid JSON ({e.msg})", "one card object per line") from None
            out.append(_card(entry, f"{path}, line {lineno}"))
        return out
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise MathtuneError(f"{path}: invalid YAML ({e})", "a card file is a YAML list of cards") from None
    if isinstance(data, dict) and "cards" in data:
        data = data["cards"]
    if not isinstance(data, list):
        raise MathtuneError(f"{path}: expected a list of cards", "write the file as a YAML list (- id: ...)")
    return [_card(entry, f"{path}, card {i + 1}") for i, entry in enumerate(data)]


def shipped_card_files() -> list[Path]:
    return sorted(CARDS_DIR.glob("*.yaml"))


class CardStore:
    """Cards with a BM25 index over their text; `search(problem, k)` gives the most relevant."""

    def __init__(self, cards: Sequence[Card]) -> None:
        by_id: dict[str, Card] = {}
        for c in cards:  # a later card with the same id replaces the earlier one
            by_id.pop(c.id, None)
            by_id[c.id] = c
        self.cards = list(by_id.values())
        self.index = BM25Index([c.index_text() for c in self.cards], tokenizer=words_only)

    @classmethod
    def load(cls, extra: Iterable[str | Path] = (), shipped: bool = True) -> CardStore:
        """The shipped cards (unless shipped=False) and those of the user's files, in that order."""
        files = [*(shipped_card_files() if shipped else []), *(Path(p) for p in extra)]
        cards = [c for f in files for c in read_cards(f)]
        if not cards:
            raise MathtuneError("no formula cards to retrieve from", "pass card files (YAML or JSONL)")
        return cls(cards)

    def __len__(self) -> int:
        return len(self.cards)

    def __getitem__(self, card_id: str) -> Card:
        for c in self.cards:
            if c.id == card_id:
                return c
        raise KeyError(card_id)

    def search(self, problem: str, k: int = 3) -> list[Card]:
        return [self.cards[i] for i, _ in self.index.search(problem, k)]
