"""Data cards: what a built dataset holds and what was dropped on the way (card.json + card.md).

A card records counts per split, source, domain and difficulty; the token-length distribution
(numbers plus a PNG histogram); how many examples each filter removed per source; the
duplicates removed; and every decontamination drop with the benchmark item it matched.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import atomic_write_json, atomic_write_text
from .schema import Example


def counts(examples: Sequence[Example]) -> dict[str, dict[str, int]]:
    def tally(values: Any) -> dict[str, int]:
        return {str(k): v for k, v in sorted(Counter(values).items(), key=lambda kv: str(kv[0]))}

    return {
        "source": tally(e.source for e in examples),
        "domain": tally(e.domain for e in examples),
        "difficulty": tally("unknown" if e.difficulty is None else e.difficulty for e in examples),
    }


def length_stats(lengths: Sequence[int], unit: str) -> dict[str, Any]:
    if not lengths:
        return {"unit": unit, "count": 0}
    s = sorted(lengths)
    return {
        "unit": unit,
        "count": len(s),
        "min": s[0],
        "median": statistics.median(s),
        "mean": round(statistics.fmean(s), 1),
        "p95": s[min(len(s) - 1, int(0.95 * len(s)))],
        "max": s[-1],
    }


def histogram_png(lengths: Sequence[int], unit: str, path: Path, title: str = "example length") -> Path | None:
    if not lengths:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.hist(lengths, bins=min(50, max(5, len(set(lengths)))), color="#3b6ea8")
    ax.set_xlabel(f"{unit} (problem + solution)")
    ax.set_ylabel("examples")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    if not rows:
        return "_none_\n"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render_markdown(card: dict[str, Any]) -> str:
    if card.get("kind") == "cpt":
        return _render_cpt(card)
    out = [f"# Data card: {card.get('name', 'dataset')}\n",
           f"Built by mathtune {card.get('mathtune_version')} with seed {card.get('seed')}.\n",
           "## Splits\n", _table(list(card["splits"].items()), ("split", "examples"))]
    for split, c in card["counts"].items():
        out.append(f"## {split}: examples per source / domain / difficulty\n")
        for key in ("source", "domain", "difficulty"):
            out.append(_table(list(c[key].items()), (key, "examples")))
    ls = card.get("lengths", {})
    if ls:
        out.append("## Length\n")
        out.append(_table([(k, v) for k, v in ls.items() if k != "histogram"], ("stat", "value")))
        if ls.get("histogram"):
            out.append(f"![length histogram]({ls['histogram']})\n")
    out.append("## Sources\n")
    out.append(_table([(s["key"], s["requested"], s["used"], s["loaded"], s.get("taken", "")) for s in card["sources"]],
                      ("recipe key", "requested", "used", "loaded", "in mix")))
    out.append("## Dropped by filters\n")
    out.append(_table([(src, f, n) for src, fs in card["filters"].items() for f, n in fs.items()],
                      ("source", "filter", "dropped")))
    dd = card["dedup"]
    out.append(f"## Deduplication\n\nExact duplicates dropped: {dd['exact']}; near duplicates: {dd['near']}.\n")
    out.append(_table([(d["id"], d["reason"], d["matched"], d["score"]) for d in dd["examples"]],
                      ("dropped", "reason", "kept copy", "score")))
    dc = card["decontamination"]
    out.append("## Decontamination\n")
    if not dc.get("enabled", True):
        out.append("Disabled in the recipe.\n")
    else:
        out.append(f"Checked against: {', '.join(f'{k} ({v})' for k, v in dc['benchmarks'].items()) or 'nothing'}. "
                   f"Dropped {dc['dropped']} examples.\n\n")
        out.append(_table(list(dc["by_reason"].items()), ("reason", "dropped")))
        out.append(_table([(d["id"], d["reason"], d["matched"], d["score"], d["problem"]) for d in dc["examples"]],
                          ("dropped", "reason", "benchmark item", "score", "problem")))
    notes = card.get("notes") or []
    if notes:
        out.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    return "\n".join(out)


def _render_cpt(card: dict[str, Any]) -> str:
    r = card["report"]
    rows = [(k, v) for k, v in r.items() if k not in ("warnings", "by_kind")]
    out = [f"# Corpus card: {card.get('name', 'corpus')}\n",
           f"Tokenizer: {card.get('tokenizer')}; block size {card.get('block_size')}.\n",
           _table(rows, ("stat", "value")), _table(list(r.get("by_kind", {}).items()), ("document kind", "documents"))]
    if r.get("warnings"):
        out.append("## Warnings\n\n" + "\n".join(f"- {w}" for w in r["warnings"]) + "\n")
    return "\n".join(out)


def write_card(out_dir: Path, card: dict[str, Any]) -> None:
    atomic_write_json(out_dir / "card.json", card)
    atomic_write_text(out_dir / "card.md", render_markdown(card))
