"""`mathtune serve MODEL --backend vllm`: launch and supervise `vllm serve` with mathtune's CLI.

    cmd = vllm_command(resolve_model("qwen2.5-math-1.5b"), name="qwen", host="127.0.0.1", port=8000, ...)
    Supervisor(cmd, health_url="http://127.0.0.1:8000/health", env=env).run()

On a GPU, vLLM's own OpenAI server is the faster engine; mathtune keeps the command line the
same (model names resolved by the catalogue, `--adapter NAME=DIR` as vLLM LoRA modules, the API
key, the bind address, the length and batch limits) and supervises the process:
- readiness: `/health` is polled until it answers; the URL is printed only then;
- a crash (the process exits while nobody asked it to) is restarted, at most `max_restarts`
  times within `window_s` seconds, with a growing pause; past that the supervisor gives up with
  vLLM's exit status;
- Ctrl-C / SIGTERM to mathtune is forwarded to vLLM (its whole process group), which gets
  `grace_s` seconds to exit before it is killed; the supervisor then exits 0.
The API key travels in `VLLM_API_KEY`, not in argv, so `ps` does not show it. mathtune's own
server (continuous batching on its decode loop, math extras, the playground) is `--backend hf`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import MathtuneError

VLLM_DTYPES = {"auto": "auto", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts


def vllm_executable() -> list[str]:
    """`vllm` on PATH (the vllm package's console script), else one clear error."""
    exe = shutil.which("vllm")
    if exe is None:
        raise MathtuneError("--backend vllm needs the `vllm` command, which is not installed",
                            "pip install 'mathtune[vllm]' on a CUDA machine, or serve with --backend hf")
    return [exe]


def _lora_rank(adapters: Mapping[str, Path]) -> int | None:
    ranks = [int(json.loads((p / "adapter_config.json").read_text()).get("r", 8)) for p in adapters.values()]
    if not ranks:
        return None
    need = max(ranks)
    for r in LORA_RANKS:
        if r >= need:
            return r
    raise MathtuneError(f"an adapter has LoRA rank {need}; vLLM serves ranks up to {LORA_RANKS[-1]}",
                        "merge it first (mathtune export ADAPTER -o DIR) and serve DIR")


def vllm_command(model_path: Path | str, *, name: str, host: str, port: int, adapters: Mapping[str, Path] | None = None,
                 dtype: str = "auto", max_model_len: int | None = None, max_num_seqs: int | None = None,
                 executable: Sequence[str] | None = None, extra: Sequence[str] = ()) -> list[str]:
    """The `vllm serve` argv for a full model directory plus LoRA adapters of it."""
    adapters = dict(adapters or {})
    cmd = [*(executable or vllm_executable()), "serve", str(model_path), "--host", host, "--port", str(port),
           "--served-model-name", name, "--dtype", VLLM_DTYPES[dtype]]
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    if max_num_seqs:
        cmd += ["--max-num-seqs", str(max_num_seqs)]
    if adapters:
        cmd += ["--enable-lora", "--max-lora-rank", str(_lora_rank(adapters)), "--max-loras", str(len(adapters)),
                "--lora-modules", *[f"{n}={p}" for n, p in adapters.items()]]
    return cmd + list(extra)


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (our own loopback URL)
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Supervisor:
    """Run `cmd`, wait for `health_url`, restart crashes within a budget, forward shutdown."""

    def __init__(self, cmd: Sequence[str], *, health_url: str, env: Mapping[str, str] | None = None,
                 ready_timeout_s: float = 900.0, max_restarts: int = 3, window_s: float = 600.0,
                 grace_s: float = 20.0, poll_s: float = 0.5, log: Any = None) -> None:
        self.cmd, self.health_url = list(cmd), health_url
        self.env = dict(os.environ) | dict(env or {})
        self.ready_timeout_s, self.max_restarts, self.window_s = ready_timeout_s, max_restarts, window_s
        self.grace_s, self.poll_s = grace_s, poll_s
        self.log = log or (lambda msg: print(f"mathtune serve: {msg}", file=sys.stderr, flush=True))
        self.proc: subprocess.Popen | None = None
        self.starts: list[float] = []
        self._stopping = False

    def _start(self) -> None:
        self.starts.append(time.monotonic())
        self.proc = subprocess.Popen(self.cmd, env=self.env, start_new_session=True)

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline and not self._stopping:
            if self.proc is not None and self.proc.poll() is not None:
                return False
            if healthy(self.health_url):
                return True
            time.sleep(self.poll_s)
        return False

    def stop(self, *_: Any) -> None:
        """Ask vLLM to exit (SIGTERM to its process group), then kill it after `grace_s`."""
        self._stopping = True
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(self.grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass

    def run(self) -> int:
        old = {s: signal.signal(s, self.stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._loop()
        finally:
            self.stop()
            for s, h in old.items():
                signal.signal(s, h)

    def _loop(self) -> int:
        while True:
            self._start()
            if self._wait_ready():
                self.log(f"vLLM is up ({self.health_url.rsplit('/', 1)[0]}/v1, pid {self.proc.pid})")
            elif self.proc is not None and self.proc.poll() is None and not self._stopping:
                self.log(f"vLLM (pid {self.proc.pid}) has not answered {self.health_url} in "
                         f"{self.ready_timeout_s:.0f} s; it keeps running, see its own log above")
            assert self.proc is not None
            while self.proc.poll() is None:
                time.sleep(self.poll_s)
            code = self.proc.returncode
            if self._stopping:
                return 0
            recent = [t for t in self.starts if time.monotonic() - t < self.window_s]
            if len(recent) > self.max_restarts:
                self.log(f"vLLM exited with status {code}; {len(recent)} starts in {self.window_s:.0f} s: giving up")
                return code or 1
            pause = min(30.0, 2.0 ** (len(recent) - 1))
            self.log(f"vLLM exited with status {code}; restarting in {pause:.0f} s")
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline and not self._stopping:
                time.sleep(min(self.poll_s, pause))
            if self._stopping:
                return 0
