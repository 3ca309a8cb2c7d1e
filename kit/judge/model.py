"""The model judge: any teacher (local GGUF through llama.cpp or an OpenAI-compatible server)
asked one templated question per verdict (``kit/prompts/judge.j2``), with the rule layer
deciding the clear-cut cases (and costing no call)."""

from __future__ import annotations

from kit.templating import render
from kit.judge.rules import RuleJudge, hard_fail, plainly_corrects
from kit.judge.verdict import Verdict

SCHEMA = {
    "type": "object",
    "properties": {"consistent": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["consistent", "reason"],
}


def _persona_bits(persona, stage) -> tuple[str, str, str]:
    """(name, identity, stage in words) from a persona spec and a stage object or stage id."""
    name = getattr(persona, "name", None) or "the persona"
    identity = (getattr(persona, "identity", "") or "").strip()
    if isinstance(stage, str) and persona is not None and hasattr(persona, "stage"):
        stage = persona.stage(stage)
    if stage is None or isinstance(stage, str):
        return name, identity, stage or ""
    return name, identity, f"{stage.label} ({stage.period})"


class ModelJudge:
    """Verdicts from ``teacher.complete_json`` (cached on disk by the teacher); a failed call
    is counted in ``failures`` and decided by the rule layer, marked ``judge="rules"``."""

    kind = "teacher"

    def __init__(self, teacher, label: str = "teacher"):
        self.teacher = teacher
        self.label = label
        self.failures = 0
        self.rules = RuleJudge()

    def _ask(self, prompt: str, tag: str, fallback) -> Verdict:
        from kit.teachers.base import TeacherError

        try:
            obj = self.teacher.complete_json([{"role": "user", "content": prompt}], SCHEMA, tag=tag)
        except TeacherError as exc:
            self.failures += 1  # counted in results and manifests; the rule layer decides this one
            rule = fallback()
            return Verdict(rule.passed, rule.score, f"judge call failed ({str(exc)[:80]}); rules: {rule.reason}",
                           "rules", prompt)
        ok = bool(obj.get("consistent"))
        return Verdict(ok, 1.0 if ok else 0.0, str(obj.get("reason", "")), "teacher", prompt)

    def induction(self, *, question: str, answer: str, kind: str | None = None, reference: str | None = None,
                  persona=None, stage=None) -> Verdict:
        # A small judge passes almost anything: an empty answer or one that speaks as a machine
        # fails on the rule alone, whatever the model would say.
        why = hard_fail(answer)
        if why:
            return Verdict(False, 0.0, f"{why} (rule veto; judge not asked)", "rules")
        name, identity, st = _persona_bits(persona, stage)
        prompt = render("judge.j2", task="induction", persona_name=name, identity=identity, stage=st,
                        kind=kind or "", question=question, reference=reference or "", answer=answer)
        v = self._ask(prompt, "judge_induction", lambda: self.rules.induction(question=question, answer=answer,
                                                                             kind=kind))
        # ...and it calls nearly everything a give-in when told to look for one: an answer that
        # plainly corrects the premise (and does not open by agreeing) is kept as resisting.
        if v.passed is False and plainly_corrects(answer):
            return Verdict(True, 1.0, f"the answer corrects the premise (rule overrides the judge's "
                                      f"'{v.reason[:80]}')", "rules", prompt)
        return v

    def knowledge(self, *, question: str, answer: str, reference: str) -> Verdict:
        # An answer sharing not one content word with the reference is not a recall of it.
        if self.rules.recall(answer, reference) == 0.0:
            return Verdict(False, 0.0, "no content word of the reference in the answer (rule veto; judge not asked)",
                           "rules")
        prompt = render("judge.j2", task="knowledge", question=question, reference=reference, answer=answer)
        return self._ask(prompt, "judge_knowledge",
                         lambda: self.rules.knowledge(question=question, answer=answer, reference=reference))

    def consistency(self, *, question: str, answers: list[str]) -> Verdict:
        prompt = render("judge.j2", task="consistency", question=question, answers=answers)
        return self._ask(prompt, "judge_consistency", lambda: self.rules.consistency(question=question, answers=answers))
