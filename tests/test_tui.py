"""Pilot tests of the chat TUI: a scripted engine (unit) and a real tiny GGUF (integration)."""

from __future__ import annotations

import json

import pytest

from chat_helpers import STAGES, SlowScripted, make_bundle, palette, tiny_gguf
from kit.chat.multiagent import Agent
from kit.chat.session import ChatSession, PersonaView
from kit.chat.store import HistoryStore
from kit.engine.base import GenParams
from kit.engine.bundle import StageInfo, load_bundle
from kit.tui.app import ChatApp
from kit.tui.screens.settings import SettingsScreen
from kit.tui.screens.stage import StageScreen

pytestmark = pytest.mark.anyio  # anyio's pytest plugin runs the async Pilot tests


@pytest.fixture
def anyio_backend():
    return "asyncio"


REPLY = "I spent that summer measuring the old river bridge, bolt by bolt, with a borrowed theodolite."
LONG = " ".join(f"word{i}" for i in range(200))


def persona() -> PersonaView:
    return PersonaView("ada-lin", "Ada Lin", [StageInfo(**s) for s in STAGES], "young", "tiny-test", "Q4_K_M")


def make_app(tmp_path, engine=None, agents=None, params=None) -> ChatApp:
    store = HistoryStore(tmp_path / "history.sqlite3")
    engine = engine or SlowScripted({"summer": REPLY, "long": LONG}, default="Hello.", delay=0.01)
    session = ChatSession(persona(), engine, store, params=params or GenParams(max_tokens=256))
    return ChatApp(session, agents=agents)


async def send(pilot, text: str) -> None:
    pilot.app.query_one("#prompt").value = text
    await pilot.press("enter")


async def settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def texts(app, role=None):
    return [b.text for b in app.chat.bubbles() if role is None or b.role == role]


async def test_send_message_streams_the_reply(tmp_path):
    app = make_app(tmp_path, SlowScripted({"summer": REPLY}, delay=0.1))
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "What did you do that summer?")
        for _ in range(200):  # wait for the first streamed words, not for the whole reply
            await pilot.pause(0.01)
            if app.chat.bubbles()[-1].text:
                break
        partial = texts(app, "assistant")[-1]
        assert app.chat.generating and partial and len(partial) < len(REPLY) and REPLY.startswith(partial)
        await settle(pilot)
        assert texts(app) == ["What did you do that summer?", REPLY]
        status = str(app.query_one("#status").render())
        assert "tok/s" in status and "ctx" in status
        msgs = app.session.store.messages(app.session.conv_id)
        assert [(m.role, m.content, m.partial) for m in msgs] == [
            ("user", "What did you do that summer?", False), ("assistant", REPLY, False)]


async def test_escape_stops_mid_reply_and_keeps_partial_text(tmp_path):
    app = make_app(tmp_path, SlowScripted({"long": LONG, "summer": REPLY}, delay=0.02))
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "tell me a long story")
        await pilot.pause(0.3)
        await pilot.press("escape")
        await settle(pilot)
        shown = texts(app, "assistant")[-1]
        assert shown and LONG.startswith(shown) and len(shown) < len(LONG)
        saved = app.session.store.messages(app.session.conv_id)[-1]
        assert saved.partial and saved.content == shown
        assert "stopped" in str(app.query_one("#status").render())
        # The conversation goes on after a stop; ctrl+c stops as well.
        await send(pilot, "and that summer?")
        await settle(pilot)
        assert texts(app, "assistant")[-1] == REPLY
        await send(pilot, "long again")
        await pilot.pause(0.2)
        await pilot.press("ctrl+c")
        await settle(pilot)
        assert app.session.store.messages(app.session.conv_id)[-1].partial


