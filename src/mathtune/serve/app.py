"""The FastAPI app of `mathtune serve`: OpenAI-compatible endpoints over mathtune's decode loop.

    from mathtune.serve.app import create_app
    app = create_app(HFGenerator(model, tokenizer), model_name="tiny")
    # uvicorn.run(app, host="127.0.0.1", port=8000)

Endpoints: GET /v1/models, POST /v1/completions, POST /v1/chat/completions (both stream as
server-sent events with `"stream": true`), GET /health, GET / (the playground page). Every
request is one `batcher.Job` per prompt; all of them share one running decode loop. A request's
`model` picks the base model or one of its adapters (`create_app(..., adapters={name: gen})`,
`serve.adapters`); GET /v1/models lists them all. Errors are
OpenAI-shaped (`schemas.error_body`); each choice carries `"mathtune": {"answer": ...}` (the
extracted final answer), and with `n > 1` and `"mathtune": {"vote": true}` the response carries a
majority vote over equivalent answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from ..generation.base import Completion
from ..generation.hf import HFGenerator
from .batcher import Batcher, Job, QueueFull
from .schemas import ChatCompletionRequest, CompletionRequest, Limits, error_body

PLAYGROUND = Path(__file__).with_name("playground.html")


class APIError(Exception):
    """An error answered in OpenAI's shape with an HTTP status."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.body = status, error_body(message, type_, param, code)


