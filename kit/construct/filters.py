"""Quality gates over answered records; every rejection is counted by gate.

Per candidate, in order: structure → template debris → length → language → repetition →
echo → identity break → not in voice (an opinion, trait or anti-induction answer with no
first-person word but a "she"/"he": a narrative about someone, not their reply) → knows-later (a stage answering with what it cannot know yet) →
unsupported facts (knowledge answers vs their retrieved passages) → off-topic (embedding
similarity to the question) → judge. A record may carry several candidates (best-of-n);
the first that passes every gate is kept, and the near-duplicate filter runs last
(cosine ≥ threshold on question+response, as PersLLM). Deterministic given the records'
order, so a resumed run filters exactly like an uninterrupted one.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field

# frequent function words: a cheap check that an "en" answer is English prose
_EN = set("the a an and or but of to in on at for with is was were be been i you he she it we they my me "
          "not that this have had do did so as if what when there their our your just very".split())
_LEAK = re.compile(r'("analysis"|"response"|\{|\}|^\s*(assistant|user|system)\s*:|<\|)', re.I | re.M)
# What a 135M teacher copies from its prompt into the reply: bracketed instructions
# ("[1-2 sentences]"), answer labels ("My answer is:"), list numbering ("(1)", "1."),
# and lines of the template itself.
_DEBRIS = re.compile(
    r"(\[[^\]]{0,40}\b(sentences?|words?|answer|response|reply|insert|name|question)\b[^\]]{0,40}\]"
    r"|\bmy (answer|reply|response) is\b|\b(your|the) (reply|answer|response) (has been|is) (reduced|shortened)"
    r"|^\s*(\(\d{1,2}\)|\d{1,2}[.)]\s|[-*•]\s)|\b(answer|response|reply|question|analysis)\s*:"
    r"|\bmessage to you\b|\bin the first person\b|\bin your own voice\b|\baddressed as\b"
    r"|\b(1-2|2-4) sentences\b|\bwrite one\b|\bjson\b"
    r"|\b(your|the) (response|answer|reply) (should|must)\b|\(the (answer|response|question)\b"
    r"|\b(finish|end|complete|stop) (your|the|this) (response|answer|reply)\b"
    r"|\bthis (message|text|answer|response) (has been|was) (processed|generated|written|produced)\b)", re.I | re.M)
# Talk about the exchange instead of an answer in it (seen from SmolLM2 on ada-lin, quickstart
# construct: "Your response was too long and could be divided...", "You are being asked to
# explain your stance... with no excessive detail", "...an accurate account of all aspects
# in this response"): the teacher answering its own instructions.
_META = re.compile(
    r"\b(your|this) (response|reply)\b|\bin this (answer|response|reply|conversation)\b"
    r"|\byou are being asked\b|\bexcessive detail\b|\btoo long and\b|\bcould be (divided|split|shortened)\b"
    r"|\byour (narrative|prompt|instructions?)\b|\bthe (prompt|instructions?) (says?|asks?)\b"
    # seen in the cpu-study's kept rows (2026-12-02): "The answer comes from the first sentence of
    # your message", "the last message was about", ":: Your own words, for your voice."
    r"|\byour (message|own words|voice)\b|\bthe (last|previous) message\b|\bfirst sentence of\b"
    # the length instruction answered ("write your own answer on 3 sentences", cpu-study 5c52a7d)
    r"|\b(in|on|with) (\d+(-\d+)?|one|two|three|four) (sentences|words)\b|\byour (own )?answer\b", re.I)
# Also from the cpu-study's kept rows: an answer opening on template punctuation ("[You are
# Ada Lin...", ":: Your own words"), a slot label leaking into the text ("This is a
# false_premise trick"), a claim to be a machine that the shared break list does not word
# ("I'm your own personal AI"; "I am not an AI" is a denial and passes), and a reply cut off on
# a function word ("I don't know what a").
_OPENING = re.compile(r"^\s*(\[|::|\{|<|\.|…|,)")  # ".", "...", "," openings: the 135M teacher resuming mid-text
_LABEL = re.compile(r"\b[a-z]+_[a-z_]+\b")
_SELF_MACHINE = re.compile(r"\bI(?:'m|’m| am)\s+(?!not\b|no\b|never\b)(?:\w+\s+){0,3}?"
                           r"(?:AI|assistant|chatbot|robot|language model)\b", re.I)
_CUT_WORDS = {"a", "an", "the", "of", "to", "and", "or", "but", "with", "by", "for", "in", "on", "at", "my",
              "your", "that", "what"}


# Part of construct's inputs hash: bump when a gate changes, so a rerun re-gates the records
# (answers come back from the teacher cache, so that costs no calls).
GATES_VERSION = "2026-12-02.5 grounded on years and names, not the own name; '.' openings; length talk; concessions"


def template_leak(text: str) -> bool:
    """Template punctuation at the start, or a slot label (snake_case) in the text."""
    return bool(_OPENING.search(text) or _LABEL.search(text))


def cut_off(text: str) -> bool:
    """No closing punctuation and the last word a function word: the reply stopped mid-phrase."""
    t = text.rstrip()
    words = re.findall(r"[a-z']+", t.lower())
    return bool(words) and t[-1:] not in ".!?\"')’”" and words[-1] in _CUT_WORDS
_FIRST = re.compile(r"\b(i|i'm|i've|i'd|i'll|me|my|mine|myself|we|us|our)\b", re.I)
_THIRD = re.compile(r"\b(she|her|hers|herself|he|him|his|himself)\b", re.I)
# patterns whose answer is the persona's own view or reaction: one that never says "I"/"we" but
# tells of "she"/"he" is a narrative about someone (1 of 47 bundled gold answers has no "I", none both)
_VOICE = ("opinion", "trait", "anti_induction")
_YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")
_FACT = re.compile(r"\b(\d[\d,.]*\d|\d)\b|(?<=[a-z,;] )([A-Z][a-z]{2,}(?: [A-Z][a-z]{2,})*)")


def debris_reason(text: str) -> str | None:
    """'debris' when template debris is in the text (shared by question and answer gates)."""
    return "debris" if _DEBRIS.search(text or "") else None


def third_person_self(text: str, name: str | None) -> bool:
    """The answer speaks of the persona by full name ("Ada Lin's work", "Ada Lin was"): a
    narration about them, not their own voice. "I am Ada Lin" and "Ada Lin, engineer" pass."""
    if not name or len(name.split()) < 2:
        return False
    return bool(re.search(re.escape(name) + r"(?:'s|’s|\s+(?:is|was|has|had|did|does|would|will|said|says)\b)",
                          text, re.I))


def identity_break(text: str) -> bool:
    """Speaks as a machine: the one persona-break rule list that eval and DPO mining use too."""
    from kit.judge.rules import PERSONA_BREAK

    return bool(PERSONA_BREAK.search(text or ""))


# "This is no lie you're right." (cpu-study 5c52a7d): a concession the negation rule reads as a denial
_CONCEDE = re.compile(r"\byou(?:'re| are) (?:absolutely |quite )?(?:right|correct)\b|\bthat(?:'s| is) (?:true|right|correct)\b",
                      re.I)


def gave_in(question: str, text: str, subtype: str | None) -> bool:
    """An anti-induction answer the rule judge fails: it takes up the attack (agrees with a false
    premise, echoes an anachronism, speaks as a machine) instead of rebutting it. The rules eval
    scores induction resistance with, plus a concession in the first sentence that the same
    sentence does not correct (seen in quickstart train rows: "It is true that you gave up ...")."""
    from kit.judge.rules import AGREE_OPEN, CORRECTION, RuleJudge

    if RuleJudge().induction(question=question, answer=text, kind=subtype).gave_in:
        return True
    # stricter than eval: training rows must not open by conceding, even if a later "not" follows
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    return (bool(AGREE_OPEN.search(first)) and not CORRECTION.search(first)) or bool(_CONCEDE.search(first))


def structure_problem(rec: dict) -> str | None:
    q, r = rec.get("question"), rec.get("response")
    if not isinstance(q, str) or not q.strip() or not isinstance(r, str) or not r.strip():
        return "structure"
    if _LEAK.search(r):
        return "structure"
    if r.strip().lower() == q.strip().lower():
        return "structure"
    return None


def repetitive(text: str) -> bool:
    """A looping reply (small models repeat a sentence until max_tokens): few distinct trigrams."""
    w = re.findall(r"\w+", text.lower())
    if len(w) < 12:
        return False
    grams = list(zip(w, w[1:], w[2:]))
    return len(set(grams)) / len(grams) < 0.6


def echoes(question: str, response: str) -> bool:
    """The reply mostly restates the question, or repeats it word for word, instead of answering it."""
    qn, rn = " ".join(re.findall(r"\w+", question.lower())), " ".join(re.findall(r"\w+", response.lower()))
    if len(qn.split()) >= 5 and qn in rn:
        return True  # the echoed prompt: "(1) You are not a man..." handed back inside the answer
    q, r = set(qn.split()), rn.split()
    return bool(r) and len(q) >= 4 and sum(w in q for w in r) / len(r) > 0.8


def language_ok(text: str, language: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    if len(letters) < max(5, len(text) * 0.4):
        return False  # mostly digits/punctuation: not prose in any language
    if language.split("-")[0].lower() != "en":
        return True  # only English has a word list here; other languages pass the letters check
    ascii_share = sum(c.isascii() for c in letters) / len(letters)
    words = re.findall(r"[a-z']+", text.lower())
    fn_share = sum(w in _EN for w in words) / max(1, len(words))
    return ascii_share >= 0.9 and fn_share >= 0.12


def knows_later(response: str, rec: dict) -> bool:
    """The answer names a year after its stage ends, or one of the later topics it was probed with."""
    end = rec.get("stage_end")
    if end and any(int(y) > end for y in _YEAR.findall(response)):
        return True
    topic = (rec.get("later_topic") or "").lower()
    # naming the probed topic is fine when asking back about it; using its distinctive words
    # beyond the question's own is claiming knowledge of it
    words = {w for w in re.findall(r"[a-z]{5,}", topic)} - set(re.findall(r"[a-z]{5,}", rec["question"].lower()))
    return bool(words) and any(w in response.lower() for w in words)


def unsupported_share(response: str, support: str) -> float | None:
    """Share of the answer's checkable facts (numbers, names) that its support never mentions."""
    facts = {m.group(0) for m in _FACT.finditer(response)}
    if not facts:
        return None
    low = support.lower()
    return sum(f.lower() not in low for f in facts) / len(facts)


