"""Reasoning diagnostics: doubt loops, repetition loops, and healthy solutions left alone.

Run:  .venv/bin/pytest tests/test_metrics_diagnostics.py -q
"""

from __future__ import annotations

import time

from mathtune.eval.diagnostics import aggregate, diagnose, doubt_count, record_diagnostics

NORMAL = """Let the width be $w$. Then the length is $2w + 3$, and the perimeter is
$2(w + 2w + 3) = 6w + 6 = 54$, so $6w = 48$ and $w = 8$. The length is $2 \\cdot 8 + 3 = 19$.
Wait, the question asks for the area, not the length. The area is $8 \\cdot 19 = 152$.
To check: the perimeter is $2(8 + 19) = 54$, which matches. The number of square units is
$8 \\cdot 19$. Therefore the area of the rectangle is $\\boxed{152}$ square units."""

DOUBT = """We need $3x + 5 = 20$, so $x = 5$. Wait, let me re-check that. Hmm, $3 \\cdot 5 = 15$ and
$15 + 5 = 20$. Actually, that is right. Wait, no, I should double check the sign. Hmm.
Let me double-check: $20 - 5 = 15$, $15 / 3 = 5$. On second thought, it is fine. The answer is $\\boxed{5}$."""

REPETITION = "First we compute the sum of the digits. " + (
    "Then we add the first number to the second number and divide the result by two to get the mean. " * 12
)

# A repeating tail whose unit is long (one ~19-word sentence), without any early n-gram overlap.
STUCK_TAIL = " ".join(f"step{i} is different" for i in range(40)) + " " + (
    "so x equals 4 and therefore y equals 8 which means z equals 12 and we check it again " * 4
)


def test_normal_solution_is_not_flagged():
    d = diagnose(NORMAL, truncated=False, status="ok")
    assert d["doubt_markers"] == 1  # one healthy "Wait," is not a loop
    assert not d["doubt_loop"] and not d["repetition"] and not d["no_answer"] and not d["truncated"]
    assert d["repeated_fraction"] == 0.0 and d["tail_loop_period"] == 0
    assert d["chars"] == len(NORMAL) and d["words"] == len(NORMAL.split())


def test_doubt_loop_is_flagged():
    d = diagnose(DOUBT, truncated=False, status="ok")
    # Wait, | let me re-check | Hmm | Actually, | Wait, no (once) | Hmm | Let me double-check |
    # On second thought
    assert d["doubt_markers"] == 8
    assert d["doubt_loop"] and not d["repetition"]


def test_doubt_markers_are_counted_once_and_case_insensitively():
    assert doubt_count("Wait, no. wait, no! WAIT, no") == 3
    assert doubt_count("Hmmm... let me recheck. Let me re-examine.") == 3
    assert doubt_count("We wait for the train; hmmm is not a number? actually it is") == 1  # only "hmmm"
    assert doubt_count("awaiting, waiter, Hmmer") == 0


def test_repetition_loop_is_flagged():
    d = diagnose(REPETITION, truncated=True, status="no_answer")
    assert d["repetition"] and d["truncated"] and d["no_answer"]
    assert d["max_ngram_repeats"] >= 10
    assert d["repeated_fraction"] > 0.8
    assert d["tail_loop_period"] == 20 and d["tail_loop_words"] >= 3 * 20  # the sentence is 20 words


def test_tail_loop_is_found_with_a_long_period():
    d = diagnose(STUCK_TAIL, truncated=True, status="no_answer")
    assert d["max_ngram_repeats"] == 4 and d["tail_loop_period"] == 19 and d["repetition"]


def test_a_short_stutter_is_not_a_loop():
    d = diagnose("The answer is 5 5 5. So $x = 5$.", truncated=False, status="ok")
    assert not d["repetition"]


def test_large_input_is_fast():
    text = ("word " * 50_000) + NORMAL * 200  # ~350 KB
    start = time.perf_counter()
    d = diagnose(text, truncated=True, status="ok")
    assert time.perf_counter() - start < 1.0
    assert d["chars"] == len(text)


def test_aggregate_rates_and_lengths():
    records = [
        {"response": NORMAL, "truncated": False, "status": "ok", "tokens": 100},
        {"response": DOUBT, "truncated": False, "status": "ok", "tokens": 200},
        {"response": REPETITION, "truncated": True, "status": "no_answer", "tokens": 600},
        {"response": "", "truncated": False, "status": "no_answer", "tokens": None},
    ]
    agg = aggregate(record_diagnostics(r) for r in records)
    assert agg["n_responses"] == 4
    assert agg["tokens"] == {"mean": 300.0, "median": 200.0}  # missing token counts are left out
    assert agg["truncation_rate"] == 0.25 and agg["doubt_loop_rate"] == 0.25
    assert agg["repetition_rate"] == 0.25 and agg["no_answer_rate"] == 0.5
    assert aggregate([])["truncation_rate"] is None


def test_reference_solutions_are_rarely_flagged(benchmarks_dir):
    """Human-written MATH / GSM8K solutions are healthy: the flags must stay quiet on them."""
    import json

    def field(path, key: str) -> list[str]:
        return [json.loads(line)[key] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    texts = field(benchmarks_dir / "math" / "test.jsonl", "solution")
    texts += field(benchmarks_dir / "gsm8k" / "test.jsonl", "answer")
    diags = [diagnose(t, truncated=False, status="ok") for t in texts]
    assert len(diags) > 1000
    assert sum(d["repetition"] for d in diags) / len(diags) < 0.005
    assert sum(d["doubt_loop"] for d in diags) / len(diags) < 0.005