class Guard:
    """API key and body-size checks before any route runs. A plain ASGI middleware (not
    `@app.middleware`, whose wrapped `receive` hides client disconnects from the routes)."""

    def __init__(self, app: Any, api_key: str | None, max_body_bytes: int) -> None:
        self.app, self.api_key, self.max_body_bytes = app, api_key, max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            error = self._check(scope)
            if error is not None:
                await error(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _check(self, scope: dict[str, Any]) -> JSONResponse | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.api_key and scope["path"].startswith("/v1/"):
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                return JSONResponse(error_body("missing or wrong API key: send 'Authorization: Bearer KEY'",
                                               code="invalid_api_key"), status_code=401)
        size = headers.get("content-length", "")
        if size.isdigit() and int(size) > self.max_body_bytes:
            return JSONResponse(error_body(f"request body of {size} bytes is over the limit of "
                                           f"{self.max_body_bytes}", code="request_too_large"), status_code=413)
        return None


def create_app(generator: HFGenerator, *, model_name: str, adapters: Mapping[str, HFGenerator] | None = None,
               api_key: str | None = None, limits: Limits | None = None, window_s: float = 0.01) -> FastAPI:
    """The app serving `generator` as `model_name` and each of `adapters` (generators on the
    same tokenizer: `serve.adapters.load_adapters`) under its name; its batcher thread starts
    now and stops at the app's shutdown."""
    limits = limits or Limits()
    adapters = dict(adapters or {})
    if model_name in adapters:
        raise ValueError(f"the adapter name {model_name!r} is the base model's name")
    served = {model_name: generator, **adapters}
    batcher = Batcher(served, max_queue=limits.max_queue, window_s=window_s, max_tokens_cap=limits.max_tokens)
    batcher.start()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()

    app = FastAPI(title="mathtune serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.batcher, app.state.limits, app.state.model_name = batcher, limits, model_name
    app.state.generator = generator

    @app.exception_handler(APIError)
    async def _api_error(_: Request, e: APIError) -> JSONResponse:
        return JSONResponse(e.body, status_code=e.status)

    app.add_middleware(Guard, api_key=api_key, max_body_bytes=limits.max_body_bytes)

    @app.get("/health")
    async def health() -> JSONResponse:
        ok = batcher.alive
        return JSONResponse({"status": "ok" if ok else "dead", "model": model_name, "adapters": list(adapters),
                             "queued": batcher.queued, "loops": batcher.loops, "requests_served": batcher.jobs_served,
                             "rows_cancelled": batcher.rows_cancelled}, status_code=200 if ok else 503)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        base = {"id": model_name, "object": "model", "created": 0, "owned_by": "mathtune"}
        return {"object": "list", "data": [base, *({**base, "id": name, "parent": model_name} for name in adapters)]}

    @app.get("/", response_class=HTMLResponse)
    async def playground() -> HTMLResponse:
        return HTMLResponse(PLAYGROUND.read_text(encoding="utf-8"))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        req = await _parse(request, CompletionRequest, limits.max_body_bytes)
        gen = _check(req, served, limits)
        if len(req.prompts) > limits.max_prompts:
            raise APIError(400, f"{len(req.prompts)} prompts is over the limit of {limits.max_prompts}", param="prompt")
        ids = [_encode(gen, p, limits) for p in req.prompts]
        return await _respond(request, batcher, req, ids, chat=False, max_tokens=req.max_tokens or 16)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        req = await _parse(request, ChatCompletionRequest, limits.max_body_bytes)
        gen = _check(req, served, limits)
        prompt = _render_chat(gen.tokenizer, req)
        ids = [_encode(gen, prompt, limits)]
        return await _respond(request, batcher, req, ids, chat=True, max_tokens=req.max_tokens or limits.max_tokens)

    return app


# ---------------------------------------------------------------------- request checks


async def _parse(request: Request, schema: type, max_bytes: int) -> Any:
    chunks, size = [], 0
    async for chunk in request.stream():  # chunked bodies carry no Content-Length: count as they come
        size += len(chunk)
        if size > max_bytes:
            raise APIError(413, f"request body of over {max_bytes} bytes is over the limit of {max_bytes}",
                           code="request_too_large")
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        data = json.loads(body)
    except ValueError as e:
        raise APIError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(x) for x in err["loc"]) or None
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise APIError(400, f"{param}: {msg}" if param else msg, param=param, code="invalid_value") from None


def _check(req: Any, models: Mapping[str, HFGenerator], limits: Limits) -> HFGenerator:
    """The generator of the request's model, once the request is within the limits."""
    if req.model not in models:
        served = ", ".join(repr(name) for name in models)
        raise APIError(404, f"the model {req.model!r} does not exist; this server serves {served}",
                       param="model", code="model_not_found")
    if req.n > limits.max_n:
        raise APIError(400, f"n={req.n} is over the limit of {limits.max_n}", param="n", code="invalid_value")
    if req.max_tokens is not None and req.max_tokens > limits.max_tokens:
        raise APIError(400, f"max_tokens={req.max_tokens} is over the limit of {limits.max_tokens}",
                       param="max_tokens", code="invalid_value")
    return models[req.model]


def _encode(gen: HFGenerator, prompt: str, limits: Limits) -> list[int]:
    ids = gen.encode(prompt)
    if len(ids) > limits.max_prompt_tokens:
        raise APIError(400, f"the prompt is {len(ids)} tokens, over the limit of {limits.max_prompt_tokens}",
                       param="prompt", code="context_length_exceeded")
    return ids


def _render_chat(tokenizer: Any, req: ChatCompletionRequest) -> str:
    messages = req.as_dicts()
    style_name = req.mathtune.prompt if req.mathtune else None
    if style_name:
        return _render_style(tokenizer, messages, style_name)
    if not getattr(tokenizer, "chat_template", None):
        raise APIError(400, "this model has no chat template", param="messages",
                       code="no_chat_template")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _render_style(tokenizer: Any, messages: list[dict[str, str]], style_name: str) -> str:
    """A conversation through a mathtune prompt style: [system] (user, assistant)* user."""
    from ..errors import MathtuneError
    from ..prompts import get_style

    try:
        style = get_style(style_name)
    except MathtuneError as e:
        raise APIError(400, e.message, param="mathtune.prompt", code="invalid_value") from None
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    turns = messages[1:] if system is not None else messages
    roles = [m["role"] for m in turns]
    if len(turns) % 2 != 1 or roles != ["user", "assistant"] * (len(turns) // 2) + ["user"]:
        raise APIError(400, "with mathtune.prompt the messages must be [system], then alternating user/assistant, "
                       "ending with user", param="messages")
    pairs = [(turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns) - 1, 2)]
    try:
        return style.render(turns[-1]["content"], tokenizer, fewshot=pairs, system=system)
    except MathtuneError as e:
        raise APIError(400, e.message, param="mathtune.prompt") from None


# ---------------------------------------------------------------------- running a request


def _submit(request: Request, batcher: Batcher, req: Any, ids: list[list[int]], max_tokens: int
            ) -> tuple[list[Job], asyncio.Queue]:
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def emit_for(p: int) -> Any:
        def emit(ev: tuple[str, int, Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the event loop is gone (shutdown): nobody to tell
                loop.call_soon_threadsafe(events.put_nowait, (p, *ev))
        return emit

    seed = req.seed if req.seed is not None else secrets.randbits(31)
    jobs = [Job(ids=x, emit=emit_for(p), model=req.model, n=req.n, max_tokens=max_tokens, temperature=req.temperature,
                top_p=req.top_p, stop=req.stop_tuple, seed=seed + p, stream=req.stream) for p, x in enumerate(ids)]
    if not batcher.alive:
        raise APIError(503, "the generation worker has stopped; restart the server", type_="server_error")
    try:
        for job in jobs:
            batcher.submit(job)
    except QueueFull:
        for job in jobs:
            job.cancelled.set()
        raise APIError(429, f"the server is busy ({batcher.max_queue} requests queued); retry shortly",
                       type_="rate_limit_error", code="queue_full") from None
    return jobs, events


async def _respond(request: Request, batcher: Batcher, req: Any, ids: list[list[int]], *, chat: bool,
                   max_tokens: int) -> Response:
    jobs, events = _submit(request, batcher, req, ids, max_tokens)
    meta = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
            "model": req.model}
    total = len(jobs) * req.n
    if req.stream:
        return StreamingResponse(_sse(jobs, events, req, meta, chat, total), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    done: dict[int, Completion] = {}
    try:
        while len(done) < total:
            try:
                p, kind, s, value = await asyncio.wait_for(events.get(), timeout=0.25)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    return Response(status_code=499)
                continue
            if kind == "error":
                raise APIError(500, value, type_="server_error")
            if kind == "done":
                done[p * req.n + s] = value
    finally:
        for job in jobs:
            job.cancelled.set()  # no-op for finished rows; frees the rest
    choices = [_choice(i, done[i], chat) for i in range(total)]
    body = {**meta, "object": "chat.completion" if chat else "text_completion", "choices": choices,
            "usage": _usage(ids, req.n, done.values())}
    extras = _vote(req, [done[i] for i in range(total)])
    if extras:
        body["mathtune"] = extras
    return JSONResponse(body)


async def _sse(jobs: list[Job], events: asyncio.Queue, req: Any, meta: dict[str, Any], chat: bool,
               total: int) -> AsyncIterator[str]:
    obj = "chat.completion.chunk" if chat else "text_completion"
    done: dict[int, Completion] = {}
    started: set[int] = set()

    def chunk(index: int, text: str | None, finish: str | None, extra: dict[str, Any] | None = None) -> str:
        if chat:
            delta: dict[str, Any] = {} if text is None else {"content": text}
            if index not in started:
                started.add(index)
                delta["role"] = "assistant"
            choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
        if extra:
            choice["mathtune"] = extra
        return "data: " + json.dumps({**meta, "object": obj, "choices": [choice]}) + "\n\n"

    try:
        while len(done) < total:
            p, kind, s, value = await events.get()
            index = p * req.n + s
            if kind == "error":
                yield "data: " + json.dumps(error_body(value, "server_error")) + "\n\n"
                return
            if kind == "delta":
                yield chunk(index, value, None)
            elif kind == "done":
                done[index] = value
                yield chunk(index, None, value.finish_reason, {"answer": _answer(value.text)})
        extras = _vote(req, [done[i] for i in range(total)])
        if extras:
            yield "data: " + json.dumps({**meta, "object": obj, "choices": [], "mathtune": extras}) + "\n\n"
        if req.stream_options and req.stream_options.include_usage:
            usage = _usage([j.ids for j in jobs], req.n, done.values())
            yield "data: " + json.dumps({**meta, "object": obj, "choices": [], "usage": usage}) + "\n\n"
        yield "data: [DONE]\n\n"
    finally:  # finished, or the client went away (the response task is cancelled): free the rows
        for job in jobs:
            job.cancelled.set()


def _answer(text: str) -> str | None:
    from ..grading import extract_answer

    return extract_answer(text)


def _choice(index: int, comp: Completion, chat: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"index": index, "finish_reason": comp.finish_reason}
    if chat:
        out["message"] = {"role": "assistant", "content": comp.text}
    else:
        out["text"], out["logprobs"] = comp.text, None
    out["mathtune"] = {"answer": _answer(comp.text)}
    return out


def _usage(ids: list[list[int]], n: int, comps: Any) -> dict[str, int]:
    prompt = sum(len(x) for x in ids)
    completion = sum(c.tokens for c in comps)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _vote(req: Any, comps: list[Completion]) -> dict[str, Any] | None:
    """With `"mathtune": {"vote": true}` and n > 1: per prompt, the majority over equivalent answers."""
    if not (req.mathtune and req.mathtune.vote and req.n > 1):
        return None
    from ..eval.vote import weighted_vote

    votes = []
    for p in range(0, len(comps), req.n):
        result = weighted_vote([(_answer(c.text), False) for c in comps[p:p + req.n]])
        votes.append({"answer": result.answer, "votes": result.size, "of": req.n,
                      "first_choice": None if result.first is None else p + result.first})
    return {"vote": votes}
