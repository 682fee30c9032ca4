"""Reasoning diagnostics for one model response: length, truncation, doubt loops, repetition.

Small models fine-tuned on long chain-of-thought often fail in recognisable ways: they hit
`max_new_tokens` (truncated), second-guess themselves in circles ("Wait, ... Hmm, ... Actually,"),
or fall into a loop that repeats the same sentence until the budget runs out. `diagnose()` flags
these per response in pure Python (linear in the text size; texts longer than `MAX_CHARS` are
examined in their tail, where loops live), and `aggregate()` turns many into rates.

Definitions (thresholds are module constants so reports can quote them):

  doubt_loop   the number of self-doubt markers — "Wait,", "Wait, no", "Hmm", "Actually,",
               "Let me re-check", "let me double-check", "On second thought", "Let me reconsider",
               "I made a mistake" (case-insensitive; "Wait, no" counts once) — is >= DOUBT_MIN (3).
               One or two "Wait"s are healthy self-correction; three or more is circling.
  repetition   a long word n-gram (NGRAM = 15 words) occurs >= REPEAT_MIN (3) times, or the response
               ends in a loop: its last words are a unit of p words repeated >= REPEAT_MIN times
               and spanning >= LOOP_MIN_WORDS (30) words. `repeated_fraction` is the share of
               n-gram positions that repeat an earlier n-gram (0 for fresh text, near 1 for a loop).
               Calibration: on the 6,319 human reference solutions of MATH and GSM8K test, 15-word
               n-grams x3 flag 0.13% (casework written out in parallel); 10-word n-grams flagged 0.8%.
  no_answer    the grader found no final answer (status "no_answer").

Try it:  python -c "from mathtune.eval.diagnostics import diagnose as d; print(d('Wait, hmm. Wait, no.', False, 'ok'))"
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable
from typing import Any

DOUBT_MIN = 3
NGRAM = 15
REPEAT_MIN = 3
LOOP_MIN_WORDS = 30
TAIL_WORDS = 400  # the tail examined for an end loop
MAX_CHARS = 200_000  # longer responses are diagnosed on their last MAX_CHARS characters

# Longest alternatives first so "Wait, no" counts once, not as "Wait," plus something.
_DOUBT_RE = re.compile(
    r"\b(?:wait,?\s+no\b|no,\s+wait\b|wait\b(?=\s*[,.!:—-])|hmm+\b|actually,"
    r"|let\s+me\s+(?:re-?check|double[- ]check|re-?examine|reconsider|re-?verify|re-?think)\b"
    r"|on\s+second\s+thought\b|i\s+made\s+a\s+mistake\b)",
    re.IGNORECASE,
)
_WORD_RE = re.compile(r"\S+")


def doubt_count(text: str) -> int:
    """How many self-doubt markers ("Wait,", "Hmm", "Actually,", ...) `text` contains."""
    return sum(1 for _ in _DOUBT_RE.finditer(text))


def _ngram_repeats(words: list[str], n: int = NGRAM) -> tuple[int, float]:
    """(count of the most frequent n-gram, share of n-gram positions that repeat an earlier one)."""
    if len(words) < n:
        return (0, 0.0)
    # Hash each n-gram as a tuple; Counter keeps this linear in len(words).
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    total = len(words) - n + 1
    repeated = total - len(counts)
    return (max(counts.values()), repeated / total)


def _tail_loop(words: list[str]) -> tuple[int, int]:
    """(period, span) of the longest periodic tail made of >= REPEAT_MIN copies, else (0, 0).

    For each period p the tail is periodic while words[-k] == words[-k-p]; its span is that run
    plus one period. O(TAIL_WORDS * periods checked), with early exits: cheap in practice.
    """
    tail = words[-TAIL_WORDS:]
    m = len(tail)
    best = (0, 0)
    for p in range(1, m // REPEAT_MIN + 1):
        run = 0
        while run < m - p and tail[m - 1 - run] == tail[m - 1 - run - p]:
            run += 1
        span = run + p
        if span >= REPEAT_MIN * p and span >= LOOP_MIN_WORDS and span > best[1]:
            best = (p, span)
            if span >= m:  # the whole tail is one loop; longer periods cannot do better
                break
    return best


def diagnose(response: str, truncated: bool, status: str) -> dict[str, Any]:
    """Diagnostics of one response (see the module docstring for the definitions)."""
    text = response or ""
    scan = text[-MAX_CHARS:]
    words = _WORD_RE.findall(scan)
    doubts = doubt_count(scan)
    max_rep, rep_frac = _ngram_repeats(words)
    period, span = _tail_loop(words)
    return {
        "chars": len(text),
        "words": len(words),
        "truncated": bool(truncated),
        "doubt_markers": doubts,
        "doubt_loop": doubts >= DOUBT_MIN,
        "max_ngram_repeats": max_rep,
        "repeated_fraction": round(rep_frac, 4),
        "tail_loop_period": period,
        "tail_loop_words": span,
        "repetition": max_rep >= REPEAT_MIN or period > 0,
        "no_answer": status == "no_answer",
    }


def record_diagnostics(record: dict[str, Any]) -> dict[str, Any]:
    """`diagnose()` on a predictions.jsonl record, plus its generated-token count when known."""
    d = diagnose(str(record.get("response") or ""), bool(record.get("truncated")), str(record.get("status") or ""))
    tokens = record.get("tokens")
    d["tokens"] = int(tokens) if isinstance(tokens, (int, float)) and not isinstance(tokens, bool) else None
    return d


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "median": None}
    return {"mean": round(statistics.fmean(values), 2), "median": float(statistics.median(values))}


def aggregate(diags: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Rates and length statistics over many `record_diagnostics()` results."""
    diags = list(diags)
    n = len(diags)

    def rate(key: str) -> float | None:
        return round(sum(bool(d[key]) for d in diags) / n, 4) if n else None

    tokens = [d["tokens"] for d in diags if d.get("tokens") is not None]
    return {
        "n_responses": n,
        "tokens": _stats(tokens),
        "chars": _stats([d["chars"] for d in diags]),
        "truncation_rate": rate("truncated"),
        "doubt_loop_rate": rate("doubt_loop"),
        "repetition_rate": rate("repetition"),
        "no_answer_rate": rate("no_answer"),
        "mean_doubt_markers": round(statistics.fmean(d["doubt_markers"] for d in diags), 3) if n else None,
        "thresholds": {"doubt_min": DOUBT_MIN, "ngram_words": NGRAM, "repeat_min": REPEAT_MIN,
                       "loop_min_words": LOOP_MIN_WORDS},
    }
