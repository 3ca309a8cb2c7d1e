"""History sidebar: saved conversations, newest first; selecting one asks the app to reopen it."""

from __future__ import annotations

import time

from textual.message import Message
from textual.widgets import Label, ListItem, ListView


class ConversationItem(ListItem):
    def __init__(self, conv_id: int, text: str) -> None:
        super().__init__(Label(text))
        self.conv_id = conv_id


class HistorySidebar(ListView):
    class Open(Message):
        def __init__(self, conv_id: int) -> None:
            self.conv_id = conv_id
            super().__init__()

    def show(self, conversations: list, current: int | None = None) -> None:
        """``conversations``: objects with .id .title .updated .mode (from the history store)."""
        self.clear()
        for c in conversations:
            when = time.strftime("%m-%d %H:%M", time.localtime(c.updated))
            mark = "▶ " if c.id == current else ""
            kind = "⁂ " if c.mode == "multi" else ""
            self.append(ConversationItem(c.id, f"{mark}{kind}{c.title}\n[dim]#{c.id} {when}[/]"))
        ids = [c.id for c in conversations]
        # Start the cursor on the open conversation, so Down/Up move to its neighbours.
        self.index = ids.index(current) if current in ids else (0 if ids else None)

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        event.stop()
        if isinstance(event.item, ConversationItem):
            self.post_message(self.Open(event.item.conv_id))
