"""A sandboxed Python executor for model-written programs (tool-integrated reasoning).

    from mathtune.tools import Sandbox
    with Sandbox() as box:
        print(box.run("print(sum(range(10)))").output)      # 45
        r = box.run("while True: pass", timeout=1.0)       # r.status == "timeout"

A `Sandbox` is one long-lived worker process (`_worker.py`, started as `python -I -S -B -c`).
Every program runs in a fresh child the worker forks, so the warm worker costs a fork per
program, not an interpreter start (`benchmarks/sandbox_throughput.py`). Protections:

  always     per program: RLIMIT_CPU (timeout + 1 s), RLIMIT_AS (memory), RLIMIT_FSIZE, RLIMIT_NPROC
             (counts every process of the sandbox user), no core dumps, an output cap (the child is
             killed past it), a wall-clock kill by the worker at the timeout and by this host side
             at timeout + 0.5 s (select() timeouts, no signals: works from any thread), a fresh
             directory per program inside a fresh per-worker temporary directory, a scrubbed
             environment (PATH, HOME, TMPDIR, LANG, thread counts only), no_new_privs, and when run
             as root, setuid/setgid to `nobody` before any model code (limits do not bind root).
  bubblewrap (`bwrap`, Debian package bubblewrap; used when it is installed and works): private
             network, PID, IPC and UTS namespaces (no network at all, not even loopback; every
             process a program starts is killed after it; a stuck worker is killed with its whole
             namespace, found through bwrap's --info-fd), and a private filesystem: read-only
             /usr and the Python install, an empty /tmp, no /etc beyond the loader cache, no home
             directory, the temporary directory the only writable place.
  without bubblewrap, as root: the network is cut by a private network namespace (unshare)
             and the `nobody` user cannot read private files (/etc/shadow, a 0700 home), but it
             can read world-readable files and write world-writable directories (/tmp), and
             processes that leave the program's process group may outlive it.
  without bubblewrap, not root: limits only; the program runs as you and can reach the
             network and your files.

Whenever bubblewrap is not used a `SandboxWarning` names what is missing. `protection()` says
which level applies here; the test table (tests/test_sandbox.py) skips, with the reason, every
attack the active level cannot block.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import MathtuneError

Status = Literal["ok", "error", "timeout", "memory", "output_limit", "crashed"]
Level = Literal["bubblewrap", "root-fallback", "rlimits-only"]
NOBODY = 65534
GRACE_S = 0.5  # the host's kill comes this long after the worker's own
START_TIMEOUT_S = 20.0
WORKER_SOURCE = Path(__file__).with_name("_worker.py")
log = logging.getLogger("mathtune.sandbox")


class SandboxWarning(UserWarning):
    """The sandbox runs with fewer protections than bubblewrap gives."""


@dataclass(frozen=True)
class Limits:
    timeout: float = 5.0  # wall-clock seconds per program (CPU limit: timeout + 1 s)
    memory_mb: int = 1024  # address space
    file_mb: int = 16  # largest file a program may write
    nproc: int = 64  # processes of the sandbox user (RLIMIT_NPROC)
    max_output: int = 65536  # bytes of stdout + stderr kept; more kills the program


@dataclass(frozen=True)
class ExecResult:
    status: Status
    output: str  # stdout and stderr, interleaved as written
    error: str | None = None  # the exception's last traceback line, or why it was killed
    signal: str | None = None
    time_s: float = 0.0
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class Protection:
    level: Level
    active: tuple[str, ...]
    missing: tuple[str, ...] = field(default=())

    def has(self, name: str) -> bool:
        return name in self.active


BASE = ("limits", "wall-clock kill", "fresh temp dir", "scrubbed environment")


@functools.cache
def bwrap_works() -> bool:
    """Whether `bwrap` is installed and can create the namespaces we use (it may not in some
    containers without user namespaces)."""
    exe = shutil.which("bwrap")
    if not exe:
        return False
    try:
        proc = subprocess.run([exe, *_bwrap_system(), "--unshare-net", "--unshare-pid", "--die-with-parent",
                               "--", "/bin/true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def protection(use_bwrap: bool | None = None) -> Protection:
    """The protections a Sandbox gets here (`use_bwrap`: None = when available)."""
    root = os.geteuid() == 0
    if use_bwrap is not False and bwrap_works():
        return Protection("bubblewrap", (*BASE, "unprivileged user", "no network", "private filesystem",
                                         "pid namespace"))
    if use_bwrap:
        raise MathtuneError("bubblewrap (bwrap) was requested but is not installed or cannot create namespaces here",
                            "apt-get install -y bubblewrap, or let the sandbox pick (use_bwrap=None)")
    if root:
        return Protection("root-fallback", (*BASE, "unprivileged user", "no network"),
                          ("private filesystem (world-readable files are readable, /tmp is writable)",
                           "pid namespace (processes leaving the program's group can outlive it)"))
    return Protection("rlimits-only", BASE,
                      ("unprivileged user (code runs as you: your files, your processes)", "no network",
                       "private filesystem", "pid namespace"))


_WARNED: set[str] = set()


def _warn_once(p: Protection) -> None:
    if p.level == "bubblewrap" or p.level in _WARNED:
        return
    _WARNED.add(p.level)
    msg = (f"the Python sandbox runs WITHOUT bubblewrap (level {p.level}): missing {'; '.join(p.missing)}. "
           f"Active: {', '.join(p.active)}. Install it: apt-get install -y bubblewrap")
    log.warning(msg)
    warnings.warn(msg, SandboxWarning, stacklevel=3)


# ----------------------------------------------------------------------------- the worker command


def _bwrap_system() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for d in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    return args + ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]


def _site_dirs() -> list[str]:
    return [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]


def _others_can_read(path: str) -> bool:
    """Whether a user who is neither owner nor group could open `path` (every parent o+x)."""
    p = Path(path).resolve()
    try:
        for d in [*reversed(p.parents), p]:
            mode = d.stat().st_mode
            need = stat.S_IXOTH if d != p or d.is_dir() else stat.S_IROTH
            if not mode & need:
                return False
    except OSError:
        return False
    return True


def _interpreter(level: Level) -> tuple[str, list[str]]:
    """The interpreter and site-packages dirs the worker uses."""
    exe = os.path.realpath(sys.executable)
    sites = _site_dirs()
    if level != "root-fallback":
        return exe, sites
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for cand in (exe, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        stdlib = Path(cand).resolve().parent.parent / "lib" / version
        if os.path.isfile(cand) and _others_can_read(cand) and _others_can_read(str(stdlib / "os.py")):
            return cand, [s for s in sites if _others_can_read(s)]
    raise MathtuneError(f"the sandbox user 'nobody' cannot run this Python ({exe} is not world-readable) and no "
                        f"world-readable {version} was found", "apt-get install -y bubblewrap (then any Python works)")


def _environment(home: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _command(level: Level, workdir: str, limits: Limits) -> tuple[list[str], dict[str, str]]:
    exe, sites = _interpreter(level)
    root = os.geteuid() == 0
    inside = "/sandbox" if level == "bubblewrap" else workdir
    cfg = {"path": sites, "workdir": inside, "uid": NOBODY if root else None, "gid": NOBODY,
           "unshare_net": level == "root-fallback", "pid_namespace": level == "bubblewrap",
           "memory_mb": limits.memory_mb, "file_mb": limits.file_mb, "nproc": limits.nproc,
           "max_output": limits.max_output}
    py = [exe, "-I", "-S", "-B", "-c", WORKER_SOURCE.read_text(encoding="utf-8"), json.dumps(cfg)]
    if level != "bubblewrap":
        return py, _environment(inside)
    binds: list[str] = []
    parents: dict[str, None] = {}
    for d in dict.fromkeys([os.path.realpath(sys.base_prefix), os.path.dirname(exe), *sites]):
        binds += ["--ro-bind", d, d]
        parents.update(dict.fromkeys(str(p) for p in reversed(Path(d).parents) if str(p) != "/"))
    # bwrap creates missing parents as 0700 root: the sandbox user could not reach the binds.
    parents["/etc"] = None
    dirs = [a for p in parents if not p.startswith("/usr") for a in ("--perms", "0755", "--dir", p)]
    # No --die-with-parent: it fires when the *thread* that started bwrap exits (pool threads do).
    # A worker exits by itself at EOF on stdin, i.e. when this process goes away.
    argv = [shutil.which("bwrap") or "bwrap", "--new-session", "--unshare-net", "--unshare-pid",
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox", *dirs,
            *_bwrap_system(), "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", *binds, "--bind", workdir, inside,
            "--chdir", inside, "--", *py]
    return argv, _environment(inside)


# ----------------------------------------------------------------------------- the host side


def _send(fd: int, obj: dict[str, Any]) -> None:
    data = json.dumps(obj).encode("utf-8")
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def _recv(fd: int, deadline: float) -> dict[str, Any] | None:
    """One frame, or None when `deadline` (time.monotonic) passes; EOFError when the worker died."""
    buf = b""
    need = 4
    header = True
    while len(buf) < need:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return None
        chunk = os.read(fd, need - len(buf))
        if not chunk:
            raise EOFError("the sandbox worker closed its pipe")
        buf += chunk
        if header and len(buf) == 4:
            need, buf, header = struct.unpack(">I", buf)[0], b"", False
    return json.loads(buf.decode("utf-8"))


class Sandbox:
    """One sandboxed worker; `run()` is thread-safe (calls are serialised)."""

    def __init__(self, limits: Limits | None = None, use_bwrap: bool | None = None) -> None:
        self.limits = limits or Limits()
        self.protection = protection(use_bwrap)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: str | None = None
        self._inner_pid: int | None = None
        self.info: dict[str, Any] = {}
        self.restarts = 0

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        with self._lock:
            if self._proc is None:
                self._start()

    def _start(self) -> None:
        _warn_once(self.protection)
        self._workdir = tempfile.mkdtemp(prefix="mathtune-sandbox-")
        if os.geteuid() == 0:
            os.chown(self._workdir, NOBODY, NOBODY)
        argv, env = _command(self.protection.level, self._workdir, self.limits)
        info_r, info_w = os.pipe()  # bwrap reports the sandbox's PID there (--info-fd)
        if self.protection.level == "bubblewrap":
            argv = [argv[0], "--info-fd", str(info_w), *argv[1:]]
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, env=env, cwd=self._workdir,
                                          start_new_session=True, close_fds=True, pass_fds=(info_w,))
        finally:
            os.close(info_w)
        self._inner_pid = None
        try:
            ready = _recv(self._proc.stdout.fileno(), time.monotonic() + START_TIMEOUT_S)  # type: ignore[union-attr]
        except EOFError:
            ready = None
        os.set_blocking(info_r, False)  # bwrap wrote it before starting the worker
        with os.fdopen(info_r, "rb") as f, contextlib.suppress(ValueError, BlockingIOError, TypeError):
            self._inner_pid = json.loads(f.read() or b"{}").get("child-pid")
        if not ready or not ready.get("ready"):
            self._kill()
            raise MathtuneError(f"the sandbox worker did not start (level {self.protection.level})",
                                "check that `bwrap` works here, or pass use_bwrap=False to see the fallback")
        if self.protection.has("no network") and not ready.get("net_isolated"):
            self._kill()
            raise MathtuneError("the sandbox could not cut the network", "apt-get install -y bubblewrap")
        self.info = ready

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        inner, self._inner_pid = self._inner_pid, None
        # The sandbox's init (from --info-fd): killing it tears down its whole PID namespace. Only
        # while bwrap lives: then the PID is still its child's and cannot have been reused.
        if inner and proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(inner, signal.SIGKILL)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    f.close()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def close(self) -> None:
        with self._lock:
            self._kill()

    def run(self, code: str, prelude: Sequence[str] = (), timeout: float | None = None) -> ExecResult:
        """Run `code` after `prelude` (earlier programs, output discarded) in a fresh child."""
        t = float(timeout if timeout is not None else self.limits.timeout)
        with self._lock:
            t0 = time.monotonic()
            if self._proc is None or self._proc.poll() is not None:
                self._kill()
                self._start()
                self.restarts += 1
            assert self._proc is not None and self._proc.stdin and self._proc.stdout
            alive = True
            try:
                _send(self._proc.stdin.fileno(), {"code": code, "prelude": list(prelude), "timeout": t})
                reply = _recv(self._proc.stdout.fileno(), time.monotonic() + t + GRACE_S)
            except (EOFError, OSError):  # OSError: a broken pipe, the worker is gone
                reply, alive = None, False
            if reply is not None:
                return ExecResult(**reply)
            self._kill()  # stuck or dead: the next call starts a fresh worker
            elapsed = round(time.monotonic() - t0, 4)
            if alive:
                return ExecResult("timeout", "", f"the sandbox did not answer within {t:g} s and was killed",
                                  time_s=elapsed)
            return ExecResult("crashed", "", "the sandbox worker died (the program killed it?)", time_s=elapsed)