async def test_switch_stage_changes_system_prompt_and_marks_conversation(tmp_path):
    engine = SlowScripted(lambda msgs: "ok " + msgs[0]["content"][:30], delay=0)
    app = make_app(tmp_path, engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "hi")
        await settle(pilot)
        assert engine.calls[-1][0]["content"] == STAGES[0]["system_prompt"]
        await send(pilot, "/stage late")
        await pilot.pause()
        assert "Retired professor" in str(app.query_one("#header").render())
        assert "stage switched to Retired professor (late)" in texts(app, "note")[-1]
        await send(pilot, "hello again")
        await settle(pilot)
        assert engine.calls[-1][0]["content"] == STAGES[1]["system_prompt"]
        # The picker screen (Ctrl+T) switches back.
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert isinstance(app.screen, StageScreen)
        await pilot.press("up", "enter")
        await pilot.pause()
        assert app.session.stage == "young"
        notes = [m.content for m in app.session.store.messages(app.session.conv_id) if m.role == "note"]
        assert notes == ["stage switched to Retired professor (late)", "stage switched to Young engineer (young)"]
        await send(pilot, "/stage middle")
        await pilot.pause()
        assert app.session.stage == "young"  # unknown stage: a notification, nothing breaks


async def test_regenerate_edit_last_and_clear(tmp_path):
    counter = iter(range(100))
    engine = SlowScripted(lambda msgs: f"reply {next(counter)} to {msgs[-1]['content']}", delay=0)
    app = make_app(tmp_path, engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "first")
        await settle(pilot)
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert texts(app) == ["first", "reply 1 to first"]
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert app.query_one("#prompt").value == "first" and texts(app) == []
        await send(pilot, "first, edited")
        await settle(pilot)
        assert texts(app) == ["first, edited", "reply 2 to first, edited"]
        rows = [(m.role, m.content) for m in app.session.store.messages(app.session.conv_id)]
        assert rows == [("user", "first, edited"), ("assistant", "reply 2 to first, edited")]
        old = app.session.conv_id
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert texts(app) == [] and app.session.conv_id is None
        assert app.session.store.conversation(old) is not None


