"""Big Five worth reading or not: cyclic orders, null baselines and the known-groups check on
fixed data."""

from __future__ import annotations

import pytest

from kit.eval import bigfive, ipip

TARGET = {"O": 3.2, "C": 4.8, "E": 1.8, "A": 2.7, "N": 2.3}


def test_five_cyclic_orders_put_every_value_under_every_label():
    vs = ipip.make_variants(5)
    assert vs[0].order == (1, 2, 3, 4, 5) and len({v.order for v in vs}) == 5
    for label in range(5):
        assert sorted(v.order[label] for v in vs) == [1, 2, 3, 4, 5]


def test_null_baselines_by_hand():
    items = ipip.subset(ipip.load_items(), 20)
    vs = ipip.make_variants(5)
    # constant 3: |3-3.2|+|3-4.8|+|3-1.8|+|3-2.7|+|3-2.3| = 0.2+1.8+1.2+0.3+0.7 = 4.2 -> MAE 0.84
    skewed = [0.6, 0.1, 0.1, 0.1, 0.1]  # prefers the first label whatever the statement
    n = bigfive.null_baselines(items, vs, TARGET, skewed, seed=0, draws=200)
    assert n["constant_3"] == pytest.approx(0.84)
    # over all five cyclic orders a pure position preference averages back to 3 on every item
    assert n["position_bias"] == pytest.approx(0.84)
    ur = n["uniform_random"]
    assert ur["lo"] <= ur["mae"] <= ur["hi"] and 0.6 < ur["mae"] < 1.1
    # with the canonical order only, the same preference scores 1 on keyed items (5 on reversed)
    one = bigfive.null_baselines(items, vs[:1], TARGET, skewed, seed=0, draws=10)
    assert one["position_bias"] != pytest.approx(0.84)


def _admin(scores_by_domain: dict, items) -> dict:
    """A fabricated administration: every item of a domain scores the given keyed value."""
    return {"items": [{"variant": v, "item": it.idx, "domain": it.domain, "expected": scores_by_domain[it.domain]
                       + 0.01 * (it.idx % 3)} for v in range(2) for it in items]}


def test_known_groups_passes_and_fails():
    items = ipip.subset(ipip.load_items(), 30)
    other = {"O": 4.7, "C": 2.0, "E": 4.5, "A": 4.0, "N": 2.5}  # O, C, E, A differ by >= 1
    a = _admin({"O": 2.5, "C": 4.0, "E": 2.0, "A": 2.0, "N": 3.0}, items)
    b = _admin({"O": 3.5, "C": 3.0, "E": 3.5, "A": 3.5, "N": 3.0}, items)
    ok = bigfive.known_groups(a, b, TARGET, other)
    assert ok["passed"] and set(ok["domains"]) == {"O", "C", "E", "A"}
    assert ok["domains"]["C"]["moved"]["mean"] == pytest.approx(1.0)
    flat = bigfive.known_groups(a, a, TARGET, other)  # the same scores under both personas
    assert not flat["passed"] and "failed" in flat["note"]
    none = bigfive.known_groups(a, b, TARGET, TARGET)
    assert not none["passed"] and not none["domains"]


def test_item_errors_pair_by_item():
    items = ipip.subset(ipip.load_items(), 10)
    errs = bigfive.item_errors(_admin({d: 3.0 for d in "OCEAN"}, items), TARGET)
    assert len(errs) == 10
    it = items[0]
    assert errs[str(it.idx)] == pytest.approx(abs(3.0 + 0.01 * (it.idx % 3) - TARGET[it.domain]))


def test_dev_and_test_splits_never_overlap():
    from kit.eval.questions import Question, split_questions

    qs = [Question(qid=f"q{i}", text=f"Question number {i}?", stage="s", pattern="ordinary") for i in range(200)]
    dev, test = split_questions(qs, "dev", 0.3), split_questions(qs, "test", 0.3)
    assert not {q.qid for q in dev} & {q.qid for q in test} and len(dev) + len(test) == 200
    assert 40 < len(dev) < 80  # about 30%
    assert split_questions(qs, "dev", 0.3) == dev  # stable
