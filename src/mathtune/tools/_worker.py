"""The sandbox worker: a long-lived process (inside bubblewrap when present) that runs each
program in a fresh forked child under resource limits, and answers over its stdin/stdout.

Never imported by mathtune: `sandbox.py` reads this file's text and starts it as
`python -I -S -c <this source> <config json>`, so nothing of the host's sys.path, site
customisation or environment leaks in. Standard library only.

Protocol: each frame is a 4-byte big-endian length and a UTF-8 JSON object. The worker sends
{"ready": ...} once, then for every request {"code", "prelude", "timeout"} one result
{"status", "output", "error", "signal", "time_s", "truncated"}.
"""

import builtins
import contextlib
import ctypes
import io
import json
import os
import resource
import select
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback

CLONE_NEWNET = 0x40000000
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1
EXIT_ERROR, EXIT_MEMORY = 1, 3
LIBC = ctypes.CDLL(None, use_errno=True)


def read_frame(fd):
    head = _read_exact(fd, 4)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body.decode("utf-8"))


def _read_exact(fd, n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def send_frame(fd, obj):
    data = json.dumps(obj).encode("utf-8")
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def harden(cfg):
    """Before any model code: optional private network namespace (root fallback), drop to the
    sandbox user when root, and forbid regaining privileges (setuid binaries, file caps)."""
    libc = LIBC
    info = {"net_isolated": bool(cfg["pid_namespace"])}  # bubblewrap gave us --unshare-net
    if cfg["unshare_net"] and os.geteuid() == 0:
        info["net_isolated"] = libc.unshare(CLONE_NEWNET) == 0
    if os.geteuid() == 0 and cfg["uid"] is not None:
        os.setgroups([])
        os.setgid(cfg["gid"])
        os.setuid(cfg["uid"])
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise SystemExit("privileges could not be dropped")
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    info["uid"] = os.getuid()
    return info


def set_limits(cfg, timeout):
    cpu = int(timeout) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    mem = cfg["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    size = cfg["file_mb"] << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_NPROC, (cfg["nproc"], cfg["nproc"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def child(cfg, req, out_w, err_w, rundir):
    """In the forked child: limits, then the earlier programs (silenced), then the program."""
    me = os.getpid()  # a program that forks: only this process reports the error
    os.setsid()
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with the worker
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    os.chdir(rundir)
    set_limits(cfg, req["timeout"])
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    code = 0
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for i, prog in enumerate(req.get("prelude") or ()):
                exec(compile(prog, f"<previous program {i + 1}>", "exec"), namespace)
        exec(compile(req["code"], "<program>", "exec"), namespace)
    except MemoryError:
        code = EXIT_MEMORY
        message = "MemoryError: the program ran out of memory"
    except SystemExit as e:
        code = 0 if e.code in (None, 0) else EXIT_ERROR
        message = f"SystemExit: {e.code}"
    except BaseException as e:  # noqa: BLE001 - the model's error is the result
        code = EXIT_ERROR
        try:
            message = traceback.format_exception_only(type(e), e)[-1].strip()
        except BaseException:  # noqa: BLE001
            message = type(e).__name__
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - a closed or broken stdout must not hide the status
        pass
    if code and os.getpid() == me:
        with contextlib.suppress(OSError):
            os.write(err_w, message.encode("utf-8", "replace")[:2000])
    os._exit(code)


def collect(pid, out_r, deadline, max_output):
    """Read the child's output until EOF, its exit, the deadline or the output limit."""
    out, status, wait = bytearray(), None, None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            status = "timeout"
            break
        ready, _, _ = select.select([out_r], [], [], min(remaining, 0.05))
        if ready:
            chunk = os.read(out_r, 65536)
            if not chunk:
                break  # EOF: the child and everything it started closed the pipe
            out += chunk
            if len(out) > max_output:
                status = "output_limit"
                break
            continue
        done, ws = os.waitpid(pid, os.WNOHANG)  # quiet: exited while a grandchild holds the pipe?
        if done:
            wait = ws
            break
    return out, status, wait


def kill_all(pid, wait, pid_namespace):
    """Kill and reap the child, then whatever it started: its process group and, in our own
    PID namespace, every other process (a fork bomb's children may have left the group).
    Bounded loops: zombies still count as signalled until their parent reaps them."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if wait is None:
        _, wait = os.waitpid(pid, 0)
    for _ in range(200):
        try:
            if pid_namespace:
                os.kill(-1, signal.SIGKILL)  # in a PID namespace: all but init and ourselves
            else:
                os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            break
        time.sleep(0.001)
    return wait


def run_one(cfg, req):
    t0 = time.monotonic()
    rundir = tempfile.mkdtemp(prefix="run-", dir=cfg["workdir"])
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(out_r)
            os.close(err_r)
            for fd in cfg["_proto"]:
                os.close(fd)
            child(cfg, req, out_w, err_w, rundir)
        except BaseException as e:  # noqa: BLE001 - a failure before the program ran
            with contextlib.suppress(BaseException):
                os.write(err_w, f"sandbox setup failed: {type(e).__name__}: {e}".encode()[:2000])
        finally:
            os._exit(70)
    os.close(out_w)
    os.close(err_w)
    out, status, wait = collect(pid, out_r, t0 + req["timeout"], cfg["max_output"])
    wait = kill_all(pid, wait, cfg["pid_namespace"])
    os.set_blocking(err_r, False)
    try:
        error = os.read(err_r, 4096).decode("utf-8", "replace") or None
    except BlockingIOError:
        error = None
    os.close(out_r)
    os.close(err_r)
    shutil.rmtree(rundir, ignore_errors=True)
    sig = None
    if status is None:
        if os.WIFSIGNALED(wait):
            sig = signal.Signals(os.WTERMSIG(wait)).name
            status = "timeout" if sig == "SIGXCPU" else "crashed"
            error = error or f"the program was killed by {sig}"
        else:
            status = {0: "ok", EXIT_MEMORY: "memory"}.get(os.WEXITSTATUS(wait), "error")
    elif status == "timeout":
        error = f"the program ran longer than {req['timeout']:g} s and was killed"
    else:
        error = f"the program printed more than {cfg['max_output']} bytes and was killed"
    text = bytes(out[: cfg["max_output"]]).decode("utf-8", "replace")
    return {"status": status, "output": text, "error": error, "signal": sig,
            "time_s": round(time.monotonic() - t0, 4), "truncated": len(out) > cfg["max_output"]}


def main():
    cfg = json.loads(sys.argv[1])
    sys.path.extend(cfg["path"])
    proto_in, proto_out = os.dup(0), os.dup(1)
    cfg["_proto"] = (proto_in, proto_out)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.chdir(cfg["workdir"])
    info = harden(cfg)
    send_frame(proto_out, {"ready": True, **info})
    while True:
        req = read_frame(proto_in)
        if req is None:
            return
        send_frame(proto_out, run_one(cfg, req))


if __name__ == "__main__":
    main()
