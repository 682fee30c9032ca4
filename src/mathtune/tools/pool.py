"""A pool of warm sandbox workers, safe to call from many threads (TIR over a batch).

    from mathtune.tools import SandboxPool
    with SandboxPool(workers=2) as pool:
        results = pool.map(["print(2**10)", "import math; print(math.pi)"])
        print([r.output for r in results])

Each worker is a `sandbox.Sandbox`; a call takes an idle worker (blocking until one is free),
and a worker that dies or hangs is replaced on its next use, so the pool keeps serving
after any program. Benchmark: .venv/bin/python benchmarks/sandbox_throughput.py
"""

from __future__ import annotations

import queue
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from .sandbox import ExecResult, Limits, Protection, Sandbox


class SandboxPool:
    def __init__(self, workers: int = 2, limits: Limits | None = None, use_bwrap: bool | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.limits = limits or Limits()
        self.workers = [Sandbox(self.limits, use_bwrap) for _ in range(workers)]
        self._idle: queue.Queue[Sandbox] = queue.Queue()
        with ThreadPoolExecutor(workers) as ex:  # start them side by side
            list(ex.map(lambda s: s.start(), self.workers))
        for w in self.workers:
            self._idle.put(w)

    @property
    def protection(self) -> Protection:
        return self.workers[0].protection

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, code: str, prelude: Sequence[str] = (), timeout: float | None = None) -> ExecResult:
        worker = self._idle.get()
        try:
            return worker.run(code, prelude, timeout)
        finally:
            self._idle.put(worker)

    def map(self, codes: Sequence[str], timeout: float | None = None,
            preludes: Sequence[Sequence[str]] | None = None) -> list[ExecResult]:
        """Run many programs concurrently (one per worker at a time); results in input order."""
        pre = preludes if preludes is not None else [()] * len(codes)
        with ThreadPoolExecutor(len(self.workers)) as ex:
            return list(ex.map(lambda cp: self.run(cp[0], cp[1], timeout), zip(codes, pre, strict=True)))

    def close(self) -> None:
        for w in self.workers:
            w.close()