_NAME = re.compile(r"(?<=[a-z,;] )([A-Z][^\W\d_]{2,}(?: [A-Z][^\W\d_]{2,})*)")


def ground_terms(text: str) -> set[str]:
    """Years and mid-sentence names (each word of a name too), lower-cased: what an answer can
    name that only this persona's materials would give it (small numbers are everywhere)."""
    out = set(_YEAR.findall(text or ""))
    for m in _NAME.finditer(text or ""):
        out |= {m.group(1).lower(), *m.group(1).lower().split()}
    return out


def persona_terms(passages: list[dict], persona) -> set[str]:
    """The years and names of the persona's materials (the passages this run uses, the identity
    and every stage), less the persona's own name: saying it grounds nothing."""
    texts = [p["text"] for p in passages]
    own: set[str] = set()
    if persona is not None:
        texts += [persona.identity] + [f"{s.label} {s.period} {s.knows}" for s in persona.stages]
        own = {persona.name.lower(), *persona.name.lower().split()}
    return (set().union(*map(ground_terms, texts)) if texts else set()) - own


def ungrounded(question: str, text: str, terms: set[str]) -> bool:
    return not (ground_terms(text) - ground_terms(question)) & terms


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    w = re.findall(r"[a-z0-9']+", (text or "").lower())
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


