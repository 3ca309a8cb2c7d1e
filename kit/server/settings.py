"""Server settings (flags > environment > defaults) and the OpenAI request schema."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = Field("127.0.0.1", description="Bind address; loopback by default so nothing is exposed.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one).")
    api_key: str | None = Field(None, description="If set, requests need 'Authorization: Bearer <key>'.")
    max_tokens: int = Field(256, ge=1, description="Reply length when a request gives none.")


class ChatMessageIn(BaseModel):
    # OpenAI clients send extra keys (name, tool_calls...); they are ignored, not errors.
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "".join(p.get("text", "") for p in self.content if isinstance(p, dict) and p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = Field(description="'<persona>' or '<persona>:<stage>'.")
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stage: str | None = Field(None, description="perskit extension: the persona's life stage.")
