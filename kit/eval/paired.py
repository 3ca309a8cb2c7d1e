"""Paired comparison of two variants on the same items: the difference, its interval, a
permutation p-value, a verdict and the smallest difference the sample could have detected.

A variant's result carries ``paired[metric] = {item id: value}``; trained and prompted are
compared on the items both answered. Verdicts are Holm-corrected over the metrics of one
comparison, so a placebo (prompted against itself with another seed) reads "no detectable
difference" on every metric instead of on most of them.
"""

from __future__ import annotations

import itertools
import math
import random

BETTER, WORSE, NONE, FEW = "better", "worse", "no detectable difference", "too few items"
Z_ALPHA, Z_POWER = 1.959964, 0.841621  # two-sided alpha = 0.05, power = 0.80


def _sign_flip_p(d: list[float], n_perm: int, rng: random.Random) -> float:
    """Two-sided p of the mean difference under random sign flips (exact up to 12 items)."""
    obs = abs(sum(d))
    if obs == 0:
        return 1.0
    if len(d) <= 12:
        flips = itertools.product((1, -1), repeat=len(d))
        hits = total = 0
        for s in flips:
            total += 1
            hits += abs(sum(x * y for x, y in zip(d, s))) >= obs - 1e-12
        return hits / total
    hits = sum(abs(sum(x if rng.random() < 0.5 else -x for x in d)) >= obs - 1e-12 for _ in range(n_perm))
    return (hits + 1) / (n_perm + 1)


def mdd(d: list[float], binary: bool) -> float | None:
    """Smallest true mean difference detectable with 80% power at alpha 0.05 (normal
    approximation), from the observed spread of the differences. With no discordant pair a
    binary metric is planned as if one pair differed, so "identical answers" never reads as
    "could detect anything"."""
    n = len(d)
    if n < 2:
        return None
    mu = sum(d) / n
    sd = math.sqrt(sum((x - mu) ** 2 for x in d) / (n - 1))
    if binary:
        sd = max(sd, math.sqrt(1 / n))
    return (Z_ALPHA + Z_POWER) * sd / math.sqrt(n)


def compare(a: dict, b: dict, *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """``a`` minus ``b`` over their common items: mean, percentile-bootstrap CI, sign-flip p."""
    keys = sorted(set(a) & set(b), key=str)
    d = [float(a[k]) - float(b[k]) for k in keys if a[k] is not None and b[k] is not None]
    n = len(d)
    if n < 2:
        return {"n": n, "diff": (d[0] if d else None), "lo": None, "hi": None, "p": None, "mdd": None}
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(d) for _ in d) / n for _ in range(n_boot))
    binary = all(float(v) in (0.0, 1.0) for k in keys for v in (a[k], b[k]) if v is not None)
    return {"n": n, "diff": sum(d) / n, "lo": means[int(alpha / 2 * n_boot)],
            "hi": means[min(n_boot - 1, int((1 - alpha / 2) * n_boot))],
            "p": _sign_flip_p(d, n_boot, rng), "mdd": mdd(d, binary)}


def holm(ps: list[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values (None stays None)."""
    idx = sorted((i for i, p in enumerate(ps) if p is not None), key=lambda i: ps[i])
    out: list[float | None] = [None] * len(ps)
    running, m = 0.0, len(idx)
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


def verdict(c: dict, lower_is_better: bool, alpha: float = 0.05) -> str:
    if c["n"] < 2 or c.get("p_adj") is None:
        return FEW
    if c["p_adj"] >= alpha or c["lo"] <= 0 <= c["hi"]:
        return NONE
    up = c["diff"] > 0
    return BETTER if up != lower_is_better else WORSE


def compare_variants(trained: dict, baseline: dict, lower_is_better: set[str], *, seed: int = 0,
                     alpha: float = 0.05) -> list[dict]:
    """One row per metric both variants measured: trained minus baseline, with its verdict."""
    rows = []
    for metric in trained:
        if metric in baseline:
            rows.append({"metric": metric, **compare(trained[metric], baseline[metric], seed=seed, alpha=alpha)})
    for r, p in zip(rows, holm([r["p"] for r in rows])):
        r["p_adj"] = p
        r["verdict"] = verdict(r, r["metric"] in lower_is_better, alpha)
    return rows
