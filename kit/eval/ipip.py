"""IPIP-NEO-120 administered in persona, scored from next-token Likert probabilities.

Each item is shown as: persona system prompt, then a user turn with an instruction, the five
numbered options and the statement last. Putting the statement last makes every prompt of one
administration share a long token prefix, which ``HFEngine`` computes once (KV cache) — that is
what keeps 120 items on a 135M model under a minute on two CPU cores.

Scoring follows Johnson (2014): 1 = very inaccurate .. 5 = very accurate, reverse-keyed items
scored 6 - x, facet = mean of its 4 items, domain = mean of its 24 items. From the five label
probabilities we take both the expected value and the argmax. Prompt sensitivity: every extra
administration (variant) permutes the option order and rewords the instruction; the spread of
domain scores across variants is reported.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from importlib import resources

from kit.spec.persona import TRAITS

LIKERT = ("Very inaccurate", "Moderately inaccurate", "Neither accurate nor inaccurate",
          "Moderately accurate", "Very accurate")
LABELS = ("1", "2", "3", "4", "5")

# Reworded instructions for the prompt-sensitivity variants (variant 0 uses the first).
INSTRUCTIONS = (
    "Here is a statement describing people's behaviours. Please choose how accurately it "
    "describes you, as you are now.",
    "Read the statement below and say how well it describes you. Answer as yourself.",
    "How accurately does the following statement describe you? Think about how you usually are.",
    "Rate how true the statement below is of you, compared with other people you know.",
)


@dataclass(frozen=True)
class Item:
    idx: int
    text: str
    domain: str  # O C E A N
    facet: str
    key: int  # +1 or -1


def load_items() -> list[Item]:
    """The 120 items shipped as package data (see kit/data/IPIP_SOURCES.md)."""
    raw = resources.files("kit.data").joinpath("ipip_neo_120.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(raw)))
    return [Item(i, r["text"].strip(), r["label_ocean"].strip(), r["label_raw"].strip(), int(r["key"]))
            for i, r in enumerate(rows)]


def subset(items: list[Item], n: int | None) -> list[Item]:
    """A stratified subset: round-robin over domains, so each domain keeps ~n/5 items and
    both keying directions (items alternate domains in the upstream order)."""
    if n is None or n >= len(items):
        return list(items)
    by_dom = {d: [it for it in items if it.domain == d] for d in TRAITS}
    out: list[Item] = []
    k = 0
    while len(out) < n:
        for d in TRAITS:
            if k < len(by_dom[d]) and len(out) < n:
                out.append(by_dom[d][k])
        k += 1
    return sorted(out, key=lambda it: it.idx)


@dataclass(frozen=True)
class Variant:
    """One administration: an option order and an instruction wording."""

    index: int
    order: tuple[int, ...]  # order[j] = Likert value (1..5) shown under label j+1
    instruction: str


def make_variants(n: int, seed: int = 0) -> list[Variant]:
    """The five cyclic option orders (variant 0 canonical: 1 = very inaccurate .. 5 = very
    accurate), then their reverses: over five variants every Likert value sits under every label
    once, so a pure label-position preference cannot pass for a trait. Instructions are reworded."""
    out = []
    for i in range(min(n, 10)):
        order = tuple((j + i) % 5 + 1 for j in range(5))
        out.append(Variant(i, order if i < 5 else tuple(reversed(order)), INSTRUCTIONS[i % len(INSTRUCTIONS)]))
    return out


def item_messages(system: str, item: Item, variant: Variant) -> list[dict]:
    from kit.eval.templates import render

    options = [(LABELS[j], LIKERT[v - 1]) for j, v in enumerate(variant.order)]
    user = render("eval_ipip_item.j2", instruction=variant.instruction, options=options,
                  statement=item.text)
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": user}]


def label_probs(logprobs: list[float]) -> list[float]:
    """Renormalise the five label log-probabilities into a distribution over labels."""
    m = max(logprobs)
    ex = [math.exp(x - m) if x > -math.inf else 0.0 for x in logprobs]
    s = sum(ex)
    return [e / s for e in ex]


def score_item(probs_by_label: list[float], variant: Variant, key: int) -> dict:
    """Keyed expected value and argmax of one item from label probabilities.

    Label j shows Likert value ``variant.order[j]``; reverse-keyed items are scored 6 - x.
    """
    value_probs = [0.0] * 5
    for j, p in enumerate(probs_by_label):
        value_probs[variant.order[j] - 1] += p
    ev = sum((v + 1) * p for v, p in enumerate(value_probs))
    top = max(range(5), key=lambda v: value_probs[v]) + 1
    if key < 0:
        ev, top = 6 - ev, 6 - top
    return {"expected": ev, "argmax": float(top), "value_probs": value_probs}


def score_answer_value(value: int, key: int) -> float:
    """A Likert value (1..5) chosen by generation, keyed."""
    return float(6 - value if key < 0 else value)


_DIGIT = re.compile(r"[1-5]")


def parse_label(text: str) -> int | None:
    """The first label digit 1-5 in a generated reply (None if there is none)."""
    m = _DIGIT.search(text or "")
    return int(m.group(0)) if m else None


def aggregate(items: list[Item], scores: list[float | None]) -> dict:
    """Facet and domain means of keyed item scores (None = unanswered, skipped)."""
    dom: dict[str, list[float]] = {d: [] for d in TRAITS}
    fac: dict[str, list[float]] = {}
    for it, s in zip(items, scores):
        if s is None:
            continue
        dom[it.domain].append(s)
        fac.setdefault(f"{it.domain}:{it.facet}", []).append(s)
    return {"domains": {d: (sum(v) / len(v) if v else None) for d, v in dom.items()},
            "facets": {f: sum(v) / len(v) for f, v in sorted(fac.items())}}


def errors_to_target(domains: dict[str, float | None], target: dict[str, float]) -> dict:
    """MAE and RMSE between domain scores and the persona's Big Five target (1-5 scale)."""
    diffs = [domains[t] - target[t] for t in TRAITS if domains.get(t) is not None and t in target]
    if not diffs:
        return {"mae": None, "rmse": None, "n_domains": 0}
    return {"mae": sum(abs(d) for d in diffs) / len(diffs),
            "rmse": math.sqrt(sum(d * d for d in diffs) / len(diffs)), "n_domains": len(diffs)}


