"""Own words as construct's backbone: every span a row, whole passages held out by stage, and
a leakage check that fails when held-out text reaches training."""

from __future__ import annotations

from types import SimpleNamespace

from conftest import REPO

from kit.construct.ownwords import heldout_passages, leaks, own_word_spans, span_question
from kit.construct.spans import clean, first_person_spans

PARA = ("I went down to the harbour at six with my gauge and my notebook, as I always did on a Monday. "
        "I measured every roller on the north side and I wrote each figure down twice in the ledger. "
        "My hands were cold but I did not stop until the light went over the water at Fennick. ")


def _passages(n_per_stage=4, stages=("early", "late")):
    out = []
    for si, st in enumerate(stages):
        for k in range(n_per_stage):
            text = f"{PARA} It was the year {1950 + 10 * si + k} and we were {k} days behind the plan at number {k}. " * 2
            out.append({"id": f"{st}{k}", "stage": st, "stage_index": si, "kind": "subjective", "text": text})
        out.append({"id": f"{st}-obj", "stage": st, "stage_index": si, "kind": "objective", "text": PARA})
    return out


def test_heldout_is_whole_subjective_passages_per_stage_never_a_gold_source():
    ps = _passages()
    held = heldout_passages(ps, 0.25, 0, [])
    assert {p["stage"] for p in ps if p["id"] in held} == {"early", "late"}
    assert all(next(p for p in ps if p["id"] == h)["kind"] == "subjective" for h in held)
    gold = [next(p for p in ps if p["id"] == h)["text"][:200] for h in held]  # a gold answer quoting them
    assert not held & heldout_passages(ps, 0.25, 0, gold)


def test_every_span_of_every_passage_unless_a_budget_says_otherwise():
    ps = _passages()
    held = {"early0"}
    every = own_word_spans(ps, held, None)
    per = {p["id"]: len(first_person_spans(p["text"], None)) for p in ps if p["kind"] == "subjective"}
    assert len(every) == sum(per.values()) and all(n >= 2 for n in per.values())
    assert {p["id"] for p, _, _, h in every if h} == held
    some = own_word_spans(ps, held, 3)
    trained = [p["id"] for p, _, _, h in some if not h]
    assert len(trained) == 3 and len(set(trained)) == 3  # round-robin: three passages, not one
    assert sum(h for *_, h in some) == per["early0"]  # held-out spans are voice items, outside the budget


def test_a_held_out_passage_in_the_training_rows_fails_the_leakage_check():
    ps = _passages()
    held = [p for p in ps if p["id"] == "late2"]
    rest = [p["text"] for p in ps if p["id"] != "late2"]
    row = lambda text: {"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": text}],  # noqa: E731
                        "meta": {"id": "r1"}}
    planted = held[0]["text"].split("It was the year")[1]
    assert leaks([row(planted)], held, rest) == [("r1", "late2")]
    # text it shares with a trained passage proves nothing: the same paragraph stands in both
    assert leaks([row(PARA)], held, rest) == []


def test_headings_and_notes_never_open_a_span():
    text = ("XII DEFENSE OF THE PROVINCE I had, on the whole, abundant reason to be satisfied with my being "
            "established in Pennsylvania [Illustration: the town] and I wrote to my brother about it at once, "
            "for I thought my plans were good. I kept the shop and I kept my books in order every week.")
    assert clean(text).startswith("I had, on the whole") and "Illustration" not in clean(text)
    assert first_person_spans(text, None)[0].startswith("I had")


def test_cheap_questions_come_from_the_span_itself():
    persona = SimpleNamespace(name="Booker T. Washington")
    assert span_question("I went to see General Armstrong, and General Armstrong said no.", persona) == \
        "What do you remember about General Armstrong?"
    assert span_question("That winter of 1879 was hard on all of us, I remember it well.", persona) == \
        "What happened in 1879?"
    assert span_question("I was tired, but I kept on with it.", persona).endswith("?")


def test_the_real_persona_gives_hundreds_of_own_word_rows():
    """booker-washington (Up from Slavery, 1901): every first-person span of the memoir."""
    from kit.construct.ingest import ingest_persona
    from kit.spec.persona import load_persona

    lp = load_persona(REPO / "personas" / "booker-washington")
    ps = ingest_persona(lp, 180)
    held = heldout_passages(ps, 0.15, 0, [g.a for g in lp.spec.gold])
    spans = own_word_spans(ps, held, None)
    assert sum(not h for *_, h in spans) >= 300
    assert {p["stage"] for p, *_ in spans if p["id"] in held} == {s.id for s in lp.spec.stages}


def test_names_mode_asks_no_teacher_for_own_words(tmp_path):
    """own_word_questions: names — every own-word row gets the span's cheap question (counted),
    the teacher is asked only for the other patterns, and each answer is a verbatim span."""
    import json

    from test_construct import construct, make_persona, make_recipe

    make_persona(tmp_path)
    m = construct(make_recipe(tmp_path, own_words="all", own_word_questions="names", heldout_passages=0), tmp_path / "run")
    rows = [json.loads(x) for x in (tmp_path / "run" / "construct" / "train.jsonl").read_text().splitlines()]
    own = [r for r in rows if r["meta"]["pattern"] == "backtranslation"]
    assert own and all(r["meta"]["question_source"] == "template" for r in own)
    assert m["counts"]["question_fallbacks"].get("names") == len(own)
    src = " ".join((tmp_path / "personas" / "mara" / "src" / f).read_text() for f in ("diary-early.html", "diary-late.html"))
    assert all(r["messages"][-1]["content"].split(".")[0] in src for r in own)