async def test_reopen_saved_conversation_from_sidebar_and_after_restart(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await send(pilot, "What did you do that summer?")
        await settle(pilot)
        first = app.session.conv_id
        await send(pilot, "/new")
        await send(pilot, "hello")
        await settle(pilot)
        assert app.session.conv_id != first
        bar = app.query_one("#sidebar")
        assert bar.display and len(bar.children) == 2
        bar.focus()
        await pilot.press("down", "enter")  # newest first: the second item is the first chat
        await pilot.pause()
        assert app.session.conv_id == first
        assert texts(app) == ["What did you do that summer?", REPLY]
    # A new app on the same store (a restart) reopens it with /open and continues it.
    app2 = make_app(tmp_path)
    async with app2.run_test(size=(80, 24)) as pilot:
        await send(pilot, f"/open {first}")
        await pilot.pause()
        assert texts(app2) == ["What did you do that summer?", REPLY]
        await send(pilot, "and then?")
        await settle(pilot)
        assert len(app2.session.store.messages(first)) == 4


async def test_export_markdown_and_json(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "What did you do that summer?")
        await settle(pilot)
        await send(pilot, f"/export md {tmp_path / 'chat.md'}")
        await send(pilot, f"/export json {tmp_path / 'chat.json'}")
        await pilot.pause()
    md = (tmp_path / "chat.md").read_text()
    assert "**You:** What did you do that summer?" in md and f"**Ada Lin:** {REPLY}" in md
    data = json.loads((tmp_path / "chat.json").read_text())
    assert data["persona"] == "ada-lin" and [m["content"] for m in data["messages"]] == [
        "What did you do that summer?", REPLY]


async def test_settings_screen_validates_and_applies(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, SettingsScreen)
        app.screen.query_one("#set-temperature").value = "5"
        await pilot.click("#save")
        await pilot.pause()
        assert isinstance(app.screen, SettingsScreen)  # out of range: stays open with an error
        assert "temperature" in str(app.screen.query_one("#settings-error").render())
        app.screen.query_one("#set-temperature").value = "0.2"
        app.screen.query_one("#set-max_tokens").value = "3"
        await pilot.pause(0.3)  # the button ignores a second press during its 0.2 s press effect
        await pilot.click("#save")
        await pilot.pause()
        assert app.session.params.temperature == 0.2 and app.session.params.max_tokens == 3
        await send(pilot, "What did you do that summer?")
        await settle(pilot)
        assert texts(app, "assistant")[-1] == "I spent that"


async def test_help_screen_lists_commands_and_keys(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        from textual.widgets import Markdown

        md = app.screen.query_one(Markdown)
        assert "/agents N topic" in md.source and "Ctrl+R" in md.source
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.screen_stack[0]


async def test_two_persona_discussion_with_interjection(tmp_path):
    tomas = SlowScripted(lambda m: "Tomas says the tide matters more.", delay=0.01, name="tomas")
    ada = SlowScripted(lambda m: "Ada says the steel matters more.", delay=0.01)
    agents = [Agent("Tomas Reyes", tomas, "You are Tomas Reyes, a harbour pilot.", "tomas-reyes")]
    app = make_app(tmp_path, ada, agents=agents)
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "/agents 2 what makes a bridge last")
        await settle(pilot)
        assert [(b.speaker, b.text) for b in app.chat.bubbles() if b.role == "assistant"] == [
            ("Ada Lin", "Ada says the steel matters more."), ("Tomas Reyes", "Tomas says the tide matters more.")]
        # Tomas saw Ada's turn as the other speaker's line, with the topic.
        seen = tomas.calls[-1]
        assert "You are Tomas Reyes" in seen[0]["content"] and "what makes a bridge last" in seen[0]["content"]
        assert "Ada Lin: Ada says the steel matters more." in seen[-1]["content"]
        await send(pilot, "What about the cost?")  # interjection: the discussion continues
        await settle(pilot)
        assert "Moderator: What about the cost?" in ada.calls[-1][-1]["content"]
        conv = app.session.store.conversations()[0]
        assert conv.mode == "multi" and conv.meta["agents"] == ["Ada Lin", "Tomas Reyes"]
        speakers = [m.speaker for m in app.session.store.messages(conv.id)]
        assert speakers == ["Moderator", "Ada Lin", "Tomas Reyes", "Moderator", "Ada Lin", "Tomas Reyes"]
        # Reopening the saved transcript shows it; typing then starts a fresh chat.
        await send(pilot, "/new")
        await send(pilot, f"/open {conv.id}")
        await pilot.pause()
        assert [b.speaker for b in app.chat.bubbles() if b.role == "assistant"] == [
            "Ada Lin", "Tomas Reyes", "Ada Lin", "Tomas Reyes"]
        assert "read-only" in texts(app, "note")[-1] and app.session.conv_id is None


async def test_discussion_between_stages_of_one_persona(tmp_path):
    engine = SlowScripted(lambda m: m[0]["content"].split(",")[0], delay=0)
    app = make_app(tmp_path, engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "/agents 2 change")
        await settle(pilot)
        assert [b.speaker for b in app.chat.bubbles() if b.role == "assistant"] == [
            "Ada Lin (Young engineer)", "Ada Lin (Retired professor)"]
        assert texts(app, "assistant") == ["You are Ada Lin", "You are Ada Lin"]


async def test_context_overflow_trims_with_a_visible_notice(tmp_path):
    engine = SlowScripted(lambda m: f"seen {len(m)} messages " + "y" * 200, delay=0)
    app = make_app(tmp_path, engine, params=GenParams(max_tokens=64))
    app.session.n_ctx = 256
    async with app.run_test(size=(80, 24)) as pilot:
        for i in range(4):
            await send(pilot, f"question {i} " + "x" * 200)
            await settle(pilot)
        notes = texts(app, "note")
        assert notes and notes[-1].startswith("context full (256 tokens)")
        assert engine.calls[-1][0]["role"] == "system" and engine.calls[-1][-1]["content"].startswith("question 3")
        assert len(engine.calls[-1]) < 1 + 7  # older turns left the model's view...
        assert len(app.session.store.messages(app.session.conv_id)) >= 8  # ...but not the history


async def test_engine_error_is_shown_and_app_stays_up(tmp_path):
    def boom(messages):
        from kit.errors import KitError

        raise KitError("chat template failed to render: bad", where="x.gguf: chat template")

    app = make_app(tmp_path, SlowScripted(boom, delay=0))
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "hi")
        await settle(pilot)
        assert "error: x.gguf: chat template: chat template failed to render: bad" in texts(app, "note")[-1]
        assert app.is_running and not app.chat.generating


