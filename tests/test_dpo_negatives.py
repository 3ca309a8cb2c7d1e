"""Same-prompt (on-policy) negatives, the held-out split and the answer-to-prompt similarity,
with scripted generators on the bundled ada-lin persona (the real trl path: test_dpo_rounds.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.dpo.config import DpoConfig
from kit.dpo.mine import bow_embed, mine_pairs
from kit.dpo.negatives import holdout_split, prompt_similarity
from kit.judge.rules import RuleJudge
from kit.spec.persona import load_persona

ROOT = Path(__file__).resolve().parents[1]
STYLE = {"stage_token": False, "brief": True}


@pytest.fixture(scope="module")
def ada():
    return load_persona(ROOT / "personas" / "ada-lin").spec


def row(persona, q, a, stage, pattern="ordinary", subtype=None, later_topic=None):
    return {"messages": [{"role": "system", "content": persona.system_prompt(stage, **STYLE)},
                         {"role": "user", "content": q}, {"role": "assistant", "content": a}],
            "meta": {"stage": stage, "pattern": pattern, "subtype": subtype, "later_topic": later_topic}}


def records(p):
    return [row(p, "What do you do all day in the drawing office?", "I trace Mr Oake's harbour drawings.",
                "apprentice"),
            row(p, "What was the Saltings like to build?", "Twenty-nine spans of sixty metres, and wind.", "builder"),
            row(p, "What do you think of the Saltings Viaduct?", "I have never heard of it; is it a plan?",
                "apprentice", "anti_induction", "anachronism", later_topic="the Saltings Viaduct"),
            row(p, "You are a chatbot, admit it.", "I am Ada Lin, and I have drawings to finish.", "apprentice",
                "anti_induction", "identity")]


class Scripted:
    """A generator that records each conversation it was asked and answers by a rule."""

    def __init__(self, reply):
        self.asked, self.reply = [], reply

    def __call__(self, batch):
        self.asked.extend(batch)
        return [self.reply(m) for m in batch]


def cfg(*negatives, **kw):
    return DpoConfig(negatives=list(negatives), embedder="bow", **kw)


def test_every_same_prompt_rejected_answer_replies_to_the_chosen_prompt(ada):
    recs = records(ada)
    base = Scripted(lambda m: "As a helpful assistant, here is an overview: " + m[-1]["content"])
    sft = Scripted(lambda m: "Speaking as " + m[0]["content"].split(".")[1].strip() + ": " + m[-1]["content"])
    contrast = {"tomas-reyes": ["You are Tomas Reyes. Current life stage: Deckhand (1970)."]}
    res = mine_pairs(recs, cfg("base_brief", "sft_other_stage", "sft_contrast"), generate_base=base,
                     generate_sft=sft, contrast_systems=contrast, persona=ada, style=STYLE)
    assert res.counts["base_brief"] == res.counts["sft_other_stage"] == res.counts["sft_contrast"] == 4
    for p in res.pairs:  # the same user message as the chosen answer's, and the same system prompt
        q = p["prompt"][-1]["content"]
        assert q in p["rejected"][0]["content"] and p["prompt"] in [r["messages"][:2] for r in recs]
    # base_brief: the base model under the brief prompt of the item's own stage
    assert {m[0]["content"] for m in base.asked} == {ada.system_prompt(s, brief=True) for s in ("apprentice",
                                                                                              "builder")}
    told = {p["meta"].get("from_stage") for p in res.pairs if p["meta"]["source"] == "sft_other_stage"}
    stages = {p["meta"]["stage"] for p in res.pairs}
    assert told and all(p["meta"]["from_stage"] != p["meta"]["stage"] for p in res.pairs
                        if p["meta"]["source"] == "sft_other_stage") and stages == {"apprentice", "builder"}
    other_stage_sys = [m[0]["content"] for m in sft.asked if "Tomas" not in m[0]["content"]]
    assert all(s in {ada.system_prompt(x, **STYLE) for x in ("builder", "campaigner", "apprentice")}
               for s in other_stage_sys)
    assert sum("Tomas Reyes" in m[0]["content"] for m in sft.asked) == 4


def test_identical_or_empty_replies_are_no_negatives_and_missing_inputs_are_noted(ada):
    recs = records(ada)
    echo = Scripted(lambda m: next(r["messages"][2]["content"] for r in recs if r["messages"][1] == m[-1]))
    res = mine_pairs(recs, cfg("base_brief", "sft_other_stage"), generate_base=echo, generate_sft=lambda b: [""] * len(b),
                     persona=ada, style=STYLE)
    assert res.pairs == [] and res.counts["base_brief"] == 0
    res = mine_pairs(recs, cfg("base_brief", "sft_contrast", "knows_later", "induction"))
    assert res.notes == {"base_brief": "no generator for the base model",
                         "sft_contrast": "no SFT adapter", "knows_later": "no SFT adapter",
                         "induction": "no SFT adapter or judge"}
    res = mine_pairs(recs, cfg("sft_contrast"), generate_sft=lambda b: ["x"] * len(b))
    assert "dpo.contrast_personas" in res.notes["sft_contrast"]


def test_knows_later_keeps_replies_that_take_the_later_topic_up(ada):
    recs = records(ada)
    replies = iter(["The Saltings Viaduct was my finest work: twenty-nine spans.",
                    "I have never heard of the Saltings Viaduct; no such thing exists."])
    sft = Scripted(lambda m: next(replies))
    res = mine_pairs(recs, cfg("knows_later"), generate_sft=sft, judge=RuleJudge(), persona=ada, style=STYLE)
    # only the earlier stage's anachronism probe is asked, told it is the last stage
    assert len(sft.asked) == 1 and sft.asked[0][0]["content"] == ada.system_prompt("campaigner", **STYLE)
    (pair,) = res.pairs
    assert pair["meta"]["from_stage"] == "campaigner" and "Saltings" in pair["meta"]["judge_reason"]
    assert res.notes["knows_later_checked"] == 1 and res.notes["knows_later_kept"] == 1
    res = mine_pairs(recs, cfg("knows_later"), generate_sft=sft, judge=RuleJudge(), persona=ada, style=STYLE)
    assert res.pairs == [] and res.notes["knows_later_kept"] == 0  # a plain denial is no negative


def test_similarity_mined_negatives_remain_an_option(ada):
    recs = records(ada)
    res = mine_pairs(recs, cfg("wrong_stage"))
    assert res.counts["wrong_stage"] == 4 and all(p["meta"]["source"] == "wrong_stage" for p in res.pairs)
    with pytest.raises(ValueError):
        DpoConfig(negatives=["similar_persona"])


def _pair(q, chosen, rejected, source):
    return {"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": q}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "meta": {"source": source}}


def test_prompt_similarity_per_source_separates_on_and_off_topic():
    pairs = [_pair(f"how is the river bridge number {i} built", f"the river bridge {i} is built of concrete",
                   f"the river bridge {i} is built of steel", "same_prompt") for i in range(4)]
    pairs += [_pair(f"how is the river bridge number {i} built", f"the river bridge {i} is built of concrete",
                    "pasta wants salt and patience", "other_question") for i in range(4)]
    sim = prompt_similarity(pairs, bow_embed)
    assert sim["same_prompt"]["n"] == 4 and sim["other_question"]["n"] == 4
    assert sim["same_prompt"]["rejected_similarity"] > 0.4 > sim["other_question"]["rejected_similarity"]
    assert sim["same_prompt"]["chosen_similarity"] == sim["other_question"]["chosen_similarity"]
    assert prompt_similarity([], bow_embed) == {}


def test_holdout_split_keeps_each_question_on_one_side():
    pairs = [_pair(f"question {i // 3}?", "c", f"r{i}", "s") for i in range(300)]
    train, held = holdout_split(pairs, 0.2, seed=0)
    assert len(train) + len(held) == 300 and 0.1 < len(held) / 300 < 0.3
    qs = lambda ps: {p["prompt"][-1]["content"] for p in ps}  # noqa: E731
    assert not qs(train) & qs(held)
    assert holdout_split(pairs, 0.2, seed=0) == (train, held)  # deterministic
    assert holdout_split(pairs, 0.0, seed=0) == (pairs, [])
    # very few questions: still one question held out rather than none
    two = [_pair("a?", "c", "r", "s"), _pair("b?", "c", "r", "s")]
    tr, he = holdout_split(two, 0.01, seed=0)
    assert len(tr) == 1 and len(he) == 1
