"""A deterministic engine for tests: replies and Likert choices come from a script.

Used only in unit tests (never by a user-facing stage): it lets metric tests pin exact
values without a model. ``replies`` maps a substring of the last user message to the reply;
``likert`` maps a substring of the last user message to the label to put all mass on.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

from kit.engine.base import GenParams, Message


class ScriptedEngine:
    def __init__(self, replies: dict[str, str] | Callable[[list[Message]], str] | None = None, *,
                 default: str = "I would rather not say.", likert: Callable[[list[Message]], str] | None = None,
                 logprobs: bool = True, name: str = "scripted"):
        self.name = name
        self.replies = replies or {}
        self.default = default
        self.likert = likert
        self.logprobs = logprobs
        self.calls: list[list[Message]] = []

    def _reply(self, messages: list[Message]) -> str:
        self.calls.append(messages)
        if callable(self.replies):
            return self.replies(messages)
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        for key, reply in self.replies.items():
            if key in last:
                return reply
        return self.default

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[str]:
        text = self._reply(messages)[: params.max_tokens * 8]
        for i in range(0, len(text), 8):
            yield text[i:i + 8]

    def complete(self, messages: list[Message], params: GenParams) -> str:
        return "".join(self.stream(messages, params))

    def complete_batch(self, batch: list[list[Message]], params: GenParams) -> list[str]:
        return [self.complete(m, params) for m in batch]

    def choice_logprobs(self, messages: list[Message], choices: list[str], prefix: str = "") -> list[float]:
        if not self.logprobs or self.likert is None:
            raise NotImplementedError("scripted engine has no Likert script")
        self.calls.append(messages)
        pick = self.likert(messages)
        return [0.0 if c == pick else -math.inf for c in choices]

    def close(self) -> None:
        pass
