"""The FastAPI app: OpenAI-compatible completions and chat over an AsyncEngine, with metrics.

``create_app(engine, ...)`` serves an engine the caller made (and closes it at shutdown when
``close_engine``); ``saguaro serve`` builds the engine from the command line (serve/server.py).
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from saguaro.async_engine import AsyncEngine, AsyncStream
from saguaro.results import StreamDelta
from saguaro.serve.errors import (APIError, BodyLimit, api_error_handler, bad_request, http_error_handler,
                                  internal_error_handler, unknown_model)
from saguaro.serve.metrics import RequestClock, ServerMetrics, ssd_figures
from saguaro.serve.protocol import (COMPLETIONS_DEFAULT_MAX_TOKENS, ChatCompletionRequest, CompletionRequest,
                                    parse_body)

#: default limit on a request body (bytes): far above any prompt that fits a context, far below harm
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
#: default number of requests in the runtime's batch at once (--max-batch)
DEFAULT_MAX_BATCH = 64


class _Served:
    """What the routes share: the engine, its name, the batch gate and the metrics."""

    def __init__(self, engine: AsyncEngine, name: str, max_batch: int) -> None:
        self.engine = engine
        self.name = name
        self.gate = asyncio.Semaphore(max_batch)
        self.metrics = ServerMetrics(engine.runtime_metrics)
        self.draining = False
        self.created = int(time.time())

    def check_model(self, model: str) -> None:
        if model != self.name:
            raise unknown_model(model, self.name)

    def check_admitting(self) -> None:
        if self.draining or self.engine.closed:
            raise APIError(503, "the server is shutting down and takes no new requests", type="server_error",
                           code="shutting_down")


def _fit(served: _Served, prompt: Any, req: Any, chat: bool, default_max: Optional[int]) -> tuple[Any, Any]:
    """Encode the prompt, check it and max_tokens against the context; (token ids, SamplingParams)."""
    engine = served.engine
    probe = req.sampling(1)
    try:
        encoded = engine.encode(prompt, probe, chat=chat)
    except ValueError as e:
        raise bad_request(str(e), "messages" if chat else "prompt") from None
    n = len(encoded.token_ids)
    room = engine.room(encoded)
    if room < 1:
        raise bad_request(f"This model's maximum context length is {engine.max_context} tokens, but the prompt "
                          f"has {n} tokens (and speculation needs {engine.max_context - n - room} more "
                          f"positions): shorten the prompt", "messages" if chat else "prompt",
                          "context_length_exceeded")
    max_tokens = default_max if default_max is not None else room
    if max_tokens > room:
        raise bad_request(f"max_tokens is {max_tokens}, but after the prompt's {n} tokens only {room} new tokens "
                          f"fit this model's context of {engine.max_context} tokens: lower max_tokens to at most "
                          f"{room}", "max_tokens", "context_length_exceeded")
    return list(encoded.token_ids), req.sampling(max_tokens)


class _Run:
    """One admitted request: its stream, timings and, at the end, its response figures."""

    def __init__(self, served: _Served, stream: AsyncStream, clock: RequestClock) -> None:
        self.served = served
        self.stream = stream
        self.clock = clock
        self.text: list[str] = []
        self.last: Optional[StreamDelta] = None
        self.recorded = False

    async def deltas(self) -> AsyncIterator[StreamDelta]:
        async for d in self.stream:
            self.clock.tokens(d)
            self.text.append(d.text)
            self.last = d
            yield d

    def figures(self) -> dict[str, Any]:
        assert self.last is not None and self.stream.output is not None
        return ssd_figures(self.last.metrics, self.served.engine.mode)

    def usage(self) -> dict[str, int]:
        out = self.stream.output
        assert out is not None
        p, c = len(out.prompt_token_ids), len(out.token_ids)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def record(self) -> dict[str, Any]:
        """Count the finished request in the metrics; its figures for the response."""
        figures = self.figures()
        out = self.stream.output
        assert out is not None
        self.clock.done()
        self.served.metrics.finished(figures, len(out.prompt_token_ids), out.finish_reason)
        self.recorded = True
        return figures


@asynccontextmanager
async def _admitted(served: _Served, start: Callable[[], AsyncStream]) -> AsyncIterator[_Run]:
    """Wait for a batch slot (counted as waiting), start the request, count it running; on leaving,
    cancel it if it did not finish (client gone, error, shutdown)."""
    clock = RequestClock(served.metrics)
    served.metrics.waiting.inc()
    try:
        await served.gate.acquire()
    finally:
        served.metrics.waiting.dec()
    try:
        served.check_admitting()
        stream = start()
        served.metrics.running.inc()
        run = _Run(served, stream, clock)
        try:
            yield run
        finally:
            served.metrics.running.dec()
            if not run.recorded:  # the client left, the runtime failed it, or the server is stopping
                served.metrics.requests.labels(finish_reason="abandoned").inc()
            await stream.aclose()
    finally:
        served.gate.release()


async def _value_error_handler(request: Request, exc: Exception) -> Response:
    """The engine's checks raise ValueError saying what to fix: a 400."""
    return bad_request(str(exc)).response()


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"


