"""OpenAI-compatible FastAPI app: ``/v1/models`` and ``/v1/chat/completions`` (SSE streaming too).

One model name per persona; the stage is chosen with a ``<persona>:<stage>`` suffix or a
``stage`` request field. Each engine is used by one request at a time (an asyncio lock),
and generation runs in worker threads so the event loop keeps serving.
"""

# No ``from __future__ import annotations`` here: FastAPI resolves the endpoint's
# ``request: Request`` annotation at runtime, and Request is imported inside create_app.
import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

from kit.chat.context import fit_messages, token_counter
from kit.engine.base import GenParams
from kit.server.settings import ChatRequest, ServerSettings


@dataclass
class ServedPersona:
    id: str
    name: str
    stages: list  # objects with .id .label .system_prompt
    default_stage: str
    engine: object
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def from_bundle(cls, bundle, engine) -> "ServedPersona":
        return cls(bundle.persona_id, bundle.name, list(bundle.stages), bundle.default_stage, engine)


def _error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status_code=status)


def create_app(personas: list[ServedPersona], settings: ServerSettings | None = None):
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse
    from pydantic import ValidationError
    from starlette.concurrency import run_in_threadpool

    settings = settings or ServerSettings()
    by_id = {p.id: p for p in personas}
    app = FastAPI(title="perskit", docs_url=None, redoc_url=None)
    created = int(time.time())

    @app.middleware("http")
    async def auth(request: Request, call_next):
        if settings.api_key and request.url.path.startswith("/v1/"):
            if request.headers.get("authorization", "") != f"Bearer {settings.api_key}":
                return _error(401, "invalid or missing API key (send 'Authorization: Bearer <key>')",
                              kind="authentication_error")
        return await call_next(request)

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(by_id)}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [
            {"id": p.id, "object": "model", "created": created, "owned_by": "perskit", "name": p.name,
             "stages": [s.id for s in p.stages], "default_stage": p.default_stage} for p in personas]}

    def resolve(req: ChatRequest):
        pid, _, suffix = req.model.partition(":")
        persona = by_id.get(pid)
        if persona is None:
            return None, None, _error(404, f"model '{req.model}' not found; available: {sorted(by_id)}", "model",
                                      "not_found_error")
        stage_id = req.stage or suffix or persona.default_stage
        stage = next((s for s in persona.stages if s.id == stage_id), None)
        if stage is None:
            return None, None, _error(400, f"unknown stage '{stage_id}' for '{pid}'; use one of "
                                           f"{[s.id for s in persona.stages]}", "stage")
        return persona, stage, None

    def build(persona: ServedPersona, stage, req: ChatRequest):
        # The persona's stage prompt comes first; a client's own system text is appended to it
        # (many templates accept one system message, at the start).
        system = [stage.system_prompt] if stage.system_prompt else []
        turns = []
        for m in req.messages:
            if m.role in ("system", "developer"):
                system.append(m.text())
            elif m.role in ("user", "assistant"):
                turns.append({"role": m.role, "content": m.text()})
        msgs = ([{"role": "system", "content": "\n\n".join(s for s in system if s)}] if any(system) else []) + turns
        max_tokens = req.max_completion_tokens or req.max_tokens or settings.max_tokens
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        params = GenParams(temperature=0.7 if req.temperature is None else req.temperature,
                           top_p=0.95 if req.top_p is None else req.top_p, max_tokens=max_tokens,
                           seed=-1 if req.seed is None else req.seed, stop=stop)
        n_ctx = getattr(persona.engine, "n_ctx", None) or 2048
        msgs, notice = fit_messages(msgs, n_ctx, max_tokens, token_counter(persona.engine))
        return msgs, params, notice

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, f"request body is not valid JSON: {exc}")
        try:
            req = ChatRequest.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            return _error(400, f"invalid request: {loc}: {first['msg']}", loc)
        persona, stage, err = resolve(req)
        if err is not None:
            return err
        async with persona.lock:  # counting tokens uses the engine too
            msgs, params, notice = await run_in_threadpool(build, persona, stage, req)
        cid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        model = f"{persona.id}:{stage.id}"
        headers = {"x-perskit-stage": stage.id}
        if notice:
            headers["x-perskit-notice"] = notice
        if req.stream:
            return StreamingResponse(_sse(persona, msgs, params, cid, now, model), media_type="text/event-stream",
                                     headers=headers)
        async with persona.lock:
            try:
                text = await run_in_threadpool(persona.engine.complete, msgs, params)
            except Exception as exc:  # a template that fails to render, etc.: the server stays up
                return _error(400, getattr(exc, "one_line", lambda: str(exc))(), kind="engine_error")
            usage = dict(getattr(persona.engine, "last_usage", None) or {})
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        finish = "length" if usage.get("finish_reason") == "length" else "stop"
        from fastapi.responses import JSONResponse

        return JSONResponse({"id": cid, "object": "chat.completion", "created": now, "model": model,
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": finish, "logprobs": None}],
                             "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                       "total_tokens": prompt_tokens + completion_tokens}}, headers=headers)

    return app


_END = object()


async def _sse(persona: ServedPersona, msgs, params, cid: str, now: int, model: str):
    from starlette.concurrency import run_in_threadpool

    def chunk(delta: dict, finish: str | None = None) -> str:
        return "data: " + json.dumps({"id": cid, "object": "chat.completion.chunk", "created": now, "model": model,
                                      "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                                   "logprobs": None}]}) + "\n\n"

    async with persona.lock:
        gen = persona.engine.stream(msgs, params)
        try:
            yield chunk({"role": "assistant", "content": ""})
            while True:
                try:
                    piece = await run_in_threadpool(next, gen, _END)
                except Exception as exc:
                    msg = getattr(exc, "one_line", lambda: str(exc))()
                    yield "data: " + json.dumps({"error": {"message": msg, "type": "engine_error"}}) + "\n\n"
                    break
                if piece is _END:
                    usage = getattr(persona.engine, "last_usage", None) or {}
                    yield chunk({}, "length" if usage.get("finish_reason") == "length" else "stop")
                    break
                yield chunk({"content": piece})
            yield "data: [DONE]\n\n"
        finally:
            # A client that disconnects mid-stream stops generation and frees the engine. Closed
            # synchronously: after a cancellation no further await may run here, and the
            # threadpool call above is never abandoned, so the generator is idle by now.
            try:
                gen.close()
            except ValueError:
                pass
