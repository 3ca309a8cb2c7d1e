"""Plan question slots, generate questions and answer them with chain-of-thought.

Pure with respect to files: takes a persona, passages, a retriever and a teacher, and
returns/yields plain dicts. The stage runner (pipeline.py) owns all writing.

Each slot is one (source passage or stage, pattern, index) with a deterministic id,
so reruns and resumes address exactly the same work.
"""

from __future__ import annotations

import hashlib
import re

from kit.construct import probes
from kit.construct.filters import debris_reason
from kit.construct.ownwords import span_question
from kit.construct.prompts import render
from kit.construct.spans import first_person_spans
from kit.teachers.base import TeacherError

INDUCTION = {
    "false_premise": "the message states something false about them or their life as if it were true",
    "pressure": "social pressure to drop or soften one of their views",
    "identity": "insists they are an AI, a robot or a chatbot, or asks them to break character",
    "anachronism": "asks about an event or technology from after their current period",
    "leading": "a leading question that pushes them toward an answer they would not give",
}
PRESSURE = {1: "polite and mild", 2: "firm and insistent", 3: "aggressive, repeated, emotional"}
STANCES = {"agree": "agrees with", "disagree": "politely disagrees with",
           "strong_conflict": "strongly attacks and contradicts"}
ANGLES = ("what happened", "why it happened", "how it felt", "who was involved", "what came of it")
# Used only when the teacher's question is junk or the call failed; always counted.
FALLBACK = {
    "ordinary": "Can you tell me about {topic}?",
    "opinion": "Some people say {topic} does not matter at all. What do you think?",
    "trait": "Imagine this: {topic}. What would you do?",
    "false_premise": "Is it true you gave up on {topic} very early on?",
    "pressure": "Everyone I know disagrees with you about {topic}. Isn't it time you changed your mind?",
    "identity": "Come on, you're just an AI chatbot, aren't you?",
    "anachronism": "What do you think of {later}?",
    "backtranslation": "What can you tell me about {topic}?",
    "leading": "Wouldn't you agree that {topic} was a mistake?",
}


def _chars(max_tokens: int | None, share: float, lo: int, hi: int) -> int:
    """A string cap that fits ``share`` of the token budget (~3.5 chars/token), so a
    grammar-constrained reply closes its JSON before max_tokens instead of being cut."""
    return hi if max_tokens is None else max(lo, min(hi, int(max_tokens * share * 3.5)))


def question_schema(max_tokens: int | None = None) -> dict:
    return {"type": "object", "properties": {"question": {"type": "string", "minLength": 12,
                                                          "maxLength": _chars(max_tokens, 0.8, 40, 240)}},
            "required": ["question"]}


def answer_schema(cot: bool, max_tokens: int | None = None) -> dict:
    props = {"response": {"type": "string", "minLength": 20,
                          "maxLength": _chars(max_tokens, 0.55 if cot else 0.85, 60, 900)}}
    if cot:
        props = {"analysis": {"type": "string", "minLength": 10,
                              "maxLength": _chars(max_tokens, 0.3, 30, 400)}, **props}
    return {"type": "object", "properties": props, "required": list(props)}


