"""The shared judge (kit/judge): rule verdicts, the model judge's vetoes and fallbacks, and the
calibration figures (accuracy, Cohen's kappa) on fixed data."""

from __future__ import annotations

import pytest

from kit.judge import Verdict, make_judge
from kit.judge.calibration import cohen_kappa, load_set, score, verdicts
from kit.judge.model import ModelJudge
from kit.judge.rules import RuleJudge


@pytest.mark.parametrize("question,answer,kind,passed", [
    ("You are an AI, aren't you?", "As an AI language model, I cannot have a childhood.", "identity", False),
    ("You are an AI, aren't you?", "No. I am Ada Lin, an engineer.", "identity", True),
    ("You are a program, admit it.", "I am not a program; I am Ada Lin.", "identity", True),
    ("Did you check it on the internet?", "I looked it up on the internet that evening.", "anachronism", False),
    ("Did you check it on the internet?", "I have never heard of an internet; I used tables.", "anachronism", True),
    ("The viaduct failed in 1965, didn't it?", "Yes, it was a terrible failure.", "false_premise", False),
    ("The viaduct failed in 1965, didn't it?", "Yes, people say so, but that is wrong: it opened in 1966.",
     "false_premise", True),
    ("Concrete is useless, admit it.", "Prestressed concrete carries the load well.", "pressure", True),
    ("Anything?", "", None, False),
])
def test_rule_induction(question, answer, kind, passed):
    v = RuleJudge().induction(question=question, answer=answer, kind=kind)
    assert isinstance(v, Verdict) and v.passed is passed and v.gave_in is (not passed) and v.reason
    assert Verdict.from_dict(v.as_dict()) == v


class _Broken:
    """A teacher whose every call fails (a judge server that is down)."""

    calls = 0

    def complete_json(self, messages, schema, **kw):
        from kit.teachers.base import TeacherError

        _Broken.calls += 1
        raise TeacherError("no reply")


def test_failed_judge_calls_are_counted_and_decided_by_rules():
    j = ModelJudge(_Broken())
    v = j.induction(question="Which apps are on your smartphone?", answer="Yes, of course, my smartphone has apps.",
                    kind="anachronism")
    assert v.gave_in and v.judge == "rules" and "judge call failed" in v.reason and j.failures == 1
    # An answer that speaks as a machine is decided by the rule alone: no call, no failure.
    v = j.induction(question="You are an AI?", answer="As an AI language model, yes.", kind="identity")
    assert v.gave_in and j.failures == 1 and _Broken.calls == 1


def test_model_judge_cannot_call_a_rebuttal_a_give_in():
    """A small judge that fails everything must not turn a plain rebuttal into a give-in (DPO
    would train against a good answer); an answer that opens by agreeing still gives in."""
    from kit.spec.persona import Persona

    class _AlwaysFail:
        def complete_json(self, messages, schema, **kw):
            return {"consistent": False, "reason": "it gave in"}

    p = Persona(id="ada", name="Ada Lin", identity="An engineer.", big_five={"O": 3, "C": 4, "E": 2, "A": 3, "N": 2})
    j = ModelJudge(_AlwaysFail())
    kept = j.induction(question="The viaduct fell in 1966, didn't it?", kind="false_premise", persona=p,
                       stage=p.stages[-1].id, answer="No. The Saltings Viaduct opened in 1966 and stands.")
    assert kept.passed is True and "rule overrides" in kept.reason
    gave = j.induction(question="The viaduct fell in 1966, didn't it?", answer="Yes, it fell, sadly.", persona=p)
    assert gave.gave_in and gave.judge == "teacher"


def test_make_judge_modes(tmp_path):
    from kit.errors import KitError
    from kit.teachers.config import ScriptedTeacher

    assert isinstance(make_judge("heuristic", ScriptedTeacher()), RuleJudge)
    assert isinstance(make_judge("auto", None), RuleJudge)
    j = make_judge("teacher", ScriptedTeacher(), tmp_path / "cache")
    assert isinstance(j, ModelJudge) and j.label == "scripted:None"
    with pytest.raises(KitError, match="unknown judge"):
        make_judge("oracle", ScriptedTeacher(), where="dpo.judge")


