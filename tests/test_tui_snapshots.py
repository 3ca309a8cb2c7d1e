"""SVG snapshots of the main chat screens at 80x24 (pytest-textual-snapshot).

Update after an intended UI change: ``pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pytest_textual_snapshot", reason="needs pytest-textual-snapshot (the dev extra)")

from chat_helpers import STAGES, SlowScripted  # noqa: E402
from kit.chat.multiagent import Agent  # noqa: E402
from kit.chat.session import ChatSession, PersonaView, ReplyStats  # noqa: E402
from kit.chat.store import HistoryStore  # noqa: E402
from kit.engine.base import GenParams  # noqa: E402
from kit.engine.bundle import StageInfo  # noqa: E402
from kit.tui.app import ChatApp  # noqa: E402

SIZE = (80, 24)
REPLY = "I spent that summer measuring the old river bridge, bolt by bolt, with a borrowed theodolite."


def app_for(tmp_path, agents=None) -> ChatApp:
    persona = PersonaView("ada-lin", "Ada Lin", [StageInfo(**s) for s in STAGES], "young", "tiny-test", "Q4_K_M")
    engine = SlowScripted({"summer": REPLY}, default="The tide decides more than the steel does.", delay=0)
    session = ChatSession(persona, engine, HistoryStore(tmp_path / "h.sqlite3"), params=GenParams(max_tokens=64),
                          n_ctx=2048)
    return ChatApp(session, agents=agents)


async def _steady(pilot):
    # A blinking cursor makes the input's first cell differ from run to run.
    pilot.app.query_one("#prompt").cursor_blink = False
    await pilot.pause()


async def _type(pilot, text):
    pilot.app.query_one("#prompt").value = text
    await pilot.press("enter")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def _fixed_stats(pilot):
    # tok/s and ttft are wall-clock figures; pin them so the snapshot is stable.
    pilot.app.session.last_stats = pilot.app.live_stats = ReplyStats(tokens=24, seconds=1.0, ttft_s=0.05,
                                                                     prompt_tokens=40)
    pilot.app.refresh_status()
    await pilot.pause()


def test_snapshot_chat(snap_compare, tmp_path):
    async def run_before(pilot):
        await _steady(pilot)
        await _type(pilot, "What did you do that summer?")
        await _type(pilot, "/stage late")
        await _fixed_stats(pilot)

    assert snap_compare(app_for(tmp_path), terminal_size=SIZE, run_before=run_before)


def test_snapshot_help(snap_compare, tmp_path):
    assert snap_compare(app_for(tmp_path), terminal_size=SIZE, press=["f1"], run_before=_steady)


def test_snapshot_stage_switcher(snap_compare, tmp_path):
    assert snap_compare(app_for(tmp_path), terminal_size=SIZE, press=["ctrl+t"], run_before=_steady)


def test_snapshot_settings(snap_compare, tmp_path):
    from textual.widgets import Input

    async def run_before(pilot):
        await _steady(pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        # The focused field's cursor blinks every 0.5 s: shown or not depended on how fast the
        # box was. Blinking off (after the screen focused it) hides it for good.
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False
        await pilot.pause()

    assert snap_compare(app_for(tmp_path), terminal_size=SIZE, run_before=run_before)


def test_snapshot_discussion(snap_compare, tmp_path):
    tomas = SlowScripted(lambda m: "Tomas: the tide decides more than the steel does.", delay=0)
    agents = [Agent("Tomas Reyes", tomas, "You are Tomas Reyes, a harbour pilot.", "tomas-reyes")]

    async def run_before(pilot):
        await _steady(pilot)
        await _type(pilot, "/agents 2 what makes a bridge last")
        await _fixed_stats(pilot)

    assert snap_compare(app_for(tmp_path, agents), terminal_size=SIZE, run_before=run_before)


def test_snapshot_command_palette(snap_compare, tmp_path):
    from textual.command import CommandInput, CommandPalette

    async def run_before(pilot):
        await _steady(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(pilot.app.screen, CommandPalette)
        # The palette's own input blinks too (every 0.5 s); with blinking off the cursor stays
        # shown after typing. A fixed pause here raced that blink and the palette's search.
        pilot.app.screen.query_one(CommandInput).cursor_blink = False
        for ch in "stage":
            await pilot.press(ch)
        await _palette_settled(pilot)

    assert snap_compare(app_for(tmp_path), terminal_size=SIZE, run_before=run_before)


async def _palette_settled(pilot):
    """Wait until the palette's search for what was typed has finished and drawn its hits
    (it runs in a worker, and shows a busy indicator after 0.5 s under load)."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
