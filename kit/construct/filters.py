"""Filters over answered records; every drop is counted by reason.

Order: structure → length → language → repetition → echo → character breaks → judge → near-duplicates
(cosine ≥ threshold on question+response, as PersLLM). Deterministic given the
records' order, so a resumed run filters exactly like an uninterrupted one.
"""

from __future__ import annotations

import re
from collections import Counter

# frequent function words: a cheap check that an "en" answer is English prose
_EN = set("the a an and or but of to in on at for with is was were be been i you he she it we they my me "
          "not that this have had do did so as if what when there their our your just very".split())
_AI = re.compile(r"\b(as an ai|an ai (language )?model|language model|i am an ai|i'm an ai|"
                 r"as a (large )?language model|i am a chatbot|i'm a chatbot|openai)\b", re.I)
_LEAK = re.compile(r'("analysis"|"response"|\{|\}|^\s*(assistant|user|system)\s*:|<\|)', re.I | re.M)


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
    """The reply mostly restates the question instead of answering it."""
    q, r = set(re.findall(r"\w+", question.lower())), re.findall(r"\w+", response.lower())
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


def apply_filters(records: list[dict], cfg, language: str, retriever) -> tuple[list[dict], Counter]:
    """(kept records, drop counts by reason)."""
    drops: Counter = Counter()
    survivors = []
    for rec in records:
        reason = structure_problem(rec)
        if reason is None:
            n = len(rec["response"].split())
            if n < cfg.min_answer_words:
                reason = "too_short"
            elif n > cfg.max_answer_words:
                reason = "too_long"
            elif not language_ok(rec["response"], language):
                reason = "language"
            elif repetitive(rec["response"]):
                reason = "repetitive"
            elif echoes(rec["question"], rec["response"]):
                reason = "echoes_question"
            elif _AI.search(rec["response"]):
                reason = "breaks_character"
            elif cfg.judge and rec.get("judge") is not None and not rec["judge"].get("consistent", False):
                reason = "judge_inconsistent"
        if reason:
            drops[reason] += 1
        else:
            survivors.append(rec)
    kept = dedup(survivors, cfg.dedup_threshold, retriever, drops)
    return kept, drops


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
