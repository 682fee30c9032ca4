"""`mathtune serve` on a tiny in-process model: endpoints, equality with in-process generation,
streaming, faults, disconnects, batching, and `mathtune eval --backend openai` against it.

Run: .venv/bin/python -m pytest tests/test_serve.py -q
Servers bind 127.0.0.1 on a free port (uvicorn in a thread) or run in FastAPI's TestClient.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from fastapi.testclient import TestClient  # noqa: E402

from mathtune.generation import HFGenerator, SamplingParams  # noqa: E402
from mathtune.grading import extract_answer  # noqa: E402
from mathtune.serve.app import create_app  # noqa: E402
from mathtune.serve.batcher import Job  # noqa: E402
from mathtune.serve.schemas import Limits  # noqa: E402

PROMPTS = ["What is 12*7?", "Solve for x: 2x + 3 = 11.", "The area of a circle is", "gcd(12, 18) ="]


@pytest.fixture(scope="module")
def gen(tiny_model_dir):
    return HFGenerator(str(tiny_model_dir), batch_size=16, dtype="fp32", threads=1)


class LiveServer:
    """uvicorn serving `app` on 127.0.0.1:<free port> in a thread."""

    def __init__(self, app):
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)

    def post(self, path, body, timeout=60):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def health(self):
        with urllib.request.urlopen(self.url + "/health", timeout=10) as r:
            return json.loads(r.read())


@pytest.fixture(scope="module")
def live(gen, tiny_model_dir):
    # the served name is the model dir: `mathtune eval --backend openai` loads its tokenizer from it
    with LiveServer(create_app(gen, model_name=str(tiny_model_dir), window_s=0.2)) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(gen):
    app = create_app(gen, model_name="tiny", api_key=None,
                     limits=Limits(max_prompt_tokens=64, max_tokens=64, max_body_bytes=20_000, max_n=4))
    with TestClient(app) as c:
        yield c


def sse_events(text: str) -> list:
    """The `data:` payloads of a server-sent-event stream, parsed (the last is '[DONE]')."""
    out = []
    for block in text.split("\n\n"):
        block = block.strip()
        if block:
            assert block.startswith("data: "), block
            payload = block[len("data: "):]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


# ---------------------------------------------------------------------- endpoints


def test_models_health_and_playground(client):
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny"]
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny"
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert 'id="prompt"' in html and "/v1/chat/completions" in html and "mark" in html
    # self-contained: nothing loaded from elsewhere (works offline)
    assert 'src="http' not in html and 'href="http' not in html and "@import" not in html


def test_greedy_completions_equal_in_process_generation(client, gen):
    ref = gen.generate(PROMPTS, SamplingParams(max_new_tokens=24, stop=(". ",)))
    body = client.post("/v1/completions", json={"model": "tiny", "prompt": PROMPTS, "max_tokens": 24,
                                                 "temperature": 0, "stop": ". "}).json()
    assert [c["text"] for c in body["choices"]] == [r[0].text for r in ref]
    assert [c["finish_reason"] for c in body["choices"]] == [r[0].finish_reason for r in ref]
    assert body["usage"]["completion_tokens"] == sum(r[0].tokens for r in ref)
    assert all(c["mathtune"]["answer"] == extract_answer(c["text"]) for c in body["choices"])
    one = client.post("/v1/completions", json={"model": "tiny", "prompt": PROMPTS[1], "max_tokens": 24,
                                                "temperature": 0}).json()
    assert one["choices"][0]["text"] == gen.generate([PROMPTS[1]], SamplingParams(max_new_tokens=24))[0][0].text


def test_chat_completions_use_the_chat_template_and_prompt_styles(client, gen):
    from mathtune.prompts import get_style

    messages = [{"role": "user", "content": "What is 12*7?"}]
    body = client.post("/v1/chat/completions", json={"model": "tiny", "messages": messages, "max_tokens": 20,
                                                      "temperature": 0}).json()
    prompt = gen.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ref = gen.generate([prompt], SamplingParams(max_new_tokens=20))[0][0]
    msg = body["choices"][0]["message"]
    assert body["object"] == "chat.completion" and msg == {"role": "assistant", "content": ref.text}
    assert body["usage"]["prompt_tokens"] == len(gen.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    styled = client.post("/v1/chat/completions", json={
        "model": "tiny", "messages": messages, "max_tokens": 20, "temperature": 0,
        "mathtune": {"prompt": "chat-boxed"}}).json()
    boxed = get_style("chat-boxed").render("What is 12*7?", gen.tokenizer)
    assert styled["choices"][0]["message"]["content"] == gen.generate([boxed], SamplingParams(max_new_tokens=20))[0][0].text


def test_seeded_samples_match_in_process_sampling_and_vote(client, gen):
    req = {"model": "tiny", "prompt": PROMPTS[0], "max_tokens": 12, "temperature": 0.9, "top_p": 0.9, "n": 3,
           "seed": 11, "mathtune": {"vote": True}}
    body = client.post("/v1/completions", json=req).json()
    ref = gen.generate([PROMPTS[0]], SamplingParams(max_new_tokens=12, temperature=0.9, top_p=0.9, n=3), seeds=[11])
    texts = [c["text"] for c in body["choices"]]
    assert texts == [c.text for c in ref[0]] and len(set(texts)) > 1
    vote = body["mathtune"]["vote"][0]
    answers = [extract_answer(t) for t in texts]
    assert vote["of"] == 3 and vote["answer"] in [*answers, None]
    if vote["answer"] is not None:
        assert vote["answer"] == answers[vote["first_choice"]]


def test_streaming_sse_equals_the_non_streamed_answer(client):
    base = {"model": "tiny", "max_tokens": 20, "temperature": 0}
    full = client.post("/v1/completions", json={**base, "prompt": PROMPTS[2]}).json()["choices"][0]
    r = client.post("/v1/completions", json={**base, "prompt": PROMPTS[2], "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]" and len(events) > 3  # streamed piece by piece
    chunks = [e["choices"][0] for e in events[:-1]]
    assert "".join(c["text"] for c in chunks) == full["text"]
    assert chunks[-1]["finish_reason"] == full["finish_reason"] and chunks[-1]["mathtune"] == full["mathtune"]

    msgs = [{"role": "user", "content": "What is 12*7?"}]
    chat_full = client.post("/v1/chat/completions", json={**base, "messages": msgs}).json()
    events = sse_events(client.post("/v1/chat/completions", json={
        **base, "messages": msgs, "stream": True, "stream_options": {"include_usage": True}}).text)
    assert events[-2]["choices"] == [] and events[-2]["usage"] == chat_full["usage"]
    deltas = [e["choices"][0]["delta"] for e in events[:-2]]
    assert deltas[0]["role"] == "assistant" and events[0]["object"] == "chat.completion.chunk"
    assert "".join(d.get("content", "") for d in deltas) == chat_full["choices"][0]["message"]["content"]


# ---------------------------------------------------------------------- faults


@pytest.mark.parametrize("body, status, param, words", [
    (b"{not json", 400, None, "not valid JSON"),
    (b"[1, 2]", 400, None, "JSON object"),
    ({"model": "gpt-4", "prompt": "x"}, 404, "model", "does not exist"),
    ({"model": "tiny", "prompt": "12*7 " * 200}, 400, "prompt", "over the limit of 64"),
    ({"model": "tiny", "prompt": "x", "temperature": 5}, 400, "temperature", "less than or equal to 2"),
    ({"model": "tiny", "prompt": "x", "top_p": 0}, 400, "top_p", "greater than 0"),
    ({"model": "tiny", "prompt": "x", "n": 2, "temperature": 0}, 400, None, "identical copies"),
    ({"model": "tiny", "prompt": "x", "n": 9, "temperature": 1}, 400, "n", "over the limit of 4"),
    ({"model": "tiny", "prompt": "x", "max_tokens": 100000}, 400, "max_tokens", "over the limit of 64"),
    ({"model": "tiny", "prompt": "x", "max_tokens": 0}, 400, "max_tokens", "greater than or equal to 1"),
    ({"model": "tiny", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "at most 4"),
    ({"model": "tiny"}, 400, "prompt", "Field required"),
    ({"model": "tiny", "prompt": "x" * 30_000}, 413, None, "over the limit of 20000"),
])
def test_bad_requests_are_fast_openai_shaped_4xx(client, body, status, param, words):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    t0 = time.perf_counter()
    r = client.post("/v1/completions", content=raw, headers={"Content-Type": "application/json"})
    elapsed = time.perf_counter() - t0
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert words in err["message"] and err["param"] == param
    assert elapsed < 0.1, f"{elapsed * 1000:.0f} ms"


def test_chunked_body_without_length_is_limited_too(client):
    def body():  # no Content-Length: the server counts bytes as they arrive
        yield b'{"model": "tiny", "prompt": "'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"}'

    r = client.post("/v1/completions", content=body(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_api_key_is_required_when_set(gen):
    with TestClient(create_app(gen, model_name="tiny", api_key="s3cret")) as c:
        assert c.get("/v1/models").status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer wrong"}).json()["error"]["code"] == "invalid_api_key"
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/health").status_code == 200  # liveness probes need no key


def test_full_queue_answers_429(gen):
    app = create_app(gen, model_name="tiny", limits=Limits(max_queue=1))
    batcher = app.state.batcher
    release, blocked = threading.Event(), threading.Event()

    def stall(_event):  # the worker stays inside this job's first event until released
        blocked.set()
        release.wait(10)

    with TestClient(app) as c:
        batcher.submit(Job(ids=gen.encode("x"), emit=stall, max_tokens=4))
        assert blocked.wait(10)
        filler = Job(ids=gen.encode("y"), emit=lambda e: None, max_tokens=2)
        batcher.submit(filler)  # the queue (bound 1) is now full
        r = c.post("/v1/completions", json={"model": "tiny", "prompt": "z", "max_tokens": 2})
        release.set()
        assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
        deadline = time.time() + 10
        while batcher.queued:  # the worker takes the filler
            assert time.time() < deadline, "the queue never drained"
            time.sleep(0.01)
        ok = c.post("/v1/completions", json={"model": "tiny", "prompt": "z", "max_tokens": 2, "temperature": 0})
        assert ok.status_code == 200  # once the queue drains it serves again


# ---------------------------------------------------------------------- real sockets


def test_client_disconnecting_mid_stream_frees_its_row(live, tiny_model_dir):
    before = live.health()["rows_cancelled"]
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    body = json.dumps({"model": str(tiny_model_dir), "prompt": "The area of a circle is", "max_tokens": 400,
                       "temperature": 0.0, "stream": True, "stop": ["never-appears-here"]})
    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.read(6) == b"data: "  # streaming has started
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    deadline = time.time() + 20
    while live.health()["rows_cancelled"] == before:
        assert time.time() < deadline, "the disconnected client's row was never freed"
        time.sleep(0.05)
    # and the server goes on serving
    out = live.post("/v1/completions", {"model": str(tiny_model_dir), "prompt": "x", "max_tokens": 3})
    assert len(out["choices"]) == 1


def test_non_streaming_client_that_goes_away_frees_its_row(live, tiny_model_dir):
    before = live.health()["rows_cancelled"]
    body = json.dumps({"model": str(tiny_model_dir), "prompt": "The area of a circle is", "max_tokens": 400,
                       "temperature": 0, "stop": ["never-appears-here"]}).encode()
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(0.1)  # decoding has started; now hang up
    deadline = time.time() + 20
    while live.health()["rows_cancelled"] == before:
        assert time.time() < deadline, "the departed client's row was never freed"
        time.sleep(0.05)


def test_a_request_joins_the_running_decode_loop(gen, tiny_model_dir):
    """Continuous batching: B arrives while A decodes and is served inside A's loop."""
    with LiveServer(create_app(gen, model_name="tiny", window_s=0.0)) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        conn.request("POST", "/v1/completions", headers={"Content-Type": "application/json"}, body=json.dumps(
            {"model": "tiny", "prompt": "The area of a circle is", "max_tokens": 400, "temperature": 0,
             "stream": True, "stop": ["never-appears-here"]}))
        resp = conn.getresponse()
        assert resp.read(6) == b"data: "  # A is decoding
        b = srv.post("/v1/completions", {"model": "tiny", "prompt": PROMPTS[0], "max_tokens": 8, "temperature": 0})
        mid = srv.health()
        rest = resp.read().decode()
        conn.close()
        assert b["choices"][0]["text"] == gen.generate([PROMPTS[0]], SamplingParams(max_new_tokens=8))[0][0].text
        assert mid["requests_served"] == 1 and mid["loops"] == 1  # B done, A still running, one loop
        assert rest.rstrip().endswith("data: [DONE]") and srv.health()["loops"] == 1


