"""Sandbox throughput: short programs through the warm pool vs a fresh sandbox per program,
side by side in one run (and an unsandboxed `python -c` per program for scale).

    .venv/bin/python benchmarks/sandbox_throughput.py              # 200 snippets, 2 workers
    .venv/bin/python benchmarks/sandbox_throughput.py --n 500 --workers 4

The snippets are the size TIR programs usually are (a few arithmetic lines, a print). Every
output is checked against the expected value, so a fast wrong sandbox cannot win. Prints
snippets/s of each way and the warm/fresh ratio; issue #13 asks for >= 50 snippets/s warm.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mathtune.tools import Sandbox, SandboxPool, SandboxWarning  # noqa: E402


def snippets(n: int) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        code = f"a = {i}\nb = sum(k * k for k in range(a % 50))\nprint(a * 3 + b)"
        out.append((code, f"{i * 3 + sum(k * k for k in range(i % 50))}\n"))
    return out


def bench_warm(items: list[tuple[str, str]], workers: int) -> float:
    with SandboxPool(workers=workers) as pool:
        pool.map(["pass"] * workers)  # warm: every worker started and used once
        t0 = time.perf_counter()
        results = pool.map([c for c, _ in items])
        dt = time.perf_counter() - t0
    bad = sum(r.output != want for r, (_, want) in zip(results, items, strict=True))
    assert not bad, f"{bad} warm results were wrong"
    return len(items) / dt


def bench_fresh(items: list[tuple[str, str]]) -> float:
    t0 = time.perf_counter()
    for code, want in items:
        with Sandbox() as box:
            r = box.run(code)
        assert r.output == want, r
    return len(items) / (time.perf_counter() - t0)


def bench_plain(items: list[tuple[str, str]]) -> float:
    t0 = time.perf_counter()
    for code, want in items:
        out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True).stdout
        assert out == want, out
    return len(items) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="snippets through the warm pool")
    ap.add_argument("--fresh-n", type=int, default=40, help="snippets for the per-program ways (slow)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    warnings.simplefilter("default", SandboxWarning)
    box = Sandbox()
    print(f"protection level: {box.protection.level} (active: {', '.join(box.protection.active)})")
    warm = bench_warm(snippets(args.n), args.workers)
    fresh = bench_fresh(snippets(args.fresh_n))
    plain = bench_plain(snippets(args.fresh_n))
    print(f"{'way':<42} {'snippets/s':>10}")
    print(f"{'warm pool (' + str(args.workers) + ' workers, fork per snippet)':<42} {warm:>10.1f}")
    print(f"{'fresh sandbox per snippet':<42} {fresh:>10.1f}")
    print(f"{'plain python -c per snippet (no sandbox)':<42} {plain:>10.1f}")
    print(f"warm / fresh sandbox: {warm / fresh:.1f}x; warm / plain: {warm / plain:.1f}x; "
          f"target >= 50 snippets/s warm: {'met' if warm >= 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
