"""A persistent pool of grading worker processes with a hard per-task timeout.

Each worker is a separate interpreter (`python -m mathtune.grading.worker`) talking JSON lines
over pipes. A task that overruns its time limit gets its worker killed and replaced, and comes
back as `{"status": "timeout"}`; a worker that dies comes back as "unparseable". Nothing uses
signals, so this works from any thread (guarded by a lock; concurrent callers take turns) and
inside daemonic processes. Workers start lazily and are reused across calls; the pool grows to
the largest `workers` asked for and is closed at interpreter exit.

Try it:  python -c "from mathtune.grading.pool import judge_with_sympy as j; print(j([('x+1', '1+x')]))"
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from ..errors import MathtuneError

STARTUP_TIMEOUT = 60.0  # seconds a fresh worker may take to import sympy on a loaded machine


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mathtune.grading.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.started = time.monotonic()
        self.ready = False
        self._buf = b""

    def fileno(self) -> int:
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def send(self, task: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(task) + "\n").encode())
        self.proc.stdin.flush()

    def receive(self) -> list[dict] | None:
        """Messages available now; None when the worker has exited."""
        data = os.read(self.fileno(), 1 << 16)
        if not data:
            return None
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def alive(self) -> bool:
        return self.proc.poll() is None


class WorkerPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._spare: _Worker | None = None  # started after the first kill, so the next is warm
        self._pid = os.getpid()

    def _adopt_after_fork(self) -> None:
        """In a forked child the inherited workers belong to the parent: forget, don't kill."""
        if self._pid != os.getpid():
            self._lock = threading.Lock()
            self._workers, self._spare, self._pid = [], None, os.getpid()

    def close(self) -> None:
        if self._pid != os.getpid():
            return
        with self._lock:
            for w in [*self._workers, *([self._spare] if self._spare else [])]:
                w.kill()
            self._workers, self._spare = [], None

    def _replace(self, use: list[_Worker], old: _Worker) -> None:
        """Swap a killed or dead worker for the warm spare, and start a new spare."""
        old.kill()
        new = self._spare if self._spare is not None and self._spare.alive() else _Worker()
        self._spare = _Worker()
        use[use.index(old)] = new
        self._workers[self._workers.index(old)] = new

    def run(self, tasks: list[tuple[str, str]], timeout: float, workers: int, budget: float | None = None) -> list[dict]:
        """Verdicts for (gold, pred) pairs, each bounded by `timeout` seconds of worker time and
        all of them by `budget` seconds (counted once the workers are up)."""
        if not tasks:
            return []
        self._adopt_after_fork()
        with self._lock:
            self._workers = [w for w in self._workers if w.alive()]
            want = max(1, min(workers, len(tasks)))
            while len(self._workers) < want:
                self._workers.append(_Worker())
            use = self._workers[:want]
            return self._run(tasks, timeout, use, budget)

    def _run(self, tasks: list[tuple[str, str]], timeout: float, use: list[_Worker], budget: float | None) -> list[dict]:
        results: list[dict | None] = [None] * len(tasks)
        pending = deque(range(len(tasks)))
        busy: dict[_Worker, tuple[int, float]] = {}
        end: float | None = None
        while pending or busy:
            now = time.monotonic()
            if budget is not None and end is None and any(w.ready for w in use):
                end = now + budget
            if end is not None and now >= end and pending:
                for i in pending:  # out of budget: what has not started is not started
                    results[i] = {"status": "timeout", "correct": False}
                pending.clear()
            for w in list(use):
                if w.ready and w not in busy and pending:
                    i = pending.popleft()
                    try:
                        w.send({"id": i, "gold": tasks[i][0], "pred": tasks[i][1]})
                    except (BrokenPipeError, OSError):  # died while idle: retry on a fresh one
                        pending.appendleft(i)
                        self._replace(use, w)
                        continue
                    busy[w] = (i, now + timeout if end is None else min(now + timeout, max(end, now + 0.05)))
            waits = [d - now for _, d in busy.values()]
            waits += [w.started + STARTUP_TIMEOUT - now for w in use if not w.ready]
            watch = [w for w in use if not w.ready or w in busy]
            readable, _, _ = select.select(watch, [], [], max(0.0, min(waits)) if waits else 0.0)
            for w in readable:
                messages = w.receive()
                if messages is None:  # crashed (e.g. killed by the memory cap)
                    if w in busy:
                        i, _ = busy.pop(w)
                        results[i] = {"status": "unparseable", "correct": False, "error": "worker exited"}
                    self._replace(use, w)
                    continue
                for msg in messages:
                    if msg.get("ready"):
                        w.ready = True
                    elif w in busy and msg.get("id") == busy[w][0]:
                        results[busy.pop(w)[0]] = msg
            now = time.monotonic()
            # only workers this round's select polled: a spare swapped in may have started long
            # ago with its ready message still unread, and the next round reads it
            for w in watch:
                if w in use and not w.ready and now > w.started + STARTUP_TIMEOUT:
                    raise MathtuneError(
                        "a grading worker process did not start",
                        f"check that `{sys.executable} -m mathtune.grading.worker` runs",
                    )
            for w, (i, deadline) in list(busy.items()):
                if now >= deadline:
                    busy.pop(w)
                    results[i] = {"status": "timeout", "correct": False}
                    self._replace(use, w)
        return [r if r is not None else {"status": "unparseable", "correct": False} for r in results]


_POOL = WorkerPool()
atexit.register(_POOL.close)


def judge_with_sympy(
    pairs: list[tuple[str, str]], *, timeout: float = 5.0, workers: int | None = None, budget: float | None = None
) -> list[dict]:
    """Run the sympy judge on (gold, pred) pairs of cleaned answers in the shared pool."""
    return _POOL.run(pairs, timeout, workers or os.cpu_count() or 1, budget)
