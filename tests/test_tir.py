"""The TIR loop with a scripted generator: the exact transcript format, state carried over from
successful programs only, the call limit, and batching (one generate() call per round).

Run:  .venv/bin/python -m pytest tests/test_tir.py -q
"""

from __future__ import annotations

import warnings

import pytest

from mathtune.generation.base import Completion, Generator, SamplingParams, truncate_at_stop
from mathtune.tools import SandboxPool, SandboxWarning
from mathtune.tools.tir import OUTPUT_FENCE, run_tir

P1 = "```python\nx = 6 * 7\nprint(x)\n```\n"
P2 = "```python\nprint(x + 1)\n```\n"
BAD = "```python\nz = 5\nraise ValueError('bad')\n```\n"
USE_Z = "```python\nprint(z)\n```\n"


class ScriptedGenerator(Generator):
    """Replies from a script per prompt; like a real backend it cuts at the first stop string
    (so text the script writes after "```output" is never seen) and reports finish "stop"."""

    backend = "hf"
    model_name = "scripted"

    def __init__(self, scripts: dict[str, list[str]]) -> None:
        self.scripts = scripts
        self.calls: list[int] = []  # batch size of each generate() call

    def generate(self, prompts, params, *, on_complete=None, seeds=None):
        self.calls.append(len(prompts))
        out = []
        for p in prompts:
            key = next(k for k in self.scripts if p.startswith(k))
            turn = p[len(key):].count(OUTPUT_FENCE)
            text, _ = truncate_at_stop(self.scripts[key][turn], params.stop)
            out.append([Completion(text=text, tokens=len(text.split()), finish_reason="stop", time_s=0.0)])
        return out


@pytest.fixture(scope="module")
def pool():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)
        p = SandboxPool(workers=2)
    yield p
    p.close()


PARAMS = SamplingParams(max_new_tokens=64)


def test_transcript_format_and_carried_state(pool):
    gen = ScriptedGenerator({"Q1 ": ["Let me compute.\n" + P1 + "```output\nIGNORED, the model's own guess",
                                     "So x is 42.\n" + P2 + OUTPUT_FENCE, "The answer is \\boxed{43}."]})
    (r,), = run_tir(gen, ["Q1 "], PARAMS, pool, max_calls=4)
    assert r.text == ("Let me compute.\n" + P1 + "```output\n42\n```\n"
                      "So x is 42.\n" + P2 + "```output\n43\n```\n"
                      "The answer is \\boxed{43}.")
    assert (r.calls, r.failures, r.timeouts, r.limit_reached) == (2, 0, 0, False)
    assert gen.calls == [1, 1, 1]


def test_failed_programs_leave_no_state(pool):
    gen = ScriptedGenerator({"Q2 ": [BAD, USE_Z, "No answer."]})
    (r,), = run_tir(gen, ["Q2 "], PARAMS, pool)
    assert r.text == (BAD + "```output\nValueError: bad\n```\n" + USE_Z +
                      "```output\nNameError: name 'z' is not defined\n```\nNo answer.")
    assert (r.calls, r.failures, r.programs) == (2, 2, [])


def test_call_limit_and_batching(pool):
    loop = "```python\nprint(1)\n```\n"
    gen = ScriptedGenerator({"A ": [loop] * 5, "B ": ["Done: \\boxed{2}."]})
    res = run_tir(gen, ["A ", "B "], PARAMS, pool, max_calls=2)
    a, b = res[0][0], res[1][0]
    assert a.text == (loop + "```output\n1\n```\n") * 2 + loop  # the third program never ran
    assert (a.calls, a.limit_reached, len(a.programs)) == (2, True, 2)
    assert (b.text, b.calls) == ("Done: \\boxed{2}.", 0)
    assert gen.calls == [2, 1, 1]  # round 1 batches both prompts; B finished there


def test_timeouts_are_reported(pool):
    gen = ScriptedGenerator({"T ": ["```python\nwhile True:\n    pass\n```\n", "Gave up."]})
    (r,), = run_tir(gen, ["T "], PARAMS, pool, timeout=0.5)
    assert r.timeouts == 1 and "```output\nTimeoutError: the program ran longer than 0.5 s" in r.text