@pytest.mark.slow
async def test_real_tiny_gguf_bundle(tmp_path, perskit_home):
    bundle = load_bundle(make_bundle(tmp_path / "ada", tiny_gguf(perskit_home)))
    engine = bundle.open_engine(n_ctx=512)
    try:
        store = HistoryStore(tmp_path / "h.sqlite3")
        session = ChatSession(PersonaView.from_bundle(bundle), engine, store,
                              params=GenParams(max_tokens=12, temperature=0))
        app = ChatApp(session)
        async with app.run_test(size=(80, 24)) as pilot:
            assert "Ada Lin" in str(app.query_one("#header").render())
            await send(pilot, "hello there")
            await settle(pilot)
            reply = texts(app, "assistant")[-1]
            assert reply and reply == store.messages(session.conv_id)[-1].content
            assert session.last_stats.tokens >= 1 and session.last_stats.ttft_s is not None
            assert "tok/s" in str(app.query_one("#status").render())
            await send(pilot, "/stage late")
            await send(pilot, "and now?")
            await settle(pilot)
            assert engine.last_usage["prompt_tokens"] > 0 and len(texts(app, "assistant")) == 2
    finally:
        engine.close()


def test_chat_cli_help_and_bad_input_are_one_line(tmp_path):
    from conftest import run_cli

    r = run_cli("chat", "--help")
    assert r.returncode == 0 and "--stage" in r.stdout and "--with" in r.stdout
    (tmp_path / "empty").mkdir()
    r = run_cli("chat", str(tmp_path / "empty"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "bundle has no manifest.json" in r.stderr
    (tmp_path / "bad.gguf").write_bytes(b"junk")
    r = run_cli("chat", str(tmp_path / "bad.gguf"))
    assert r.returncode == 2 and "not a GGUF file" in r.stderr and "Traceback" not in r.stderr


async def test_multiline_message_copy_last_reply(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = app.query_one("#prompt")
        await pilot.press("f", "i", "r", "s", "t", "ctrl+j", "s", "u", "m", "m", "e", "r")
        assert prompt.value == "first\nsummer" and not app.session.items  # ctrl+j is a new line, not send
        await pilot.press("enter")
        await settle(pilot)
        assert texts(app, "user")[-1] == "first\nsummer" and texts(app, "assistant")[-1] == REPLY
        assert prompt.value == ""
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.clipboard == REPLY
        await send(pilot, "/copy")
        assert app.clipboard == REPLY


async def test_command_palette_switches_stage_persona_and_exports(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSKIT_HOME", str(tmp_path / "home"))
    tomas = SlowScripted(lambda m: "Tomas: " + m[0]["content"][:20], delay=0)
    agents = [Agent("Tomas Reyes", tomas, "You are Tomas Reyes, a harbour pilot.", "tomas-reyes")]
    app = make_app(tmp_path, agents=agents)

    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "What did you do that summer?")
        await settle(pilot)
        await palette(pilot, "stage retired")
        assert app.session.stage == "late"
        await palette(pilot, "export markdown")
        exported = tmp_path / "home" / "exports" / f"conversation-{app.session.conv_id}.md"
        assert REPLY in exported.read_text()
        await palette(pilot, "persona tomas")
        assert app.session.persona.name == "Tomas Reyes" and app.session.conv_id is None
        await send(pilot, "hello")
        await settle(pilot)
        assert texts(app, "assistant")[-1] == "Tomas: You are Tomas Reyes,"
        from textual.command import CommandPalette

        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.press("escape")  # the app's priority Esc (stop) hands it to the palette
        await pilot.pause()
        assert not isinstance(app.screen, CommandPalette)


def test_data_dir_honours_xdg_data_home(tmp_path, monkeypatch):
    import sys

    from kit.chat.store import data_dir

    monkeypatch.setenv("PERSKIT_HOME", str(tmp_path / "explicit"))
    assert data_dir() == tmp_path / "explicit"
    monkeypatch.delenv("PERSKIT_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert data_dir() == tmp_path / "xdg" / "perskit"
    else:
        assert data_dir().name == "perskit"
