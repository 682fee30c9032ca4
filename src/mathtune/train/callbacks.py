"""Trainer callbacks: progress display, JSONL/CSV metric logs, NaN guard, loss-curve plot.

All are plain `transformers.TrainerCallback`s (the supported hook; no trainer subclassing).

- `ProgressCallback`: a rich progress bar (or plain lines) with step, loss, lr, tokens/s, ETA.
- `MetricsLogCallback`: every log record appended to `metrics.jsonl`; `metrics.csv` rewritten
  atomically at each save and at the end.
- `NanGuardCallback`: a non-finite training loss stops the run before anything is saved from
  the poisoned weights (mathtune sets `logging_nan_inf_filter=False` so the NaN reaches us).
- `InterruptAfterCallback`: raises after the checkpoint of step N is written (tests simulate a
  crash with it; `kill -9` is the same as far as the run directory is concerned).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..files import atomic_write_text

TRAIN_KEYS = ("loss", "learning_rate", "grad_norm", "num_tokens", "mean_token_accuracy", "entropy")


class ProgressCallback(TrainerCallback):
    def __init__(self, mode: str = "rich") -> None:
        self.mode = mode
        self.bar: Any = None
        self.task: Any = None
        self.t0 = 0.0
        self.step0 = 0
        self.tokens0: float | None = None
        self.last: dict[str, float] = {}

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        if not state.is_world_process_zero or self.mode == "none":
            return
        self.t0, self.step0 = time.time(), state.global_step
        if self.mode == "rich":
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.description}"), TimeRemainingColumn(), transient=False)
            self.bar.start()
            self.task = self.bar.add_task("", total=state.max_steps, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if not state.is_world_process_zero or self.mode == "none" or not logs:
            return
        if "loss" in logs:
            self.last.update({k: logs[k] for k in TRAIN_KEYS if k in logs})
            if self.tokens0 is None and "num_tokens" in logs:
                self.tokens0 = logs["num_tokens"]
        elapsed = max(time.time() - self.t0, 1e-9)
        done = state.global_step - self.step0
        tok_s = ((self.last.get("num_tokens", 0) - (self.tokens0 or 0)) / elapsed) if self.tokens0 is not None else 0
        eta = (state.max_steps - state.global_step) * elapsed / done if done else float("nan")
        text = (f"step {state.global_step}/{state.max_steps}  loss {self.last.get('loss', float('nan')):.4f}  "
                f"lr {self.last.get('learning_rate', 0):.2e}  {tok_s:,.0f} tok/s  ETA {_fmt(eta)}")
        if "eval_loss" in logs:
            text += f"  eval_loss {logs['eval_loss']:.4f}"
        if self.bar is not None:
            self.bar.update(self.task, completed=state.global_step, description=text)
        else:
            print(text, flush=True)

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _fmt(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class MetricsLogCallback(TrainerCallback):
    def __init__(self, run_dir: str | Path) -> None:
        self.jsonl = Path(run_dir) / "metrics.jsonl"
        self.csv = Path(run_dir) / "metrics.csv"

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if not state.is_world_process_zero or not logs:
            return
        rec = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time(), 3), **logs}
        self.jsonl.parent.mkdir(parents=True, exist_ok=True)
        with open(self.jsonl, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, default=str) + "\n")

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.is_world_process_zero:
            write_csv(self.jsonl, self.csv)

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.is_world_process_zero:
            write_csv(self.jsonl, self.csv)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Log records; after a resume, a re-logged step replaces the earlier record of that step."""
    path = Path(path)
    if not path.is_file():
        return []
    by_key: dict[tuple[int, int], dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            kind = 1 if any(k.startswith("eval_") for k in rec) else 2 if "train_runtime" in rec else 0
            by_key[(rec["step"], kind)] = rec
    return [by_key[k] for k in sorted(by_key)]


def write_csv(jsonl: Path, out: Path) -> None:
    rows = read_metrics(jsonl)
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out, buf.getvalue())


def truncate_metrics(path: Path, after_step: int) -> None:
    """Drop records past `after_step` (they belong to steps a resume will redo)."""
    rows = [r for r in read_metrics(path) if r["step"] <= after_step]
    atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))


class NanGuardCallback(TrainerCallback):
    """Stop at the first non-finite training loss; never save the poisoned weights."""

    def __init__(self) -> None:
        self.bad_step: int | None = None
        self.bad_value: float | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss) and self.bad_step is None:
            self.bad_step, self.bad_value = state.global_step, loss
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False
        return control


class InterruptAfterCallback(TrainerCallback):
    """Raise right after the checkpoint of step `step` is saved (simulates a crash)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.global_step >= self.step:
            raise KeyboardInterrupt(f"simulated interruption after step {state.global_step}")


def plot_losses(jsonl: str | Path, png: str | Path) -> Path | None:
    """Training and validation loss against step, as a PNG (matplotlib Agg)."""
    rows = read_metrics(jsonl)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r and math.isfinite(r["loss"])]
    val = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if not train and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", lw=1.2)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss", lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = Path(png)
    tmp = png.with_name(f".{png.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(png)
    return png
