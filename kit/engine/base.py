"""One chat-engine interface used by eval, the TUI and the server.

Engines: ``HFEngine`` (transformers + optional PEFT adapter; kit/engine/hf.py),
``LlamaCppEngine`` (in-process llama.cpp GGUF, optional LoRA GGUF;
kit/engine/llamacpp.py), ``ScriptedEngine`` (tests only; kit/engine/scripted.py).
Widgets and the server receive an engine object; they never import a backend.
"""

from __future__ import annotations

from typing import Iterator, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

Message = dict  # {"role": "system"|"user"|"assistant", "content": str}


class GenParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(256, ge=1)
    seed: int = -1
    stop: list[str] = Field(default_factory=list)
    # 0 / 1.0 mean "off", so a GenParams built without them samples as before.
    min_p: float = Field(0.0, ge=0, le=1, description="Drop tokens below min_p x the top token's probability.")
    top_k: int = Field(0, ge=0, description="Keep only the k most likely tokens (0 = off).")
    repeat_penalty: float = Field(1.0, gt=0, description="Penalise tokens already in the context (1.0 = off).")
    frequency_penalty: float = Field(0.0, ge=-2, le=2, description="OpenAI-style: subtract per occurrence.")
    presence_penalty: float = Field(0.0, ge=-2, le=2, description="OpenAI-style: subtract once if present.")


@runtime_checkable
class ChatEngine(Protocol):
    name: str

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[str]:
        """Yield text pieces as they are generated. Closing the iterator stops generation."""
        ...

    def complete(self, messages: list[Message], params: GenParams) -> str:
        """The whole reply (default: join ``stream``)."""
        ...

    def choice_logprobs(self, messages: list[Message], choices: list[str], prefix: str = "") -> list[float]:
        """Log-probability of each single-token choice as the first token of the reply
        (after ``prefix``). Used for Likert scoring (IPIP-NEO-120). Engines that cannot
        do this raise NotImplementedError; eval then falls back to generation."""
        ...

    def close(self) -> None:
        ...
