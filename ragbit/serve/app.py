"""The ASGI app behind `ragbit serve`: the OpenAI HTTP API over one `RagbitService` (starlette, run by uvicorn).

Routes: POST /v1/chat/completions and /v1/completions (streamed as server-sent events, or whole),
GET /v1/models, POST /v1/embeddings, POST /v1/search (ragbit's retrieval-only call), GET /health.
Model names: `ragbit` / `ragbit:<model>` answer from the repository's index with sources (`ragbit.sources`)
and the grounding check of the answer (`ragbit.grounding`); the plain model name is the model alone. The same
app is `ragbit search`'s background server, on a Unix socket in the index directory (`socket_server.py`):
/v1/search then also checks the client's config and returns the printed form of the hits
(`ragbit/search/client.py` documents those fields).

Generation goes through the bounded `EngineQueue` (429 + Retry-After when full). A request waits for its
job's first event before answering, so an error found before the first token (prompt over the context, no
model) gets its proper status code; after that, the stream carries the text and a client that leaves
cancels the job. Search and embeddings run on worker threads beside the engine. Every error is an OpenAI
error object; an unexpected one is logged with its traceback on the server and answered 500 in one line.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import time
from typing import Any, AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ragbit.serve import openai_schema as oa
from ragbit.serve.engine_queue import Cancelled, EngineQueue, QueueFull
from ragbit.serve.service import (ConfigMismatch, Generation, ModelUnavailable, NotThisIndex, RagbitService, Sampling,
                                  ServeError)

log = logging.getLogger("ragbit.serve")
OPEN_PATHS = {"/health"}


def error_response(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                   param: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(oa.error_body(message, type_, code, param), status_code=status, headers=headers)


def _from_api_error(e: oa.ApiError) -> JSONResponse:
    return error_response(e.status, e.message, e.type, e.code, e.param, e.headers)


def _as_api_error(e: BaseException) -> oa.ApiError:
    """A domain error -> the status and code an OpenAI client expects; anything else is a 500."""
    from generator.errors import GeneratorError
    from indexes.errors import IndexesError
    from ragbit.errors import RagbitError
    line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, oa.ApiError):
        return e
    if isinstance(e, ModelUnavailable):
        return oa.ApiError(503, line, "server_error", "model_not_available")
    if isinstance(e, (NotThisIndex, ConfigMismatch)):
        return oa.ApiError(409, line, code="config_mismatch" if isinstance(e, ConfigMismatch) else "wrong_index")
    if isinstance(e, GeneratorError) and "does not fit n_ctx" in line:
        return oa.ApiError(400, line, code="context_length_exceeded", param="messages")
    if isinstance(e, (RagbitError, IndexesError, GeneratorError)):
        return oa.ApiError(400, line)
    log.error("request failed", exc_info=e)
    return oa.ApiError(500, f"internal error: {type(e).__name__}: {line}", "server_error")


class BearerAuth:
    """Pure ASGI middleware (streams pass through untouched): every path but /health needs the key."""

    def __init__(self, app: Any, api_key: str) -> None:
        self.app, self.expected = app, f"Bearer {api_key}".encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                resp = error_response(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                      code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _json_body(request: Request, model: type) -> Any:
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise oa.ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(raw, dict):
        raise oa.ApiError(400, "the request body must be a JSON object")
    try:
        return model.model_validate(raw)
    except oa.ValidationError as e:
        message, param = oa.validation_message(e)
        raise oa.ApiError(400, message, param=param) from None


async def _wait_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _sse(payload: Any) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


class ServeApp:
    """Holds the service and the queue; its methods are the route handlers."""

    def __init__(self, service: RagbitService, max_waiting: int = 8,
                 on_retire: Callable[[], None] | None = None) -> None:
        self.service = service
        self.on_retire = on_retire          # the background search server: exit after this response
        self.queue = EngineQueue(max_waiting=max_waiting)
        self.started = time.time()

    # ------------------------------------------------------------------------------------------ plain routes
    async def health(self, request: Request) -> Response:
        s = self.service
        return JSONResponse({"status": "ok", "repo": str(s.cfg.repo), "model": s.model_name,
                             "model_loaded": s._bonsai is not None and s._bonsai.generator is not None,
                             "model_error": s.model_error or None, "engine": self.queue.snapshot()})

    async def models(self, request: Request) -> Response:
        s, created = self.service, int(self.started)
        names = [("ragbit", "ragbit"), (f"ragbit:{s.model_name}", "ragbit"), (s.model_name, "ragbit"),
                 (s.embedding_model_name, "ragbit")]
        return JSONResponse({"object": "list", "data": [{"id": n, "object": "model", "created": created,
                                                         "owned_by": owner} for n, owner in names]})

    async def embeddings(self, request: Request) -> Response:
        body: oa.EmbeddingRequest = await _json_body(request, oa.EmbeddingRequest)
        s = self.service
        if body.model not in ({s.embedding_model_name} | s.rag_names):
            raise oa.ApiError(404, f"model {body.model!r} does not embed here; use 'ragbit' or "
                                   f"{s.embedding_model_name!r}", code="model_not_found", param="model")
        if any(not isinstance(t, str) or not t for t in body.texts):
            raise oa.ApiError(400, "input must be non-empty strings (token arrays are not supported)", param="input")
        vectors, tokens = await run_in_threadpool(s.embed, body.texts)
        data = []
        for i, v in enumerate(vectors):
            emb: Any = (base64.b64encode(v.astype("<f4").tobytes()).decode() if body.encoding_format == "base64"
                        else [float(x) for x in v])
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return JSONResponse({"object": "list", "data": data, "model": body.model,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def search(self, request: Request) -> Response:
        body: oa.SearchRequest = await _json_body(request, oa.SearchRequest)
        try:
            return JSONResponse(await run_in_threadpool(self._search, body))
        except ConfigMismatch:
            if self.on_retire is not None:
                self.on_retire()                # a fresh server with the client's config can take over
            raise

    def _search(self, body: oa.SearchRequest) -> dict[str, Any]:
        """The /v1/search reply; for `ragbit search` (body.client) checked against its config, with the
        printed form when asked (body.render). Scores are exact: the CLI re-renders these hits."""
        defaults = None
        if body.client is not None:
            c = body.client
            defaults = self.service.client_search_config(c.repo, c.index_dir, c.config)
        hits = self.service.search(body.query, body.k, body.mode, body.max_hits_per_file, defaults)
        reply = {"object": "list", "query": body.query,
                 "data": [{"rank": h.rank, **h.to_json(), "score": h.score, "share": h.share} for h in hits],
                 "mode": hits.mode, "dense_complete": hits.dense_complete, "stale": hits.stale}
        if body.render is not None:
            from ragbit.search.render import ColorSystemConflict, Terminal, render_search
            try:
                terminal = Terminal.from_json(body.render.terminal)
            except ValueError as e:
                raise oa.ApiError(400, f"render.terminal: {e}", param="render.terminal") from None
            try:
                out, err = render_search(hits, body.render.json_, terminal)
                reply["printed"] = {"stdout": out, "stderr": err}
            except ColorSystemConflict:
                pass                            # hits only: the client renders them itself
        return reply

    # ------------------------------------------------------------------------------------------ generation
    async def chat_completions(self, request: Request) -> Response:
        body: oa.ChatRequest = await _json_body(request, oa.ChatRequest)
        kind = self._kind(body.model)
        try:
            messages = body.plain_messages()
        except ValueError as e:
            raise oa.ApiError(400, str(e), param="messages") from None
        sampling = _sampling(body)
        if kind == "rag":
            work = lambda emit, check: self.service.rag_answer(messages, sampling, emit, check)
        else:
            work = lambda emit, check: self.service.plain_generate(messages, True, sampling, emit, check)
        return await self._generate(request, body, work, chat=True)

    async def completions(self, request: Request) -> Response:
        body: oa.CompletionRequest = await _json_body(request, oa.CompletionRequest)
        kind = self._kind(body.model)
        sampling = _sampling(body)
        prompt = body.prompt
        if kind == "rag":
            msgs = [{"role": "user", "content": prompt}]
            work = lambda emit, check: self.service.rag_answer(msgs, sampling, emit, check)
        else:
            work = lambda emit, check: self.service.plain_generate(prompt, False, sampling, emit, check)
        return await self._generate(request, body, work, chat=False)

    def _kind(self, model: str) -> str:
        try:
            return self.service.kind_of(model)
        except ServeError as e:
            raise oa.ApiError(404, str(e), code="model_not_found", param="model") from None

    async def _generate(self, request: Request, body: Any, work: Callable, chat: bool) -> Response:
        try:
            job = self.queue.submit(work)
        except QueueFull as e:
            raise oa.ApiError(429, f"ragbit is busy: {self.queue.pending} requests ahead; {e}",
                              "rate_limit_error", "queue_full", headers={"Retry-After": str(e.retry_after)})
        # Until the answer is complete (whole) or starts (streamed), a client that leaves cancels the job.
        gone = asyncio.ensure_future(_wait_disconnect(request))
        try:
            event = await self._next_event(job, gone)
            while event is not None and event[0] == "piece" and not body.stream:
                event = await self._next_event(job, gone)
        finally:
            gone.cancel()
        if event is None:                       # the client left
            return Response(status_code=499)
        kind, value = event
        if kind == "error":
            raise _as_api_error(value)
        rid = oa.new_id("chatcmpl" if chat else "cmpl")
        if body.stream:
            return StreamingResponse(self._stream(job, event, rid, body, chat), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        g: Generation = value
        use = oa.usage(g.prompt_tokens, g.completion_tokens, g.cached_tokens)
        extra = g.ragbit_extra()
        make = oa.chat_response if chat else oa.completion_response
        return JSONResponse(make(rid, body.model, g.text, oa.finish_reason(g.finish_reason), use, extra))

    async def _next_event(self, job: Any, gone: asyncio.Future) -> tuple[str, Any] | None:
        """The job's next event, or None (and the job cancelled) if the client disconnects first."""
        event = asyncio.ensure_future(job.next_event())
        done, _ = await asyncio.wait({event, gone}, return_when=asyncio.FIRST_COMPLETED)
        if event in done:
            return event.result()
        job.cancel()
        event.cancel()
        return None

    async def _stream(self, job: Any, first: tuple[str, Any], rid: str, body: Any, chat: bool) -> AsyncIterator[str]:
        created, model = int(time.time()), body.model
        kind, value = first
        try:
            if chat:
                yield _sse(oa.chat_chunk(rid, created, model, {"role": "assistant", "content": ""}))
            while kind == "piece":
                yield _sse(oa.chat_chunk(rid, created, model, {"content": value}) if chat
                           else oa.completion_chunk(rid, created, model, value))
                kind, value = await job.next_event()
            if kind == "error":
                err = _as_api_error(value)
                yield _sse(oa.error_body(err.message, err.type, err.code, err.param))
                return
            g: Generation = value
            extra = g.ragbit_extra()
            reason = oa.finish_reason(g.finish_reason)
            use = oa.usage(g.prompt_tokens, g.completion_tokens, g.cached_tokens)
            if chat:
                yield _sse(oa.chat_chunk(rid, created, model, {}, reason, extra=extra))
            else:
                yield _sse(oa.completion_chunk(rid, created, model, "", reason, extra=extra))
            if body.include_usage:
                yield _sse(oa.chat_chunk(rid, created, model, {}, use=use, choices=False) if chat
                           else oa.completion_chunk(rid, created, model, "", use=use, choices=False))
            yield _sse("[DONE]")
        finally:
            job.cancel()                        # no-op when it finished; stops it when the client left


