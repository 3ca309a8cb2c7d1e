"""The passages retrieval gave the last reply (``--retrieve K``): a panel under the chat,
hidden until F2, ``/passages`` or the palette shows it."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from kit.chat.lore import shown


class PassagesPanel(VerticalScroll):
    """Lists the session's ``retrieved`` passages: id, stage, source and their first words
    (scrolls when K passages need more than its few lines)."""

    def compose(self) -> ComposeResult:
        yield Static(id="passages-text")

    @property
    def text(self) -> str:
        return str(self.query_one(Static).render())

    def show_for(self, session) -> None:
        if not self.display:
            return  # rendered when shown: a hidden panel costs nothing per reply
        self.query_one(Static).update(render(session.active_lore() is not None, session.retrieved,
                                             session.persona.stage(session.stage).label))


def render(enabled: bool, passages: list[dict] | None, stage_label: str) -> Text:
    t = Text()
    if not enabled:
        t.append("retrieval is off for this persona (perskit chat BUNDLE --retrieve K turns it on)", style="dim")
        return t
    if passages is None:
        # The session forgets them on a stage switch: an earlier stage never sees a later one's.
        t.append(f"no reply at stage {stage_label} yet: the next one lists its passages here", style="dim")
        return t
    t.append(f"passages for the last reply ({len(passages)}, stage {stage_label}; F2 hides)", style="bold")
    if not passages:
        t.append("\nnone matched, or none fitted the context budget", style="dim")
    for i, p in enumerate(shown(passages), 1):
        t.append(f"\n[{i}] ", style="bold")
        t.append(f"{p['id']} · {p['stage']} · {p['source']}", style="dim")
        t.append(f"\n    {p['excerpt']}")
    return t
