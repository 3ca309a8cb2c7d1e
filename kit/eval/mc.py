"""Multiple-choice knowledge items built from the persona's own materials, scored by likelihood.

A sentence of the sources that names a year, a number or a name becomes an item: the value
is blanked, three distractors of the same type come from the same materials (years near the
right one, other numbers, other names), and each option is scored by the log-likelihood the
model gives it as the answer. No judge, no generation, no teacher.

Two forms per item, reported apart:
- ``memorised``: the source's own wording with a blank; the answer is the whole sentence with
  the option filled in (does the model hold the text?);
- ``extractable``: the sentence reworded into a second-person question; the answer is the
  option alone (can the model use the fact when asked differently?).
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass

from kit.text import YEAR, names, sentences

_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(?![\w,.]\d)")
_SECOND = {"i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself", "we": "you",
           "us": "you", "our": "your", "ours": "yours", "ourselves": "yourselves", "am": "are"}
BLANK = "___"


@dataclass
class Item:
    iid: str
    stage: str
    kind: str  # year | number | name
    sentence: str
    answer: str
    options: list[str]  # the answer among them, in a fixed shuffled order
    trained: bool = False  # the sentence stands in a training row's answer
    passage_id: str | None = None  # where it came from (a rag variant must not retrieve it)

    @property
    def correct(self) -> int:
        return self.options.index(self.answer)

    def memorised(self) -> tuple[str, list[str]]:
        """(question, one full answer per option): the source's wording, blanked."""
        q = f'Fill in the blank from what you know of your own life: "{self.sentence.replace(self.answer, BLANK, 1)}"'
        return q, [self.sentence.replace(self.answer, o, 1) for o in self.options]

    def extractable(self) -> tuple[str, list[str]]:
        """(question, the options themselves): the sentence turned to the second person."""
        blanked = second_person(self.sentence.replace(self.answer, BLANK, 1)).rstrip(" .!?")
        what = {"year": "Which year", "number": "What number", "name": "Who or what"}[self.kind]
        return f"{blanked}. {what} belongs in the blank? Answer in a few words.", [f"{o}." for o in self.options]


def second_person(text: str) -> str:
    def swap(m):
        w = m.group(0)
        rep = _SECOND.get(w.lower(), w)
        return rep[0].upper() + rep[1:] if w[0].isupper() and w.lower() != "i" else rep
    out = re.sub(r"\b(I|me|my|mine|myself|we|us|our|ours|ourselves|am)\b", swap, text)
    out = re.sub(r"\byou was\b", "you were", out)
    return out[0].upper() + out[1:] if out else out


def _slot(sentence: str) -> tuple[str, str] | None:
    """(kind, value) worth asking about: a year first, then a number, then a name."""
    if m := YEAR.search(sentence):
        return "year", m.group(1)
    if (m := _NUMBER.search(sentence)) and m.group(1) not in ("1", "0"):
        return "number", m.group(1)
    found = names(sentence)
    return ("name", max(found, key=len)) if found else None


def _rank(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def _distractors(kind: str, answer: str, sentence: str, pool: list[str], k: int, seed: int) -> list[str]:
    cands = [v for v in pool if v.lower() != answer.lower() and v not in sentence]
    if kind == "year":  # a plausible year: within thirty of the right one
        near = [v for v in cands if abs(int(v) - int(answer)) <= 30]
        cands = near if len(near) >= k else cands
    return sorted(cands, key=lambda v: _rank(seed, answer, v))[:k]


def build_items(passages: list[dict], persona_name: str, n: int, seed: int = 0, trained_texts=(),
                min_words: int = 8, max_words: int = 45) -> list[Item]:
    """Up to ``n`` items, spread over stages (round-robin, by hash within a stage); each
    sentence at most once, never one that names the persona (the blank would give it away)."""
    found: list[tuple[dict, str, str, str]] = []
    pools: dict[str, set] = defaultdict(set)
    seen = set()
    own = set(persona_name.split())
    for p in passages:
        for s in sentences(p["text"]):
            slot = _slot(s)
            if slot is None:
                continue
            pools[slot[0]].add(slot[1])
            if not min_words <= len(s.split()) <= max_words or s in seen or set(re.findall(r"\w+", s)) & own:
                continue
            seen.add(s)
            found.append((p, s, *slot))
    trained = " ".join(trained_texts)
    by_stage: dict[str, list[Item]] = defaultdict(list)
    for p, s, kind, value in found:
        wrong = _distractors(kind, value, s, sorted(pools[kind]), 3, seed)
        if len(wrong) < 3:
            continue
        opts = sorted([value, *wrong], key=lambda v: _rank(seed, s, "order", v))
        iid = _rank("mc", s)[:16]
        by_stage[p["stage"]].append(Item(iid, p["stage"], kind, s, value, opts, trained=s in trained,
                                         passage_id=p.get("id")))
    for items in by_stage.values():
        items.sort(key=lambda it: _rank(seed, it.iid))
    out: list[Item] = []
    while len(out) < n and any(by_stage.values()):
        for items in by_stage.values():
            if items and len(out) < n:
                out.append(items.pop(0))
    return out


def pick(option_logprobs: list[float]) -> int:
    """The option with the highest log-likelihood (ties: the first)."""
    return max(range(len(option_logprobs)), key=lambda i: option_logprobs[i])
