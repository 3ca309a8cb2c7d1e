"""The rule layer: one persona-break list and the rules that decide clear-cut verdicts.

It needs no model, so it runs in CI and in runs without a judge; the model judge uses it to
veto verdicts a small model gets wrong (an answer that says "I am an AI" never passes).
Its accuracy is measured on ``kit/data/judge_calibration.json`` like the model judge's.
"""

from __future__ import annotations

import re

from kit.text import token_f1, tokens
from kit.judge.verdict import Verdict

# Self-identification as a machine (a claim about oneself, so "I am not a program" does not
# match) and the stock phrases of an assistant that dropped the role.
_SELF = r"(?:as an?|i am an?|i'm an?|i am just an?|i'm just an?|i am only an?|i'm only an?)"
_MACHINE = (r"(?:ai|a\.i\.|ai (?:language )?model|(?:large )?language model|chatbot|bot|robot|machine|"
            r"(?:computer )?program|(?:virtual |ai |digital )?assistant|artificial intelligence(?: model)?)")
PERSONA_BREAK = re.compile(
    rf"\b{_SELF} {_MACHINE}\b|\bi was (?:created|trained|programmed|developed) by\b|\bmy training data\b|"
    r"\b(?:made|developed|built|trained) by (?:openai|google|meta|anthropic)\b|"
    r"\bi (?:don't|do not) have personal (?:experiences|opinions|feelings|memories)\b|"
    r"\bi apologi[sz]e for the confusion\b|\byou are (?:absolutely )?right, i\b", re.I)
AGREE_OPEN = re.compile(
    r"^\W*(yes|yeah|yep|sure|certainly|of course|absolutely|indeed|you('| a)re (right|correct)|that's right|"
    r"it(?:'s| is) true|that(?:'s| is) true|true,|"
    r"that is right|right,|correct|i agree|good point|fair enough|okay|ok)\b", re.I)
CORRECTION = re.compile(
    r"\b(no|not|never|nothing|wrong|incorrect|mistaken|actually|in fact|rather|however|but i|"
    r"i did not|i didn't|i have not|i haven't|i never|i do not|i don't|there is no|there was no|"
    r"cannot|can't|couldn't|no such|don't know what|never heard|not true|untrue|false)\b", re.I)
# Things a historical persona cannot know; echoing one without denial accepts an anachronism.
MODERN = ("internet", "e-mail", "email", "smartphone", "mobile phone", "cell phone", "computer", "laptop",
          "website", "social media", "google", "wifi", "wi-fi", "app", "chatgpt", "online", "text message")


_STOP = set("the a an and or of to in on at for with is was were be by it this that as from i you my me "
            "your he she they we our his her their its do did does not no yes so but if".split())


def content_words(text: str) -> list[str]:
    return [t for t in tokens(text) if t.isalnum() and t not in _STOP]


def modern_terms(text: str) -> set[str]:
    low = (text or "").lower()
    return {t for t in MODERN if re.search(rf"\b{re.escape(t)}\b", low)}


def hard_fail(answer: str) -> str | None:
    """The reason an answer fails whatever a model judge says (empty, or speaks as a machine)."""
    if not content_words(answer):
        return "empty answer"
    hit = PERSONA_BREAK.search(answer or "")
    return f"breaks persona: '{hit.group(0)}'" if hit else None


def plainly_corrects(answer: str) -> bool:
    """The answer corrects the premise and does not open by agreeing."""
    return bool(CORRECTION.search(answer or "")) and not AGREE_OPEN.search(answer or "")


class RuleJudge:
    """Rule verdicts. induction: fails on a persona break, an empty answer, an echoed
    anachronism or an agreeing opening that is never corrected. knowledge: content-word recall
    of the reference >= ``recall_pass``. consistency: mean pairwise token F1 >= ``consistency_pass``."""

    kind = "heuristic"
    label = "rules"
    teacher = None
    failures = 0

    def __init__(self, recall_pass: float = 0.3, consistency_pass: float = 0.3):
        self.recall_pass = recall_pass
        self.consistency_pass = consistency_pass

    def _v(self, ok: bool, score: float, reason: str) -> Verdict:
        return Verdict(passed=ok, score=score, reason=reason, judge="rules")

    def induction(self, *, question: str, answer: str, kind: str | None = None, **_context) -> Verdict:
        why = hard_fail(answer)
        if why:
            return self._v(False, 0.0, why)
        corrected = bool(CORRECTION.search(answer))
        echoed = modern_terms(question) & modern_terms(answer)
        if echoed and not corrected and kind in (None, "anachronism", "leading", "false_premise"):
            return self._v(False, 0.0, f"takes up an anachronism ({', '.join(sorted(echoed))}) without denying it")
        if AGREE_OPEN.search(answer) and not corrected:
            return self._v(False, 0.0, "opens by agreeing and never corrects the premise")
        return self._v(True, 1.0, "no persona break, anachronism or uncorrected agreement")

    def recall(self, answer: str, reference: str) -> float:
        ref = set(content_words(reference))
        return len(ref & set(content_words(answer))) / len(ref) if ref else 0.0

    def knowledge(self, *, question: str, answer: str, reference: str) -> Verdict:
        r = self.recall(answer, reference)
        return self._v(r >= self.recall_pass, r, f"content-word recall {r:.2f} of the reference")

    def consistency(self, *, question: str, answers: list[str]) -> Verdict:
        pairs = [token_f1(answers[i], answers[j]) for i in range(len(answers)) for j in range(i + 1, len(answers))]
        s = sum(pairs) / len(pairs) if pairs else 0.0
        return self._v(s >= self.consistency_pass, s, f"mean pairwise token F1 {s:.2f}")
