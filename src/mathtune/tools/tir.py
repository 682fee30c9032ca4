"""Tool-integrated reasoning (TIR), the Qwen2.5-Math loop, over any `mathtune.generation` backend.

    from mathtune.generation import get_generator, SamplingParams
    from mathtune.tools import SandboxPool
    from mathtune.tools.tir import run_tir
    with SandboxPool(workers=2) as pool:
        results = run_tir(gen, prompts, SamplingParams(max_new_tokens=512), pool, max_calls=4)
    print(results[0].text)

The model writes a program in a fenced block and closes it; generation stops at the output
fence "```output" (added to the stop strings), the program runs in the sandbox, and its output
is appended as

    ```output
    <stdout, plus the exception's last line when it failed>
    ```

after which the model continues. At most `max_calls` programs run per trajectory; a program
written after that is left unexecuted and the trajectory ends (`limit_reached`). Each program
runs after the earlier *successful* programs of its trajectory (their output discarded), so
variables and functions carry forward as in a notebook, while a failed program leaves no state.
All unfinished trajectories of a batch are generated together, one generate() call per round.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..generation.base import Generator, SamplingParams, stable_seed
from .sandbox import ExecResult

OUTPUT_FENCE = "```output"
PROGRAM = re.compile(r"```python[ \t]*\n(.*?)```\s*\Z", re.DOTALL)
MAX_TOOL_OUTPUT = 2000  # characters of program output shown to the model


class Executor(Protocol):
    def run(self, code: str, prelude: Sequence[str] = (), timeout: float | None = None) -> ExecResult: ...


@dataclass
class TIRResult:
    text: str = ""  # the full completion: model text and appended output blocks
    calls: int = 0  # programs executed
    failures: int = 0  # programs that ended in an error (any status but ok and timeout)
    timeouts: int = 0
    limit_reached: bool = False  # the model wrote a program after max_calls had run
    tokens: int = 0
    finish_reason: str = "stop"
    programs: list[str] = field(default_factory=list)  # the successful programs, in order


def pending_program(text: str) -> str | None:
    """The program of a fenced python block that `text` ends with (the model stopped at the
    output fence right after closing it), else None."""
    m = PROGRAM.search(text)
    if m is None or "```" in m.group(1):
        return None
    return m.group(1)


def format_output(result: ExecResult) -> str:
    """The output block's body: what the program printed, and its error's last line."""
    body = result.output.rstrip("\n")
    if result.status != "ok":
        note = result.error or result.status
        if result.status == "timeout":
            note = f"TimeoutError: {note}"
        body = f"{body}\n{note}" if body else note
    if len(body) > MAX_TOOL_OUTPUT:
        body = body[:MAX_TOOL_OUTPUT] + f"\n... ({len(body) - MAX_TOOL_OUTPUT} more characters)"
    return body


def _step(state: TIRResult, text: str, executor: Executor, max_calls: int, timeout: float | None) -> bool:
    """Append one round of model text; run its program if any. True if the trajectory goes on."""
    state.text += text
    program = pending_program(text)
    if program is None:
        return False
    if state.calls >= max_calls:
        state.limit_reached = True
        return False
    result = executor.run(program, prelude=state.programs, timeout=timeout)
    state.calls += 1
    if result.status == "ok":
        state.programs.append(program)
    elif result.status == "timeout":
        state.timeouts += 1
    else:
        state.failures += 1
    if not state.text.endswith("\n"):
        state.text += "\n"
    state.text += f"{OUTPUT_FENCE}\n{format_output(result)}\n```\n"
    return True


def run_tir(
    generator: Generator, prompts: Sequence[str], params: SamplingParams, executor: Executor,
    max_calls: int = 4, timeout: float | None = None, seeds: Sequence[int] | None = None,
) -> list[list[TIRResult]]:
    """TIR trajectories for each prompt: `result[i][s]` is sample s of prompt i (params.n)."""
    if max_calls < 0:
        raise ValueError(f"max_calls must be >= 0, got {max_calls}")
    one = dataclasses.replace(params, n=1,
                              stop=tuple(dict.fromkeys([*params.stop, OUTPUT_FENCE])))
    base = list(seeds) if seeds is not None else [stable_seed(str(i)) for i in range(len(prompts))]
    states = [[TIRResult() for _ in range(params.n)] for _ in prompts]
    active = [(i, s) for i in range(len(prompts)) for s in range(params.n)]
    rounds = 0
    while active:
        batch = [prompts[i] + states[i][s].text for i, s in active]
        round_seeds = [stable_seed(f"{base[i]}:{s}:{rounds}") for i, s in active]
        outs = generator.generate(batch, one, seeds=round_seeds)
        still = []
        for (i, s), out in zip(active, outs, strict=True):
            comp, st = out[0], states[i][s]
            st.tokens += comp.tokens
            st.finish_reason = comp.finish_reason
            if comp.finish_reason == "stop" and _step(st, comp.text, executor, max_calls, timeout):
                still.append((i, s))
            elif comp.finish_reason != "stop":
                st.text += comp.text
        active = still
        rounds += 1
    return states
