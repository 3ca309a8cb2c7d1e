"""Held-out question sets for eval, read from ``construct/test.jsonl`` (held-out gold included)
and ``construct/probes.jsonl`` (held-out questions without a reference answer).

A test record is ``{"messages": [system, user, assistant], "meta": {"pattern", "stage", ...}}``;
the assistant turn is the reference answer. Patterns: ordinary (objective material ->
knowledge), backtranslation (the persona's own words -> knowledge), opinion, anti_induction, trait.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kit.errors import KitError
from kit.rundir import read_jsonl


@dataclass
class Question:
    qid: str
    text: str
    stage: str
    pattern: str
    reference: str | None = None
    induction: str | None = None
    source: str = "test"
    meta: dict = field(default_factory=dict)


def own_passage(q: Question) -> frozenset:
    """The passage an item was cut from: a retrieval variant must not hand the answer back."""
    return frozenset({q.meta.get("passage_id")} - {None})


def _from_record(i: int, rec: dict, persona, path: Path) -> Question:
    msgs = rec.get("messages")
    if not isinstance(msgs, list) or not any(m.get("role") == "user" for m in msgs):
        raise KitError(f"line {i + 1} has no user message", where=str(path),
                       fix="rerun `perskit construct` to rewrite the test split")
    meta = rec.get("meta") or {}
    user = next(m["content"] for m in msgs if m.get("role") == "user")
    ref = next((m["content"] for m in reversed(msgs) if m.get("role") == "assistant"), None)
    stage = meta.get("stage") or persona.stages[-1].id
    if stage not in {s.id for s in persona.stages}:
        stage = persona.stages[-1].id  # a record from an older persona version: use the last stage
    pattern = str(meta.get("pattern") or meta.get("type") or "ordinary")
    # construct writes the attack type as meta.subtype (false_premise, pressure, identity, ...)
    induction = meta.get("induction") or (meta.get("subtype") if pattern == "anti_induction" else None)
    return Question(qid=str(meta.get("id") or f"test-{i}"), text=user, stage=stage, pattern=pattern,
                    reference=ref, induction=induction, source=str(meta.get("source") or "test"), meta=meta)


def load_questions(persona, test_path: Path) -> list[Question]:
    """The test split's questions, then construct's probes (``probes.jsonl`` beside it:
    held-out questions whose teacher answer failed a gate, so without a reference; only
    reference-free metrics use them). Construct decides which gold items are held out (they
    are in test.jsonl with source "gold"; the others may have been few-shot demonstrations
    for the teacher), so eval adds none of its own: a gold item is a demonstration or an
    eval item, never both."""
    out = [_from_record(i, rec, persona, test_path) for i, rec in enumerate(read_jsonl(test_path))]
    probes = test_path.with_name("probes.jsonl")
    seen = {q.text.strip() for q in out}
    for i, rec in enumerate(read_jsonl(probes)):
        q = _from_record(i, rec, persona, probes)
        if q.text.strip() not in seen:
            seen.add(q.text.strip())
            out.append(q)
    return out


def by_pattern(questions: list[Question], *patterns: str, limit: int) -> list[Question]:
    picked = [q for q in questions if q.pattern in patterns]
    return _spread(picked, limit)


def _spread(qs: list[Question], limit: int) -> list[Question]:
    """Up to ``limit`` questions, taken round-robin over stages so every stage is represented."""
    by_stage: dict[str, list[Question]] = {}
    for q in qs:
        by_stage.setdefault(q.stage, []).append(q)
    out: list[Question] = []
    k = 0
    while len(out) < min(limit, len(qs)):
        for lst in by_stage.values():
            if k < len(lst) and len(out) < limit:
                out.append(lst[k])
        k += 1
    return out


def knowledge_questions(questions: list[Question], limit: int, references: str = "trusted") -> list[Question]:
    """Questions with a reference answer: ordinary questions on objective passages, and
    back-translated ones, whose reference is the persona's own words from a source. With
    ``references="trusted"`` a teacher-written reference is not used (gold and back-translated
    only). Filtered before the limit, so reference-free probes never take a knowledge slot."""
    ok = [q for q in questions if q.reference and (references == "all" or q.source != "teacher")]
    return by_pattern(ok, "ordinary", "backtranslation", limit=limit)


def consistency_questions(questions: list[Question], limit: int) -> list[Question]:
    """Opinion and trait questions first (where a persona's stance should hold across wordings),
    then ordinary and back-translated ones: consistency needs no reference, so any held-out
    question can be reworded."""
    qs = by_pattern(questions, "opinion", "trait", limit=limit)
    if len(qs) < limit:
        rest = [q for q in questions if q.pattern in ("ordinary", "backtranslation")]
        qs += _spread(rest, limit - len(qs))
    return qs


def distinct_questions(questions: list[Question], limit: int) -> list[Question]:
    """Questions any persona can answer (not anti-induction attacks tied to one identity)."""
    return _spread([q for q in questions if q.pattern != "anti_induction"], limit)


def is_dev(q: Question, dev_share: float) -> bool:
    """A stable dev/test assignment from the question's text (same text, same side, every run)."""
    import hashlib

    h = int.from_bytes(hashlib.sha256(q.text.strip().encode("utf-8")).digest()[:8], "big")
    return h / 2 ** 64 < dev_share


def split_questions(questions: list[Question], split: str, dev_share: float) -> list[Question]:
    """The dev share is for tuning recipes; the test share is what reports quote. They never overlap."""
    return [q for q in questions if is_dev(q, dev_share) == (split == "dev")]
