"""The CPU thread policy: the one place that decides torch's intra-op thread count.

Why measure instead of using every core: each parallel torch op ends at a barrier that waits
for its slowest thread. When other processes keep a core busy, the OS deschedules one of our
threads and every op stalls on it, so fewer threads can be many times faster; on an idle
machine all cores win. The load of other processes comes and goes, so the choice is timed on a
small workload of the right shape and re-checked while the work runs.

Who calls what:

- `load_model` on a CPU: `configure_cpu_threads()`, once per process — a first guess with
  nothing to measure yet: the cores in our affinity set minus the load average.
- generation (`HFGenerator`): a `ThreadTuner(thread_candidates(), workload="generate")`,
  probed before each prefill and `tick()`-ed every decode step.
- training (the train stage on a CPU): `tune_threads("train")` probes once before training,
  and `retune_callback(tuner)` re-probes during training (every `INTERVAL_S["train"]` s) and
  gives the previous count back when training ends.

The user's word wins everywhere: MATHTUNE_THREADS (or OMP_NUM_THREADS) fixes the count and
nothing is probed; so does `HFGenerator(threads=N)`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, Literal

Workload = Literal["generate", "train"]
# seconds of work between re-probes: a probe costs tens of milliseconds
INTERVAL_S: dict[str, float] = {"generate": 10.0, "train": 30.0}
# (rows, hidden, intermediate, repeats): a decode step is skinny GEMMs; a training step runs
# taller ones forward and backward. 576/1536 are the default model's layer widths.
PROBE_SHAPES: dict[str, tuple[int, int, int, int]] = {"generate": (64, 576, 1536, 8), "train": (256, 576, 1536, 4)}


def user_threads() -> int | None:
    """The thread count the user fixed with MATHTUNE_THREADS or OMP_NUM_THREADS, if any."""
    for var in ("MATHTUNE_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def available_cores() -> int:
    """Cores this process may run on (its affinity set where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def guess_threads() -> int:
    """Without measuring: the user's count, else our cores minus the load already running
    (1-minute load average), at least one."""
    forced = user_threads()
    if forced:
        return forced
    cores = available_cores()
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cores, cores - int(busy) + 1)) if busy >= 1 else cores


@cache
def configure_cpu_threads() -> int:
    """Set torch's intra-op threads to `guess_threads()`, once per process (at model load)."""
    import torch

    threads = guess_threads()
    torch.set_num_threads(threads)
    return threads


def thread_candidates() -> list[int]:
    """The counts a tuner tries: the user's alone, else one thread, the load-based guess and all cores."""
    forced = user_threads()
    if forced:
        return [forced]
    return sorted({1, guess_threads(), available_cores()})


class ThreadTuner:
    """Pick the torch thread count by timing a small workload with each candidate.

    `probe()` times the workload's matmul pattern with each candidate (cut short when a
    candidate is already 2x slower than the best), keeps the choice (`choose`) and applies it;
    `tick()` re-probes once `interval_s` seconds have passed. One candidate: nothing to measure.
    """

    def __init__(self, candidates: Sequence[int], interval_s: float | None = None,
                 workload: Workload | Callable[[], object] = "generate") -> None:
        import torch

        self.candidates = sorted(set(candidates))
        self.fixed = len(self.candidates) < 2
        self.current = self.candidates[-1]
        self.workload = workload
        self.interval_s = interval_s if interval_s is not None else INTERVAL_S.get(str(workload), 10.0)
        self.last_probe = float("-inf")
        self.history: list[int] = []
        self.initial = torch.get_num_threads()  # what `restore()` gives back

    def probe(self) -> int:
        import torch

        if self.fixed:
            torch.set_num_threads(self.current)
            return self.current
        self.current = choose(self.measure())
        torch.set_num_threads(self.current)
        self.last_probe = time.perf_counter()
        self.history.append(self.current)
        return self.current

    def measure(self) -> dict[int, float]:
        """Seconds the probe workload took with each candidate thread count."""
        import torch

        step, repeats = _probe_step(self.workload)
        times: dict[int, float] = {}
        for n in self.candidates:
            torch.set_num_threads(n)
            step()
            t = time.perf_counter()
            for _ in range(repeats):
                step()
                if times and time.perf_counter() - t > 2 * min(times.values()):
                    break
            times[n] = time.perf_counter() - t
        return times

    def tick(self) -> None:
        """Call once per unit of work (decode step, optimizer step); re-probes when due."""
        if not self.fixed and time.perf_counter() - self.last_probe > self.interval_s:
            self.probe()

    def restore(self) -> None:
        """Give back the thread count in place when the tuner was made."""
        import torch

        torch.set_num_threads(self.initial)


def choose(times: dict[int, float]) -> int:
    """The most threads whose probe time is within 25% of the fastest.

    Small probes are noisy, and a wrong pick of fewer threads costs a whole interval on an idle
    machine; under contention the gap between counts is many-fold, never marginal.
    """
    best = min(times.values())
    return max(n for n, took in times.items() if took <= 1.25 * best)


def tune_threads(workload: Workload | Callable[[], object] = "train", *, candidates: Sequence[int] | None = None,
                 interval_s: float | None = None) -> ThreadTuner:
    """Measure now, apply the fastest thread count, and return the tuner (call `tick()` to re-check)."""
    tuner = ThreadTuner(thread_candidates() if candidates is None else candidates, interval_s, workload)
    tuner.probe()
    return tuner


def retune_callback(tuner: ThreadTuner) -> Any:
    """A transformers TrainerCallback: re-probe between optimizer steps, restore at the end."""
    from transformers import TrainerCallback

    class ThreadRetuneCallback(TrainerCallback):
        def __init__(self) -> None:
            self.tuner = tuner

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.tuner.tick()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.tuner.restore()

    return ThreadRetuneCallback()


def probe_inputs(workload: Workload) -> tuple[Any, Any]:
    """The probe's activations and weight, scaled as a layer's are (x @ w ~ N(0, 1)). Unscaled
    standard normals make logits of std ~24, whose softmax is mostly subnormal floats: the
    backward product over them then ran 150x slower (0.5 s instead of 3 ms on an AVX-512 Xeon),
    and each training probe took 7 s instead of tens of milliseconds."""
    import torch

    rows, hidden, inter, _ = PROBE_SHAPES[workload]
    g = torch.Generator().manual_seed(0)
    return torch.randn(rows, hidden, generator=g), torch.randn(hidden, inter, generator=g) / hidden ** 0.5


def _probe_step(workload: Workload | Callable[[], object]) -> tuple[Callable[[], object], int]:
    """One probe iteration for `workload` and how many to time."""
    if callable(workload):
        return workload, 4

    repeats = PROBE_SHAPES[workload][3]
    x, w = probe_inputs(workload)
    if workload == "generate":
        return (lambda: (x @ w).softmax(-1)), repeats

    def train_step() -> object:  # forward, then the weight-gradient product of the backward pass
        y = (x @ w).softmax(-1)
        return x.t() @ y

    return train_step, repeats
