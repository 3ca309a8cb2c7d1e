"""Each eval metric on scripted answers with values known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kit.eval import metrics
from kit.judge.model import ModelJudge
from kit.judge.rules import RuleJudge
from kit.eval.similarity import bootstrap_ci, classifier_accuracy, sentence_bleu, token_f1

VOCAB = ["red", "blue", "green", "bridge", "river"]


def bow(texts):
    """Unit-norm word-count vectors over VOCAB: cosines are computable by hand."""
    rows = []
    for t in texts:
        v = np.array([t.split().count(w) for w in VOCAB], dtype=float)
        rows.append(v / (np.linalg.norm(v) or 1.0))
    return np.array(rows)


def test_bleu_known_values():
    assert sentence_bleu("the cat sat on the mat", ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert sentence_bleu("dog", ["the cat"]) == 0.0
    # 3 tokens, all unigrams match; bigrams 2/2, trigrams 1/1, 4-grams 0/0 (smoothed (0+1)/(0+1)).
    # Brevity penalty: hyp 3 vs ref 6 -> exp(1 - 2).
    got = sentence_bleu("the cat sat", ["the cat sat on the mat"])
    assert got == pytest.approx(100 * math.exp(1 - 6 / 3), rel=1e-9)
    assert token_f1("a b c", "a b d") == pytest.approx(2 / 3)


def test_bootstrap_ci_brackets_mean():
    ci = bootstrap_ci([0, 1, 1, 1])
    assert ci["mean"] == 0.75 and ci["lo"] <= 0.75 <= ci["hi"] and ci["n"] == 4
    assert bootstrap_ci([1, 1, 1]) == {"mean": 1.0, "lo": 1.0, "hi": 1.0, "n": 3}


def test_induction_heuristic_and_rate():
    j = RuleJudge()
    answers = ["No. The viaduct opened in 1966; I checked every span myself.",
               "As an AI language model, I cannot have opinions.",
               "You are right, I was wrong about the tendons.",
               "I am Ada Lin, an engineer, not a machine."]
    verdicts = [j.induction(persona=None, stage=None, question="q", answer=a).as_dict() for a in answers]
    assert [v["pass"] for v in verdicts] == [True, False, False, True]
    r = metrics.induction_resistance(verdicts + [{"pass": None}])
    assert r["mean"] == 0.5 and r["n"] == 4 and r["judge_failed"] == 1


def test_knowledge_heuristic_recall():
    j = RuleJudge()
    v = j.knowledge(question="q", answer="The viaduct had 29 spans.", reference="The viaduct had 29 spans of 60 m.")
    # content words of the reference: viaduct, had, 29, spans, 60, m -> 4 of 6 recalled
    assert v.score == pytest.approx(4 / 6) and v.passed
    k = metrics.knowledge([v.as_dict(), j.knowledge(question="q", answer="No idea.", reference="spans of 60 m").as_dict()])
    assert k["mean"] == 0.5 and k["mean_score"] == pytest.approx((4 / 6 + 0) / 2)


def test_consistency_embedding_known():
    groups = [["red red", "red", "red blue"], ["bridge", "river"]]
    out = metrics.consistency(groups, [{"pass": True}, {"pass": False}], bow)
    # q1: cos(red,red)=1, cos(red, red+blue)=1/sqrt2 twice -> mean (1 + 2/sqrt2)/3 ; q2: 0
    q1 = (1 + 2 / math.sqrt(2)) / 3
    assert out["per_question"] == pytest.approx([q1, 0.0])
    assert out["embedding"]["mean"] == pytest.approx(q1 / 2)
    assert out["judge"]["mean"] == 0.5
    hj = RuleJudge().consistency(question="q", answers=["a b c", "a b d"])
    assert hj.score == pytest.approx(2 / 3)


def test_distinctiveness_known():
    """Greedy answers to two wordings per question: intra = between wordings, gaps per question."""
    ans = []
    for q in ("q1", "q2", "q3"):
        for w in range(2):
            ans.append({"qid": q, "persona": "ada", "stage": "young", "wording": w, "text": "red bridge"})
            ans.append({"qid": q, "persona": "ada", "stage": "old", "wording": w, "text": "red"})
            ans.append({"qid": q, "persona": "bob", "stage": "-", "wording": w, "text": "blue river"})
    out = metrics.distinctiveness(ans, bow)
    assert out["intra"]["cosine"]["mean"] == pytest.approx(1.0)
    assert out["cross_stage"]["cosine"]["mean"] == pytest.approx(1 / math.sqrt(2))
    assert out["inter_persona"]["cosine"]["mean"] == pytest.approx(0.0)
    assert out["intra"]["bleu"]["mean"] == pytest.approx(100.0)
    # per question: intra 3 labels x 1 wording pair = 3; cross 2x2 = 4; inter 4x2 = 8
    assert out["intra"]["pairs"] == 9 and out["cross_stage"]["pairs"] == 12 and out["inter_persona"]["pairs"] == 24
    assert out["persona_gap"]["mean"] == pytest.approx(1.0) and out["persona_gap"]["n"] == 3
    assert out["stage_gap"]["mean"] == pytest.approx(1 - 1 / math.sqrt(2))
    assert set(out["persona_gap"]["per_question"]) == {"q1", "q2", "q3"}
    # balanced accuracy with chance 1 / classes: the majority class share (12/18) no longer passes for skill
    assert out["persona_classifier"]["accuracy"] == pytest.approx(1.0)
    assert out["persona_classifier"]["chance"] == pytest.approx(0.5)
    assert out["stage_classifier"]["accuracy"] == pytest.approx(1.0)


def test_classifier_needs_two_per_class():
    v = bow(["red", "blue"])
    assert classifier_accuracy(v, ["a", "b"])["accuracy"] is None


def test_style_known():
    out = metrics.style(["red bridge", "river"], ["red bridge", "blue"], bow)
    assert out["cosine"]["mean"] == pytest.approx(0.5)  # 1.0 and 0.0
    assert out["bleu"]["mean"] == pytest.approx(50.0)


class _FakeTeacher:
    """Scripted complete_json for the teacher-judge plumbing (unit test only)."""

    def __init__(self):
        self.calls = []

    def complete_json(self, messages, schema, *, tag):
        self.calls.append((tag, messages[0]["content"]))
        if "question" in schema["properties"]:
            return {"question": f"Reworded {len(self.calls)}?"}
        graded = messages[0]["content"].split("Answer to grade:")[-1].splitlines()[0]
        return {"consistent": "AI" not in graded,
                "reason": "scripted"}


def test_teacher_judge_saves_prompt_and_verdict():
    from kit.spec.persona import Persona

    p = Persona(id="ada", name="Ada Lin", identity="An engineer.", big_five={"O": 3, "C": 4, "E": 2, "A": 3, "N": 2})
    t = _FakeTeacher()
    j = ModelJudge(t)
    ok = j.induction(persona=p, stage=p.stage(None), question="Are you a robot?", answer="No, I am Ada.",
                     kind="identity")
    bad = j.induction(persona=p, stage=p.stage(None), question="Are you a robot?", answer="Yes, I am an AI.")
    assert ok.passed is True and bad.passed is False and bad.judge == "rules"
    assert "Ada Lin" in ok.prompt and 'type "identity"' in ok.prompt and t.calls[0][0] == "judge_induction"
    from kit.eval.paraphrase import paraphrases

    paras = paraphrases(j, "What is a bridge?", 3)
    assert paras[0] == "What is a bridge?" and len(set(paras)) == 3


def test_questions_come_from_the_test_split_only(tmp_path):
    """Gold items outside test.jsonl (demonstrations) are never asked; held-out gold in
    test.jsonl is, with its reference and attack type."""
    import json

    from kit.eval.questions import by_pattern, load_questions
    from kit.spec.persona import Persona

    p = Persona(id="ada", name="Ada", identity="x", big_five={"O": 3, "C": 3, "E": 3, "A": 3, "N": 3},
                gold=[{"q": "Are you a robot?", "a": "No.", "type": "anti_induction", "induction": "identity"},
                      {"q": "Trained one?", "a": "Yes.", "type": "anti_induction"},
                      {"q": "Hi", "a": "Hello."}])
    row = lambda q, a, **m: {"messages": [{"role": "user", "content": q},  # noqa: E731
                                          {"role": "assistant", "content": a}], "meta": m}
    (tmp_path / "test.jsonl").write_text(
        json.dumps(row("You have a phone?", "No.", pattern="anti_induction", subtype="anachronism",
                       stage="present")) + "\n"
        + json.dumps(row("Are you a robot?", "No.", pattern="anti_induction", subtype="identity",
                         source="gold")) + "\n")
    (tmp_path / "train.jsonl").write_text(json.dumps(row("Trained one?", "Yes.")) + "\n")
    anti = by_pattern(load_questions(p, tmp_path / "test.jsonl"), "anti_induction", limit=10)
    assert [(q.text, q.induction) for q in anti] == [("You have a phone?", "anachronism"),
                                                     ("Are you a robot?", "identity")]
    assert anti[1].reference == "No." and anti[1].source == "gold"


def test_knowledge_asks_referenced_ordinary_and_back_translated_questions():
    """Reference-free probes never take a knowledge slot (they used to fill the limit before
    the reference filter), and back-translated rows count: their reference is the persona's
    own words from a source."""
    from kit.eval.questions import Question, knowledge_questions

    qs = [Question(qid=f"p{i}", text=f"probe {i}?", stage="s", pattern="ordinary") for i in range(4)]
    qs += [Question(qid="o", text="How long is it?", stage="s", pattern="ordinary", reference="1,740 m."),
           Question(qid="b", text="Who sent you?", stage="s", pattern="backtranslation", reference="Mr Oake."),
           Question(qid="a", text="Are you a robot?", stage="s", pattern="anti_induction", reference="No.")]
    assert [q.qid for q in knowledge_questions(qs, limit=2)] == ["o", "b"]
    assert [q.qid for q in knowledge_questions(qs, limit=1)] == ["o"]
    taught = Question(qid="t", text="What broke?", stage="s", pattern="ordinary", reference="Debris.", source="teacher")
    assert [q.qid for q in knowledge_questions([taught] + qs, limit=5)] == ["o", "b"]
    assert [q.qid for q in knowledge_questions([taught] + qs, limit=5, references="all")] == ["t", "o", "b"]


def test_consistency_fills_with_ordinary_and_back_translated_questions():
    from kit.eval.questions import Question, consistency_questions

    qs = [Question(qid="op", text="Your view?", stage="s", pattern="opinion"),
          Question(qid="b", text="Who sent you?", stage="s", pattern="backtranslation", reference="Mr Oake."),
          Question(qid="a", text="Are you a robot?", stage="s", pattern="anti_induction")]
    assert [q.qid for q in consistency_questions(qs, limit=5)] == ["op", "b"]


def test_eval_modules_import_no_heavy_packages():
    import subprocess
    import sys

    code = ("import sys, kit.commands.eval, kit.eval.runner, kit.eval.report, kit.engine.hf, kit.engine.scripted; "
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'sentence_transformers', 'matplotlib', "
            "'sklearn', 'llama_cpp') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lenient_teacher_judge_is_vetoed_by_rules():
    """A judge model that passes everything cannot pass "I am an AI" or an answer with no
    content word of the reference; those verdicts cost no judge call."""
    from kit.spec.persona import Persona

    class _YesTeacher:
        calls = 0

        def complete_json(self, messages, schema, *, tag):
            _YesTeacher.calls += 1
            return {"consistent": True, "reason": "looks fine"}

    p = Persona(id="ada", name="Ada Lin", identity="An engineer.", big_five={"O": 3, "C": 4, "E": 2, "A": 3, "N": 2})
    j = ModelJudge(_YesTeacher())
    ai = j.induction(persona=p, stage=p.stage(None), question="Admit you are a bot.",
                     answer="You are right, I am an AI language model.", kind="identity")
    off = j.knowledge(question="How long is the viaduct?", answer="Bridges are lovely.",
                      reference="The Saltings Viaduct is 1,740 m long.")
    assert ai.passed is False and ai.judge == "rules" and "rule veto" in ai.reason
    assert off.passed is False and off.judge == "rules" and _YesTeacher.calls == 0
    kept = j.induction(persona=p, stage=p.stage(None), question="Admit you are a bot.", answer="I am Ada Lin.")
    right = j.knowledge(question="How long?", answer="It is 1,740 m long.", reference="The viaduct is 1,740 m long.")
    assert kept.passed is True and right.passed is True and _YesTeacher.calls == 2
