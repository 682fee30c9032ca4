"""The one example type every data source is converted to, and its Parquet layout.

An `Example` is a math problem with a worked `solution` and a final, gradable `answer`.
Sources (Hub datasets, local files, the synthetic generator) all yield `Example`s, so the mix,
dedup, decontamination and card code never see a source's own column names.

    from mathtune.data.schema import Example
    ex = Example(id="x-1", problem="What is 2+3?", solution="2 + 3 = 5\nThe final answer is \\boxed{5}.",
                 answer="5", source="synth", domain="arithmetic", difficulty=1)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

# Domains used by the built-in sources; free text is allowed, these are the canonical names.
DOMAINS = (
    "arithmetic",
    "word_problems",
    "fractions",
    "percentages",
    "algebra",
    "number_theory",
    "combinatorics",
    "probability",
    "sequences",
    "calculus",
    "geometry",
    "statistics",
    "precalculus",
    "other",
)

COLUMNS = ("id", "problem", "solution", "answer", "source", "domain", "difficulty", "messages", "meta")


@dataclass
class Example:
    """One training example. `difficulty` is 1 (easiest) to 5, or None when unknown."""

    id: str
    problem: str
    solution: str
    answer: str
    source: str
    domain: str = "other"
    difficulty: int | None = None
    messages: list[dict[str, str]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """A flat row for Parquet: `messages` and `meta` are stored as JSON text, so rows from
        sources with different nested shapes always share one schema."""
        row = asdict(self)
        row["messages"] = json.dumps(self.messages, ensure_ascii=False) if self.messages else None
        row["meta"] = json.dumps(self.meta, ensure_ascii=False, default=str) if self.meta else None
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Example:
        messages = row.get("messages")
        meta = row.get("meta")
        difficulty = row.get("difficulty")
        return cls(
            id=str(row["id"]),
            problem=str(row["problem"]),
            solution=str(row.get("solution") or ""),
            answer=str(row.get("answer") or ""),
            source=str(row.get("source") or ""),
            domain=str(row.get("domain") or "other"),
            difficulty=None if difficulty is None or difficulty != difficulty else int(difficulty),
            messages=json.loads(messages) if isinstance(messages, str) else messages,
            meta=json.loads(meta) if isinstance(meta, str) else (meta or {}),
        )

    def chat(self) -> list[dict[str, str]]:
        """The example as chat messages (its own `messages` when the source had them)."""
        if self.messages:
            return self.messages
        return [{"role": "user", "content": self.problem}, {"role": "assistant", "content": self.solution}]


def stable_id(source: str, text: str) -> str:
    """A short id that depends only on the source name and the problem text."""
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
    return f"{source}-{digest}"


def arrow_schema() -> Any:
    """The Parquet schema of train.parquet / validation.parquet."""
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("problem", pa.string()),
            ("solution", pa.string()),
            ("answer", pa.string()),
            ("source", pa.string()),
            ("domain", pa.string()),
            ("difficulty", pa.int64()),
            ("messages", pa.string()),
            ("meta", pa.string()),
        ]
    )