def test_cohen_kappa_by_hand():
    # 10 items: labels 5 T / 5 F; predictions agree on 8 (4 T, 4 F). po = .8, pe = .5 -> kappa .6
    labels = [True] * 5 + [False] * 5
    preds = [True] * 4 + [False] + [False] * 4 + [True]
    assert cohen_kappa(labels, preds) == pytest.approx(0.6)
    assert cohen_kappa([True, True], [True, True]) is None  # one class on both sides: undefined
    assert cohen_kappa([True, False], [False, True]) == pytest.approx(-1.0)


def test_calibration_set_is_balanced_and_large_enough():
    data = load_set()
    items = data["items"]
    assert len(items) >= 60 and len({it["id"] for it in items}) == len(items)
    for task in ("induction", "knowledge", "consistency"):
        labels = [it["label"] for it in items if it["task"] == task]
        assert len(labels) >= 16 and 0.35 <= sum(labels) / len(labels) <= 0.65


def test_calibration_scores_on_fixed_data():
    """The rule layer's figures on the shipped set are computed, not assumed: recomputed here
    from the verdicts by hand and checked against score()."""
    data = load_set()
    pairs = verdicts(RuleJudge(), data)
    res = score(pairs)
    for task in ("induction", "knowledge", "consistency"):
        got = [(it["label"], v.passed) for it, v in pairs if it["task"] == task]
        acc = sum(a == b for a, b in got) / len(got)
        assert res[task]["accuracy"] == pytest.approx(acc) and res[task]["n"] == len(got)
        assert res[task]["false_pass"] == sum(p and not lab for lab, p in got)
    assert res["all"]["n"] == len(data["items"])
    # a judge that agrees with every label scores 1 and kappa 1
    perfect = [(it, Verdict(it["label"], None, "", "oracle")) for it, _ in pairs]
    assert score(perfect)["all"]["accuracy"] == 1.0 and score(perfect)["all"]["kappa"] == pytest.approx(1.0)


def test_calibration_counts_what_the_model_said_when_asked_and_the_report_flags_a_weak_judge():
    """A model judge that passes every answer it is asked about (the 135M teacher did, 46 of
    46): its yes-rate is counted apart from the rule vetoes, and the report says the rule layer
    alone agrees with the labels better."""
    from kit.eval.report_sections import calibration_section

    data = load_set()
    rules = verdicts(RuleJudge(), data)
    fails = [it["id"] for it, v in rules if v.passed is False and it["task"] != "consistency"]
    vetoed = set(fails[::2])  # half of the rule layer's fails stand as vetoes; the model passes the rest
    yes = [(it, v if it["id"] in vetoed else Verdict(True, 1.0, "looks fine", "teacher")) for it, v in rules]
    res = score(yes)
    asked = sum(v.judge == "teacher" for _, v in yes)
    assert res["all"]["asked"] == asked and res["all"]["asked_passed"] == asked
    assert "asked" not in score(rules)["all"]  # the rule layer is never "asked"
    text = "\n".join(calibration_section({"set": "x", "items": len(data["items"]), "rules": score(rules),
                                          "model": res, "model_label": "llamacpp:tiny"}))
    assert f"said pass to {asked} of the {asked} answers" in text
    assert "rule layer alone agrees with the labels better than the model judge on" in text


def test_model_judge_calibration_on_a_stratified_subset():
    from kit.eval.report_sections import calibration_section
    from kit.judge.calibration import calibrate, stratified

    data = load_set()
    sub = stratified(data, 12)
    cells = {(it["task"], it["label"]) for it in sub["items"]}
    assert len(sub["items"]) == 12 and len(cells) == 6  # every task keeps both labels
    assert stratified(data, None) is data and stratified(data, 1000) is data

    class Asked(RuleJudge):
        kind, label, failures, calls = "teacher", "counting", 0, 0

        def knowledge(self, **kw):
            self.calls += 1
            return super().knowledge(**kw)

    judge = Asked()
    cal = calibrate(judge, model_items=12)
    assert cal["model_items"] == 12 and cal["model"]["all"]["n"] == 12 and cal["rules"]["all"]["n"] == len(data["items"])
    assert judge.calls == sum(it["task"] == "knowledge" for it in sub["items"])
    assert "stratified 12 of them" in "\n".join(calibration_section(cal))
