"""The one CPU thread policy (`mathtune.models.threads`): the user's count wins, candidates follow
the free cores, the tuner keeps the fastest measured count, and training applies and re-tunes it.

    .venv/bin/python -m pytest tests/test_threads.py -q
"""

from __future__ import annotations

import time

import pytest
import torch
from transformers import TrainerCallback

from mathtune.models import threads


@pytest.fixture(autouse=True)
def _keep_threads(monkeypatch):
    monkeypatch.delenv("MATHTUNE_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def slow_with(state: dict) -> object:
    """A fake workload: 4x slower when torch runs `state["slow"]` threads (a busy core)."""
    def step() -> None:
        time.sleep(0.008 if torch.get_num_threads() == state["slow"] else 0.002)
    return step


def test_user_setting_fixes_the_count_and_nothing_is_probed(monkeypatch):
    monkeypatch.setenv("MATHTUNE_THREADS", "1")
    assert threads.thread_candidates() == [1]
    monkeypatch.setattr(threads, "_probe_step", lambda w: pytest.fail("probed despite MATHTUNE_THREADS"))
    tuner = threads.tune_threads("train")
    assert tuner.fixed and torch.get_num_threads() == 1 and tuner.history == []
    monkeypatch.setenv("MATHTUNE_THREADS", "0")  # not a count: ignored
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.user_threads() == 2


def test_candidates_are_one_the_load_guess_and_all_cores(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (3.5, 0.0, 0.0))
    assert threads.guess_threads() == 6  # 8 cores, 3 busy: 8 - 3 + 1
    assert threads.thread_candidates() == [1, 6, 8]
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.3, 0.0, 0.0))
    assert threads.thread_candidates() == [1, 8]


def test_tuner_keeps_the_measured_fastest_and_retunes_when_load_moves():
    state = {"slow": 2}
    tuner = threads.ThreadTuner([1, 2], interval_s=0.0, workload=slow_with(state))
    times = tuner.measure()
    assert times[2] > 2 * times[1]
    assert tuner.probe() == 1 and torch.get_num_threads() == 1
    state["slow"] = 1  # the other process finished, the first core is now the busy one
    tuner.tick()
    assert tuner.current == 2 and torch.get_num_threads() == 2 and tuner.history == [1, 2]
    tuner.interval_s = 3600.0
    state["slow"] = 2
    tuner.tick()  # not due: no re-probe
    assert tuner.history == [1, 2]
    tuner.restore()
    assert torch.get_num_threads() == tuner.initial


@pytest.mark.parametrize("workload", ["generate", "train"])
def test_builtin_probe_workloads_run(workload):
    step, repeats = threads._probe_step(workload)
    assert repeats >= 1 and isinstance(step(), torch.Tensor)


@pytest.mark.parametrize("workload", ["generate", "train"])
def test_probe_workloads_make_no_subnormal_floats(workload):
    """Subnormal softmax outputs made the training probe's backward product 150x slower (7 s a probe)."""
    x, w = threads.probe_inputs(workload)
    probs = (x @ w).softmax(-1)
    assert not ((probs != 0) & (probs.abs() < torch.finfo(probs.dtype).tiny)).any()


class ThreadLog(TrainerCallback):
    """torch's thread count at the end of each optimizer step; flips the busy core after step 1."""

    def __init__(self, state: dict) -> None:
        self.state, self.seen = state, []

    def on_step_end(self, args, state, control, **kw):
        self.seen.append(torch.get_num_threads())
        self.state["slow"] = 1


def test_training_applies_the_tuned_threads_and_retunes_between_steps(tiny_model_dir, tmp_path, monkeypatch):
    from mathtune.train import train

    state = {"slow": 2}
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(threads, "_probe_step", lambda workload: (slow_with(state), 4))
    monkeypatch.setitem(threads.INTERVAL_S, "train", 0.0)
    threads.configure_cpu_threads()  # load-time guess already taken, so the count below is the caller's
    torch.set_num_threads(2)
    log = ThreadLog(state)
    examples = [{"problem": f"What is {i} + 1?", "solution": f"{i} + 1 = {i + 1}.", "answer": str(i + 1)}
                for i in range(8)]
    train({"model": {"name": str(tiny_model_dir), "device": "cpu"},
           "method": {"kind": "lora", "r": 2, "dropout": 0.0},
           "data": {"examples": examples, "prompt": "chat-boxed", "validation": 0},
           "run": {"output_dir": str(tmp_path / "run"), "progress": "none", "plot": False},
           "trainer": {"max_steps": 3, "per_device_train_batch_size": 4, "save_steps": 100}},
          callbacks=[log])
    # step 1 ran on the count measured before training (2 threads slow -> 1); then the busy
    # core moved, the next step's re-probe found 2 threads fastest, and training ran on 2
    assert log.seen == [1, 2, 2]
    assert torch.get_num_threads() == 2  # the caller's count is given back at the end