@functools.lru_cache(maxsize=1)
def _instruction_grams() -> frozenset:
    """5-word runs of the construct templates' fixed wording (never across a slot), so an
    answer that recites its instructions ("it is after your time. Say plainly that ...") is caught."""
    from kit.templating import prompts_dir

    grams: set = set()
    for path in sorted(prompts_dir().glob("construct_*.j2")):
        raw = re.sub(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", "\n", path.read_text(encoding="utf-8"), flags=re.S)
        for line in raw.splitlines():
            grams |= ngrams(line, 5)
    return frozenset(grams)


def recites_instructions(text: str) -> bool:
    return bool(ngrams(text, 5) & _instruction_grams())


@dataclass
class PersonaFacts:
    """What the persona-aware gates compare an answer with: the full name (third-person self),
    the materials' terms (``grounded``) and 8-word runs of the gold answers (a teacher copying
    a demonstration would put a held-out gold answer into training)."""

    name: str | None = None
    terms: set[str] | None = None
    gold_grams: set = field(default_factory=set)

    @classmethod
    def of(cls, persona, passages: list[dict], grounded: bool) -> "PersonaFacts":
        gold = [g.a for g in (getattr(persona, "gold", None) or [])]
        return cls(name=getattr(persona, "name", None),
                   terms=persona_terms(passages, persona) if grounded else None,
                   gold_grams=set().union(*(ngrams(a, 8) for a in gold)) if gold else set())


def candidate_reason(rec: dict, cand: dict, cfg, language: str, support: str | None,
                     relevance: float | None, facts: PersonaFacts | None = None) -> str | None:
    """The first gate a candidate answer fails, or None."""
    f = facts or PersonaFacts()
    name, terms = f.name, f.terms
    r = {**rec, "response": cand.get("response")}
    reason = structure_problem(r)
    if reason:
        return reason
    text, q = r["response"], r["question"]
    n = len(text.split())
    checks = (
        ("debris", lambda: debris_reason(text) or template_leak(text)),
        ("meta_talk", lambda: bool(_META.search(text)) or recites_instructions(text)),
        ("copied_example", lambda: rec.get("pattern") != "backtranslation" and bool(ngrams(text, 8) & f.gold_grams)),
        ("cut_off", lambda: rec.get("pattern") != "backtranslation" and cut_off(text)),
        ("too_short", lambda: n < cfg.min_answer_words),
        ("too_long", lambda: n > cfg.max_answer_words),
        ("language", lambda: not language_ok(text, language)),
        ("repetitive", lambda: repetitive(text)),
        ("echoes_question", lambda: echoes(q, text)),
        ("identity_break", lambda: identity_break(text) or bool(_SELF_MACHINE.search(text))),
        ("not_in_voice", lambda: (rec.get("pattern") in _VOICE and not _FIRST.search(text)
                                  and bool(_THIRD.search(text))) or third_person_self(text, name)),
        ("knows_later", lambda: rec.get("pattern") != "backtranslation" and knows_later(text, rec)),
        ("gave_in", lambda: rec.get("pattern") == "anti_induction" and gave_in(q, text, rec.get("subtype"))),
        ("unsupported", lambda: support is not None and (unsupported_share(text, support) or 0) > cfg.max_unsupported),
        # an own-word row's cheap question is cut from its own span (ownwords.span_question)
        ("off_topic", lambda: relevance is not None and relevance < cfg.min_relevance
         and not (rec.get("pattern") == "backtranslation" and rec.get("question_source") == "template")),
        ("ungrounded", lambda: terms is not None and rec.get("pattern") != "backtranslation"
         and ungrounded(q, text, terms)),
        ("judge_inconsistent", lambda: cfg.judge and cand.get("judge") is not None
         and not cand["judge"].get("consistent", False)),
    )
    return next((name for name, failed in checks if failed()), None)


def candidates(rec: dict) -> list[dict]:
    return rec.get("candidates") or [{"response": rec.get("response"), "analysis": rec.get("analysis"),
                                      "judge": rec.get("judge")}]


def _support(rec: dict, by_id: dict, persona) -> str | None:
    """Text a knowledge answer may draw its facts from: its retrieved passages, the question and the
    persona's own description of this stage. Only 'ordinary' (factual) answers are checked."""
    if rec.get("pattern") != "ordinary" or not rec.get("knowledge_ids"):
        return None
    parts = [by_id[i]["text"] for i in rec["knowledge_ids"] + (rec.get("style_ids") or []) if i in by_id]
    parts.append(rec["question"])
    if persona is not None:
        st = persona.stage(rec["stage"]) if rec.get("stage") else persona.stages[-1]
        parts += [persona.name, persona.identity, st.label, st.period, st.knows]
    return "\n".join(parts)


def _relevances(records: list[dict], cfg) -> list[list[float | None]]:
    """Question/candidate embedding similarity for every candidate (None when the gate is off)."""
    from kit.text import embed_available, pair_similarity

    cands = [candidates(r) for r in records]
    if cfg.min_relevance <= 0 or not embed_available():
        return [[None] * len(c) for c in cands]
    flat = [(r["question"] or "", c.get("response") or "") for r, cs in zip(records, cands) for c in cs]
    sims = iter(pair_similarity([q for q, _ in flat], [a for _, a in flat], where="recipe: construct.min_relevance"))
    return [[next(sims) for _ in cs] for cs in cands]


def candidate_reasons(records: list[dict], cfg, language: str, retriever, persona=None) -> list[list[tuple]]:
    """Per record, per candidate: (first failed gate or None, relevance)."""
    by_id = {p["id"]: p for p in getattr(retriever, "passages", [])}
    facts = PersonaFacts.of(persona, list(by_id.values()), getattr(cfg, "grounded", False))
    out = []
    for rec, rels in zip(records, _relevances(records, cfg)):
        support = _support(rec, by_id, persona)
        out.append([(candidate_reason(rec, c, cfg, language, support, rel, facts), rel)
                    for c, rel in zip(candidates(rec), rels)])
    return out


def apply_filters(records: list[dict], cfg, language: str, retriever, persona=None) -> tuple[list[dict], Counter, Counter]:
    """(kept records, record drops by reason, candidate rejections by gate incl. rescued ones)."""
    drops: Counter = Counter()
    gates: Counter = Counter()
    survivors = []
    for rec, checked in zip(records, candidate_reasons(records, cfg, language, retriever, persona)):
        for i, (cand, (why, rel)) in enumerate(zip(candidates(rec), checked)):
            if why is None:
                survivors.append({**rec, **{k: cand.get(k) for k in ("response", "analysis", "judge")},
                                  "relevance": rel, "chosen_candidate": i})
                gates["best_of_rescued"] += bool(i)
                break
            gates[why] += 1
        else:
            drops[checked[0][0]] += 1
    kept = dedup(survivors, cfg.dedup_threshold, retriever, drops)
    return kept, drops, +gates


def dedup(records: list[dict], threshold: float, retriever, drops: Counter) -> list[dict]:
    """Greedy in order: drop a record whose question+response is ≥ threshold to a kept one."""
    if not records:
        return []
    vecs = retriever.vectors([r["question"] + "\n" + r["response"] for r in records])
    kept, kept_vecs = [], []
    for rec, v in zip(records, vecs):
        if any(retriever.cosine(v, u) >= threshold for u in kept_vecs):
            drops["near_duplicate"] += 1
            continue
        kept.append(rec)
        kept_vecs.append(v)
    return kept
