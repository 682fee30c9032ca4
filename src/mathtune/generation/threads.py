"""Choosing the torch thread count for CPU generation by measuring, not guessing.

Used by `mathtune.generation.hf`; see `ThreadTuner` for why (shared cores make more threads slower).
"""

from __future__ import annotations

import time
from collections.abc import Sequence


class ThreadTuner:
    """Pick the torch thread count by measuring, and re-check every few seconds.

    On a machine whose cores are shared, every parallel op with N threads waits at a barrier for
    a thread the OS has descheduled: measured here with the second core busy, a batch-16 decode
    step took 3.5 s with 2 threads and 0.145 s with 1. On an idle machine more threads win.
    `probe()` times a small matmul + softmax workload with each candidate (tens of ms, cut short
    when a candidate is already 2x slower than the best) and keeps the fastest; `tick()` re-probes
    every `interval_s` seconds of decoding, because the load of other processes comes and goes.
    """

    def __init__(self, candidates: Sequence[int], interval_s: float = 10.0) -> None:
        self.candidates = sorted(set(candidates))
        self.fixed = len(self.candidates) < 2
        self.current = self.candidates[-1]
        self.interval_s = interval_s
        self.last_probe = float("-inf")
        self.history: list[int] = []

    def probe(self) -> int:
        import torch

        if self.fixed:
            torch.set_num_threads(self.current)
            return self.current
        x, w = torch.randn(64, 576), torch.randn(576, 1536)
        times: dict[int, float] = {}
        for n in self.candidates:
            torch.set_num_threads(n)
            (x @ w).softmax(-1)
            t = time.perf_counter()
            for _ in range(8):
                (x @ w).softmax(-1)
                if times and time.perf_counter() - t > 2 * min(times.values()):
                    break
            times[n] = time.perf_counter() - t
        # Small probes are noisy and a wrong pick of fewer threads costs the whole interval
        # (measured: 1 thread on an idle 2-core machine, 8% fewer problems/min over a run), so
        # keep the most threads unless fewer are clearly (>25%) faster; under contention the
        # gap is 10-25x, never marginal.
        self.current = choose(times)
        torch.set_num_threads(self.current)
        self.last_probe = time.perf_counter()
        self.history.append(self.current)
        return self.current

    def tick(self) -> None:
        """Call once per decode step; re-probes when `interval_s` has passed."""
        if not self.fixed and time.perf_counter() - self.last_probe > self.interval_s:
            self.probe()


def choose(times: dict[int, float]) -> int:
    """The most threads whose probe time is within 25% of the fastest."""
    best = min(times.values())
    return max(n for n, took in times.items() if took <= 1.25 * best)
