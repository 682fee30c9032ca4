"""Where a model runs and in what precision: device choice, compute dtype, free memory.

- `pick_device("auto")`: CUDA if visible, else Apple MPS, else CPU; an explicit CUDA device
  without a GPU is a clear error.
- `pick_dtype(device, "auto")`: bf16 on GPUs that support it (fp16 on older ones); on a CPU,
  bf16 only when a one-off probe (`cpu_bf16_is_fast`) shows this CPU runs bf16 matmul faster
  than fp32. CPUs without bf16 instructions (AVX512-BF16 / AMX) emulate it, often orders of
  magnitude slower, so bf16 is never assumed on a CPU.
- `free_memory(device)`: bytes free on the GPU, or available host RAM (after handing the heap
  pages this process has freed back to the kernel, `release_freed_heap`).

CPU threads are decided in `mathtune.models.threads`.
"""

from __future__ import annotations

import os
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import MathtuneError

if TYPE_CHECKING:
    import torch

DtypeName = Literal["auto", "fp32", "bf16", "fp16"]


def pick_device(device: str = "auto") -> str:
    """The device to run on: `device` itself if given (checked), else the best one visible."""
    import torch

    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise MathtuneError(f"device {device!r} requested but no CUDA GPU is visible", "use --device cpu")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def free_memory(device: str) -> int:
    """Bytes free on `device`: the GPU's free memory, or the host RAM a process can still get
    (8 GiB if unknown): the kernel's MemAvailable, which counts the page cache it would drop
    (a process that just read model files sees "free" pages halved by the cache), capped by a
    container's cgroup limit."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.mem_get_info()[0]
    release_freed_heap()
    available = _meminfo_available()
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return 8 << 30
    limit = _cgroup_headroom()
    return available if limit is None else min(available, limit)


def release_freed_heap() -> bool:
    """Hand the heap pages this process has freed back to the kernel (glibc `malloc_trim(0)`;
    False where there is no glibc). glibc keeps freed memory in its arenas, so after an eval or
    a training stage in the same process MemAvailable undercounts what this process could still
    get by what it freed: measured after evaluating 200 problems, 1.2 GB (RSS 1.90 -> 0.66 GB),
    which a later stage's checkpointing decision (`train.sft.checkpointing_setting`) would have
    counted as taken. The trim alone returns it (a `gc.collect` first freed nothing more there and
    took 190 ms against the trim's 35); `free_memory` runs before every generation call."""
    try:
        return bool(_libc().malloc_trim(0))
    except (OSError, AttributeError):
        return False


@cache
def _libc() -> Any:
    import ctypes

    return ctypes.CDLL("libc.so.6")


def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom(root: str = "/sys/fs/cgroup/") -> int | None:
    """cgroup v2 memory.max minus what the group uses beyond reclaimable page cache
    (memory.current less memory.stat's inactive_file), when this process runs under a limit."""
    try:
        limit, used, stat = (Path(root, name).read_text(encoding="ascii")
                             for name in ("memory.max", "memory.current", "memory.stat"))
    except OSError:
        return None
    limit, used, fields = limit.strip(), used.strip(), stat.split()
    if not limit.isdigit() or not used.isdigit():
        return None  # "max": no limit
    pairs = dict(zip(fields[::2], fields[1::2], strict=False))
    cache = int(pairs.get("inactive_file", "0")) if pairs.get("inactive_file", "0").isdigit() else 0
    return max(0, int(limit) - int(used) + cache)


@cache
def _cpuinfo() -> dict[str, str] | None:
    """The first processor's fields of /proc/cpuinfo; None where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            first = f.read().split("\n\n", 1)[0]
    except OSError:
        return None
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (x86 `flags`, Arm `Features`); empty where /proc/cpuinfo is missing."""
    field = _cpuinfo() or {}
    return frozenset((field.get("flags") or field.get("Features") or "").split())


@cache
def cpu_kind() -> str:
    """This CPU in one line: model, vendor and the SIMD flags that decide bf16 speed
    (AVX2, AVX-512, AVX512-BF16, AMX), read from /proc/cpuinfo where there is one."""
    import platform

    field = _cpuinfo()
    if field is None:
        return platform.processor() or platform.machine() or "unknown CPU"
    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in cpu_flags()]
    return f"{field.get('model name', platform.machine())} ({field.get('vendor_id', '?')}; {' '.join(simd) or 'no AVX2'})"


def cpu_bf16_is_fast() -> bool:
    """Whether bf16 matmul beats fp32 on this CPU: measured once per process (`_bf16_probe`), so
    every stage of one run (the demo's SFT, evaluations and GRPO) computes in the same dtype.

    Without AVX512-BF16/AMX a CPU emulates bf16 matmul and runs it far slower than fp32; with
    them it runs faster. A probe of a few tens of milliseconds decides rather than a guess.
    Override with MATHTUNE_CPU_DTYPE=fp32|bf16.
    """
    forced = os.environ.get("MATHTUNE_CPU_DTYPE")
    if forced:
        return forced == "bf16"
    return _bf16_probe()


@cache
def _bf16_probe() -> bool:
    import torch

    def timed(dtype: torch.dtype) -> float:
        a = torch.randn(192, 192, dtype=dtype)
        a @ a
        t = time.perf_counter()
        for _ in range(2):
            a @ a
        return time.perf_counter() - t

    # One thread: the question is the instruction set, not threading — and right after a bf16
    # op (oneDNN) spinning OpenMP workers can make the next multi-threaded fp32 op (BLAS) much
    # slower, which biased an earlier version of this probe towards bf16. Rounds alternate the
    # dtypes and each keeps its best: a 0.1 ms timing that a busy core interrupts once is
    # ruined (measured every call, the probe once answered fp32 midway through a demo on an AMX
    # Xeon, where bf16 takes 0.33-0.45x fp32's time, and the demo's GRPO ran 1.9x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fp32 = bf16 = float("inf")
        for _ in range(5):
            fp32 = min(fp32, timed(torch.float32))
            bf16 = min(bf16, timed(torch.bfloat16))
    finally:
        torch.set_num_threads(threads)
    return bf16 < 0.8 * fp32


def pick_dtype(device: str = "cpu", dtype: DtypeName = "auto") -> torch.dtype:
    """The compute dtype: explicit if asked; else bf16 where the hardware runs it fast, fp16 on
    pre-Ampere GPUs, fp32 otherwise."""
    import torch

    names = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if dtype != "auto":
        if dtype not in names:
            raise MathtuneError(f"unknown dtype {dtype!r}", "use one of: auto, fp32, bf16, fp16")
        return names[dtype]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "cpu":
        return torch.bfloat16 if cpu_bf16_is_fast() else torch.float32
    return torch.float32