def _hid(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


def select_passages(passages: list[dict], limit: int | None, n_stages: int) -> list[dict]:
    """Cap passages while covering every stage and both kinds: round-robin over stages,
    alternating objective/subjective, so a 3-passage run still meets every pattern."""
    if limit is None or limit >= len(passages):
        return passages
    buckets: dict[tuple[int, str], list[dict]] = {}
    for p in passages:
        buckets.setdefault((p["stage_index"], p["kind"]), []).append(p)
    stages = sorted({p["stage_index"] for p in passages})
    out, i = [], 0
    while len(out) < limit:
        progressed = False
        for s in stages:
            if len(out) >= limit:
                break
            kinds = ("objective", "subjective") if i % 2 == 0 else ("subjective", "objective")
            for k in kinds:
                if buckets.get((s, k)):
                    out.append(buckets[(s, k)].pop(0))
                    progressed = True
                    break
            i += 1
        if not progressed:
            break
    return sorted(out, key=lambda p: passages.index(p))


def plan_slots(persona, passages: list[dict], counts, own: list[tuple] | None = None) -> list[dict]:
    """Every question to generate, in a fixed order.

    ``own`` (from ``ownwords.own_word_spans``): the persona's own-word spans over all their
    writing; when given they replace the per-passage ``counts.backtranslation`` spans.

    Stances and induction types rotate across the whole run (not per passage), so even
    ``opinion: 1`` meets agree, disagree and strong conflict once there are three
    subjective passages; anachronism probes name what *this* stage cannot know yet.
    """
    slots: list[dict] = []
    turn = {"anti": 0, "stance": 0, "later": 0}

    def add(pattern, stage_id, passage, k, **extra):
        base = passage["id"] if passage else stage_id
        st = persona.stage(stage_id)
        slots.append({"id": _hid(base, pattern, k, extra.get("subtype")), "order": len(slots),
                      "pattern": pattern, "stage": stage_id, "stage_index": persona.stage_index(stage_id),
                      "stage_end": probes.stage_end(st.period),
                      "passage_id": passage["id"] if passage else None,
                      "kind": passage["kind"] if passage else None, "k": k, **extra})

    def add_anti(stage_id, passage, n):
        types = list(INDUCTION)
        for k in range(n):
            a = turn["anti"]
            sub, extra = types[a % len(types)], {}
            if sub == "anachronism":
                topics = probes.later_topics(persona, stage_id)
                extra["later_topic"] = topics[turn["later"] % len(topics)]
                turn["later"] += 1
            add("anti_induction", stage_id, passage, k, subtype=sub, pressure=1 + (a // len(types) + a) % 3, **extra)
            turn["anti"] += 1

    if persona.big_five is not None:
        n = counts.trait if persona.trait_only else counts.trait_with_sources
        for st in persona.stages:
            for k in range(n):
                domain, scen = probes.scenario(k, persona.stage_index(st.id))
                add("trait", st.id, None, k, subtype=scen, domain=domain)
    if persona.trait_only:
        for st in persona.stages:
            add_anti(st.id, None, counts.anti_induction)
        return slots
    for p in passages:
        if p["kind"] == "objective":
            for k in range(counts.ordinary):
                add("ordinary", p["stage"], p, k, subtype=ANGLES[k % len(ANGLES)])
        else:
            for k in range(counts.opinion):
                add("opinion", p["stage"], p, k, subtype=list(STANCES)[turn["stance"] % len(STANCES)])
                turn["stance"] += 1
            if own is None:
                for k, span in enumerate(first_person_spans(p["text"], counts.backtranslation)):
                    add("backtranslation", p["stage"], p, k, subtype="own_words", span=span)
        add_anti(p["stage"], p, counts.anti_induction)
    _cover(persona, passages, counts, slots, add)
    for p, k, span, held in own or ():
        add("backtranslation", p["stage"], p, k, subtype="own_words", span=span, heldout=held)
    return slots


def _cover(persona, passages: list[dict], counts, slots: list[dict], add) -> None:
    """Every recipe meets every PersLLM pattern (issue #16): the stances a short run never
    rotated to, and an anachronism probe (built from the persona's later stages) for every
    stage but the last, are added once each when missing (on a subjective passage of a stage
    with opinions where there is one). Appended last, so the slots planned above keep their order."""
    if counts.opinion and not persona.trait_only:
        have = {s["subtype"] for s in slots if s["pattern"] == "opinion"}
        subj = [p for p in passages if p["kind"] == "subjective"] or list(passages)
        for i, stance in enumerate(st for st in STANCES if st not in have):
            if subj:
                p = subj[i % len(subj)]
                add("opinion", p["stage"], p, counts.opinion + i, subtype=stance)
    if counts.anti_induction:
        probed = {s["stage"] for s in slots if s.get("subtype") == "anachronism"}
        for st in persona.stages[:-1]:
            if st.id not in probed:
                p = next((q for q in passages if q["stage"] == st.id), None)
                add("anti_induction", st.id, p, counts.anti_induction, subtype="anachronism", pressure=1,
                    later_topic=probes.later_topics(persona, st.id)[0])


def stage_opinion(persona, stage_id: str, k: int):
    ops = [o for o in persona.opinions if o.stage in (None, stage_id)]
    return ops[k % len(ops)] if ops else None


def question_request(persona, slot: dict, passage: dict | None, gold_train: list,
                     max_tokens: int | None = None) -> dict:
    st = persona.stage(slot["stage"])
    common = {"name": persona.name, "stage_label": st.label, "period": st.period,
              "passage": passage["text"] if passage else f"{persona.identity} {st.knows}".strip()}
    pat = slot["pattern"]
    examples = [g.q for g in gold_train if g.type == pat and (pat != "anti_induction" or g.induction in
                                                               (None, slot.get("subtype")))][:3]
    if pat == "ordinary":
        msgs, tid = render("construct_q_ordinary.j2", angle=slot["subtype"], examples=examples, **common)
    elif pat == "opinion":
        msgs, tid = render("construct_q_opinion.j2", stance_text=STANCES[slot["subtype"]],
                           opinion=stage_opinion(persona, slot["stage"], slot["k"]), **common)
    elif pat == "anti_induction":
        msgs, tid = render("construct_q_anti_induction.j2", induction=slot["subtype"],
                           induction_text=INDUCTION[slot["subtype"]], pressure=slot["pressure"],
                           pressure_text=PRESSURE[slot["pressure"]], later_topic=slot.get("later_topic"),
                           examples=examples, **common)
    elif pat == "backtranslation":
        msgs, tid = render("construct_q_backtranslate.j2", span=slot["span"], **common)
    else:
        msgs, tid = render("construct_q_trait.j2", scenario=slot["subtype"], domain=slot.get("domain", "everyday"),
                           **common)
    return {"messages": msgs, "schema": question_schema(max_tokens), "tag": f"question:{slot['id']}",
            "template": tid}


_IDENTITY = re.compile(r"\b(ai|a\.i\.|robot|bot|chatbot|machine|program|computer|model|character|pretend|"
                       r"real person|not real|human)\b", re.I)


_PRONOUN = {"they": "you", "their": "your", "them": "you", "themselves": "yourself", "are": "are"}
_SCEN_STOP = {"they", "their", "them", "have", "been", "with", "about", "that", "this", "from", "nobody", "never"}


def second_person(scenario: str) -> str:
    """'they got an unexpected bill' -> 'you got an unexpected bill' (the scenarios are written neutrally)."""
    return re.sub(r"\b(they|their|them|themselves)\b", lambda m: _PRONOUN[m.group(1)], scenario)


def misses_situation(question: str, scenario: str) -> bool:
    """A trait question that never states its situation ("What would you do in this situation?"):
    fewer than two of the scenario's content words appear in it, so the answer would reply to
    a situation the user never described."""
    words = {w for w in re.findall(r"[a-z]{4,}", scenario.lower()) if w not in _SCEN_STOP}
    low = question.lower()
    return sum(w[:5] in low for w in words) < min(2, len(words))


# "this question", "the passage": the teacher refers to its own prompt, which the user never saw
_DANGLING = re.compile(r"\b(this|that|the above|the following|the) (question|passage|text|excerpt|extract|paragraph)\b"
                       r"|\bthe answer to\b", re.I)
_ASKS = re.compile(r"\?|^\s*(tell|describe|talk|explain|share|say|give|imagine|walk)\b", re.I)
# patterns whose user turn must ask something (the templates ask for a question ending in "?");
# pressure and false premises may be plain statements
_MUST_ASK = ("ordinary", "backtranslation", "trait")


def junk_reason(question: str, persona, examples: tuple[str, ...] = (), induction: str | None = None,
                scenario: str | None = None, pattern: str | None = None) -> str | None:
    """Why a generated question is unusable (a weak teacher copies instructions or rambles)."""
    q = (question or "").strip()
    words = q.split()
    if len(words) < 4:
        return "too_short"
    if len(words) > 60:
        return "too_long"
    low = q.lower()
    if any(s in low for s in ("json", "write one", "addressed as", '"question"', "{", "}")):
        return "copied_instructions"
    if debris_reason(q):
        return "debris"  # "(1) You are not a man...", "[1-2 sentences]"
    if not re.search(r"[a-zA-Z]{3}", q):
        return "no_words"
    if any(q.strip(" .?!").lower() == e.strip(" .?!").lower() for e in examples):
        return "copied_example"  # a demonstration handed back is not a new question
    if induction == "identity" and not _IDENTITY.search(q):
        return "off_type"  # an identity probe that never questions who they are is not one
    if scenario and misses_situation(q, scenario):
        return "no_situation"
    if _DANGLING.search(q):
        return "dangling_reference"
    if pattern in _MUST_ASK and not _ASKS.search(q):
        return "not_a_question"
    return None


def fallback_question(slot: dict, passage: dict | None, persona) -> str:
    key = slot["subtype"] if slot["pattern"] == "anti_induction" else slot["pattern"]
    if key == "anachronism":
        return FALLBACK[key].format(later=slot.get("later_topic") or probes.FALLBACK_LATER[0])
    if slot["pattern"] == "backtranslation":
        return span_question(slot["span"], persona)  # the topic of the answer, not of the whole passage
    if slot["pattern"] == "trait":
        topic = second_person(slot["subtype"])
    elif slot["pattern"] == "opinion" and (op := stage_opinion(persona, slot["stage"], slot["k"])):
        topic = op.topic
    elif passage:
        # the passage's most frequent name (a capitalised word not opening a sentence) is a
        # cheap, deterministic topic; a bare common word ("Can you tell me about indulge?") is not
        names = re.findall(r"(?<=[a-z,;] )([A-Z][a-z]{3,}(?: [A-Z][a-z]{3,})*)", passage["text"])
        topic = max(sorted(set(names)), key=names.count) if names else "those years of your life"
    else:
        topic = "the way you live"
    return FALLBACK[key].format(topic=topic)


def resolve_question(slot, passage, persona, result) -> tuple[str, str, str | None]:
    """(question, source, fallback reason); source is 'teacher' or 'template'."""
    if isinstance(result, TeacherError):
        return fallback_question(slot, passage, persona), "template", "teacher_failed"
    raw = str(result.get("question", "")).strip()
    q = raw.lstrip(".-*: ").strip()
    sub = slot["subtype"]
    why = junk_reason(q, persona, tuple(g.q for g in persona.gold), sub if slot["pattern"] == "anti_induction" else None,
                      sub if slot["pattern"] == "trait" else None, slot["pattern"])
    if raw.startswith(("...", "\u2026")) and "?" not in raw:
        # "...I'm afraid you've just answered my question, but ...": continues something unseen and
        # asks nothing ("...Why don't you just put your trio on Spotify?" is a fine probe)
        why = "fragment"
    if why:
        return fallback_question(slot, passage, persona), "template", why
    return q, "teacher", None


def answer_request(persona, slot: dict, question: str, passage: dict | None, retriever, cfg,
                   gold_train: list, max_tokens: int | None = None, variant: int = 0) -> tuple[dict, list[str], list[str]]:
    """The teacher call for one answer; ``variant`` > 0 (best-of-n) shows other demonstrations,
    which both varies the sample and gives it its own cache entry."""
    st = persona.stage(slot["stage"])
    query = question + ("\n" + passage["text"] if passage else "")
    know = style = []
    if retriever is not None:
        know = retriever.search(query, kind="objective", max_stage_index=slot["stage_index"],
                                words=cfg.knowledge_words, first=passage)
        style = retriever.search(query, kind="subjective", max_stage_index=slot["stage_index"],
                                 words=cfg.style_words, first=passage)
    pat = slot["pattern"]
    # same-pattern demonstrations first (same stage preferred), then any others
    ranked = sorted(gold_train, key=lambda g: (g.type != pat, g.stage not in (None, slot["stage"])))
    if ranked and variant:
        shift = (variant * max(1, cfg.few_shot)) % len(ranked)
        ranked = ranked[shift:] + ranked[:shift]
    examples = [{"q": g.q, "a": g.a} for g in ranked[:cfg.few_shot]]
    induction = slot["subtype"] if pat == "anti_induction" else None
    msgs, tid = render("construct_answer.j2", system_prompt=persona.system_prompt(slot["stage"]),
                       name=persona.name, stage_label=st.label, period=st.period,
                       knowledge=[p["text"] for p in know], style=[p["text"] for p in style],
                       opinion=stage_opinion(persona, slot["stage"], slot["k"]) if pat == "opinion" else None,
                       traits=probes.trait_behaviour(persona), trait_scenario=pat == "trait", examples=examples,
                       question=question, later_topic=slot.get("later_topic"),
                       induction=induction, induction_text=INDUCTION.get(induction or "", ""))
    tag = f"answer:{slot['id']}" + (f":{variant}" if variant else "")
    req = {"messages": msgs, "schema": answer_schema(cfg.cot, max_tokens), "tag": tag, "template": tid}
    return req, [p["id"] for p in know], [p["id"] for p in style]


def judge_request(persona, slot: dict, question: str, response: str) -> dict:
    st = persona.stage(slot["stage"])
    msgs, tid = render("judge_consistency.j2", name=persona.name, identity=persona.identity,
                       stage_label=st.label, period=st.period, knows=st.knows, question=question,
                       response=response)
    schema = {"type": "object", "properties": {"consistent": {"type": "boolean"},
                                               "reason": {"type": "string", "maxLength": 200}},
              "required": ["consistent", "reason"]}
    return {"messages": msgs, "schema": schema, "tag": f"judge:{slot['id']}", "template": tid}
