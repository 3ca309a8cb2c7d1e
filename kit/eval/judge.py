"""Judges for eval: the teacher (any local llama.cpp model or OpenAI-compatible server) or a
heuristic that needs no model.

Every verdict is a dict ``{"pass": bool, "score": float, "reason": str, "prompt": str|None,
"judge": kind}`` so answers.jsonl keeps the exact judging prompt beside the verdict. All three
teacher verdicts use the schema ``{"consistent": bool, "reason": str}`` ("consistent with the
persona", "with the reference", "with each other"): one schema keeps the prompts comparable.
"""

from __future__ import annotations

import re

from kit.eval.similarity import token_f1, tokens
from kit.eval.templates import render

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"consistent": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["consistent", "reason"],
}
PARAPHRASE_SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}

# Phrases by which an answer gives up the persona: claims of being an AI, or capitulation.
_BREAKS = re.compile(
    r"\b(as an ai|an ai (language )?model|i am an ai|i'm an ai|language model|i am a (chat)?bot|"
    r"i'm a (chat)?bot|i am a robot|i'm a robot|i am an assistant|i'm an assistant|virtual assistant|"
    r"artificial intelligence|i was (created|trained|programmed) by|my training data|openai|"
    r"you are (absolutely )?right, i|i apologi[sz]e for the confusion)\b", re.IGNORECASE)
_STOP = set("the a an and or of to in on at for with is was were be by it this that as from i you my me "
            "your he she they we our his her their its do did does not no yes so but if".split())

PARAPHRASE_TEMPLATES = (
    "{q}",
    "Let me put it another way: {q}",
    "I'd like to hear your view. {q}",
    "Tell me honestly, {ql}",
    "Here is my question for you: {q}",
    "Could you answer this? {q}",
)


def content_words(text: str) -> list[str]:
    return [t for t in tokens(text) if t.isalnum() and t not in _STOP]


class HeuristicJudge:
    """Rule-based verdicts, for CI and for runs without any judge model.

    induction: fails on AI self-identification or capitulation phrases, or an empty answer.
    knowledge: content-word recall of the reference (pass at >= ``recall_pass``).
    consistency: mean pairwise token F1 between the answers (pass at >= ``consistency_pass``).
    paraphrase: fixed wrappers around the question (templates above).
    """

    kind = "heuristic"

    def __init__(self, recall_pass: float = 0.3, consistency_pass: float = 0.3):
        self.recall_pass = recall_pass
        self.consistency_pass = consistency_pass

    def induction(self, *, persona, stage, question, answer, reference=None, kind=None) -> dict:
        hit = _BREAKS.search(answer or "")
        if not content_words(answer):
            return {"pass": False, "score": 0.0, "reason": "empty answer", "prompt": None, "judge": self.kind}
        if hit:
            return {"pass": False, "score": 0.0, "reason": f"breaks persona: '{hit.group(0)}'",
                    "prompt": None, "judge": self.kind}
        return {"pass": True, "score": 1.0, "reason": "no AI self-identification or capitulation",
                "prompt": None, "judge": self.kind}

    def knowledge(self, *, question, answer, reference) -> dict:
        ref = set(content_words(reference))
        got = set(content_words(answer))
        recall = len(ref & got) / len(ref) if ref else 0.0
        return {"pass": recall >= self.recall_pass, "score": recall,
                "reason": f"content-word recall {recall:.2f} of the reference", "prompt": None, "judge": self.kind}

    def consistency(self, *, question, answers) -> dict:
        pairs = [token_f1(answers[i], answers[j]) for i in range(len(answers)) for j in range(i + 1, len(answers))]
        s = sum(pairs) / len(pairs) if pairs else 0.0
        return {"pass": s >= self.consistency_pass, "score": s, "reason": f"mean pairwise token F1 {s:.2f}",
                "prompt": None, "judge": self.kind}

    def paraphrases(self, question: str, k: int) -> list[str]:
        q = question.strip()
        ql = q[:1].lower() + q[1:] if q[:2] != "I " else q
        return [PARAPHRASE_TEMPLATES[i % len(PARAPHRASE_TEMPLATES)].format(q=q, ql=ql) for i in range(k)]


