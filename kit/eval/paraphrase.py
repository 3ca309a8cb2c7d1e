"""Rewordings of a question: fixed wrappers, or the judge's model when there is one."""

from __future__ import annotations

SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}

TEMPLATES = (
    "{q}",
    "Let me put it another way: {q}",
    "I'd like to hear your view. {q}",
    "Tell me honestly, {ql}",
    "Here is my question for you: {q}",
    "Could you answer this? {q}",
)


def wrappers(question: str, k: int) -> list[str]:
    """The question and k-1 fixed rewordings (deterministic, no model)."""
    q = question.strip()
    ql = q[:1].lower() + q[1:] if q[:2] != "I " else q
    return [TEMPLATES[i % len(TEMPLATES)].format(q=q, ql=ql) for i in range(k)]


def paraphrases(judge, question: str, k: int) -> list[str]:
    """The original plus k-1 rewordings by the judge's model (a wrapper stands in for a failed
    call, counted in ``judge.failures``); wrappers only for the rule judge."""
    teacher = getattr(judge, "teacher", None)
    if teacher is None:
        return wrappers(question, k)
    from kit.eval.templates import render
    from kit.teachers.base import TeacherError

    out, fallback = [question], wrappers(question, k)
    for i in range(1, k):
        try:
            obj = teacher.complete_json([{"role": "user", "content": render("eval_paraphrase.j2", question=question,
                                                                            index=i)}], SCHEMA, tag="eval_paraphrase")
            q = str(obj.get("question", "")).strip()
        except TeacherError:
            judge.failures += 1
            q = ""
        out.append(q if q and q not in out else fallback[i])
    return out
