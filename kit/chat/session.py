"""One chat with one persona: stage, messages, autosave, regenerate/edit/clear, context fitting.

UI-free so the TUI, tests and scripts share it. The engine is injected (any ``ChatEngine``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

from kit.chat.context import fit_messages, token_counter
from kit.chat.store import HistoryStore, StoredMessage
from kit.engine.base import GenParams

SAVE_EVERY_S = 0.25  # how often a streaming reply is flushed to SQLite


@dataclass
class PersonaView:
    """What the chat needs to know about a persona (built from a Bundle or by hand in tests)."""

    id: str
    name: str
    stages: list  # objects with .id .label .system_prompt
    default_stage: str
    model: str = ""
    quant: str = ""

    @classmethod
    def from_bundle(cls, bundle) -> "PersonaView":
        return cls(bundle.persona_id, bundle.name, list(bundle.stages), bundle.default_stage,
                   bundle.base_model or bundle.gguf.name, bundle.quant)

    @classmethod
    def single(cls, persona_id: str, name: str, system_prompt: str) -> "PersonaView":
        """A persona with one prompt and no stages (a bare GGUF or a LoRA agent)."""
        from kit.engine.bundle import StageInfo

        return cls(persona_id, name, [StageInfo("default", "default", system_prompt)], "default")

    def stage(self, stage_id: str):
        for s in self.stages:
            if s.id == stage_id:
                return s
        raise KeyError(stage_id)


def turn_messages(system: str, turns: list[dict], stage: str, lore, n_ctx: int,
                  count) -> tuple[list[dict], list[dict] | None]:
    """(the messages sent to the model, the passages retrieval added or None when it is off): the
    stage's system prompt, with the top passages for the latest user turn when ``lore`` is on
    (bounded by ``stage``), then the turns. The TUI, ``perskit chat --prompt`` and the TTFT
    benchmark all build their prompt here."""
    used = None
    if lore is not None:
        query = next((m["content"] for m in reversed(turns) if m["role"] == "user"), "")
        system, used = lore.pick(system, query, stage, n_ctx, count)
    return ([{"role": "system", "content": system}] if system else []) + turns, used


@dataclass
class ReplyStats:
    tokens: int = 0
    seconds: float = 0.0
    ttft_s: float | None = None
    prompt_tokens: int = 0
    stopped: bool = False

    @property
    def tok_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ChatSession:
    persona: PersonaView
    engine: object
    store: HistoryStore
    params: GenParams = field(default_factory=GenParams)
    n_ctx: int | None = None
    stage: str = ""
    conv_id: int | None = None
    items: list[StoredMessage] = field(default_factory=list)
    last_stats: ReplyStats = field(default_factory=ReplyStats)
    lore: object | None = None  # kit.chat.lore.Lore: the persona's passages for the latest user turn
    # The passages the latest reply was given (None: retrieval off, or no reply since the stage,
    # persona or conversation changed, so nothing from another stage's bound is ever shown).
    retrieved: list[dict] | None = None

    def __post_init__(self):
        self.stage = self.stage or self.persona.default_stage
        self.n_ctx = self.n_ctx or getattr(self.engine, "n_ctx", None) or 2048

    # -- conversation bookkeeping ----------------------------------------------------------
    def _ensure_conv(self, title: str) -> int:
        if self.conv_id is None:
            self.conv_id = self.store.new_conversation(title[:60] or "chat", self.persona.id, stage=self.stage,
                                                       model=self.persona.model)
        return self.conv_id

    def _add(self, role: str, content: str, *, partial: bool = False, speaker: str | None = None) -> StoredMessage:
        cid = self._ensure_conv(content if role == "user" else "chat")
        mid = self.store.add_message(cid, role, content, speaker=speaker, stage=self.stage, partial=partial)
        msg = StoredMessage(mid, role, content, speaker, self.stage, partial)
        self.items.append(msg)
        return msg

    def note(self, text: str) -> StoredMessage | None:
        """A visible marker (stage switch, trim notice), saved but never sent to the model."""
        if self.conv_id is None and not self.items:
            self.items.append(StoredMessage(-1, "note", text, None, self.stage))
            return None
        return self._add("note", text)

    def system_prompt(self) -> str:
        return self.persona.stage(self.stage).system_prompt

    def active_lore(self):
        """The session's Lore while chatting with the persona it indexes (None otherwise)."""
        lore = self.lore
        if lore is None or getattr(lore, "persona_id", None) not in (None, self.persona.id):
            return None  # after a persona switch: never another persona's passages
        return lore

    def model_messages(self) -> list[dict]:
        return self._messages()[0]

    def _messages(self) -> tuple[list[dict], list[dict] | None]:
        turns = [m.as_chat() for m in self.items if m.role in ("user", "assistant") and m.content]
        return turn_messages(self.system_prompt(), turns, self.stage, self.active_lore(), self.n_ctx,
                             token_counter(self.engine))

    def fitted_messages(self) -> tuple[list[dict], str | None]:
        return fit_messages(self.model_messages(), self.n_ctx, self.params.max_tokens, token_counter(self.engine))

    def context_used(self) -> int:
        return token_counter(self.engine)(self.model_messages())

    # -- actions ---------------------------------------------------------------------------
    def switch_stage(self, stage_id: str) -> str:
        st = self.persona.stage(stage_id)  # KeyError for an unknown stage
        if stage_id == self.stage:
            return f"already at stage {st.label}"
        self.stage = stage_id
        self.retrieved = None
        if self.conv_id is not None:
            self.store.set_stage(self.conv_id, stage_id)
        text = f"stage switched to {st.label} ({st.id})"
        self.note(text)
        return text

    def switch_persona(self, persona: PersonaView, engine) -> None:
        """Chat with another persona from now on, in a new conversation at its default stage."""
        self.persona, self.engine = persona, engine
        self.stage = persona.default_stage
        self.n_ctx = getattr(engine, "n_ctx", None) or self.n_ctx
        self.clear()

    def add_user(self, text: str) -> StoredMessage:
        return self._add("user", text)

    def stream_reply(self) -> Iterator[str]:
        """Generate the assistant reply to the conversation so far, autosaving as it streams.

        Closing the iterator (stop key) keeps the partial text, saved with ``partial=1``.
        A trim notice, if any, is added as a note before generation starts.
        """
        messages, used = self._messages()
        messages, notice = fit_messages(messages, self.n_ctx, self.params.max_tokens, token_counter(self.engine))
        self.retrieved = used
        if notice:
            self.note(notice)
        msg = self._add("assistant", "", partial=True, speaker=self.persona.name)
        stats = self.last_stats = ReplyStats(prompt_tokens=len(messages))
        parts: list[str] = []
        t0 = time.perf_counter()
        t_first = last_save = None
        finished = False
        gen = self.engine.stream(messages, self.params)
        try:
            for piece in gen:
                now = time.perf_counter()
                if t_first is None:
                    t_first = last_save = now
                    stats.ttft_s = now - t0
                parts.append(piece)
                stats.tokens += 1
                stats.seconds = now - t_first
                msg.content = "".join(parts)
                if now - last_save >= SAVE_EVERY_S:
                    self.store.update_message(msg.id, msg.content, partial=True)
                    last_save = now
                yield piece
            finished = True
        finally:
            gen.close()
            msg.content = "".join(parts)
            msg.partial = not finished
            stats.stopped = not finished
            self.store.update_message(msg.id, msg.content, partial=msg.partial)
            usage = getattr(self.engine, "last_usage", None) or {}
            if usage.get("prompt_tokens"):
                stats.prompt_tokens = usage["prompt_tokens"]

    def last_index(self, role: str) -> int | None:
        for i in range(len(self.items) - 1, -1, -1):
            if self.items[i].role == role:
                return i
        return None

    def drop_last_reply(self) -> bool:
        """Remove the last assistant reply (for regenerate); True if there was one."""
        i = self.last_index("assistant")
        if i is None or i < (self.last_index("user") or 0):
            return False
        msg = self.items.pop(i)
        if msg.id >= 0:
            self.store.delete_message(msg.id)
        return True

    def pop_last_user(self) -> str | None:
        """Remove the last user message and everything after it (for edit-last); return its text."""
        i = self.last_index("user")
        if i is None:
            return None
        text = self.items[i].content
        for msg in self.items[i:]:
            if msg.id >= 0 and msg.role != "note":
                self.store.delete_message(msg.id)
        self.items = self.items[:i] + [m for m in self.items[i:] if m.role == "note"]
        self.retrieved = None  # they were the passages for the message being edited
        return text

    def clear(self) -> None:
        """Start a fresh conversation; the old one stays in the history."""
        self.conv_id = None
        self.items = []
        self.retrieved = None

    def load(self, conv_id: int) -> None:
        conv = self.store.conversation(conv_id)
        if conv is None:
            raise KeyError(conv_id)
        self.conv_id = conv_id
        self.items = self.store.messages(conv_id)
        self.retrieved = None
        if conv.stage:
            try:
                self.persona.stage(conv.stage)
                self.stage = conv.stage
            except KeyError:
                pass  # a stage this bundle no longer has: keep the current one
