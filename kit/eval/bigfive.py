"""Is the Big Five score worth reading? Null baselines, label mass and a known-groups check.

- Null baselines: the MAE to the target of a responder that always answers "3", of one that
  answers uniformly at random, and of one that answers with the model's own label-position
  preference whatever the statement (its mean label distribution over all items).
- Label mass: how much probability the model puts on the five labels at all (low mass = the
  model is not answering the question, and the renormalised scores are noise).
- Known-groups validity: the prompted base model, given two personas whose targets differ by
  at least ``min_gap`` on a domain, must score them apart in the targets' direction there,
  with an item-bootstrap interval that excludes zero. When it does not, the instrument cannot
  tell personas apart at this model size and the report says "not interpretable at this size"
  instead of an MAE.
"""

from __future__ import annotations

import random

from kit.eval.ipip import aggregate, errors_to_target, score_item
from kit.eval.similarity import bootstrap_ci
from kit.spec.persona import TRAITS


def keyed_item_means(admin: dict) -> dict[int, tuple[str, float]]:
    """Per item: (domain, keyed expected score averaged over the administrations)."""
    acc: dict[int, list] = {}
    for r in admin["items"]:
        if r.get("unanswered"):
            continue
        acc.setdefault(r["item"], [r["domain"], []])[1].append(r["expected"])
    return {i: (d, sum(v) / len(v)) for i, (d, v) in acc.items()}


def item_errors(admin: dict, target: dict) -> dict[str, float]:
    """Per item |keyed score - domain target|: the paired unit for trained vs prompted."""
    return {str(i): abs(s - target[d]) for i, (d, s) in keyed_item_means(admin).items() if d in target}


def null_baselines(items, variants, target: dict, position_probs: list[float] | None, seed: int = 0,
                   draws: int = 500, acquiescence: float | None = None) -> dict:
    """MAE to ``target`` of the constant-3, uniform-random and label-position-bias responders
    (for the statement measure: a responder agreeing with every statement at the model's own
    mean agreement probability, ``acquiescence``)."""
    out: dict = {"constant_3": errors_to_target({t: 3.0 for t in TRAITS}, target)["mae"]}
    rng = random.Random(seed)
    maes = []
    for _ in range(draws):
        scores = [float(rng.randint(1, 5)) for _ in items for _ in variants]
        per_item = [sum(scores[k * len(variants):(k + 1) * len(variants)]) / len(variants) for k in range(len(items))]
        maes.append(errors_to_target(aggregate(items, per_item)["domains"], target)["mae"])
    out["uniform_random"] = {"mae": sum(maes) / len(maes), "lo": sorted(maes)[int(0.025 * draws)],
                             "hi": sorted(maes)[int(0.975 * draws) - 1]}
    if position_probs:
        per_item = [sum(score_item(position_probs, v, it.key)["expected"] for v in variants) / len(variants)
                    for it in items]
        out["position_bias"] = errors_to_target(aggregate(items, per_item)["domains"], target)["mae"]
    if acquiescence is not None:
        from kit.eval.statements import acquiescence_scores

        per_item = acquiescence_scores(items, acquiescence)
        out["position_bias"] = errors_to_target(aggregate(items, per_item)["domains"], target)["mae"]
    return out


def known_groups(admin_a: dict, admin_b: dict, target_a: dict, target_b: dict, *, min_gap: float = 1.0,
                 seed: int = 0) -> dict:
    """Does persona A score above B where A's target is above B's (and below where below)?"""
    a, b = keyed_item_means(admin_a), keyed_item_means(admin_b)
    domains = {}
    for t in TRAITS:
        gap = target_a.get(t, 0) - target_b.get(t, 0) if t in target_a and t in target_b else 0
        if abs(gap) < min_gap:
            continue
        sign = 1 if gap > 0 else -1
        moved = [sign * (a[i][1] - b[i][1]) for i in a if i in b and a[i][0] == t]
        ci = bootstrap_ci(moved, seed=seed)
        domains[t] = {"target_gap": gap, "moved": ci, "ok": ci["n"] > 1 and ci["lo"] > 0}
    passed = bool(domains) and all(d["ok"] for d in domains.values())
    return {"domains": domains, "passed": passed, "min_gap": min_gap,
            "note": ("passed" if passed else "no domain whose targets differ by the minimum gap"
                     if not domains else "failed: the prompted model does not move in the targets' direction")}
