"""``perskit chat``: the Textual app. It receives a ChatSession (persona + injected engine +
history store) and, for multi-agent mode, the other agents; it never imports a backend.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import CommandPalette
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer

from kit.chat.multiagent import Agent, Discussion
from kit.chat.session import ChatSession, PersonaView, ReplyStats
from kit.chat.store import data_dir
from kit.tui.commands import PerskitCommands
from kit.tui.screens.help import HelpScreen
from kit.tui.screens.settings import SettingsScreen
from kit.tui.screens.stage import StageScreen
from kit.tui.widgets.chat_view import ChatView
from kit.tui.widgets.header import PersonaHeader, StatusLine
from kit.tui.widgets.passages import PassagesPanel
from kit.tui.widgets.prompt import PromptArea
from kit.tui.widgets.sidebar import HistorySidebar


class ChatApp(App):
    CSS_PATH = "chat.tcss"
    TITLE = "perskit chat"
    COMMANDS = App.COMMANDS | {PerskitCommands}
    # Footer order matters on 80 columns: the keys a newcomer needs first.
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("escape", "stop", "Stop", priority=True),
        Binding("ctrl+c", "stop", "Stop", show=False, priority=True),
        Binding("ctrl+t", "stage", "Stage"),
        Binding("ctrl+r", "regen", "Regen"),
        Binding("ctrl+o", "copy_last", "Copy"),
        Binding("ctrl+l", "clear", "New"),
        Binding("ctrl+s", "settings", "Sampling"),
        # Listed in F1 help and the palette; the footer has room for 80 columns only.
        Binding("ctrl+g", "edit_last", "Edit", show=False),
        Binding("ctrl+b", "sidebar", "History", show=False),
        Binding("f2", "passages", "Passages", show=False),
    ]

    def __init__(self, session: ChatSession, agents: list[Agent] | None = None,
                 discussion_turns: int = 6, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.extra_agents = list(agents or [])
        self.discussion_turns = discussion_turns
        self.discussion: Discussion | None = None
        self._items_before = 0
        self.live_stats = ReplyStats()  # from the view's progress reports (discussions have no session stats)
        # Personas the palette can switch to: this one, then each --with persona (its stages when
        # it came from a bundle, else its one prompt).
        self.personas = [(session.persona, session.engine)] + [
            (a.view or PersonaView.single(a.persona_id or a.name, a.name, a.system_prompt), a.engine)
            for a in self.extra_agents]

    # -- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield PersonaHeader(id="header")
        with Horizontal(id="body"):
            yield HistorySidebar(id="sidebar")
            with Vertical(id="main"):
                yield ChatView(id="chat")
                yield PassagesPanel(id="passages")  # hidden until F2 (chat.tcss)
                yield StatusLine(id="status")
                yield PromptArea(placeholder="Message (Enter sends, Ctrl+J new line, /help)", id="prompt")
        yield Footer(compact=True, show_command_palette=True)

    def on_mount(self) -> None:
        self.query_one(HistorySidebar).display = self.size.width >= 100
        self.refresh_header()
        self.refresh_sidebar()
        self.query_one(ChatView).show_items(self.session.items)
        self.refresh_status()
        self.query_one("#prompt", PromptArea).focus()

    @property
    def chat(self) -> ChatView:
        return self.query_one(ChatView)

    def refresh_header(self) -> None:
        p = self.session.persona
        self.query_one(PersonaHeader).show(p.name, p.stage(self.session.stage).label, p.model, p.quant,
                                           "discussion" if self.discussion else "chat")

    def refresh_sidebar(self) -> None:
        self.query_one(HistorySidebar).show(self.session.store.conversations(),
                                            self.discussion.conv_id if self.discussion else self.session.conv_id)

    def refresh_status(self, note: str = "") -> None:
        s = self.live_stats if self.discussion else self.session.last_stats
        try:
            used = self.session.context_used()
        except Exception:  # a template error is reported when sending; the status bar must not fail
            used = 0
        self.query_one(StatusLine).show(generating=self.chat.generating, tok_per_s=s.tok_per_s, ttft_s=s.ttft_s,
                                        ctx_used=used, n_ctx=self.session.n_ctx or 0, note=note)
        self.query_one(PassagesPanel).show_for(self.session)  # every place the status changes, so does it

    def note(self, text: str) -> None:
        self.chat.add_bubble("note", "", text)

    # -- input -----------------------------------------------------------------------------
    def on_prompt_area_submitted(self, event: PromptArea.Submitted) -> None:
        text = event.value.strip()
        event.prompt.value = ""
        if not text:
            return
        if text.startswith("/"):
            self.run_command(text)
            return
        if self.discussion is not None:
            self.discussion.interject(text)
            self.chat.add_bubble("user", "You", text)
            if not self.chat.generating:  # a finished discussion: each persona answers once
                self._start_discussion(len(self.discussion.agents))
            return
        if self.chat.generating:
            self.notify("a reply is still streaming: press Esc to stop it first", severity="warning")
            event.prompt.value = text
            return
        msg = self.session.add_user(text)
        self.chat.add_bubble("user", "You", msg.content)
        self._reply()

    def _reply(self) -> None:
        session = self.session

        def job():
            yield session.persona.name, session.stream_reply()

        self._items_before = len(session.items)
        self.chat.start(job)
        self.refresh_status()

    def on_chat_view_progress(self, event: ChatView.Progress) -> None:
        self.live_stats = ReplyStats(tokens=event.tokens, seconds=event.seconds, ttft_s=event.ttft_s)
        self.query_one(StatusLine).show(generating=True, tok_per_s=self.live_stats.tok_per_s, ttft_s=event.ttft_s,
                                        ctx_used=self.session.last_stats.prompt_tokens, n_ctx=self.session.n_ctx or 0)

    def on_chat_view_reply_done(self, event: ChatView.ReplyDone) -> None:
        if event.error:
            self.note(f"error: {event.error}")
            self.notify(event.error, severity="error", timeout=8)
        if self.discussion is None:
            # Show notes the session added while replying (trim notices), before the reply bubble.
            new_notes = [m for m in self.session.items[self._items_before:] if m.role == "note"]
            for m in new_notes:
                self.note(m.content)
        self.refresh_sidebar()
        self.refresh_status("stopped" if event.stopped else "")

    # -- actions ---------------------------------------------------------------------------
    def action_stop(self) -> None:
        if isinstance(self.screen, (HelpScreen, StageScreen, SettingsScreen)):
            self.screen.dismiss(None)
            return
        if isinstance(self.screen, CommandPalette):  # Esc is a priority key here: give it back
            self.screen._action_escape()
            return
        if not self.chat.stop():
            self.notify("nothing to stop (Ctrl+Q quits)", timeout=2)

    def action_regen(self) -> None:
        if self.chat.generating or self.discussion is not None:
            return
        if self.session.last_index("user") is None:
            self.notify("nothing to regenerate yet")
            return
        if self.session.drop_last_reply():
            bubbles = [b for b in self.chat.bubbles() if b.role == "assistant"]
            if bubbles:
                bubbles[-1].remove()
        self._reply()

    def action_edit_last(self) -> None:
        if self.chat.generating or self.discussion is not None:
            return
        text = self.session.pop_last_user()
        if text is None:
            self.notify("no message to edit")
            return
        self.chat.show_items(self.session.items)
        self.refresh_status()  # the context shrank and the last reply's passages went with it
        prompt = self.query_one("#prompt", PromptArea)
        prompt.value = text
        prompt.focus()

    def action_copy_last(self) -> None:
        items = self.discussion.items if self.discussion else self.session.items
        reply = next((m.content for m in reversed(items) if m.role == "assistant" and m.content), None)
        if reply is None:
            self.notify("no reply to copy yet")
            return
        self.copy_to_clipboard(reply)  # OSC 52: works over SSH in most terminals
        self.notify(f"copied the last reply ({len(reply)} characters)", timeout=2)

    def switch_persona(self, index: int) -> None:
        if self.chat.generating:
            self.notify("stop the reply first (Esc)", severity="warning")
            return
        view, engine = self.personas[index]
        if view.id == self.session.persona.id:
            return
        self.discussion = None
        self.session.switch_persona(view, engine)
        self.chat.show_items([])
        self.note(f"now chatting with {view.name} (stage {view.stage(self.session.stage).label})")
        self.refresh_header()
        self.refresh_sidebar()
        self.refresh_status()

    def action_clear(self) -> None:
        if self.chat.generating:
            return
        self.discussion = None
        self.session.clear()
        self.chat.show_items([])
        self.refresh_header()
        self.refresh_sidebar()
        self.refresh_status()

    def action_stage(self) -> None:
        def picked(stage_id: str | None) -> None:
            if stage_id:
                self.switch_stage(stage_id)

        self.push_screen(StageScreen(self.session.persona.stages, self.session.stage), picked)

    def switch_stage(self, stage_id: str) -> None:
        try:
            text = self.session.switch_stage(stage_id)
        except KeyError:
            ids = [s.id for s in self.session.persona.stages]
            self.notify(f"unknown stage '{stage_id}': use one of {ids}", severity="error")
            return
        self.note(text)
        self.refresh_header()
        self.refresh_status()

    def action_settings(self) -> None:
        params = self.session.params

        def validate(values: dict) -> None:
            type(params)(**{**params.model_dump(), **values})

        def done(values: dict | None) -> None:
            if values:
                self.session.params = type(params)(**{**params.model_dump(), **values})
                self.notify("sampling settings saved")

        self.push_screen(SettingsScreen(params.model_dump(), validate), done)

    def action_sidebar(self) -> None:
        bar = self.query_one(HistorySidebar)
        bar.display = not bar.display
        if bar.display:
            self.refresh_sidebar()
            bar.focus()

    def action_passages(self) -> None:
        panel = self.query_one(PassagesPanel)
        panel.display = not panel.display
        panel.show_for(self.session)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(retrieval=self.session.active_lore() is not None))

    def on_history_sidebar_open(self, event: HistorySidebar.Open) -> None:
        self.open_conversation(event.conv_id)

    def open_conversation(self, conv_id: int) -> None:
        if self.chat.generating:
            self.notify("stop the reply first (Esc)", severity="warning")
            return
        conv = self.session.store.conversation(conv_id)
        if conv is None:
            self.notify(f"no conversation #{conv_id}", severity="error")
            return
        self.discussion = None
        if conv.mode == "multi":
            # A discussion transcript is shown as is; typing starts a new chat with this persona.
            self.session.clear()
            self.chat.show_items(self.session.store.messages(conv_id))
            self.note("discussion transcript (read-only): /agents starts a new one, typing starts a new chat")
        else:
            self.session.load(conv_id)
            self.chat.show_items(self.session.items)
        self.refresh_header()
        self.refresh_sidebar()
        self.refresh_status(f"reopened #{conv_id}")
        self.query_one("#prompt", PromptArea).focus()

    # -- slash commands --------------------------------------------------------------------
    def run_command(self, line: str) -> None:
        try:
            parts = shlex.split(line[1:])
        except ValueError:
            parts = line[1:].split()
        cmd, args = (parts[0].lower(), parts[1:]) if parts else ("help", [])
        simple = {"help": self.action_help, "regen": self.action_regen, "edit": self.action_edit_last,
                  "clear": self.action_clear, "new": self.action_clear, "settings": self.action_settings,
                  "history": self.action_sidebar, "stop": self.action_stop, "quit": self.exit,
                  "copy": self.action_copy_last, "passages": self.action_passages}
        if cmd in simple:
            simple[cmd]()
        elif cmd == "stage":
            self.switch_stage(args[0]) if args else self.action_stage()
        elif cmd == "stages":
            self.note("stages: " + ", ".join(f"{s.id} ({s.label})" for s in self.session.persona.stages))
        elif cmd == "open" and args and args[0].lstrip("#").isdigit():
            self.open_conversation(int(args[0].lstrip("#")))
        elif cmd == "export":
            self.export(args)
        elif cmd == "agents":
            self.start_agents(args)
        else:
            self.notify(f"unknown command /{cmd} (F1 lists them)", severity="warning")

    def export(self, args: list[str]) -> None:
        conv_id = self.discussion.conv_id if self.discussion else self.session.conv_id
        if conv_id is None:
            self.notify("nothing to export yet")
            return
        fmt = args[0].lower() if args and args[0].lower() in ("md", "json") else "md"
        rest = args[1:] if args and args[0].lower() in ("md", "json") else args
        path = Path(rest[0]).expanduser() if rest else data_dir() / "exports" / f"conversation-{conv_id}.{fmt}"
        if path.suffix.lower() not in (".md", ".json"):
            path = path.with_suffix(f".{fmt}")
        out = self.session.store.export(conv_id, path)
        self.note(f"exported to {out}")

    def agents_for_discussion(self) -> list[Agent]:
        p, s = self.session.persona, self.session
        if self.extra_agents:
            return [Agent(p.name, s.engine, s.system_prompt(), p.id)] + self.extra_agents
        # One persona with several stages: its earlier and later selves talk to each other.
        return [Agent(f"{p.name} ({st.label})", s.engine, st.system_prompt, f"{p.id}:{st.id}") for st in p.stages]

    def start_agents(self, args: list[str]) -> None:
        if self.chat.generating:
            self.notify("stop the reply first (Esc)", severity="warning")
            return
        turns = self.discussion_turns
        if args and args[0].isdigit():
            turns, args = max(1, int(args[0])), args[1:]
        topic = " ".join(args).strip()
        if not topic:
            self.notify("usage: /agents N topic", severity="warning")
            return
        agents = self.agents_for_discussion()
        if len(agents) < 2:
            self.notify("multi-agent mode needs a second persona (perskit chat A --with B) or a bundle with "
                        "two stages", severity="error")
            return
        self.discussion = Discussion(agents, topic, self.session.store,
                                     params=self.session.params.model_copy(update={"max_tokens": min(
                                         self.session.params.max_tokens, 128)}))
        self.chat.show_items(self.discussion.items)
        self.refresh_header()
        self.refresh_sidebar()
        self._start_discussion(turns)

    def _start_discussion(self, turns: int) -> None:
        d = self.discussion

        def pieces():
            gen = d.stream_turn()
            try:
                for _, piece in gen:
                    yield piece
            finally:
                gen.close()  # the turn is saved (partial if stopped)

        def job():
            for _ in range(turns):
                yield d.next_agent().name, pieces()

        self.chat.start(job)
        self.refresh_status()
