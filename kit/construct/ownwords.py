"""The persona's own words as the backbone of construct: every usable first-person span of
every subjective source becomes a row, and whole passages are held out for the voice metrics.

A 135M teacher cannot write a persona's answer, but the persona already wrote thousands of
them: each span of their own first-person prose is an answer, the teacher writes only the
question it answers (instruction back-translation), and a question cut from the span's own
named things stands in when the teacher's fails its gate.

Held out are *whole* subjective passages, stratified by stage: a span next to a trained span
shares its context, so per-question splitting would flatter the voice metric. Nothing from a
held-out passage may reach SFT, DPO or the teacher's demonstrations; ``leaks`` proves it on
the written rows (construct fails the run on a leak).
"""

from __future__ import annotations

from collections import defaultdict

from kit.construct.filters import ngrams
from kit.construct.spans import first_person_spans
from kit.construct.split import _rank, holdout_count
from kit.text import YEAR, names

LEAK_N = 8  # an 8-word run shared by chance between two real passages is rare; shorter runs are not


def heldout_passages(passages: list[dict], share: float, seed: int, gold_texts: list[str]) -> set[str]:
    """Ids of the subjective passages held out whole: ``round(n * share)`` per stage (at least
    one where a stage has two or more). A passage sharing an 8-word run with a gold answer is
    never held out: gold answers are training rows and teacher demonstrations."""
    gold = set().union(*(ngrams(a, LEAK_N) for a in gold_texts)) if gold_texts else set()
    by_stage: dict[str, list[dict]] = defaultdict(list)
    for p in passages:
        if p["kind"] == "subjective" and not ngrams(p["text"], LEAK_N) & gold:
            by_stage[p["stage"]].append(p)
    out: set[str] = set()
    for ps in by_stage.values():
        ranked = sorted(ps, key=lambda p: _rank(p["id"], seed))
        out.update(p["id"] for p in ranked[:holdout_count(len(ps), share)])
    return out


def own_word_spans(passages: list[dict], heldout: set[str], budget: int | None) -> list[tuple[dict, int, str, bool]]:
    """(passage, k, span, held out) for every usable span of every subjective passage. Training passages
    give at most ``budget`` spans (None: all), taken round-robin over passages so a small budget
    still spreads over the whole life; held-out passages give all theirs (voice items)."""
    cut = {p["id"]: first_person_spans(p["text"], None) for p in passages if p["kind"] == "subjective"}
    train = [p for p in passages if p["id"] in cut and p["id"] not in heldout]
    picked: list[tuple[dict, int, str, bool]] = []
    depth = 0
    while budget is None or len(picked) < budget:
        layer = [(p, depth, cut[p["id"]][depth], False) for p in train if depth < len(cut[p["id"]])]
        if not layer:
            break
        picked += layer if budget is None else layer[:budget - len(picked)]
        depth += 1
    held = [(p, k, s, True) for p in passages if p["id"] in heldout for k, s in enumerate(cut.get(p["id"], []))]
    order = {p["id"]: i for i, p in enumerate(passages)}
    return sorted(picked + held, key=lambda t: (order[t[0]["id"]], t[1]))


def span_question(span: str, persona) -> str:
    """A question a person would ask, cut from the span's own named things: its most frequent
    name (not the persona's own), else a year it names, else the time of life it is from
    (the row's stage prompt says which)."""
    found = names(span, set(persona.name.split()))
    if found:
        return f"What do you remember about {max(sorted(set(found)), key=found.count)}?"
    years = YEAR.findall(span)
    if years:
        return f"What happened in {years[0]}?"
    return "What do you remember from that time of your life?"


def reask_off_topic(records: list[dict], min_relevance: float, persona) -> int:
    """Own-word records whose teacher question does not fit their span (MiniLM similarity below
    ``min_relevance``) get the span's cheap question instead of being dropped: the answer is the
    persona's own words, only the question was bad. Returns how many (counted as fallbacks)."""
    from kit.text import embed_available, pair_similarity

    own = [r for r in records if r.get("pattern") == "backtranslation" and r.get("question_source") == "teacher"]
    if not own or min_relevance <= 0 or not embed_available():
        return 0
    sims = pair_similarity([r["question"] for r in own], [r["response"] for r in own],
                           where="recipe: construct.min_relevance")
    n = 0
    for r, sim in zip(own, sims):
        if sim < min_relevance:
            r.update(question=span_question(r["response"], persona), question_source="template",
                     question_issue="off_topic")
            n += 1
    return n


def leaks(rows: list[dict], heldout: list[dict], elsewhere: list[str], n: int = LEAK_N) -> list[tuple]:
    """(row id, passage id) for each row sharing an ``n``-word run with a held-out passage.

    Only runs unique to the held-out passages count: a phrase that also stands in a trained
    passage, a gold answer or the persona's description ("the Hampton Normal and Agricultural
    Institute") proves nothing about where a row came from."""
    common = set().union(*(ngrams(t, n) for t in elsewhere)) if elsewhere else set()
    index: dict[tuple, str] = {}
    for p in heldout:
        for g in ngrams(p["text"], n) - common:
            index.setdefault(g, p["id"])
    out = []
    for r in rows:
        text = " ".join(str(m.get("content", "")) for m in r.get("messages", []))
        hit = next((index[g] for g in ngrams(text, n) if g in index), None)
        if hit is not None:
            out.append(((r.get("meta") or {}).get("id"), hit))
    return out
