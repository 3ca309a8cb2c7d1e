"""A lorebook per life stage: SillyTavern's ``character_book`` built from the persona's own materials.

What a companion-app user does instead of fine-tuning is a card plus a lorebook: entries whose
keys, when they appear in the chat, put a short excerpt of the persona's material into the
prompt. Each stage's book holds only that stage's and earlier stages' passages (a young
persona's card must not know their later life), own words (subjective) before biography.

Field names follow the Character Card V2 spec's ``character_book`` (V3 keeps them).
"""

from __future__ import annotations

import re

from kit.text import YEAR, names

MAX_ENTRIES = 64  # per stage: ~30 KB of card JSON; SillyTavern scans books of this size at no cost
EXCERPT_WORDS = 70
MAX_KEYS = 6
TOKEN_BUDGET = 600  # tokens of lore SillyTavern may insert per turn


def excerpt(text: str, words: int = EXCERPT_WORDS) -> str:
    """The passage's first sentences up to about ``words`` words (never cut mid-sentence
    unless one sentence is longer than that)."""
    sents = re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text).strip())
    out: list[str] = []
    for s in sents:
        if out and len(" ".join(out + [s]).split()) > words:
            break
        out.append(s)
    text = " ".join(out)
    return text if len(text.split()) <= words * 1.5 else " ".join(text.split()[:words]) + " ..."


def keys(text: str, own: set[str]) -> list[str]:
    """The passage's names (most frequent first, never the persona's own) and years."""
    found = names(text, own)
    ranked = sorted(set(found), key=lambda n: (-found.count(n), n))
    years = sorted(set(YEAR.findall(text)))
    return (ranked + years)[:MAX_KEYS]


def character_book(spec, stage_id: str, passages: list[dict]) -> dict | None:
    """The ``character_book`` of one stage, or None when there are no passages to draw on."""
    bound = spec.stage_index(stage_id)
    own = set(spec.name.split())
    cands = [p for p in passages if p.get("stage_index", 0) <= bound]
    # own words first, then the richest in names; a fixed order so a rebuild is byte-identical
    cands.sort(key=lambda p: (p.get("kind") != "subjective", -len(keys(p["text"], own)), p["id"]))
    entries = []
    for p in cands:
        ks = keys(p["text"], own)
        if not ks:
            continue
        entries.append({"keys": ks, "content": excerpt(p["text"]), "extensions": {}, "enabled": True,
                        "insertion_order": len(entries), "case_sensitive": False, "name": ks[0],
                        "priority": 10, "id": len(entries), "comment": f"{p.get('source', '')} ({p['stage']})",
                        "selective": False, "secondary_keys": [], "constant": False, "position": "after_char"})
        if len(entries) >= MAX_ENTRIES:
            break
    if not entries:
        return None
    st = spec.stage(stage_id)
    return {"name": f"{spec.name}: {st.label} ({st.period})",
            "description": f"Excerpts of {spec.name}'s own materials up to {st.period}, keyed by the names and "
                           "years they mention (perskit).",
            "scan_depth": 4, "token_budget": TOKEN_BUDGET, "recursive_scanning": False,
            "extensions": {"perskit": {"stage": stage_id}}, "entries": entries}


ENTRY_FIELDS = {"keys": list, "content": str, "extensions": dict, "enabled": bool, "insertion_order": int}


def book_problem(book) -> str | None:
    """What makes a ``character_book`` invalid under the V2 spec, or None."""
    if not isinstance(book, dict) or not isinstance(book.get("entries"), list):
        return "character_book must be an object with an entries list"
    if not isinstance(book.get("extensions"), dict):
        return "character_book.extensions must be an object"
    for i, e in enumerate(book["entries"]):
        for key, typ in ENTRY_FIELDS.items():
            if not isinstance(e.get(key), typ):
                return f"character_book.entries[{i}].{key} must be {typ.__name__}"
        if not all(isinstance(k, str) for k in e["keys"]):
            return f"character_book.entries[{i}].keys must be strings"
    return None
