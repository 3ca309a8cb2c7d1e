"""OpenAI-compatible FastAPI app: ``/v1/models`` and ``/v1/chat/completions`` (SSE streaming too).

Every persona is listed as ``<persona>`` (its default stage) and as ``<persona>:<stage>`` for
each life stage; a ``stage`` request field chooses one too. Each engine serves one request at a
time: a request waits for its persona's lock in a bounded queue (``max_queue``; beyond it 429,
after ``queue_timeout_s`` 503, both with ``Retry-After``), and generation runs in worker
threads so the event loop keeps answering.
"""

# No ``from __future__ import annotations`` here: FastAPI resolves the endpoints' ``request:
# Request`` annotations at runtime, and Request is imported inside create_app.
import asyncio
import hmac
import math
import time
import uuid
from dataclasses import dataclass, field

from kit.chat.context import fit_messages, token_counter
from kit.engine.base import GenParams
from kit.server.schema import (ApiError, AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatRequest, Choice,
                               ChunkChoice, Delta, Usage, finish_reason, parse_chat_request, sse)
from kit.server.settings import ServerSettings


@dataclass
class ServedPersona:
    id: str
    name: str
    stages: list  # objects with .id .label .system_prompt
    default_stage: str
    engine: object
    sampling: GenParams = field(default_factory=GenParams)  # the bundle's recipe sampling
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0
    avg_s: float = 2.0  # moving average of one request's engine time, for Retry-After
    lore: object | None = None  # kit.chat.lore.Lore: retrieval for the latest user turn (--retrieve K)

    @classmethod
    def from_bundle(cls, bundle, engine, retrieve: int | None = None) -> "ServedPersona":
        from kit.chat.lore import Lore

        return cls(bundle.persona_id, bundle.name, list(bundle.stages), bundle.default_stage, engine,
                   bundle.gen_params(), lore=Lore.for_bundle(bundle, retrieve))

    def model_ids(self) -> list[tuple[str, str]]:
        """(model id, stage id) pairs: the bare id means the default stage."""
        return [(self.id, self.default_stage)] + [(f"{self.id}:{s.id}", s.id) for s in self.stages]

    def retry_after(self) -> str:
        return str(max(1, math.ceil(self.avg_s * (self.waiting + 1))))

    async def acquire(self, settings: ServerSettings) -> float:
        """Wait for the engine in a bounded queue; returns the time the engine was taken."""
        if self.lock.locked() and self.waiting >= settings.max_queue:
            raise ApiError(429, f"'{self.id}' is busy: {self.waiting} requests already waiting; retry later",
                           kind="rate_limit_error", headers={"Retry-After": self.retry_after()})
        self.waiting += 1
        try:
            await asyncio.wait_for(self.lock.acquire(), settings.queue_timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(503, f"'{self.id}' is busy: waited {settings.queue_timeout_s:g} s for the model; "
                                "retry later", kind="server_error", headers={"Retry-After": self.retry_after()}) from None
        finally:
            self.waiting -= 1
        return time.perf_counter()

    def release(self, since: float) -> None:
        self.avg_s = 0.8 * self.avg_s + 0.2 * (time.perf_counter() - since)
        self.lock.release()


def resolve(by_id: dict, req: ChatRequest):
    """(persona, stage) for a request's ``model`` (``id`` or ``id:stage``) and ``stage`` field."""
    pid, _, suffix = req.model.partition(":")
    persona = by_id.get(pid)
    if persona is None:
        raise ApiError(404, f"model '{req.model}' not found; available: {sorted(by_id)}", "model", "not_found_error")
    stage_id = req.stage or suffix or persona.default_stage
    stage = next((s for s in persona.stages if s.id == stage_id), None)
    if stage is None:
        raise ApiError(400, f"unknown stage '{stage_id}' for '{pid}'; use one of {[s.id for s in persona.stages]}",
                       "stage")
    return persona, stage


def chat_messages(persona: ServedPersona, stage, req: ChatRequest) -> list[dict]:
    """One system message (the stage prompt, then the client's own system text) and the turns.

    A companion app that imported the persona's character card already sends a stage prompt
    as its system text; it is not prepended a second time (many templates accept one system
    message, at the start)."""
    client = [m.text() for m in req.messages if m.role in ("system", "developer") and m.text().strip()]
    prompts = [s.system_prompt.strip() for s in persona.stages if s.system_prompt.strip()]
    sent = any(p in c for c in client for p in prompts)
    system = ([] if sent or not stage.system_prompt else [stage.system_prompt]) + client
    system = list(dict.fromkeys(system))  # a client repeating one system text sends it once
    turns = [{"role": m.role, "content": m.text()} for m in req.messages if m.role in ("user", "assistant")]
    text = "\n\n".join(system)
    if persona.lore is not None:  # the persona's passages for the latest user turn, bounded by the stage
        query = next((t["content"] for t in reversed(turns) if t["role"] == "user"), "")
        text = persona.lore.system(text, query, stage.id, getattr(persona.engine, "n_ctx", None) or 2048,
                                   token_counter(persona.engine))
    return ([{"role": "system", "content": text}] if text else []) + turns


def gen_params(persona: ServedPersona, req: ChatRequest, settings: ServerSettings) -> GenParams:
    """Request fields > ``perskit serve --max-tokens`` > the bundle's sampling > GenParams defaults."""
    values = persona.sampling.model_dump()
    if settings.max_tokens is not None:
        values["max_tokens"] = settings.max_tokens
    values.update(req.sampling())
    return GenParams(**values)


def prepare(persona: ServedPersona, stage, req: ChatRequest, settings: ServerSettings):
    """Messages fitted to the context (older turns dropped, with a notice), and the params."""
    params = gen_params(persona, req, settings)
    n_ctx = getattr(persona.engine, "n_ctx", None) or 2048
    # A huge max_tokens must not push the whole conversation out: keep at least half the context.
    reserve = min(params.max_tokens, n_ctx // 2)
    try:
        msgs, notice = fit_messages(chat_messages(persona, stage, req), n_ctx, reserve, token_counter(persona.engine))
    except Exception as exc:  # e.g. a chat template that cannot render these messages
        raise ApiError(400, _one_line(exc), kind="engine_error") from None
    return msgs, params, notice


def _one_line(exc: Exception) -> str:
    return getattr(exc, "one_line", lambda: str(exc))()


async def complete(persona: ServedPersona, msgs, params, cid: str, model: str, headers: dict):
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    try:
        text = await run_in_threadpool(persona.engine.complete, msgs, params)
    except Exception as exc:  # a template that fails to render, etc.: the server stays up
        raise ApiError(400, _one_line(exc), kind="engine_error") from None
    usage = dict(getattr(persona.engine, "last_usage", None) or {})
    body = ChatCompletion(id=cid, created=int(time.time()), model=model, usage=Usage.from_engine(usage), choices=[
        Choice(message=AssistantMessage(content=text), finish_reason=finish_reason(usage))])
    return JSONResponse(body.model_dump(), headers=headers)


_END = object()


async def stream_events(persona: ServedPersona, msgs, params, cid: str, model: str, include_usage: bool):
    """The SSE body: a role chunk, one chunk per piece, a finish chunk, [usage], [DONE]."""
    from starlette.concurrency import run_in_threadpool

    now = int(time.time())

    def chunk(delta: Delta, finish=None) -> str:
        return sse(ChatCompletionChunk(id=cid, created=now, model=model,
                                       choices=[ChunkChoice(delta=delta, finish_reason=finish)]))

    gen = persona.engine.stream(msgs, params)
    try:
        yield chunk(Delta(role="assistant", content=""))
        while True:
            try:
                piece = await run_in_threadpool(next, gen, _END)
            except Exception as exc:
                yield sse({"error": {"message": _one_line(exc), "type": "engine_error"}})
                break
            if piece is _END:
                usage = getattr(persona.engine, "last_usage", None) or {}
                yield chunk(Delta(), finish_reason(usage))
                if include_usage:
                    yield sse(ChatCompletionChunk(id=cid, created=now, model=model, choices=[],
                                                  usage=Usage.from_engine(usage)))
                break
            yield chunk(Delta(content=piece))
        yield sse("[DONE]")
    finally:
        # A client that disconnects mid-stream stops generation and frees the engine. Closed
        # synchronously: after a cancellation no further await may run here, and the
        # threadpool call above is never abandoned, so the generator is idle by now.
        try:
            gen.close()
        except ValueError:
            pass


def locked_stream(body, persona: ServedPersona, since: float, headers: dict):
    """A streaming response that gives the engine back when it ends, however it ends (also if
    the client left before the body started, when the body generator never runs)."""
    from fastapi.responses import StreamingResponse

    class _Locked(StreamingResponse):
        async def __call__(self, scope, receive, send):
            try:
                await super().__call__(scope, receive, send)
            finally:
                persona.release(since)

    return _Locked(body, media_type="text/event-stream", headers=headers)


async def chat_completion(by_id: dict, settings: ServerSettings, raw: bytes):
    from starlette.concurrency import run_in_threadpool

    if len(raw) > settings.max_body_bytes:
        raise ApiError(413, f"request body is {len(raw)} bytes; the limit is {settings.max_body_bytes}")
    req = parse_chat_request(raw)
    persona, stage = resolve(by_id, req)
    since = await persona.acquire(settings)
    handed_over = False
    try:
        msgs, params, notice = await run_in_threadpool(prepare, persona, stage, req, settings)
        cid, model = f"chatcmpl-{uuid.uuid4().hex}", f"{persona.id}:{stage.id}"
        headers = {"x-perskit-stage": stage.id, **({"x-perskit-notice": notice} if notice else {})}
        if not req.stream:
            return await complete(persona, msgs, params, cid, model, headers)
        usage = bool(req.stream_options and req.stream_options.include_usage)
        handed_over = True
        return locked_stream(stream_events(persona, msgs, params, cid, model, usage), persona, since, headers)
    finally:
        if not handed_over:
            persona.release(since)


def models_payload(personas: list[ServedPersona], created: int) -> dict:
    return {"object": "list", "data": [
        {"id": mid, "object": "model", "created": created, "owned_by": "perskit", "name": p.name,
         "persona": p.id, "stage": sid, "stages": [s.id for s in p.stages], "default_stage": p.default_stage}
        for p in personas for mid, sid in p.model_ids()]}


def create_app(personas: list[ServedPersona], settings: ServerSettings | None = None):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    settings = settings or ServerSettings()
    by_id = {p.id: p for p in personas}
    app = FastAPI(title="perskit", docs_url=None, redoc_url=None, openapi_url=None)
    created = int(time.time())
    expected = f"Bearer {settings.api_key}".encode() if settings.api_key else None

    @app.middleware("http")
    async def auth(request: Request, call_next):
        if expected and request.url.path.startswith("/v1/"):
            # compare_digest: the time taken does not reveal how much of the key was right
            if not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected):
                return _error_response(ApiError(401, "invalid or missing API key (send 'Authorization: Bearer "
                                                     "<key>')", kind="authentication_error"))
        return await call_next(request)

    if settings.cors_origins:  # added last, so it wraps auth: preflights never need the key
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"], expose_headers=["retry-after"])

    async def api_error(request: Request, exc: ApiError):
        return _error_response(exc)

    app.add_exception_handler(ApiError, api_error)

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(by_id)}

    @app.get("/v1/models")
    async def models():
        return JSONResponse(models_payload(personas, created))

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.max_body_bytes:  # refused before reading it
            raise ApiError(413, f"request body is {declared} bytes; the limit is {settings.max_body_bytes}")
        return await chat_completion(by_id, settings, await request.body())

    return app


def _error_response(exc: ApiError):
    from fastapi.responses import JSONResponse

    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