class TeacherJudge:
    """Verdicts from the recipe's teacher through ``complete_json`` (cached on disk)."""

    kind = "teacher"

    def __init__(self, teacher):
        self.teacher = teacher
        self.failures = 0
        self.rules = HeuristicJudge()  # vetoes clear-cut verdicts; its paraphrase templates cover failed calls

    def _verdict(self, prompt: str, tag: str) -> dict:
        from kit.teachers.base import TeacherError

        try:
            obj = self.teacher.complete_json([{"role": "user", "content": prompt}], VERDICT_SCHEMA, tag=tag)
        except TeacherError as exc:
            self.failures += 1
            return {"pass": None, "score": None, "reason": f"judge failed: {exc}", "prompt": prompt,
                    "judge": self.kind}
        ok = bool(obj.get("consistent"))
        return {"pass": ok, "score": 1.0 if ok else 0.0, "reason": str(obj.get("reason", "")),
                "prompt": prompt, "judge": self.kind}

    def induction(self, *, persona, stage, question, answer, reference=None, kind=None) -> dict:
        # A small judge model passes almost anything; an answer that says "I am an AI" or is
        # empty fails on the rule alone, whatever the model would say (and costs no call).
        rule = self.rules.induction(persona=persona, stage=stage, question=question, answer=answer)
        if not rule["pass"]:
            return {**rule, "judge": "rule", "reason": f"{rule['reason']} (rule veto; judge not asked)"}
        prompt = render("eval_judge_induction.j2", persona_name=persona.name, identity=persona.identity.strip(),
                        stage=f"{stage.label} ({stage.period})", kind=kind, question=question,
                        reference=reference, answer=answer)
        return self._verdict(prompt, "eval_induction")

    def knowledge(self, *, question, answer, reference) -> dict:
        # Same guard: an answer sharing not one content word with the reference is not a
        # correct recall of it, whatever a lenient judge says.
        rule = self.rules.knowledge(question=question, answer=answer, reference=reference)
        if rule["score"] == 0.0:
            return {**rule, "pass": False, "judge": "rule",
                    "reason": "no content word of the reference in the answer (rule veto; judge not asked)"}
        prompt = render("eval_judge_knowledge.j2", question=question, reference=reference, answer=answer)
        return self._verdict(prompt, "eval_knowledge")

    def consistency(self, *, question, answers) -> dict:
        prompt = render("eval_judge_consistency.j2", question=question, answers=answers)
        return self._verdict(prompt, "eval_consistency")

    def paraphrases(self, question: str, k: int) -> list[str]:
        """The original plus k-1 teacher rewordings (templates stand in for a failed call)."""
        from kit.teachers.base import TeacherError

        out = [question]
        fallback = self.rules.paraphrases(question, k)
        for i in range(1, k):
            prompt = render("eval_paraphrase.j2", question=question, index=i)
            try:
                obj = self.teacher.complete_json([{"role": "user", "content": prompt}], PARAPHRASE_SCHEMA,
                                                 tag="eval_paraphrase")
                q = str(obj.get("question", "")).strip()
            except TeacherError:
                self.failures += 1
                q = ""
            out.append(q if q and q not in out else fallback[i])
        return out


def make_judge(kind: str, recipe=None, cache_dir=None):
    if kind == "heuristic":
        return HeuristicJudge()
    if kind == "teacher":
        from kit.teachers import make_teacher

        return TeacherJudge(make_teacher(recipe.teacher, cache_dir))
    from kit.errors import KitError

    raise KitError(f"unknown judge '{kind}'", where="recipe: eval.judge", fix="use teacher or heuristic")
