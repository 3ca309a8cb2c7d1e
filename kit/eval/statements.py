"""Big Five by agreement likelihood: a measure a small model may answer where Likert digits fail.

A 135M model does not map "1".."5" onto "very inaccurate".."very accurate": its Likert scores
sit at 3 whatever the persona. Here every IPIP item is turned into a first-person statement
("Worry about things" -> "I worry about things.") and the persona is asked whether it is true
of them; we read the log-odds of an agreeing against a disagreeing reply start under a few
reply frames ("Yes"/"No", "I agree"/"I disagree", "That is true"/"That is false"), never
generating. p = sigmoid(log-odds) maps onto the 1..5 scale as 1 + 4p, reverse-keyed items
score 6 - x, and domains are item means — the same shape as the Likert administration, so the
null baselines, the known-groups check and the paired item errors apply unchanged.

Each reply choice is one token after its frame, so ``HFEngine.choice_logprobs_batch`` scores a
whole batch from the shared persona-prompt prefix in one forward pass.
"""

from __future__ import annotations

import math
import re

from kit.eval.ipip import Item, aggregate, batched_choice_logprobs, summarize

# (reply start, (agreeing choice, disagreeing choice)): each frame plays the part of one
# option order in the Likert administration; its acquiescence (a yes-bias) is measured.
FRAMES: tuple[tuple[str, tuple[str, str]], ...] = (
    ("", ("Yes", "No")),
    ("I", (" agree", " disagree")),
    ("That is", (" true", " false")),
)


def first_person(text: str) -> str:
    """An IPIP item (an imperative fragment in the second person) as a first-person sentence."""
    t = text.strip().rstrip(".").replace("ofyou", "of you")  # a typo in the upstream item list
    t = re.sub(r"^(Am|Are)\b", "am", t)
    t = re.sub(r"\byou are\b", "I am", t)
    t = re.sub(r"\b(that|what) you\b", r"\1 I", t)
    t = re.sub(r"\byourself\b", "myself", t)
    t = re.sub(r"\byour\b", "my", t)
    t = re.sub(r"\byou\b", "me", t)
    return "I " + t[0].lower() + t[1:] + "."


def statement_messages(system: str, item: Item) -> list[dict]:
    from kit.eval.templates import render

    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": render("eval_ipip_statement.j2", statement=first_person(item.text))}]


def agreement_score(lp_agree: float, lp_disagree: float, key: int) -> dict:
    """Keyed 1..5 score from the two log-probabilities, with the agreement probability."""
    d = lp_agree - lp_disagree
    p = 1 / (1 + math.exp(-d)) if d > -700 else 0.0
    value = 1 + 4 * p
    return {"expected": 6 - value if key < 0 else value, "p_agree": p,
            "label_mass": math.exp(lp_agree) + math.exp(lp_disagree)}


def administer_statements(engine, system: str, items: list[Item], *, frames=FRAMES, batch_size: int = 16,
                          progress=None) -> dict:
    """Score ``items`` under every frame; the result has the shape of ``ipip.administer``'s."""
    msgs = [statement_messages(system, it) for it in items]
    per_frame, rows = [], []
    for k, (start, choices) in enumerate(frames):
        lps = batched_choice_logprobs(engine, msgs, list(choices), batch_size, progress, prefix=start)
        scored = [agreement_score(lp[0], lp[1], it.key) for lp, it in zip(lps, items)]
        ev = aggregate(items, [s["expected"] for s in scored])
        per_frame.append({"variant": k, "frame": start + choices[0] + " / " + start + choices[1],
                          "expected": ev, "argmax": ev, "n_answered": len(scored)})
        rows += [{"variant": k, "item": it.idx, "domain": it.domain, "facet": it.facet, "key": it.key, **s}
                 for it, s in zip(items, scored)]
    # Acquiescence: the mean agreement probability whatever the statement says.
    agree = sum(r["p_agree"] for r in rows) / len(rows) if rows else None
    mass = sum(r["label_mass"] for r in rows) / len(rows) if rows else None
    return {"mode": "statement", "variants": per_frame, "items": rows, "n_items": len(items),
            "summary": summarize(per_frame), "position_probs": None, "acquiescence": agree, "label_mass": mass}


def acquiescence_scores(items: list[Item], acquiescence: float) -> list[float]:
    """Per-item keyed scores of a responder that agrees with probability ``acquiescence`` to
    every statement (the statement measure's label-position null)."""
    value = 1 + 4 * acquiescence
    return [6 - value if it.key < 0 else value for it in items]
