"""`mathtune.grading.rewards`: values, unreadable golds, chat completions, threads, time bounds.

    .venv/bin/python -m pytest tests/test_grading_rewards.py -q
"""

from __future__ import annotations

import threading
import time

import pytest

from mathtune.errors import MathtuneError
from mathtune.grading import rewards


def test_rewards_values_and_unreadable_gold():
    got = rewards(
        ["so \\boxed{18}.", "I think 17.", "nothing here", "The answer is 5.", "The answer is 5.", "\\boxed{x+1}"],
        ["#### 18", "#### 18", "3", "", "\\frac{1}{\\qwerty{", "1+x"],
    )
    assert got == [1.0, 0.0, 0.0, None, None, 1.0]


def test_rewards_read_chat_completions():
    chat = [[{"role": "assistant", "content": "Adding, we get \\boxed{\\frac{1}{2}}."}],
            [{"role": "assistant", "content": [{"type": "text", "text": "The answer is 0.4"}]}]]
    assert rewards(chat, ["0.5", "0.5"]) == [1.0, 0.0]


def test_rewards_reject_mismatched_lengths():
    with pytest.raises(MathtuneError, match="2 completions but 1 golds"):
        rewards(["1", "2"], ["1"])


def test_rewards_from_many_threads_at_once():
    """TRL calls reward functions off the main thread; concurrent callers all get their own
    right answers (no signal-based timeouts, no shared-state races)."""
    batches = []
    for k in range(6):
        completions = [f"\\boxed{{{k}x+{k}}}", f"The answer is {k + 1}.", f"\\boxed{{\\frac{{{k}}}{{{k + 1}}}}}"]
        golds = [f"{k}(x+1)", f"#### {k + 1}", f"{k}/{k + 1}"] if k else ["0", "#### 1", "0"]
        batches.append((completions, golds))
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            results[k] = rewards(*batches[k], workers=1)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert all(results[k] == [1.0, 1.0, 1.0] for k in range(len(batches))), results


def test_rewards_never_hang_on_pathological_input():
    slow = "\\boxed{\\prod_{k=1}^{20000} (1+\\frac{1}{k^3})}"  # minutes of exact sympy work
    hostile = "\\boxed{" + "(" * 30_000 + "1" + ")" * 30_000 + "}"
    rewards(["\\boxed{x+1}"], ["1+x"])  # a warm worker, so only the checks are timed
    t = time.monotonic()
    got = rewards([slow, hostile, "\\boxed{9^{9^{9^9}}}", "\\boxed{2}"], ["\\prod_{k=1}^{20000} (1+\\frac{1}{k^2})", "1", "5", "2"], timeout=1.0)
    assert got == [0.0, 0.0, 0.0, 1.0]
    assert time.monotonic() - t < 5.0


def test_rewards_batch_budget_bounds_the_whole_call():
    slow = "\\boxed{\\prod_{k=1}^{20000} (1+\\frac{1}{k^3})}"
    gold = "\\prod_{k=1}^{20000} (1+\\frac{1}{k^2})"
    rewards(["\\boxed{x+1}"], ["1+x"])
    t = time.monotonic()
    got = rewards([slow.replace("20000", str(20000 + i)) for i in range(6)], [gold] * 6, timeout=3.0, budget=1.0, workers=1)
    assert got == [0.0] * 6
    assert time.monotonic() - t < 4.0  # six 3 s checks, but a 1 s budget


def test_in_process_evaluation_is_thread_safe():
    """numeric.py's 50-digit evaluation keeps its precision per thread: cancellation-sensitive
    answers get the same verdicts from eight threads at once as from one."""
    from mathtune.grading import answers_equivalent

    cases = [("10^{20}+1-10^{20}", "1", True), ("\\sqrt{5+2\\sqrt{6}}", "\\sqrt{2}+\\sqrt{3}", True),
             ("\\sqrt{5+2\\sqrt{6}}", "\\sqrt{2}+\\sqrt{5}", False), ("(x+1)^2", "x^2+2x+1", True),
             ("10^{30}+2-10^{30}", "1", False), ("\\frac{x^2-1}{x-1}", "x+1", True)] * 30
    bad: list[tuple] = []

    def run() -> None:
        for a, b, want in cases:
            if answers_equivalent(a, b) is not want:
                bad.append((a, b, want))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not bad, bad[:5]