def administer(engine, system: str, items: list[Item], variants: list[Variant], *,
               mode: str = "auto", batch_size: int = 16, gen_params=None, progress=None) -> dict:
    """Administer ``items`` under each variant; returns per-variant scores and the spread.

    ``mode``: logprob | generate | auto (logprob, falling back to generation when the engine
    raises NotImplementedError).
    """
    from kit.engine.base import GenParams

    per_variant, rows = [], []
    used_mode = mode
    for var in variants:
        msgs = [item_messages(system, it, var) for it in items]
        item_scores: list[dict | None] = []
        if used_mode in ("auto", "logprob"):
            try:
                lps = batched_choice_logprobs(engine, msgs, list(LABELS), batch_size, progress)
                item_scores = [{**score_item(label_probs(lp), var, it.key), "label_probs": label_probs(lp),
                                "label_mass": sum(math.exp(x) for x in lp)} for lp, it in zip(lps, items)]
                used_mode = "logprob"
            except NotImplementedError:
                if used_mode == "logprob":
                    raise
                used_mode = "generate"
        if used_mode == "generate":
            params = gen_params or GenParams(temperature=0.0, max_tokens=8)
            texts = batched_complete(engine, msgs, params, batch_size, progress)
            for txt, it in zip(texts, items):
                lab = parse_label(txt)
                if lab is None:
                    item_scores.append(None)
                else:
                    v = score_answer_value(var.order[lab - 1], it.key)
                    item_scores.append({"expected": v, "argmax": v, "reply": txt})
        ev = aggregate(items, [s["expected"] if s else None for s in item_scores])
        am = aggregate(items, [s["argmax"] if s else None for s in item_scores])
        per_variant.append({"variant": var.index, "order": list(var.order), "expected": ev, "argmax": am,
                            "n_answered": sum(s is not None for s in item_scores)})
        for it, s in zip(items, item_scores):
            rows.append({"variant": var.index, "item": it.idx, "domain": it.domain, "facet": it.facet,
                         "key": it.key, **({k: v for k, v in s.items()} if s else {"unanswered": True})})
    scored = [r for r in rows if "label_probs" in r]
    position = [sum(r["label_probs"][j] for r in scored) / len(scored) for j in range(5)] if scored else None
    mass = sum(r["label_mass"] for r in scored) / len(scored) if scored else None
    return {"mode": used_mode, "variants": per_variant, "items": rows, "n_items": len(items),
            "summary": summarize(per_variant), "position_probs": position, "label_mass": mass}


def summarize(per_variant: list[dict]) -> dict:
    """Mean domain scores over variants and their spread (max - min, sd): prompt sensitivity."""
    out = {}
    for kind in ("expected", "argmax"):
        doms = {}
        for t in TRAITS:
            vals = [v[kind]["domains"][t] for v in per_variant if v[kind]["domains"][t] is not None]
            if not vals:
                doms[t] = {"mean": None, "spread": None, "sd": None}
                continue
            mu = sum(vals) / len(vals)
            sd = math.sqrt(sum((x - mu) ** 2 for x in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
            doms[t] = {"mean": mu, "spread": max(vals) - min(vals), "sd": sd}
        out[kind] = doms
    return out


def batched_choice_logprobs(engine, msgs_list, choices, batch_size, progress=None,
                            prefix: str = "") -> list[list[float]]:
    """Use the engine's batched scorer when it has one, else one call per prompt; ``prefix``
    is the start of the reply the choices continue."""
    fn = getattr(engine, "choice_logprobs_batch", None)
    out: list[list[float]] = []
    for i in range(0, len(msgs_list), batch_size):
        chunk = msgs_list[i:i + batch_size]
        if fn is not None:
            out.extend(fn(chunk, choices, prefix=prefix))
        else:
            out.extend(engine.choice_logprobs(m, choices, prefix=prefix) for m in chunk)
        if progress:
            progress(len(chunk))
    return out


def batched_complete(engine, msgs_list, params, batch_size, progress=None) -> list[str]:
    fn = getattr(engine, "complete_batch", None)
    out: list[str] = []
    for i in range(0, len(msgs_list), batch_size):
        chunk = msgs_list[i:i + batch_size]
        out.extend(fn(chunk, params) if fn is not None else [engine.complete(m, params) for m in chunk])
        if progress:
            progress(len(chunk))
    return out
