"""Write the two small synthetic eval run directories next to this file: base/ and tuned/.

They follow the eval run contract (predictions.jsonl, metrics.json, config.yaml, run.json) with
24 MATH-style problems, subjects and levels, 4 samples per problem, and responses that include
healthy solutions, doubt loops ("Wait, ... Hmm ..."), repetition loops and truncations, so the
compare and report commands have something realistic to show. Deterministic (seeded).

Regenerate:  .venv/bin/python tests/data/runs/make_runs.py
"""

from __future__ import annotations

import random
from pathlib import Path

from mathtune.eval.metrics import compute_metrics
from mathtune.files import atomic_write_json, atomic_write_jsonl, atomic_write_text

HERE = Path(__file__).resolve().parent
SUBJECTS = ["Algebra", "Geometry", "Number Theory", "Precalculus"]
N, K = 24, 4


def problems() -> list[dict]:
    out = []
    for i in range(N):
        a, b = 3 + i, 7 + 2 * i
        gold = "\\frac{1}{2}" if i % 7 == 3 else str(a * b % 97)
        equation = f"{2 * a}x = {a}" if gold.startswith("\\frac") else f"{a}x + {b} = {a * int(gold) + b}"
        out.append({
            "id": f"math-{i:03d}",
            "index": i,
            "problem": f"Let $x$ satisfy ${equation}$. Find $x$ (answers may be fractions such as $\\frac12$, "
                       f"and 0 < x < 100 holds).",
            "gold": gold,
            "subject": SUBJECTS[i % len(SUBJECTS)],
            "level": f"Level {1 + (i * 3) % 5}",
        })
    return out


def response(p: dict, kind: str, answer: str, rng: random.Random) -> tuple[str, int, bool, str]:
    """(response, tokens, truncated, status) for a response of the given kind."""
    steps = "We isolate $x$: subtract the constant from both sides, then divide by the coefficient.\n"
    if kind == "correct" or kind == "wrong":
        text = steps + f"This gives $x = {answer}$. Checking by substitution confirms it.\n\nThe answer is $\\boxed{{{answer}}}$."
        return text, 60 + rng.randint(0, 80), False, "ok"
    if kind == "doubt":
        text = (steps + f"So $x = {answer}$. Wait, let me re-check the subtraction. Hmm, that seems off. "
                "Actually, the constant moves with a minus sign. Wait, no, that is what I did. "
                f"Let me double-check the division once more. Hmm.\n\nThe answer is $\\boxed{{{answer}}}$.")
        return text, 220 + rng.randint(0, 120), False, "ok"
    # loop: repeats one sentence until max_new_tokens
    loop = "Now we subtract the constant from both sides of the equation to isolate the term with x. "
    return steps + loop * 14, 512, True, "no_answer"


def make_run(name: str, model: str, accuracy: float, doubt_rate: float, loop_rate: float, seed: int,
             greedy_right: frozenset[int] = frozenset(), greedy_wrong: frozenset[int] = frozenset()) -> None:
    rng = random.Random(seed)
    records = []
    for p in problems():
        skill = random.Random(p["index"]).random()  # problem difficulty, shared by both runs
        for s in range(K):
            right = skill + rng.uniform(-0.3, 0.3) < accuracy
            if s == 0 and p["index"] in greedy_right | greedy_wrong:
                right = p["index"] in greedy_right
            kind = "correct" if right else rng.choices(["wrong", "doubt", "loop"], [1 - doubt_rate - loop_rate, doubt_rate, loop_rate])[0]
            answer = p["gold"] if right else str(int(rng.random() * 50) + 100)
            if right and p["gold"] == "\\frac{1}{2}" and s % 2:
                answer = "0.5"  # an equivalent spelling: maj@k must vote it with \frac{1}{2}
            text, tokens, truncated, status = response(p, kind, answer, rng)
            records.append({
                **{k: p[k] for k in ("id", "index", "problem", "gold", "subject", "level")},
                "benchmark": "math500", "sample": s, "prompt": f"Solve: {p['problem']}",
                "response": text, "extracted": None if status == "no_answer" else answer,
                "correct": right, "status": status, "tokens": tokens, "truncated": truncated,
                "time_s": round(tokens / 400, 3),
            })
    out = HERE / name
    atomic_write_jsonl(out / "predictions.jsonl", records)
    atomic_write_json(out / "metrics.json", compute_metrics(records))
    atomic_write_text(out / "config.yaml", f"model: {model}\nbenchmark: math500\nsamples: {K}\ntemperature: 0.7\n")
    atomic_write_json(out / "run.json", {"model": model, "benchmark": "math500", "name": name, "n": N, "samples": K})


if __name__ == "__main__":
    make_run("base", "smollm2-135m-instruct", accuracy=0.35, doubt_rate=0.2, loop_rate=0.35, seed=1,
             greedy_right=frozenset({5, 17}))
    make_run("tuned", "smollm2-135m-math-sft", accuracy=0.6, doubt_rate=0.25, loop_rate=0.1, seed=2,
             greedy_wrong=frozenset({5, 17}))
    print(f"wrote {HERE / 'base'} and {HERE / 'tuned'}")