def test_concurrent_requests_are_batched(live, gen, tiny_model_dir):
    ref = gen.generate(PROMPTS * 2, SamplingParams(max_new_tokens=16))
    loops0, served0 = live.health()["loops"], live.health()["requests_served"]

    def one(p):
        return live.post("/v1/completions", {"model": str(tiny_model_dir), "prompt": p, "max_tokens": 16,
                                             "temperature": 0})["choices"][0]["text"]

    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(one, PROMPTS * 2))
    assert texts == [r[0].text for r in ref]
    health = live.health()
    assert health["requests_served"] - served0 == 8
    assert health["loops"] - loops0 < 8, health  # several requests shared one decode loop


def test_eval_openai_backend_reproduces_in_process_predictions(live, tiny_model_dir, tmp_path: Path):
    from mathtune.cli import main

    bench = tmp_path / "toy" / "test.jsonl"
    bench.parent.mkdir()
    bench.write_text("".join(json.dumps({"question": f"What is {i} + {2 * i}?", "answer": str(3 * i)}) + "\n"
                             for i in range(32)))
    common = ["eval", "--model", str(tiny_model_dir), "--benchmark", str(bench), "--fields",
              "problem=question,answer=answer", "--max-new-tokens", "16", "--no-progress"]
    assert main([*common, "--backend", "hf", "--dtype", "fp32", "-o", str(tmp_path / "hf")]) == 0
    assert main([*common, "--backend", "openai", "--base-url", live.url + "/v1", "-o", str(tmp_path / "api")]) == 0

    def preds(d):
        recs = [json.loads(x) for x in (tmp_path / d / "predictions.jsonl").read_text().splitlines()]
        return {r["id"]: (r["prompt"], r["response"], r["extracted"]) for r in recs}

    hf, api = preds("hf"), preds("api")
    assert len(hf) == 32 and api == hf


