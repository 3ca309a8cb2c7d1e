"""The persona's own materials at chat time: a stage-bounded lorebook in every card (read back
with the V2/V3 field names, from the JSON and from both PNG chunks), and retrieval in a chat."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from kit.export import card as cards
from kit.export.lorebook import character_book
from kit.spec.persona import load_persona


@pytest.fixture(scope="module")
def booker():
    from kit.retrieval import Retriever  # noqa: F401  (the shared layer every stage uses)

    lp = load_persona(REPO / "personas" / "booker-washington")
    import importlib

    ingest = importlib.import_module("kit.construct.ingest")  # test-side: construct writes these passages
    return lp, ingest.ingest_persona(lp, 180)


def test_every_stage_card_carries_a_bounded_lorebook(booker, tmp_path):
    lp, passages = booker
    by_id = {p["id"]: p for p in passages}
    for i, st in enumerate(lp.spec.stages):
        v2 = cards.build_card_v2(lp, stage_id=st.id, model_file="m.gguf", passages=passages)
        v3 = cards.build_card_v3(v2)
        cards.validate_card(v2)
        cards.validate_card(v3)
        png = cards.card_png(tmp_path, st.id, {"chara": v2, "ccv3": v3})
        back = cards.read_cards(png)
        for card in (json.loads(json.dumps(v2)), back["chara"], back["ccv3"]):
            book = card["data"]["character_book"]
            assert len(book["entries"]) >= 20
            for e in book["entries"]:
                assert e["keys"] and all(isinstance(k, str) for k in e["keys"])
                assert e["enabled"] is True and isinstance(e["insertion_order"], int) and e["content"].strip()
                assert lp.spec.name not in e["keys"]
        # bounded: every excerpt comes from this stage or an earlier one
        stages_used = {by_id[p]["stage_index"] for p in by_id
                       if any(e["content"][:60] in by_id[p]["text"] for e in v2["data"]["character_book"]["entries"])}
        assert stages_used and max(stages_used) <= i


def test_a_bad_book_fails_validation():
    lp = load_persona(REPO / "personas" / "ada-lin")
    v2 = cards.build_card_v2(lp, stage_id=None, model_file="m.gguf",
                             passages=[{"id": "x", "stage": "apprentice", "stage_index": 0, "kind": "subjective",
                                        "text": "I went to see Mr Oake at the Harbour Board in 1953."}])
    assert v2["data"]["character_book"]["entries"][0]["keys"][:1] == ["Mr Oake"] or \
        "1953" in v2["data"]["character_book"]["entries"][0]["keys"]
    v2["data"]["character_book"]["entries"][0]["keys"] = "Oake"
    from kit.errors import KitError

    with pytest.raises(KitError, match="keys"):
        cards.validate_card(v2)
    assert character_book(lp.spec, "apprentice", []) is None


def test_chat_retrieval_follows_the_stage_bound(tmp_path):
    from kit.chat.lore import HEADER, Lore
    from kit.chat.session import ChatSession, PersonaView
    from kit.chat.store import HistoryStore
    from kit.engine.bundle import StageInfo
    from kit.engine.scripted import ScriptedEngine
    from kit.retrieval import Retriever

    passages = [{"id": "early", "stage": "young", "stage_index": 0, "kind": "subjective",
                 "text": "I swept the recitation room three times over at Hampton."},
                {"id": "late", "stage": "old", "stage_index": 1, "kind": "subjective",
                 "text": "The school at Tuskegee opened in a shanty church; I swept the chapel at Tuskegee myself."}]
    stages = [StageInfo("young", "Young", "You are B, young."), StageInfo("old", "Old", "You are B, old.")]
    engine = ScriptedEngine(default="Yes.")
    session = ChatSession(PersonaView("b", "B", stages, "old"), engine, HistoryStore(tmp_path / "h.sqlite3"),
                          n_ctx=2048, lore=Lore(Retriever(passages, "bm25"), 2, ["young", "old"]))
    session.add_user("Tell me about sweeping the chapel at Tuskegee")
    system = session.model_messages()[0]["content"]
    assert HEADER in system and "shanty church" in system and {p["id"] for p in session.lore.last} == {"early", "late"}
    session.switch_stage("young")
    system = session.model_messages()[0]["content"]
    assert "shanty church" not in system and [p["id"] for p in session.lore.last] == ["early"]