def create_app(engine: AsyncEngine, *, served_model_name: Optional[str] = None, max_batch: int = DEFAULT_MAX_BATCH,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, close_engine: bool = False) -> FastAPI:
    """An OpenAI-compatible app over ``engine``.

    ``served_model_name``: the ``model`` clients must name (default: the target's name).
    ``max_batch``: requests in the runtime at once (more wait). ``close_engine``: close the engine
    when the app shuts down (after in-flight requests finished or were cancelled).
    """
    if not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
    if not isinstance(max_body_bytes, int) or max_body_bytes < 1024:
        raise ValueError(f"max_body_bytes must be an integer >= 1024, got {max_body_bytes!r}")
    name = served_model_name or getattr(engine.target, "name", None) or "saguaro"
    served = _Served(engine, name, max_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        served.draining = True
        if close_engine:
            engine.close()

    app = FastAPI(title="saguaro", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.served = served
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_exception_handler(APIError, api_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(ValueError, _value_error_handler)
    app.add_exception_handler(Exception, internal_error_handler)

    async def read(request: Request, model: type) -> Any:
        raw = await request.body()
        req = parse_body(raw, model)
        served.check_model(req.model)
        served.check_admitting()
        return req

    @app.get("/health")
    async def health() -> Response:
        if served.draining or engine.closed:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/v1/models")
    async def models() -> Response:
        return JSONResponse({"object": "list", "data": [{
            "id": served.name, "object": "model", "created": served.created, "owned_by": "saguaro",
            "max_model_len": engine.max_context, "saguaro": {"mode": engine.mode}}]})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(served.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        req: CompletionRequest = await read(request, CompletionRequest)
        prompt = req.single_prompt()
        ids, sp = _fit(served, prompt, req, False,
                       req.max_tokens if req.max_tokens is not None else COMPLETIONS_DEFAULT_MAX_TOKENS)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(text: str, finish: Optional[str], ids: list[int], **extra: Any) -> dict[str, Any]:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            if req.return_token_ids:
                choice["token_ids"] = ids
            return {"id": rid, "object": "text_completion", "created": created, "model": served.name,
                    "choices": [choice], **extra}

        start = lambda: engine.stream(ids, sp)  # noqa: E731
        if req.stream:
            return _streaming(served, start, req.include_usage,
                              lambda d, figures: chunk(d.text, d.finish_reason if d.finished else None, d.token_ids,
                                                       **({"saguaro": figures} if figures else {})),
                              lambda usage: {"id": rid, "object": "text_completion", "created": created,
                                             "model": served.name, "choices": [], "usage": usage},
                              req.return_token_ids)
        done = await _to_the_end(served, start, request)
        if done is None:
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        out, figures, usage = done
        return JSONResponse(chunk(out.text, out.finish_reason, out.token_ids, usage=usage, saguaro=figures))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        req: ChatCompletionRequest = await read(request, ChatCompletionRequest)
        ids, sp = _fit(served, req.chat_messages(), req, True, req.requested_max_tokens)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def envelope(obj: str, choices: list, **extra: Any) -> dict[str, Any]:
            return {"id": rid, "object": obj, "created": created, "model": served.name, "choices": choices, **extra}

        start = lambda: engine.stream(ids, sp)  # noqa: E731
        if req.stream:
            first = [True]

            def chunk(d: StreamDelta, figures: Optional[dict]) -> dict[str, Any]:
                delta: dict[str, Any] = {"content": d.text} if d.text or not d.finished else {}
                if first[0]:
                    delta = {"role": "assistant", **delta}
                    first[0] = False
                choice = {"index": 0, "delta": delta, "logprobs": None,
                          "finish_reason": d.finish_reason if d.finished else None}
                if req.return_token_ids:
                    choice["token_ids"] = d.token_ids
                return envelope("chat.completion.chunk", [choice], **({"saguaro": figures} if figures else {}))

            return _streaming(served, start, req.include_usage, chunk,
                              lambda usage: envelope("chat.completion.chunk", [], usage=usage), req.return_token_ids)
        done = await _to_the_end(served, start, request)
        if done is None:
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        out, figures, usage = done
        choice = {"index": 0, "message": {"role": "assistant", "content": out.text}, "logprobs": None,
                  "finish_reason": out.finish_reason}
        if req.return_token_ids:
            choice["token_ids"] = out.token_ids
        return JSONResponse(envelope("chat.completion", [choice], usage=usage, saguaro=figures))

    return app


#: status of a response nobody receives: the client closed the connection first (nginx's 499)
CLIENT_CLOSED_REQUEST = 499


async def _client_gone(request: Request) -> None:
    """Return when the client disconnects. Once the body is read, the ASGI receive channel has nothing
    to deliver but ``http.disconnect`` (uvicorn's receive waits for it without polling)."""
    try:
        while (await request.receive()).get("type") != "http.disconnect":
            pass
    except Exception:
        await asyncio.Future()  # a channel that cannot tell never reports a disconnect


async def _to_the_end(served: _Served, start: Callable[[], AsyncStream],
                      request: Request) -> Optional[tuple[Any, dict, dict]]:
    """A non-streaming request run to its end: its output, its SSD figures and its usage; None when
    the client disconnected first (waiting for a slot or generating): the request is then cancelled
    in the runtime and counted as abandoned, as a stream whose client leaves."""

    async def run_it() -> tuple[Any, dict, dict]:
        async with _admitted(served, start) as run:
            async for _ in run.deltas():
                pass
            figures = run.record()
            out = run.stream.output
            assert out is not None
            return out, figures, run.usage()

    work = asyncio.ensure_future(run_it())
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not work.done():
            work.cancel()  # leaving _admitted early cancels the request in the runtime
            await asyncio.wait({work})
    if work.cancelled():
        return None
    return work.result()


def _streaming(served: _Served, start: Callable[[], AsyncStream], include_usage: bool,
               chunk: Callable[[StreamDelta, Optional[dict]], dict], usage_chunk: Callable[[dict], dict],
               token_ids: bool = False) -> Response:
    """An SSE response: one event per delta, the last with the ``saguaro`` figures, then the usage
    (when asked) and ``data: [DONE]``. A client that goes away cancels the request (Starlette
    cancels this generator; leaving ``_admitted`` cancels the request in the runtime)."""

    async def events() -> AsyncIterator[str]:
        async with _admitted(served, start) as run:
            try:
                async for d in run.deltas():
                    if d.finished:
                        yield _sse(chunk(d, run.record()))
                        if include_usage:
                            yield _sse(usage_chunk(run.usage()))
                    elif d.text or (token_ids and d.token_ids):
                        yield _sse(chunk(d, None))
            except APIError as e:
                yield _sse(e.body())
            except RuntimeError as e:  # the runtime failed the request, or the engine closed under it
                yield _sse(APIError(500, str(e), type="server_error").body())
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
