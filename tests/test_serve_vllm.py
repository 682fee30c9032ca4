"""`mathtune serve --backend vllm` without a GPU: the `vllm serve` command line it builds, and its
supervision (readiness, restart after a crash, giving up, shutdown forwarded) against a fake
`vllm` executable on PATH that serves /health and records how it was started.

Run: .venv/bin/python -m pytest tests/test_serve_vllm.py -q
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mathtune.errors import MathtuneError
from mathtune.serve.vllm_server import Supervisor, healthy, vllm_command

FAKE = r'''#!PYTHON
"""A fake `vllm serve`: records argv, pid and VLLM_API_KEY, serves GET /health; with
FAKE_VLLM_CRASHES=N the first N starts exit with status 3 shortly after becoming healthy."""
import http.server, json, os, signal, sys, threading, time
state = os.environ["FAKE_VLLM_DIR"]
log = os.path.join(state, "starts.jsonl")
n = sum(1 for _ in open(log)) if os.path.exists(log) else 0
with open(log, "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "pid": os.getpid(), "key": os.environ.get("VLLM_API_KEY")}) + "\n")
port = int(sys.argv[sys.argv.index("--port") + 1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404); self.end_headers()
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("127.0.0.1", port), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
signal.signal(signal.SIGTERM, lambda *a: (open(os.path.join(state, "terminated"), "a").write("x"), os._exit(0)))
if n < int(os.environ.get("FAKE_VLLM_CRASHES", "0")):
    time.sleep(0.6); os._exit(3)
while True: time.sleep(1)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch) -> Path:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    exe = bin_dir / "vllm"
    exe.write_text(FAKE.replace("PYTHON", sys.executable))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_VLLM_DIR", str(state))
    return state


def _starts(state: Path) -> list[dict]:
    log = state / "starts.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_vllm_command_maps_the_cli_and_adapters(tmp_path):
    adapters = {}
    for name, r in (("sft", 16), ("grpo", 24)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text(json.dumps({"r": r}))
        adapters[name] = tmp_path / name
    cmd = vllm_command("/models/base", name="base", host="127.0.0.1", port=8011, adapters=adapters, dtype="bf16",
                       max_model_len=4608, max_num_seqs=32, executable=["vllm"])
    assert cmd[:3] == ["vllm", "serve", "/models/base"]
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=False))
    assert flags["--host"] == "127.0.0.1" and flags["--port"] == "8011" and flags["--served-model-name"] == "base"
    assert flags["--dtype"] == "bfloat16" and flags["--max-model-len"] == "4608" and flags["--max-num-seqs"] == "32"
    i = cmd.index("--enable-lora")
    assert cmd[i + 1:i + 5] == ["--max-lora-rank", "32", "--max-loras", "2"]  # 24 rounds up to vLLM's 32
    assert cmd[cmd.index("--lora-modules") + 1:] == [f"sft={adapters['sft']}", f"grpo={adapters['grpo']}"]
    assert "--enable-lora" not in vllm_command("/m", name="m", host="h", port=1, executable=["vllm"])
    (tmp_path / "grpo" / "adapter_config.json").write_text(json.dumps({"r": 1024}))
    with pytest.raises(MathtuneError, match="rank 1024"):
        vllm_command("/m", name="m", host="h", port=1, adapters=adapters, executable=["vllm"])


def test_serve_vllm_cli_restarts_a_crash_and_forwards_sigterm(fake_vllm, tiny_model_dir, tmp_path, monkeypatch):
    from test_serve_adapters import make_adapter

    adapter = make_adapter(tiny_model_dir, tmp_path / "alpha", seed=1)
    port = _free_port()
    env = dict(os.environ) | {"FAKE_VLLM_CRASHES": "1"}
    proc = subprocess.Popen([sys.executable, "-c", "from mathtune.cli import main; raise SystemExit(main())",
                             "serve", str(tiny_model_dir), "--backend", "vllm", "--name", "tiny", "--port", str(port),
                             "--adapter", f"alpha={adapter}", "--api-key", "sekret", "--dtype", "bf16"],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (len(_starts(fake_vllm)) == 2 and healthy(f"http://127.0.0.1:{port}/health")):
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline, "the crashed vLLM was not restarted"
            time.sleep(0.1)
        first, second = _starts(fake_vllm)
        assert not _alive(first["pid"]) and _alive(second["pid"])
        argv = second["argv"]
        assert argv[:2] == ["serve", str(tiny_model_dir)] and f"alpha={adapter}" in argv
        assert argv[argv.index("--served-model-name") + 1] == "tiny" and argv[argv.index("--max-model-len") + 1] == "4608"
        assert second["key"] == "sekret" and "sekret" not in argv  # the key is in the environment only
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert "exited with status 3; restarting" in err and "vLLM is up" in err
    assert (fake_vllm / "terminated").is_file() and not _alive(second["pid"])


def test_supervisor_gives_up_after_its_restart_budget(fake_vllm):
    port = _free_port()
    sup = Supervisor(["vllm", "serve", "m", "--port", str(port)], health_url=f"http://127.0.0.1:{port}/health",
                     env={"FAKE_VLLM_CRASHES": "99"}, max_restarts=1, window_s=60, poll_s=0.05, log=lambda m: None)
    t0 = time.time()
    assert sup.run() == 3  # vLLM's own exit status
    assert len(_starts(fake_vllm)) == 2 and time.time() - t0 < 20


def test_serve_vllm_errors_without_vllm_and_for_hf_only_flags(tiny_model_dir, monkeypatch, capsys, tmp_path):
    from mathtune.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))  # no vllm anywhere
    assert main(["serve", str(tiny_model_dir), "--backend", "vllm"]) == 2
    assert "needs the `vllm` command" in capsys.readouterr().err
    assert main(["serve", str(tiny_model_dir), "--backend", "vllm", "--max-queue", "8"]) == 2
    assert "--max-queue has no effect" in capsys.readouterr().err
    assert main(["serve", str(tiny_model_dir), "--backend", "vllm", "--device", "cpu"]) == 2
    assert "CUDA GPUs" in capsys.readouterr().err
