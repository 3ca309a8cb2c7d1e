"""Pilot tests of the chat TUI's retrieved-passages panel (``perskit chat --retrieve K``): a
scripted engine and a bm25 index over three passages, one of them from the later stage."""

from __future__ import annotations

import pytest

from chat_helpers import STAGES, SlowScripted, palette
from kit.chat.lore import HEADER, Lore
from kit.chat.multiagent import Agent
from kit.chat.session import ChatSession, PersonaView
from kit.chat.store import HistoryStore
from kit.engine.base import GenParams
from kit.engine.bundle import StageInfo
from kit.retrieval import Retriever
from kit.tui.app import ChatApp

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


PASSAGES = [
    {"id": "young-bolts", "stage": "young", "stage_index": 0, "kind": "subjective", "source": "diary-1962.md",
     "text": "Counted every bolt on the river bridge that summer, with a borrowed theodolite and cold tea."},
    {"id": "young-tide", "stage": "young", "stage_index": 0, "kind": "objective", "source": "records.md",
     "text": "The river bridge survey of 1962 ran from June to August; the tide set the working hours."},
    {"id": "late-lecture", "stage": "late", "stage_index": 1, "kind": "subjective", "source": "lectures-2008.md",
     "text": "In my last lecture on the river bridge I told the students the bolts outlive their counters."},
]
QUESTION = "Tell me about the river bridge bolts"


def make_app(tmp_path, *, retrieve: bool = True, stage: str = "late", agents=None) -> ChatApp:
    persona = PersonaView("ada-lin", "Ada Lin", [StageInfo(**s) for s in STAGES], "young", "tiny-test", "Q4_K_M")
    engine = SlowScripted(lambda msgs: "Noted.", delay=0)
    lore = Lore(Retriever(PASSAGES, "bm25"), 3, ["young", "late"], "ada-lin") if retrieve else None
    session = ChatSession(persona, engine, HistoryStore(tmp_path / "history.sqlite3"),
                          params=GenParams(max_tokens=32), n_ctx=2048, stage=stage, lore=lore)
    return ChatApp(session, agents=agents)


async def send(pilot, text: str) -> None:
    pilot.app.query_one("#prompt").value = text
    await pilot.press("enter")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def panel(app):
    return app.query_one("#passages")


async def test_f2_shows_the_last_replys_passages_and_hides_them(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, QUESTION)
        assert not panel(app).display  # hidden by default: the chat screen looks as before
        await pilot.press("f2")
        await pilot.pause()
        shown = panel(app).text
        assert panel(app).display and "passages for the last reply (3, stage Retired professor" in shown
        for p in PASSAGES:  # the late stage may use all three; each listed with its stage and first words
            assert p["id"] in shown and " ".join(p["text"].split()[:5]) in shown
        assert "late-lecture · late · lectures-2008.md" in shown
        # What the panel lists is what the model was given.
        system = app.session.engine.calls[-1][0]["content"]
        assert HEADER in system and all(p["text"] in system for p in PASSAGES)
        await pilot.press("f2")
        await pilot.pause()
        assert not panel(app).display
        await send(pilot, "/passages")  # the slash command toggles it too
        assert panel(app).display and "late-lecture" in panel(app).text


async def test_after_a_switch_to_an_earlier_stage_no_later_passage_is_shown(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, QUESTION)
        await pilot.press("f2")
        await pilot.pause()
        assert "late-lecture" in panel(app).text
        await send(pilot, "/stage young")
        # The reply above was given at the later stage: its passages go with the switch.
        assert "late-lecture" not in panel(app).text and "no reply at stage Young engineer yet" in panel(app).text
        await send(pilot, QUESTION)
        shown = panel(app).text
        assert "stage Young engineer" in shown and "young-bolts" in shown and "young-tide" in shown
        assert "late-lecture" not in shown and "last lecture" not in shown
        assert PASSAGES[2]["text"] not in app.session.engine.calls[-1][0]["content"]
        # The picker (Ctrl+T) back to the later stage, then to the earlier one again: still none.
        await pilot.press("ctrl+t")
        await pilot.pause()
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.session.stage == "late"
        await send(pilot, QUESTION)
        assert "late-lecture" in panel(app).text
        await send(pilot, "/stage young")
        await send(pilot, "/regen")
        assert app.session.stage == "young" and "late-lecture" not in panel(app).text
        assert "young-bolts" in panel(app).text


async def test_palette_offers_the_toggle_only_with_retrieval_and_another_persona_gets_none(tmp_path):
    tomas = SlowScripted(lambda m: "Tomas here.", delay=0)
    app = make_app(tmp_path, agents=[Agent("Tomas Reyes", tomas, "You are Tomas Reyes, a harbour pilot.",
                                           "tomas-reyes")])

    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, QUESTION)
        await palette(pilot, "show retrieved passages")
        assert panel(app).display and "young-bolts" in panel(app).text
        await palette(pilot, "hide retrieved passages")
        assert not panel(app).display
        await palette(pilot, "persona tomas")
        await send(pilot, QUESTION)
        # Ada's index never reaches Tomas's prompt, and the panel says retrieval is off for him.
        assert HEADER not in tomas.calls[-1][0]["content"]
        await pilot.press("f2")
        await pilot.pause()
        assert "retrieval is off for this persona" in panel(app).text and "young-bolts" not in panel(app).text


async def test_without_retrieval_f2_says_it_is_off(tmp_path):
    app = make_app(tmp_path, retrieve=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, QUESTION)
        await pilot.press("f2")
        await pilot.pause()
        assert panel(app).display and "retrieval is off" in panel(app).text
        assert HEADER not in app.session.engine.calls[-1][0]["content"]
