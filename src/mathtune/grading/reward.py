"""Answer rewards for RL: `rewards(completions, golds) -> list[float | None]`.

    from mathtune.grading import rewards
    rewards(["... so \\boxed{18}.", "I think 17."], ["#### 18", "#### 18"])   # [1.0, 0.0]

1.0 when the completion's final answer equals the gold, 0.0 when it does not (or gives none),
None when the gold itself cannot be read (empty, not mathematics, or too hostile to evaluate),
so a trainer can drop the sample instead of learning from a broken label. Completions may be
strings or chat messages (TRL's conversational format: a list of {"role", "content"} dicts; the
last message with content is graded).

Safe from any thread: nothing here uses signals (the symbolic checks run in worker processes
with per-check timeouts, see pool.py), the shared state is locked, and the whole call is
bounded: each symbolic check by `timeout` seconds and the batch by `budget` seconds (checks not
started by then count as wrong), so a pathological completion cannot stall a training step.

Try it:  python -c "from mathtune.grading import rewards; print(rewards(['\\\\boxed{2}'], ['2']))"
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import MathtuneError
from .grade import grade_with_gold_status


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the last chat message that has content."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        content = completion.get("content", "")
        if isinstance(content, list):  # multimodal parts: [{"type": "text", "text": ...}]
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content or "")
    if isinstance(completion, Sequence):
        for message in reversed(completion):
            text = completion_text(message)
            if text:
                return text
        return ""
    return "" if completion is None else str(completion)


def rewards(
    completions: Sequence[Any],
    golds: Sequence[str],
    *,
    timeout: float = 5.0,
    budget: float | None = 60.0,
    workers: int | None = None,
    extract: Sequence[str] | None = None,
) -> list[float | None]:
    """One reward per completion: 1.0 right, 0.0 wrong or no answer, None unreadable gold."""
    if len(completions) != len(golds):
        raise MathtuneError(
            f"rewards got {len(completions)} completions but {len(golds)} golds",
            "pass one gold answer per completion (repeat a problem's gold for each of its samples)",
        )
    items = [(completion_text(c), "" if g is None else str(g)) for c, g in zip(completions, golds, strict=True)]
    graded = grade_with_gold_status(items, workers=workers, extract=extract, timeout=timeout, budget=budget)
    return [None if unreadable else (1.0 if g.correct else 0.0) for g, unreadable in graded]
