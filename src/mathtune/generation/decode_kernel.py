"""A C kernel for CPU decode attention, compiled on first use with the machine's C compiler.

A decode step's attention reads every row's keys and values once and does little arithmetic on
them, so it should run near memory bandwidth; PyTorch's CPU SDPA (the flash kernel, fed one
query token a row) reads them at 8-9 GB/s on 2 Zen 4 cores that copy memory at 36 GB/s, and was
40% of the hf backend's eval time there (64 GSM8K problems, bf16). Stock PyTorch alternatives were
no faster (batched matmuls + softmax: 1.61 against 1.70 ms a layer at batch 64, 300 columns).
`kernels/decode_attention.c` reads each (row, key/value head)'s K and V once for all the query
heads that share them (for head dims 64 and 128 and up to 8 query heads a key/value head, with the
queries, rows and accumulators in vector registers; a plain loop otherwise), skips masked columns (left padding and the holes of a shared-prefix
prefill) without reading them, accumulates in float32 and rounds once; its threads are the
OpenMP threads PyTorch uses. Per layer at batch 64, 3 key/value heads of 64, 20% of the columns
masked (2 Zen 4 cores, `tests/test_decode_kernel.py` checks it against SDPA): bf16 0.62 / 1.00 ms
against SDPA's 1.31 / 2.26 ms at 200 / 400 columns (2.1x / 2.3x), fp32 2.3x / 1.6x (the plain loop
alone: 1.5x / 1.8x in bf16). The hf backend on 64 GSM8K problems, bf16, side by side in one
harness: 158 problems/min on SDPA, 211 with the kernel.
Where the compiler targets AVX512-BF16 (Zen 4, Sapphire Rapids and later) the bf16 path multiplies
on VDPBF16PS instead (no conversion of K or V; scores 16 keys at a time through one shuffle-tree
reduction; values two keys at a time against their probabilities rounded to bf16, as PyTorch's
flash attention rounds them). Every path's softmax takes a polynomial exp the compiler
vectorises instead of libmvec's expf. On a Sapphire Rapids-class Xeon
(AMX, 2 cores), per layer at batch 64, 20% of the columns masked at random: 0.55 / 0.90 ms at 200
/ 400 columns against 0.91 / 1.71 ms for the float32-FMA version (1.6x / 1.9x) and 0.82 / 1.31 ms
for SDPA (1.5x); 64 GSM8K problems end to end, side by side: 39-43 s -> 32-33 s.
`benchmarks/eval_throughput.py` times the whole backend with it (`MATHTUNE_DECODE_KERNEL=0`
turns it off for a side-by-side run).

Built once per source, flags, compiler and CPU (its feature flags) into `kernels/` of the mathtune home (`$MATHTUNE_HOME`,
default `~/.cache/mathtune`) with `-O3 -march=native -ffast-math -fopenmp` (about a second), and
loaded only after a probe against SDPA passes. No compiler, a failed build or probe, another
platform or `MATHTUNE_DECODE_KERNEL=0`: `available()` is False and decode attention stays SDPA.

On by default on x86 CPUs with AVX-512 (both dtypes) or AVX2 (float32 only; every kind measured).
On AVX2 without AVX-512 the float32 path has its own task (8 keys scored at a time through one
horizontal-add tree, value chunks sized to the 16 registers): on an AVX2-only AMD EPYC (Zen 3, 2
cores, the model in float32 as `pick_dtype` picks there), per layer at batch 64, 3 key/value
heads of 64, every column read: 0.90 / 2.61 / 5.78 ms at 200 / 400 / 800 columns against SDPA's
2.56 / 4.95 / 9.92 (2.8x / 1.9x / 1.7x; 14-22 GB/s of K/V; 1.3-1.9x in a busier hour of that day); the 16-lane task it replaced ran at
5.7 GB/s, 0.77x SDPA. The whole hf backend, 64 GSM8K problems (256 tokens), one harness: 113.6 s
with the 16-lane task, 84.2 s with this one (1.35x), the same text on all 64 (on 2026-12-02 the
16-lane task had been 1.16x SDPA with row blocks end to end, from skipping the left padding). Elsewhere (no AVX2, not x86) it stays off unless
`MATHTUNE_DECODE_KERNEL=1` forces it (the tests do, so its results are checked on every machine).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("kernels") / "decode_attention.c"
FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC"]
LIBS = ["-lmvec", "-lm"]
DTYPES = ("bfloat16", "float32")


def cache_dir() -> Path:
    from ..models.pull import mathtune_home

    return mathtune_home() / "kernels"


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc) or shutil.which("gcc")


def _build(source: Path = SOURCE, flags: tuple[str, ...] = tuple(FLAGS)) -> Path | None:
    """The shared library for this source, flags and compiler, built if missing; None on failure
    (`load` builds `decode_ops`'s source with it too, with its own flags)."""
    cc = _compiler()
    if cc is None or not source.is_file():
        return None
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    import platform

    from ..models.device import cpu_flags

    # -march=native: a library built on one CPU may not run on another sharing this home directory
    headers = [h.read_text() for h in sorted(source.parent.glob("*.h"))]  # included by the sources
    parts = [source.read_text(), *headers, *flags, *LIBS, cc, version, platform.machine(), *sorted(cpu_flags())]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    out = cache_dir() / f"{source.stem}-{key}.so"
    if out.is_file():
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            built = Path(tmp) / out.name
            res = subprocess.run([cc, *flags, "-o", str(built), str(source), *LIBS], capture_output=True, text=True,
                                 timeout=300)
            if res.returncode != 0:
                log.info("%s not built (%s): %s", source.name, cc, res.stderr.strip()[-500:])
                return None
            os.replace(built, out)  # atomic: a concurrent build leaves one complete file
    except (OSError, subprocess.SubprocessError) as e:
        log.info("%s not built: %s", source.name, e)
        return None
    return out


def load(source: Path, flags: tuple[str, ...]) -> Any:
    """`source` built (`_build`) and loaded with ctypes after PyTorch (whose libgomp the OpenMP
    threads then share), or None: not Linux, no compiler, a failed build or load."""
    if not sys.platform.startswith("linux"):
        return None
    import torch  # noqa: F401  (its libgomp must be loaded first)

    path = _build(source, flags)
    if path is None:
        return None
    try:
        return ctypes.CDLL(str(path))
    except OSError as e:
        log.info("%s not loaded: %s", path.name, e)
        return None


def _switch() -> str:
    """`MATHTUNE_DECODE_KERNEL`: "0", "1" or "auto" (unset); anything else is one clear error."""
    switch = os.environ.get("MATHTUNE_DECODE_KERNEL", "auto").strip().lower() or "auto"
    if switch not in ("0", "1", "auto"):
        from ..errors import MathtuneError

        raise MathtuneError(f"MATHTUNE_DECODE_KERNEL={os.environ['MATHTUNE_DECODE_KERNEL']!r} is not a setting",
                            "use 0 (off), 1 (on, any CPU) or auto (on with AVX2 / AVX-512), or unset it")
    return switch


@functools.cache
def _library() -> Any:
    """The loaded, probed kernel library, or None; `lib.mathtune_dtypes` are the dtypes it takes."""
    switch = _switch()
    if switch == "0":
        return None
    if switch != "1" and not why_on():
        return None  # measured to pay off with AVX2 / AVX-512 (module docstring); "1" forces it
    lib = load(SOURCE, tuple(FLAGS))
    if lib is None:
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for name in ("decode_attention_bf16", "decode_attention_f32"):
        fn = getattr(lib, name)
        fn.argtypes = [ptr] * 5 + [i64] * 16 + [ctypes.c_float]
        fn.restype = ctypes.c_int
    lib.decode_attention_bf16_dp.restype = ctypes.c_int
    if not _probe(lib):
        return None
    # the bf16 path this build takes: VDPBF16PS products where the compiler targets AVX512-BF16
    lib.mathtune_bf16_path = "VDPBF16PS" if lib.decode_attention_bf16_dp() else "float32 FMAs"
    # bf16 only with AVX-512 or forced: see `dtypes`
    lib.mathtune_dtypes = DTYPES if switch == "1" or why_on() == "avx512f" else ("float32",)
    return lib


def why_on() -> str:
    """The CPU feature the automatic setting turns the kernel on for ("avx512f", "avx2"), or ""."""
    from ..models.device import cpu_flags

    return next((f for f in ("avx512f", "avx2") if f in cpu_flags()), "")


def dtypes() -> tuple[str, ...]:
    """The dtypes the kernel takes here: both with AVX-512 or when forced; float32 only on an
    AVX2-only CPU, where `pick_dtype` picks float32 and bf16 is measured for neither speed nor
    end-to-end greedy agreement (the kernel's bf16 results are checked against SDPA there too).
    Decided once, when the library loads: this runs in every decode step's attention."""
    return _library().mathtune_dtypes if available() else ()


def available() -> bool:
    return _library() is not None


def describe() -> str:
    """One line for benchmarks and logs: whether the kernel runs here, and why."""
    switch = _switch()
    if available():
        lib = _library()
        paths = [f"bfloat16 on {lib.mathtune_bf16_path}" if d == "bfloat16" else d for d in dtypes()]
        return f"on ({'forced' if switch == '1' else why_on()}; {', '.join(paths)})"
    if switch == "0":
        return "off (MATHTUNE_DECODE_KERNEL=0)"
    if switch != "1" and not why_on():
        return "off (no AVX2 / AVX-512; MATHTUNE_DECODE_KERNEL=1 forces it)"
    return "off (not built or failed its probe: a C compiler with OpenMP is needed)"


def _call(lib: Any, query: Any, key: Any, value: Any, mask: Any, scale: float) -> Any:
    import torch

    b, h, _, d = query.shape
    hk, cols = key.shape[1], key.shape[2]
    out = torch.empty(b, 1, h, d, dtype=query.dtype)
    m = None if mask is None else mask.reshape(b, cols).view(torch.uint8)
    fn = lib.decode_attention_bf16 if query.dtype == torch.bfloat16 else lib.decode_attention_f32
    failed = fn(query.data_ptr(), key.data_ptr(), value.data_ptr(), None if m is None else m.data_ptr(),
                out.data_ptr(), b, h, hk, cols, d, query.stride(0), query.stride(1), key.stride(0), key.stride(1),
                key.stride(2), value.stride(0), value.stride(1), value.stride(2), 0 if m is None else m.stride(0),
                out.stride(0), out.stride(2), scale)
    if failed:
        raise MemoryError("decode attention kernel: out of memory for its score buffers")
    return out


def supports(query: Any, key: Any, value: Any, mask: Any) -> bool:
    """Whether `attention` takes these inputs: one query token a row, CPU, bf16 or fp32, key/value
    heads dividing the query heads, unit stride along the head dim, a bool [B, 1, 1, L] mask or none."""
    import torch

    return (query.device.type == "cpu" and query.dim() == 4 and query.shape[2] == 1
            and str(query.dtype).removeprefix("torch.") in dtypes() and key.dtype == value.dtype == query.dtype
            and key.shape == value.shape and key.shape[0] == query.shape[0] and key.shape[3] == query.shape[3]
            and query.shape[1] % key.shape[1] == 0 and key.shape[2] > 0
            and query.stride(3) == key.stride(3) == value.stride(3) == 1
            and (mask is None or (mask.dtype == torch.bool and mask.shape == (key.shape[0], 1, 1, key.shape[2])
                                  and mask.reshape(key.shape[0], key.shape[2]).stride(1) == 1)))


def attention(query: Any, key: Any, value: Any, mask: Any, scale: float) -> Any:
    """[B, 1, H, D] attention output of one query token a row (query [B, H, 1, D], key/value
    [B, Hk, L, D], mask [B, 1, 1, L] bool or None), as transformers' attention functions return
    it; the caller checks `available()` and `supports(...)` first."""
    return _call(_library(), query, key, value, mask, scale)


def _probe(lib: Any) -> bool:
    """The kernel against SDPA: grouped and plain heads, strided caches, masks with holes."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    try:
        # head dims 64 and 128 take the specialised vector paths, 16 the generic one
        for dtype, heads, dim, tol in ((torch.float32, (6, 2), 64, 1e-5), (torch.bfloat16, (9, 3), 64, 2e-2),
                                       (torch.bfloat16, (4, 4), 128, 2e-2), (torch.float32, (2, 1), 16, 1e-5)):
            h, hk = heads
            q = torch.randn(3, h, 1, dim, generator=gen).to(dtype)
            k, v = (torch.randn(3, hk, 40, dim, generator=gen).to(dtype)[:, :, :29] for _ in range(2))
            mask = torch.rand(3, 1, 1, 29, generator=gen) > 0.3
            mask[..., -1] = True
            for m in (mask, None):
                ref = F.scaled_dot_product_attention(q.float(), k.float().repeat_interleave(h // hk, 1),
                                                     v.float().repeat_interleave(h // hk, 1), attn_mask=m, scale=0.25)
                got = _call(lib, q, k, v, m, 0.25)
                if not torch.allclose(got.float(), ref.transpose(1, 2), atol=tol, rtol=tol):
                    log.info("decode attention kernel failed its probe (%s): not used", dtype)
                    return False
    except (RuntimeError, OSError, MemoryError) as e:
        log.info("decode attention kernel failed its probe: %s", e)
        return False
    return True
