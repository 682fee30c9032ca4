"""`mathtune serve` throughput: 16 concurrent streaming clients vs the same requests one at a time.

    .venv/bin/python benchmarks/serve_throughput.py                        # SmolLM2-135M, 16 GSM8K prompts
    .venv/bin/python benchmarks/serve_throughput.py --model tiny --max-tokens 32   # seconds, tiny model

Starts `mathtune serve MODEL` as a subprocess on 127.0.0.1 (a free port; loopback only), waits for
/health, then against that one server, side by side in one run:

  sequential: the requests sent one after another (each streamed),
  concurrent: the same requests from `--clients` threads at once (continuous batching).

Every request is greedy, streams (server-sent events, `stream_options.include_usage` for the token
count) and is bounded by --max-tokens and a per-request timeout. Prints, per arm: wall time,
completion tokens/s, p50/p95 latency and time to first token, errors; then the concurrent /
sequential throughput ratio and whether both arms produced the same texts (greedy, so they should,
up to floating-point ties between batch shapes). Prompts: GSM8K test questions from
../shared/data/benchmarks (chat template), else a fixed list.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "benchmarks" / "gsm8k" / "test.jsonl"
FALLBACK = ["What is 12*7?", "Solve for x: 2x + 3 = 11.", "What is gcd(12, 18)?", "What is 17 mod 5?"]


def questions(n: int) -> list[str]:
    if DATA.is_file():
        with open(DATA, encoding="utf-8") as f:
            return [json.loads(line)["question"] for line, _ in zip(f, range(n), strict=False)]
    return [FALLBACK[i % len(FALLBACK)] + f" (#{i})" for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, batch: int) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("mathtune")
    proc = subprocess.Popen([str(exe), "serve", model, "--port", str(port), "--name", "bench",
                             "--batch-size", str(batch)], stdout=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"mathtune serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if json.loads(r.read())["status"] == "ok":
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    sys.exit("mathtune serve did not come up within 300 s")


def one_request(port: int, question: str, max_tokens: int, timeout: float) -> dict:
    """One streamed chat completion: text, tokens, latency, time to first token (or error)."""
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": question}], "stream": True,
                       "max_tokens": max_tokens, "temperature": 0, "stream_options": {"include_usage": True}})
    t0 = time.perf_counter()
    ttft, text, tokens = None, [], 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            return {"error": f"HTTP {resp.status}: {resp.read()[:200]!r}"}
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                return {"error": event["error"]["message"]}
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            for c in event["choices"]:
                piece = c["delta"].get("content")
                if piece:
                    ttft = ttft if ttft is not None else time.perf_counter() - t0
                    text.append(piece)
    except OSError as e:
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        conn.close()
    latency = time.perf_counter() - t0
    return {"text": "".join(text), "tokens": tokens, "latency": latency, "ttft": ttft if ttft is not None else latency}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def arm(name: str, port: int, qs: list[str], clients: int, max_tokens: int, timeout: float) -> dict:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda q: one_request(port, q, max_tokens, timeout), qs))
    wall = time.perf_counter() - t0
    ok = [r for r in results if "error" not in r]
    tokens = sum(r["tokens"] for r in ok)
    lat, ttft = [r["latency"] for r in ok] or [0.0], [r["ttft"] for r in ok] or [0.0]
    print(f"{name:>10}: {len(qs)} requests, {clients:>2} at a time, {wall:6.2f} s, {tokens / wall:7.1f} tok/s, "
          f"latency p50 {pct(lat, .5):.2f} s p95 {pct(lat, .95):.2f} s, first token p50 {pct(ttft, .5):.2f} s "
          f"p95 {pct(ttft, .95):.2f} s, errors {len(results) - len(ok)}")
    for r in results:
        if "error" in r:
            print(f"            error: {r['error']}")
    return {"wall": wall, "tokens": tokens, "texts": [r.get("text") for r in results],
            "errors": len(results) - len(ok), "median_ttft": statistics.median(ttft)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="anything `mathtune serve` takes, or 'tiny'")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    args = ap.parse_args()

    model = args.model
    tmp = None
    if model == "tiny":
        sys.path.insert(0, str(REPO / "tests"))
        from tiny import save_tiny_model

        tmp = tempfile.TemporaryDirectory()
        model = str(save_tiny_model(Path(tmp.name) / "tiny", "llama"))
    port = free_port()
    print(f"model {args.model}, {args.requests} chat requests (greedy, stream, max_tokens {args.max_tokens}), "
          f"server batch {args.batch_size}, cpu count {os.cpu_count()}")
    proc = start_server(model, port, args.batch_size)
    try:
        qs = questions(args.requests)
        one_request(port, qs[0], 4, args.timeout)  # warm-up: lazy imports, thread probe
        seq = arm("sequential", port, qs, 1, args.max_tokens, args.timeout)
        con = arm("concurrent", port, qs, args.clients, args.max_tokens, args.timeout)
    finally:
        proc.terminate()
        proc.wait(30)
        if tmp:
            tmp.cleanup()
    ratio = (con["tokens"] / con["wall"]) / max(seq["tokens"] / seq["wall"], 1e-9)
    same = sum(a == b for a, b in zip(seq["texts"], con["texts"], strict=True))
    print(f"throughput concurrent / sequential: {ratio:.2f}x; identical texts {same}/{len(qs)}; "
          f"errors {seq['errors'] + con['errors']}")
    return 0 if seq["errors"] + con["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
