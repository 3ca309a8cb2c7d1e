"""Fit a conversation into the context window: drop the oldest turns, never the system prompt.

The caller shows the returned notice, so the user sees that old turns left the model's
view (they stay in the history and on screen).
"""

from __future__ import annotations

from typing import Callable

from kit.engine.base import Message


def approx_tokens(messages: list[Message]) -> int:
    """Fallback count for engines without a tokenizer (~4 characters a token + framing)."""
    return sum(len(m["content"]) // 4 + 4 for m in messages)


def token_counter(engine) -> Callable[[list[Message]], int]:
    return getattr(engine, "count_tokens", None) or approx_tokens


def fit_messages(messages: list[Message], n_ctx: int, reserve: int,
                 count: Callable[[list[Message]], int] = approx_tokens) -> tuple[list[Message], str | None]:
    """Return (messages that fit in ``n_ctx - reserve`` tokens, notice or None).

    Drops the oldest non-system messages first; if the newest message alone still does
    not fit, keeps only its tail. ``reserve`` is room left for the reply.
    """
    budget = max(16, n_ctx - reserve)
    if count(messages) <= budget:
        return messages, None
    system = [m for m in messages[:1] if m["role"] == "system"]
    rest = list(messages[len(system):])
    dropped = 0
    while len(rest) > 1 and count(system + rest) > budget:
        rest.pop(0)
        dropped += 1
        # A template may require the first turn after the system prompt to be the user's.
        while len(rest) > 1 and rest[0]["role"] == "assistant":
            rest.pop(0)
            dropped += 1
    notice = f"context full ({n_ctx} tokens): {dropped} older message(s) left the model's view"
    if count(system + rest) > budget and rest:
        last = dict(rest[-1])
        text = last["content"]
        lo, hi = 0, len(text)
        while lo < hi:  # longest tail that fits
            mid = (lo + hi) // 2
            last["content"] = text[len(text) - mid:] if mid else ""
            if count(system + [last]) <= budget:
                lo = mid + 1
            else:
                hi = mid
        keep = max(0, lo - 1)
        last["content"] = text[len(text) - keep:] if keep else ""
        rest = [last]
        notice += f"; the last message was cut to its final {keep} characters"
    return system + rest, notice
