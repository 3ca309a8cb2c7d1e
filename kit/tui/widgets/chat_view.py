"""The conversation pane. It streams replies in a worker thread from an injected job
(any iterator of ``(speaker, pieces)`` turns built on a ChatEngine) and reports upward with
``Progress`` and ``ReplyDone`` messages; it imports no backend.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterator

from rich.text import Text
from textual import work
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

UI_FLUSH_S = 1 / 30  # redraw a streaming bubble at most this often


class Bubble(Static):
    """One message; ``role`` is user, assistant or note."""

    def __init__(self, role: str, speaker: str, text: str = "", partial: bool = False) -> None:
        super().__init__(classes=f"bubble -{role}", markup=False)
        self.role, self.speaker, self.text, self.partial = role, speaker, text, partial

    def on_mount(self) -> None:
        self.refresh_text()

    def set_text(self, text: str, partial: bool | None = None) -> None:
        self.text = text
        if partial is not None:
            self.partial = partial
        self.refresh_text()

    def refresh_text(self) -> None:
        if self.role == "note":
            self.update(Text(f"— {self.text} —", style="italic"))
            return
        t = Text()
        t.append(f"{self.speaker}: ", style="bold")
        t.append(self.text or ("…" if self.partial else ""))
        if self.partial and self.text:
            t.append(" ⏹", style="dim")
        self.update(t)


Job = Callable[[], Iterator[tuple[str, Iterator[str]]]]


class ChatView(VerticalScroll):
    class Progress(Message):
        def __init__(self, tokens: int, seconds: float, ttft_s: float | None) -> None:
            self.tokens, self.seconds, self.ttft_s = tokens, seconds, ttft_s
            super().__init__()

    class ReplyDone(Message):
        def __init__(self, stopped: bool, error: str | None = None) -> None:
            self.stopped, self.error = stopped, error
            super().__init__()

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._stop = threading.Event()
        self.generating = False

    # -- content ---------------------------------------------------------------------------
    def show_items(self, items: list, user_label: str = "You") -> None:
        """``items``: objects with .role .content .speaker .partial (stored messages)."""
        self.remove_children()
        for m in items:
            self.add_bubble(m.role, m.speaker or (user_label if m.role == "user" else "?"), m.content, m.partial)

    def add_bubble(self, role: str, speaker: str, text: str, partial: bool = False) -> Bubble:
        b = Bubble(role, speaker, text, partial)
        self.mount(b)
        self.scroll_end(animate=False)
        return b

    def bubbles(self) -> list[Bubble]:
        return list(self.query(Bubble))

    # -- streaming -------------------------------------------------------------------------
    def start(self, job: Job) -> None:
        self._stop.clear()
        self.generating = True
        self._run(job)

    def stop(self) -> bool:
        if not self.generating:
            return False
        self._stop.set()
        return True

    @work(thread=True, exclusive=True, group="generate")
    def _run(self, job: Job) -> None:
        call = self.app.call_from_thread
        stopped, error = False, None
        try:
            for speaker, pieces in job():
                bubble = call(self.add_bubble, "assistant", speaker, "", True)
                text, tokens, t0, t_first, last_ui = "", 0, time.perf_counter(), None, 0.0
                try:
                    for piece in pieces:
                        text += piece
                        tokens += 1
                        now = time.perf_counter()
                        t_first = t_first or now
                        if now - last_ui >= UI_FLUSH_S:
                            call(bubble.set_text, text)
                            call(self.scroll_end, animate=False)
                            self.post_message(self.Progress(tokens, now - t_first, t_first - t0))
                            last_ui = now
                        if self._stop.is_set():
                            break
                finally:
                    pieces.close()  # lets the session save the (partial) reply
                stopped = self._stop.is_set()
                call(bubble.set_text, text, stopped)
                if t_first is not None:
                    self.post_message(self.Progress(tokens, time.perf_counter() - t_first, t_first - t0))
                if stopped:
                    break
        except Exception as exc:  # the app stays up; the error is shown as a note
            error = getattr(exc, "one_line", lambda: f"{type(exc).__name__}: {exc}")()
        finally:
            self.generating = False
            self.post_message(self.ReplyDone(stopped, error))
