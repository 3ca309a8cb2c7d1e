"""What the PersLLM and BIG5-CHAT patterns ask about, built from the persona itself.

- Anachronism probes: named events, people and technology the persona meets only in its
  *later* stages (proper names from later stages' ``knows``), plus what a stage's own
  ``knows`` says it cannot know yet ("She cannot know ...: the Saltings Viaduct, space
  satellites, ..."). A generic "smartphones" probe is the last resort, not the default.
- Trait scenarios: everyday situations grouped by domain (BIG5-CHAT draws scenarios from
  many domains), and plain descriptions of how each Big Five level shows in behaviour.
"""

from __future__ import annotations

import re

from kit.spec.persona import TRAIT_NAMES, TRAITS

# Worded to belong to any century (a persona of the 1700s was asked about "a big party tonight"
# and "plans for the weekend"): no modern institutions, devices or leisure habits.
SCENARIOS = {
    "work": ("a piece of work they promised is suddenly wanted a week early",
             "a colleague criticised their work in front of others",
             "they are asked to take charge of a task nobody else wants"),
    "social": ("a neighbour invites them to a large gathering that evening", "two friends ask them to settle an argument",
               "a stranger starts talking to them on a long journey"),
    "everyday": ("their room or desk has become very untidy", "they got an unexpected bill",
                 "a day they had set aside for rest was taken up by others"),
    "novelty": ("they can try a dish they have never eaten", "someone suggests setting out at once on a journey "
                "to a place they have never seen", "a friend lends them a book about an idea they have never met"),
    "stress": ("they have to speak in front of a large audience", "a friend shares some bad news",
               "they made a mistake that others will soon notice"),
}
# (low, high) behaviour per trait, so a trait answer is told *how* the level shows
TRAIT_BEHAVIOUR = {
    "O": ("prefers the familiar and practical", "curious, drawn to new ideas and experiences"),
    "C": ("casual about plans and order", "careful, organised, checks things and keeps promises"),
    "E": ("reserved and quiet, prefers small company", "outgoing, talkative, energised by people"),
    "A": ("blunt and sceptical, puts the facts before feelings", "warm, trusting and accommodating"),
    "N": ("calm and steady under stress", "anxious, easily upset, worries"),
}
FALLBACK_LATER = ("smartphones and the internet",)
_NAME = re.compile(r"\b([A-Z][a-z]+(?: (?:of |& )?[A-Z][a-z]+){1,3})")
_SKIP = {"She", "He", "They", "Her", "His", "The", "Everything", "Ministry", "February", "January", "March",
         "April", "May", "June", "July", "August", "September", "October", "November", "December", "Moon"}
_CANNOT = re.compile(r"(?:cannot know|can't know|has never heard of|never heard of|knows nothing of)([^.]+)", re.I)
_LEAD = re.compile(r"^(and |or )?(has never heard of|never heard of|of|not|no|nor)\s+", re.I)


def stage_end(period: str) -> int | None:
    """The last year in a stage's period ('1958-1974' -> 1974), or None ('now')."""
    years = re.findall(r"\b(1[5-9]\d\d|20\d\d)\b", period or "")
    return int(years[-1]) if years else None


def _cannot_items(knows: str) -> list[str]:
    out = []
    for m in _CANNOT.finditer(knows or ""):
        body = m.group(1).split(":", 1)[-1]  # "anything after early 1957: not X, Y" -> the list
        for item in re.split(r",\s*|\s+or\s+|\s+and\s+", body):
            item = _LEAD.sub("", _LEAD.sub("", item.strip())).strip()
            if len(item) > 3 and not re.match(r"(her|his|their|its|anything)\b", item, re.I) and \
                    not re.fullmatch(r"[\d\s]+|(early|late|mid)? ?\d{4}", item):
                out.append(item)
    return out


def later_topics(persona, stage_id: str) -> list[str]:
    """Things this stage cannot know: its own 'cannot know' list interleaved with names that only
    later stages know, in a fixed order."""
    i = persona.stage_index(stage_id)
    own = _cannot_items(persona.stages[i].knows)
    known = " ".join(s.knows for s in persona.stages[:i + 1]) + " " + persona.identity
    name_words = set(persona.name.split())
    later: list[str] = []
    for st in persona.stages[i + 1:]:
        for m in _NAME.finditer(st.knows or ""):
            n = m.group(1)
            if n.split()[0] in _SKIP or set(n.split()) & name_words or n in known or n in later or len(n) < 5:
                continue
            later.append(n)
    merged = [t for pair in zip(own, later) for t in pair] + own[len(later):] + later[len(own):]
    seen, out = set(), []
    for t in merged:
        if t.lower() not in seen:
            seen.add(t.lower())
            out.append(t)
    return out or list(FALLBACK_LATER)


def scenario(k: int, stage_index: int) -> tuple[str, str]:
    """(domain, scenario) for the k-th trait slot of a stage: domains rotate first, so even two
    slots per stage cover two domains, and stages start at different domains."""
    domains = list(SCENARIOS)
    d = domains[(k + stage_index) % len(domains)]
    items = SCENARIOS[d]
    return d, items[(k // len(domains) + stage_index) % len(items)]


def trait_behaviour(persona) -> str:
    """Target levels with how they show: 'very high conscientiousness (careful, ...)'."""
    if persona.big_five is None:
        return ""
    sc = persona.big_five.scores()
    parts = []
    for t in TRAITS:
        v = sc[t]
        word = "very high" if v >= 4.5 else "high" if v >= 3.7 else "medium" if v > 2.3 else "low"
        how = TRAIT_BEHAVIOUR[t][1] if v >= 3.7 else TRAIT_BEHAVIOUR[t][0] if v <= 2.3 else "in between"
        parts.append(f"{word} {TRAIT_NAMES[t]} ({how})")
    return "; ".join(parts)
