"""The OpenAI-compatible backend against a tiny local stdlib HTTP server (127.0.0.1 only)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mathtune.errors import MathtuneError
from mathtune.generation import SamplingParams
from mathtune.generation.openai_api import OpenAIGenerator


class FakeCompletions(BaseHTTPRequestHandler):
    """Answers POST /v1/completions with text derived from the prompt and seed."""

    requests: list[dict] = []
    fail_first = 0

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeCompletions.requests.append(body)
        if FakeCompletions.fail_first > 0:
            FakeCompletions.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        if self.path != "/v1/completions":
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"no such route")
            return
        text = f"echo {body['prompt']} seed={body['seed']} The answer is \\boxed{{42}}.\nQuestion: next"
        finish = "length" if body["max_tokens"] < 5 else "stop"
        payload = {"choices": [{"text": text, "finish_reason": finish}], "usage": {"completion_tokens": 9}}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    FakeCompletions.requests = []
    FakeCompletions.fail_first = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeCompletions)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_completions_concurrent_with_stop_and_seeds(server):
    gen = OpenAIGenerator("fake-model", base_url=server, concurrency=4)
    seen = []
    params = SamplingParams(max_new_tokens=32, temperature=0.7, n=2, stop=("\nQuestion:",))
    outs = gen.generate(["p0", "p1", "p2"], params, on_complete=lambda i, s, c: seen.append((i, s)), seeds=[5, 6, 7])
    assert len(FakeCompletions.requests) == 6 and len(seen) == 6
    assert all(r["model"] == "fake-model" and r["max_tokens"] == 32 and r["stop"] == ["\nQuestion:"]
               for r in FakeCompletions.requests)
    for i, per in enumerate(outs):
        assert [c.text.startswith(f"echo p{i} ") for c in per] == [True, True]
        assert all(c.text.endswith("\\boxed{42}.") and c.tokens == 9 and c.finish_reason == "stop" for c in per)
        assert per[0].text != per[1].text  # each sample has its own seed
    again = OpenAIGenerator("fake-model", base_url=server + "/v1").generate(["p0"], params, seeds=[5])
    assert [c.text for c in again[0]] == [c.text for c in outs[0]]


def test_length_finish_and_retry(server):
    FakeCompletions.fail_first = 1  # one 503, then success
    out = OpenAIGenerator("m", base_url=server, retries=2).generate(["x"], SamplingParams(max_new_tokens=2))
    assert out[0][0].finish_reason == "length"
    assert len(FakeCompletions.requests) == 2


def test_unreachable_server_is_one_clear_error():
    gen = OpenAIGenerator("m", base_url="http://127.0.0.1:9", retries=0, timeout_s=2)
    with pytest.raises(MathtuneError, match="cannot reach the completions server"):
        gen.generate(["x"], SamplingParams(max_new_tokens=4))


def test_http_error_names_the_server(server):
    gen = OpenAIGenerator("m", base_url=server + "/v2", retries=0)
    gen.base_url = server + "/v2"  # a wrong route: 404
    with pytest.raises(MathtuneError, match="HTTP 404"):
        gen.generate(["x"], SamplingParams(max_new_tokens=4))