def test_serve_command_is_registered_and_checks_its_flags(capsys):
    from mathtune.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--api-key" in capsys.readouterr().out
    assert main(["serve", "tiny", "--batch-size", "0"]) == 2
    assert "--batch-size" in capsys.readouterr().err


def _spawn_server(model_dir: Path, port: int):
    """`mathtune serve` as its own process (as users run it), once /health answers."""
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("mathtune")
    proc = subprocess.Popen([str(exe), "serve", str(model_dir), "--port", str(port), "--name", "tiny",
                             "--dtype", "fp32"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while True:
        assert proc.poll() is None, f"mathtune serve exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if json.loads(r.read())["status"] == "ok":
                    return proc
        except OSError:
            assert time.time() < deadline, "mathtune serve did not come up"
            time.sleep(0.2)


def test_server_killed_mid_request_restarts_and_serves_again(tiny_model_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [_spawn_server(tiny_model_dir, port)]
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/v1/completions", headers={"Content-Type": "application/json"}, body=json.dumps(
            {"model": "tiny", "prompt": "The area of a circle is", "max_tokens": 400, "temperature": 0, "stream": True}))
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read(6) == b"data: "
        procs[0].kill()  # mid-request
        procs[0].wait(10)
        try:
            rest = resp.read()
        except (http.client.IncompleteRead, ConnectionError) as e:
            rest = getattr(e, "partial", b"")
        assert b"[DONE]" not in rest  # the client sees a broken stream, never a fake completion
        conn.close()
        procs.append(_spawn_server(tiny_model_dir, port))  # same port, fresh process
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", method="POST",
                                     headers={"Content-Type": "application/json"},
                                     data=json.dumps({"model": "tiny", "prompt": "x", "max_tokens": 3}).encode())
        with urllib.request.urlopen(req, timeout=30) as r:
            assert len(json.loads(r.read())["choices"]) == 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
