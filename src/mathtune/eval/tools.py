"""Generation with tools for eval (`tools: python`): the TIR loop over the run's generator.

    from mathtune.eval.tools import generate_with_tools
    generate_with_tools(gen, prompts, params, seeds, on_complete, cfg)

Problems go through `mathtune.tools.tir.run_tir` in chunks of `batch_size` with one warm
`SandboxPool`, and each finished trajectory is handed to `on_complete(i, sample, completion)` like
a plain generate() call, so records are still written (and resumable) chunk by chunk. The
completion carries `extra`: tool_calls, tool_failures, tool_timeouts, tool_limit_reached, which
the records keep and `metrics.tool_summary` sums.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ToolCompletion:
    text: str
    tokens: int
    finish_reason: str
    time_s: float
    extra: dict[str, Any] = field(default_factory=dict)


def tool_fields(result: Any) -> dict[str, Any]:
    return {"tool_calls": result.calls, "tool_failures": result.failures, "tool_timeouts": result.timeouts,
            "tool_limit_reached": result.limit_reached}


def generate_with_tools(gen: Any, prompts: Sequence[str], params: Any, seeds: Sequence[int],
                        on_complete: Callable[[int, int, Any], None], cfg: Any, pool: Any = None) -> None:
    """Run TIR for every prompt; `pool` (a SandboxPool) is made and closed here when not given."""
    from ..tools import SandboxPool, SandboxWarning
    from ..tools.sandbox import Limits
    from ..tools.tir import run_tir

    own = pool is None
    if own:
        with warnings.catch_warnings():  # the sandbox names its missing protections once, on stderr
            warnings.simplefilter("default", SandboxWarning)
            pool = SandboxPool(workers=max(1, min(4, cfg.batch_size)), limits=Limits(timeout=cfg.tool_timeout))
    try:
        step = max(1, cfg.batch_size)
        for start in range(0, len(prompts), step):
            t0 = time.perf_counter()
            results = run_tir(gen, prompts[start:start + step], params, pool, max_calls=cfg.max_tool_calls,
                              timeout=cfg.tool_timeout, seeds=seeds[start:start + step])
            dt = time.perf_counter() - t0
            for j, samples in enumerate(results):
                for s, r in enumerate(samples):
                    on_complete(start + j, s, ToolCompletion(r.text, r.tokens, r.finish_reason, dt, tool_fields(r)))
    finally:
        if own:
            pool.close()
