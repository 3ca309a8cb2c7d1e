"""Multi-agent mode (PersLLM's case study): personas take turns discussing a topic.

Each agent sees the discussion from its own seat: its own lines are ``assistant`` turns,
everyone else's (and the user's interjections) arrive as one ``user`` turn prefixed by the
speaker's name, so any chat template (strict user/assistant alternation included) renders.
The transcript is saved as a ``multi`` conversation in the history store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from kit.chat.context import fit_messages, token_counter
from kit.chat.store import HistoryStore, StoredMessage
from kit.engine.base import GenParams

MODERATOR = "Moderator"


@dataclass
class Agent:
    name: str
    engine: object
    system_prompt: str
    persona_id: str = ""
    view: object = None  # the persona's PersonaView (stages) when it came from a bundle


@dataclass
class Discussion:
    agents: list[Agent]
    topic: str
    store: HistoryStore
    params: GenParams = field(default_factory=lambda: GenParams(max_tokens=96))
    conv_id: int | None = None
    items: list[StoredMessage] = field(default_factory=list)
    turn: int = 0

    def __post_init__(self):
        if len(self.agents) < 2:
            raise ValueError("a discussion needs at least two personas")
        if self.conv_id is None:
            names = ", ".join(a.name for a in self.agents)
            self.conv_id = self.store.new_conversation(f"{names}: {self.topic}"[:80], "+".join(
                a.persona_id or a.name for a in self.agents), mode="multi",
                meta={"topic": self.topic, "agents": [a.name for a in self.agents]})
            self._add("user", f"Topic: {self.topic}", MODERATOR)

    def _add(self, role: str, content: str, speaker: str, partial: bool = False) -> StoredMessage:
        mid = self.store.add_message(self.conv_id, role, content, speaker=speaker, partial=partial)
        msg = StoredMessage(mid, role, content, speaker, None, partial)
        self.items.append(msg)
        return msg

    def next_agent(self) -> Agent:
        return self.agents[self.turn % len(self.agents)]

    def interject(self, text: str) -> None:
        self._add("user", text, MODERATOR)

    def view_for(self, agent: Agent) -> list[dict]:
        others = [a.name for a in self.agents if a is not agent]
        system = (f"{agent.system_prompt}\n\nYou are in a discussion with {', '.join(others)} about: {self.topic}. "
                  f"Speak only as {agent.name}, in two or three sentences, and respond to what was just said.").strip()
        msgs: list[dict] = [{"role": "system", "content": system}]
        pending: list[str] = []
        for m in self.items:
            if not m.content:
                continue
            if m.speaker == agent.name:
                if pending:
                    msgs.append({"role": "user", "content": "\n\n".join(pending)})
                    pending = []
                elif msgs[-1]["role"] != "user":
                    msgs.append({"role": "user", "content": f"{MODERATOR}: please continue."})
                msgs.append({"role": "assistant", "content": m.content})
            else:
                pending.append(f"{m.speaker}: {m.content}")
        msgs.append({"role": "user", "content": "\n\n".join(pending) if pending else f"{MODERATOR}: please continue."})
        return msgs

    def stream_turn(self) -> Iterator[tuple[Agent, str]]:
        """Stream the next agent's turn as (agent, piece); closing keeps the partial turn."""
        agent = self.next_agent()
        n_ctx = getattr(agent.engine, "n_ctx", None) or 2048
        messages, notice = fit_messages(self.view_for(agent), n_ctx, self.params.max_tokens,
                                        token_counter(agent.engine))
        if notice:
            self._add("note", notice, "")
        msg = self._add("assistant", "", agent.name, partial=True)
        parts: list[str] = []
        finished = False
        gen = agent.engine.stream(messages, self.params)
        try:
            for piece in gen:
                parts.append(piece)
                msg.content = "".join(parts)
                yield agent, piece
            finished = True
        finally:
            gen.close()
            # A persona sometimes starts by echoing its own name tag; strip it for the transcript.
            text = "".join(parts).strip()
            if text.startswith(f"{agent.name}:"):
                text = text[len(agent.name) + 1:].lstrip()
            msg.content, msg.partial = text, not finished
            self.store.update_message(msg.id, text, partial=not finished)
            self.turn += 1

    def run(self, turns: int) -> list[StoredMessage]:
        """Run ``turns`` turns to the end (no UI); returns the transcript."""
        for _ in range(turns):
            for _ in self.stream_turn():
                pass
        return self.items