def _sampling(body: Any) -> Sampling:
    return Sampling(max_tokens=body.token_limit, temperature=body.temperature, top_p=body.top_p,
                    seed=body.seed, stop=list(body.stop or []))


def _route(handler: Callable) -> Callable:
    """Every handler's errors as OpenAI error objects (ApiError as is, domain errors mapped, bugs 500)."""
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as e:  # noqa: BLE001 - the one boundary between a request and the server
            return _from_api_error(_as_api_error(e))
    wrapped.__name__ = handler.__name__
    return wrapped


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    code = {404: "not_found", 405: "method_not_allowed"}.get(status)
    detail = getattr(exc, "detail", "") or "error"
    return error_response(status, f"{request.method} {request.url.path}: {detail}", code=code)


def create_app(service: RagbitService, api_key: str | None = None, max_waiting: int = 8,
               on_retire: Callable[[], None] | None = None) -> Any:
    """The ASGI app for `service` (already prepared); wrapped in bearer-key auth when `api_key` is set.
    `on_retire` is called when a `ragbit search` client has another configuration (the background server
    then exits, so the next search starts a fresh one)."""
    s = ServeApp(service, max_waiting=max_waiting, on_retire=on_retire)
    routes = [
        Route("/health", _route(s.health), methods=["GET"]),
        Route("/v1/models", _route(s.models), methods=["GET"]),
        Route("/v1/chat/completions", _route(s.chat_completions), methods=["POST"]),
        Route("/v1/completions", _route(s.completions), methods=["POST"]),
        Route("/v1/embeddings", _route(s.embeddings), methods=["POST"]),
        Route("/v1/search", _route(s.search), methods=["POST"]),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        s.queue.close()

    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error}, lifespan=lifespan,
                    middleware=[Middleware(BearerAuth, api_key=api_key)] if api_key else [])
    app.state.serve = s
    return app
