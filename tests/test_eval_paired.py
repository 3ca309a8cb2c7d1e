"""Paired statistics on fixed data: hand-computed values, the placebo control and power."""

from __future__ import annotations

import random

import pytest

from kit.eval import paired


def test_exact_sign_flip_and_interval_by_hand():
    a = {"q1": 1, "q2": 1, "q3": 1, "q4": 0}
    b = {"q1": 0, "q2": 1, "q3": 0, "q4": 0, "extra": 1}  # only common items are paired
    c = paired.compare(a, b)
    assert c["n"] == 4 and c["diff"] == pytest.approx(0.5)
    # differences [1, 0, 1, 0]: of the 16 sign patterns, |sum| >= 2 for 8 -> p = 0.5
    assert c["p"] == pytest.approx(0.5)
    assert c["lo"] <= 0.5 <= c["hi"]
    # mdd: sd of [1,0,1,0] = sqrt(1/3); (1.96 + 0.84) * sd / 2
    assert c["mdd"] == pytest.approx((paired.Z_ALPHA + paired.Z_POWER) * (1 / 3) ** 0.5 / 2)


def test_identical_answers_plan_one_discordant_pair():
    a = {f"q{i}": 1.0 for i in range(9)}
    c = paired.compare(a, dict(a))
    assert c["diff"] == 0 and c["p"] == 1.0
    assert c["mdd"] == pytest.approx((paired.Z_ALPHA + paired.Z_POWER) / 9)  # sd floor sqrt(1/n)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04)
    assert paired.holm([0.01, 0.04, 0.03, None]) == [pytest.approx(0.03), pytest.approx(0.06), pytest.approx(0.06), None]


def _study(seed: int, shift: float = 0.0, n: int = 40) -> dict:
    """Per-item values of one variant: binary judged rates and continuous similarities drawn
    around fixed per-item means (the items are the same for every variant)."""
    items = random.Random(99)  # the item difficulties: fixed
    p = [items.uniform(0.2, 0.9) for _ in range(n)]
    mu = [items.uniform(0.2, 0.6) for _ in range(n)]
    rng = random.Random(seed)
    clip = lambda x: min(1.0, max(0.0, x))  # noqa: E731
    return {"induction": {f"i{k}": float(rng.random() < clip(p[k] + shift)) for k in range(n)},
            "knowledge": {f"k{k}": float(rng.random() < clip(p[k] + shift)) for k in range(n)},
            "consistency_judge": {f"c{k}": float(rng.random() < clip(p[k] + shift)) for k in range(n)},
            "consistency_embedding": {f"c{k}": mu[k] + shift + rng.gauss(0, 0.1) for k in range(n)},
            "persona_gap": {f"d{k}": mu[k] - 0.4 + shift + rng.gauss(0, 0.1) for k in range(n)},
            "stage_gap": {f"d{k}": mu[k] - 0.5 + shift + rng.gauss(0, 0.1) for k in range(n)},
            "style_cosine": {str(k): mu[k] + shift + rng.gauss(0, 0.1) for k in range(n)},
            "big_five_item_error": {str(k): abs(rng.gauss(1.0 - shift, 0.3)) for k in range(n)}}


def test_placebo_reads_no_detectable_difference_on_every_metric():
    """Prompted against itself with another seed: the same items, only the noise differs. Holm
    over the 8 metrics keeps the family-wise false-alarm rate near 5%: over 20 placebo runs at
    most 2 may flag anything, and the first (the one a report would show) flags nothing."""
    flagged = []
    for seed in range(20):
        rows = paired.compare_variants(_study(seed + 100), _study(seed + 200), {"big_five_item_error"}, seed=seed)
        assert len(rows) == 8
        flagged.append([r["metric"] for r in rows if r["verdict"] != paired.NONE])
    assert flagged[0] == [] and sum(bool(f) for f in flagged) <= 2, flagged


def test_real_shift_is_detected_with_its_direction():
    rows = paired.compare_variants(_study(1, shift=0.3), _study(2), {"big_five_item_error"})
    got = {r["metric"]: r["verdict"] for r in rows}
    assert got["consistency_embedding"] == paired.BETTER and got["style_cosine"] == paired.BETTER
    assert got["induction"] == paired.BETTER
    assert got["big_five_item_error"] == paired.BETTER  # its error fell: lower is better
    worse = {r["metric"]: r["verdict"] for r in paired.compare_variants(_study(2), _study(1, shift=0.3), set())}
    assert worse["style_cosine"] == paired.WORSE


def test_too_few_items():
    rows = paired.compare_variants({"m": {"a": 1.0}}, {"m": {"a": 0.0}}, set())
    assert rows[0]["verdict"] == paired.FEW and rows[0]["mdd"] is None
