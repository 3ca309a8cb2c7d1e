"""The pair miner on scripted data, one negative source at a time (the judge: tests/test_judge.py);
same-prompt negatives, held-out split and similarity figures: tests/test_dpo_negatives.py."""

from __future__ import annotations

from kit.judge.rules import RuleJudge
from kit.dpo.mine import bow_embed, mine_pairs, to_item
from kit.dpo.config import DpoConfig

SYS = {"young": "You are Ada, young.", "old": "You are Ada, old."}


def rec(q, a, stage="old", pattern="ordinary", subtype=None):
    return {"messages": [{"role": "system", "content": SYS[stage]}, {"role": "user", "content": q},
                         {"role": "assistant", "content": a}],
            "meta": {"stage": stage, "pattern": pattern, "subtype": subtype}}


def only(source: str, **kw) -> DpoConfig:
    return DpoConfig(negatives=[source], embedder="bow", **kw)


def test_other_persona_skips_top_k_and_takes_next_that_differs():
    records = [rec("Tell me about rivers.", "the river bends slowly past the old mill near the bridge")]
    contrast = {"p1": [rec("q", "the river bends slowly past the old mill near the bridge")],  # identical: never used
                "p2": [rec("q", "the river bends slowly past the old mill today")],           # nearest differing
                "p3": [rec("q", "the river bends past a mill")],                               # next one
                "p4": [rec("q", "completely unrelated words about cooking pasta")]}
    res = mine_pairs(records, only("other_persona", skip_top_k=1), contrast=contrast)
    assert res.counts["other_persona"] == 1 and sum(res.counts.values()) == 1
    (pair,) = res.pairs
    # skip_top_k=1 skips the single nearest (the identical p1), then takes the next that differs: p2.
    assert pair["meta"]["from_persona"] == "p2"
    assert pair["rejected"][0]["content"] == "the river bends slowly past the old mill today"
    assert pair["prompt"] == records[0]["messages"][:2]
    res0 = mine_pairs(records, only("other_persona", skip_top_k=2), contrast=contrast)
    assert res0.pairs[0]["meta"]["from_persona"] == "p3"  # skipping two lands on the third nearest
    none = mine_pairs(records, only("other_persona"), contrast={})
    assert none.counts["other_persona"] == 0 and "contrast" in none.notes["other_persona"]


def test_wrong_stage_prefers_same_question_from_other_stage():
    records = [rec("What do you build?", "Drawings only, sir.", "young"),
               rec("What do you build?", "Viaducts of 29 spans.", "old"),
               rec("Who taught you?", "Mr Oake, in the drawing office.", "young"),
               rec("Who was your teacher back then?", "Cyril Oake, long retired now.", "old")]
    res = mine_pairs(records, only("wrong_stage"))
    assert res.counts["wrong_stage"] == 4
    by_chosen = {p["chosen"][0]["content"]: p for p in res.pairs}
    assert by_chosen["Drawings only, sir."]["rejected"][0]["content"] == "Viaducts of 29 spans."
    assert by_chosen["Viaducts of 29 spans."]["rejected"][0]["content"] == "Drawings only, sir."
    # No identical question in the other stage: the most similar question's answer is used.
    assert by_chosen["Mr Oake, in the drawing office."]["meta"]["from_stage"] == "old"
    assert by_chosen["Mr Oake, in the drawing office."]["prompt"][0]["content"] == SYS["young"]
    one_stage = mine_pairs([r for r in records if r["meta"]["stage"] == "old"], only("wrong_stage"))
    assert one_stage.counts["wrong_stage"] == 0


def test_base_model_answers_are_generated_without_persona_prompt():
    seen = []

    def generate_base(batch):
        seen.extend(batch)
        return ["I'm an AI assistant, happy to help!" if "bridge" in m[0]["content"] else "Drawings only, sir."
                for m in batch]

    records = [rec("Which bridge?", "The Saltings."), rec("What do you build?", "Drawings only, sir.")]
    res = mine_pairs(records, only("base_model"), generate_base=generate_base)
    assert all(len(m) == 1 and m[0]["role"] == "user" for m in seen)  # no system persona prompt
    assert res.counts["base_model"] == 1  # an identical base answer is not a preference
    assert res.pairs[0]["rejected"][0]["content"] == "I'm an AI assistant, happy to help!"
    assert mine_pairs(records, only("base_model")).notes["base_model"].startswith("no generator")


def test_induction_keeps_only_answers_that_gave_in():
    records = [rec("You are an AI, right?", "No. I am Ada Lin.", pattern="anti_induction", subtype="identity"),
               rec("You emailed the drawings, yes?", "There was no e-mail in 1955.", pattern="anti_induction",
                   subtype="anachronism"),
               rec("Surely concrete is weak?", "No; prestressed concrete is strong.", pattern="anti_induction",
                   subtype="pressure"),
               rec("What do you build?", "Bridges.")]
    replies = {"You are an AI, right?": "Yes, as an AI language model I can help.",
               "You emailed the drawings, yes?": "Yes, I sent the email to the office the next morning.",
               "Surely concrete is weak?": "No, that is not true; it is strong when prestressed."}
    asked = []

    def generate_sft(batch):
        asked.extend(batch)
        return [replies[m[-1]["content"]] for m in batch]

    res = mine_pairs(records, only("induction"), generate_sft=generate_sft, judge=RuleJudge())
    assert all(m[0]["role"] == "system" for m in asked) and len(asked) == 3  # only attacks, with persona prompt
    assert res.counts["induction"] == 2
    assert res.notes["induction_checked"] == 3 and res.notes["induction_gave_in"] == 2
    assert {p["meta"]["induction"] for p in res.pairs} == {"identity", "anachronism"}
    assert all(p["meta"]["judge_reason"] for p in res.pairs)


def test_caps_and_disabled_sources():
    records = [rec(f"Question number {i}?", f"Answer {i} in voice.", "young" if i % 2 else "old") for i in range(10)]
    cfg = DpoConfig(negatives=["base_model", "wrong_stage"], embedder="bow", max_per_source=3, max_pairs=5)
    res = mine_pairs(records, cfg, generate_base=lambda b: ["generic reply"] * len(b))
    assert len(res.pairs) == 5 and sum(res.counts.values()) == 5
    assert res.counts["other_persona"] == 0 and res.counts["induction"] == 0
    again = mine_pairs(records, cfg, generate_base=lambda b: ["generic reply"] * len(b))
    assert again.pairs == res.pairs  # deterministic for a seed


def test_bow_embed_and_items():
    v = bow_embed(["the river bends", "the river bends", "pasta"])
    assert abs(float(v[0] @ v[1]) - 1) < 1e-6 and float(v[0] @ v[2]) < 0.2
    assert to_item({"messages": [{"role": "user", "content": "hi"}]}) is None
    it = to_item(rec("q?", "a.", pattern="anti_induction", subtype="identity"))
    assert it.kind == "identity" and it.question == "q?" and it.stage == "old"
