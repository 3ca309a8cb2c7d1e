"""The OpenAI chat-completions wire format: request models (validated) and response models
(serialised), plus the server-sent-event frame. Only the fields perskit honours are declared;
OpenAI clients send more (``n``, ``tools``, ``user``...), which are ignored, not errors."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ApiError(Exception):
    """A request the server refuses: turned into an OpenAI-style error body by the app."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": None}}


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str = Field(description="system | developer | user | assistant (others, e.g. tool, are skipped).")
    content: str | list | None = Field(None, description="Text, or OpenAI content parts (the text parts are kept).")

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "".join(p.get("text", "") for p in self.content
                           if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = Field(False, description="Send a last chunk with token usage and no choices.")


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = Field(description="'<persona>' or '<persona>:<stage>'.")
    messages: list[ChatMessageIn] = Field(min_length=1, description="The conversation so far.")
    stream: bool = Field(False, description="Answer as server-sent events.")
    stream_options: StreamOptions | None = Field(None, description="OpenAI streaming options.")
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    min_p: float | None = Field(None, ge=0, le=1, description="llama.cpp extension: minimum token probability.")
    frequency_penalty: float | None = Field(None, ge=-2, le=2, description="OpenAI frequency penalty.")
    presence_penalty: float | None = Field(None, ge=-2, le=2, description="OpenAI presence penalty.")
    repeat_penalty: float | None = Field(None, gt=0, le=10, description="llama.cpp extension: repetition penalty.")
    max_tokens: int | None = Field(None, ge=1, description="Reply length limit (legacy name).")
    max_completion_tokens: int | None = Field(None, ge=1, description="Reply length limit.")
    seed: int | None = Field(None, ge=-1, le=2**32 - 1, description="Sampling seed (llama.cpp takes 32 bits).")
    stop: str | list[str] | None = Field(None, description="Extra stop strings.")
    stage: str | None = Field(None, description="perskit extension: the persona's life stage.")

    def sampling(self) -> dict:
        """The sampling fields this request sets (the rest come from the bundle's defaults)."""
        keys = ("temperature", "top_p", "min_p", "frequency_penalty", "presence_penalty", "repeat_penalty", "seed")
        out = {k: getattr(self, k) for k in keys if getattr(self, k) is not None}
        limit = self.max_completion_tokens or self.max_tokens
        if limit:
            out["max_tokens"] = limit
        out["stop"] = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return out


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Bytes -> ChatRequest, or an ApiError naming the field. Parsed here rather than by a
    FastAPI body parameter because ``curl -d`` sends a form content type that FastAPI would
    refuse to read as JSON."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {str(exc)[:200]}") from None
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"]) or None
        where = f"{loc}: " if loc else ""
        raise ApiError(400, f"invalid request: {where}{first['msg']}", loc) from None


# -- responses -------------------------------------------------------------------------------
class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def from_engine(cls, usage: dict | None) -> "Usage":
        usage = usage or {}
        p, c = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        return cls(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


def finish_reason(usage: dict | None) -> Literal["stop", "length"]:
    return "length" if (usage or {}).get("finish_reason") == "length" else "stop"


def sse(payload: BaseModel | dict | str) -> str:
    """One server-sent event: ``data: <json>`` and a blank line (``[DONE]`` is sent verbatim)."""
    if isinstance(payload, BaseModel):
        payload = payload.model_dump_json(exclude_none=False)
    elif isinstance(payload, dict):
        payload = json.dumps(payload)
    return f"data: {payload}\n\n"
