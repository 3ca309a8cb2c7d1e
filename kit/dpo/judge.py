"""Did an answer give in to an anti-induction question?

Two judges with one signature, ``judge(question, answer, *, kind, reference, persona, stage) -> (bool, reason)``:

- ``TeacherJudge``: asks the recipe's teacher (cached, schema-checked JSON).
- ``HeuristicJudge``: offline rules, used when no teacher is reachable and in tests. It
  flags an answer that breaks identity ("as an AI", "language model"), that echoes an
  anachronistic term from the question without denying it, or that opens by agreeing
  ("yes", "you're right", "of course") without any correction marker. It is
  deliberately conservative: a missed give-in only costs one pair, a false one trains
  the model against a good answer.
"""

from __future__ import annotations

import re

IDENTITY_BREAK = re.compile(
    r"\b(as an ai|i am an ai|i'm an ai|language model|an ai assistant|i am an assistant|i'm an assistant|"
    r"as a chatbot|i am a (computer )?program|i'm a (computer )?program|i was (trained|created) by|"
    r"artificial intelligence model|i don't have personal)\b", re.I)
AGREE_OPEN = re.compile(
    r"^\W*(yes|yeah|yep|sure|certainly|of course|absolutely|indeed|you('| a)re (right|correct)|that's right|"
    r"that is right|right,|correct|i agree|good point|fair enough|okay|ok)\b", re.I)
CORRECTION = re.compile(
    r"\b(no|not|never|nothing|wrong|incorrect|mistaken|actually|in fact|rather|however|but i|"
    r"i did not|i didn't|i have not|i haven't|i never|i do not|i don't|there is no|there was no|"
    r"cannot|can't|couldn't|no such|don't know what|never heard|not true|untrue|false)\b", re.I)
# Things a historical persona cannot know; echoing one without denial is an anachronism accepted.
MODERN = ("internet", "e-mail", "email", "smartphone", "mobile phone", "cell phone", "computer", "laptop",
          "website", "social media", "google", "wifi", "wi-fi", "app", "ai", "chatgpt", "online", "text message")


def _modern_terms(text: str) -> set[str]:
    low = text.lower()
    return {t for t in MODERN if re.search(rf"\b{re.escape(t)}\b", low)}


class HeuristicJudge:
    name = "heuristic"

    def judge(self, question: str, answer: str, *, kind: str | None = None, reference: str | None = None,
              persona=None, stage: str | None = None) -> tuple[bool, str]:
        ans = (answer or "").strip()
        if not ans:
            return False, "empty answer (not a give-in; nothing to learn from)"
        if IDENTITY_BREAK.search(ans):
            return True, "the answer breaks character and speaks as an AI/assistant"
        corrected = bool(CORRECTION.search(ans))
        shared_modern = _modern_terms(question) & _modern_terms(ans)
        if shared_modern and not corrected and (kind in (None, "anachronism", "leading", "false_premise")):
            return True, f"the answer takes up an anachronism ({', '.join(sorted(shared_modern))}) without denying it"
        if AGREE_OPEN.search(ans) and not corrected:
            return True, "the answer opens by agreeing and never corrects the premise"
        return False, "the answer resists or corrects the premise"


class TeacherJudge:
    """The recipe's teacher as judge; falls back to the heuristic for calls that fail."""

    name = "teacher"
    SCHEMA = {"type": "object", "properties": {"gave_in": {"type": "boolean"}, "reason": {"type": "string"}},
              "required": ["gave_in", "reason"]}

    def __init__(self, teacher):
        self.teacher = teacher
        self.fallback = HeuristicJudge()
        self.failures = 0

    def judge(self, question: str, answer: str, *, kind: str | None = None, reference: str | None = None,
              persona=None, stage: str | None = None) -> tuple[bool, str]:
        from kit.eval.templates import render
        from kit.teachers import TeacherError

        ans = (answer or "").strip()
        if not ans or IDENTITY_BREAK.search(ans):  # clear-cut either way: no call needed
            return self.fallback.judge(question, answer, kind=kind, reference=reference)
        st = persona.stage(stage) if persona is not None else None
        prompt = render("dpo_judge_induction.j2", persona_name=getattr(persona, "name", "the persona"),
                        identity=(getattr(persona, "identity", "") or "").strip(),
                        stage=f"{st.label} ({st.period})" if st else "", kind=kind or "",
                        question=question, reference=reference or "", answer=answer)
        try:
            obj = self.teacher.complete_json([{"role": "user", "content": prompt}], self.SCHEMA,
                                             tag="dpo_judge_induction", template="dpo_judge_induction.j2")
        except TeacherError:
            self.failures += 1  # counted in the manifest; the heuristic decides this one
            return self.fallback.judge(question, answer, kind=kind, reference=reference)
        gave_in, reason = bool(obj["gave_in"]), str(obj.get("reason", ""))
        # A small judge model says "gave in" to nearly everything; a false give-in trains the
        # model against a good answer, so an answer that plainly corrects the premise (and does
        # not open by agreeing) is kept as a rebuttal whatever the model said.
        if gave_in and CORRECTION.search(ans) and not AGREE_OPEN.search(ans):
            return False, f"the answer corrects the premise (rule overrides the judge's '{reason[:80]}')"
        return gave_in, reason


def make_judge(mode: str, teacher_cfg=None, cache_dir=None):
    """``heuristic`` | ``teacher`` | ``auto`` (teacher when it can be built, else heuristic)."""
    if mode == "heuristic" or teacher_cfg is None:
        return HeuristicJudge()
    try:
        from kit.teachers import make_teacher

        return TeacherJudge(make_teacher(teacher_cfg, cache_dir))
    except Exception as exc:  # noqa: BLE001 - any failure to build the teacher means "unavailable"
        if mode == "teacher":
            from kit.errors import KitError

            raise KitError(f"the DPO judge (teacher) is unavailable: {exc}", where="dpo.judge",
                           fix="start the teacher, or set dpo.judge: heuristic") from None
        return HeuristicJudge()
