"""IPIP-NEO-120 scoring pinned against hand-computed answers (reverse keys included)."""

from __future__ import annotations

import hashlib
import math
from importlib import resources

import pytest

from kit.engine.scripted import ScriptedEngine
from kit.eval import ipip


def test_items_are_the_shipped_inventory():
    raw = resources.files("kit.data").joinpath("ipip_neo_120.csv").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == "f20e591fc97779872a41c55c35bc8809e90b99d63312c0cc47420460157e63a8"
    items = ipip.load_items()
    assert len(items) == 120
    for d in "OCEAN":
        dom = [it for it in items if it.domain == d]
        assert len(dom) == 24 and len({it.facet for it in dom}) == 6
    assert sum(it.key < 0 for it in items) == 55
    assert items[0].text == "Worry about things" and items[0].domain == "N" and items[0].key == 1


def test_subset_is_stratified():
    sub = ipip.subset(ipip.load_items(), 10)
    assert len(sub) == 10
    assert sorted(it.domain for it in sub) == sorted("OCEANOCEAN")


def test_score_item_expected_and_argmax_by_hand():
    canon = ipip.make_variants(1)[0]
    probs = [0.1, 0.2, 0.3, 0.4, 0.0]  # EV = .1 + .4 + .9 + 1.6 = 3.0, argmax = 4
    s = ipip.score_item(probs, canon, key=1)
    assert s["expected"] == pytest.approx(3.0)
    assert s["argmax"] == 4.0
    r = ipip.score_item(probs, canon, key=-1)  # reverse keyed: 6 - x
    assert r["expected"] == pytest.approx(3.0) and r["argmax"] == 2.0
    rev = ipip.make_variants(6)[5]  # the first reversed order: label "1" means "Very accurate" (5)
    assert rev.order == (5, 4, 3, 2, 1)
    s2 = ipip.score_item([1.0, 0, 0, 0, 0], rev, key=1)
    assert s2["expected"] == pytest.approx(5.0) and s2["argmax"] == 5.0
    s3 = ipip.score_item([0.5, 0, 0, 0, 0.5], rev, key=-1)  # values 5 and 1 -> EV 3, keyed 3
    assert s3["expected"] == pytest.approx(3.0)


def test_label_probs_renormalise():
    p = ipip.label_probs([math.log(0.02), math.log(0.02), -math.inf, math.log(0.04), math.log(0.12)])
    assert p == pytest.approx([0.1, 0.1, 0.0, 0.2, 0.6])


def test_administer_hand_computed_domains():
    """A scripted persona answering 'Very accurate' to every N item and 'Very inaccurate' to
    everything else: N positively keyed items score 5 and reverse ones 1; other domains the
    mirror image. Domain means are therefore the keyed shares, computed here by hand."""
    items = ipip.load_items()
    by_text = {it.text: it for it in items}

    def likert(messages):
        stmt = messages[-1]["content"].rsplit('Statement: "', 1)[1].rstrip('"')
        it = by_text[stmt]
        opts = messages[-1]["content"]
        want = "Very accurate" if it.domain == "N" else "Very inaccurate"
        for line in opts.splitlines():
            if line[:2] in {"1.", "2.", "3.", "4.", "5."} and line[3:] == want:
                return line[0]
        raise AssertionError("option not found")

    eng = ScriptedEngine(likert=likert)
    out = ipip.administer(eng, "You are Ada.", items, ipip.make_variants(2), batch_size=7)
    assert out["mode"] == "logprob" and out["n_items"] == 120
    for d in "OCEAN":
        dom = [it for it in items if it.domain == d]
        pos = sum(it.key > 0 for it in dom)
        if d == "N":
            expect = (5 * pos + 1 * (24 - pos)) / 24
        else:
            expect = (1 * pos + 5 * (24 - pos)) / 24
        for v in out["variants"]:  # both the canonical and the reversed option order
            assert v["expected"]["domains"][d] == pytest.approx(expect)
            assert v["argmax"]["domains"][d] == pytest.approx(expect)
        assert out["summary"]["expected"][d]["spread"] == pytest.approx(0.0)
    facet = out["variants"][0]["expected"]["facets"]["N:Anxiety"]
    anx = [it for it in items if it.facet == "Anxiety"]
    assert facet == pytest.approx(sum(5 if it.key > 0 else 1 for it in anx) / 4)
    errs = ipip.errors_to_target({t: out["summary"]["expected"][t]["mean"] for t in "OCEAN"},
                                 {"O": 3.0, "C": 3.0, "E": 3.0, "A": 3.0, "N": 3.0})
    diffs = [out["summary"]["expected"][t]["mean"] - 3.0 for t in "OCEAN"]
    assert errs["mae"] == pytest.approx(sum(abs(x) for x in diffs) / 5)
    assert errs["rmse"] == pytest.approx(math.sqrt(sum(x * x for x in diffs) / 5))


def test_generation_fallback_parses_digits():
    items = ipip.subset(ipip.load_items(), 5)
    # Engine without logprobs: replies "4" (label 4) to everything; one unparseable reply.
    replies = lambda m: "I'd say 4." if "Worry" not in m[-1]["content"] else "no idea"  # noqa: E731
    eng = ScriptedEngine(replies, logprobs=False)
    out = ipip.administer(eng, "", items, ipip.make_variants(1))
    assert out["mode"] == "generate"
    answered = [r for r in out["items"] if not r.get("unanswered")]
    assert len(answered) == 4
    for r in answered:  # label 4 = value 4 on the canonical scale; reverse keyed -> 2
        assert r["expected"] == (4.0 if r["key"] > 0 else 2.0)
    assert ipip.parse_label("Option 3 fits") == 3 and ipip.parse_label("none") is None
    with pytest.raises(NotImplementedError):
        ipip.administer(eng, "", items, ipip.make_variants(1), mode="logprob")


def test_variants_differ_and_prompt_lists_options():
    vs = ipip.make_variants(4, seed=1)
    assert len({v.order for v in vs}) == 4 and len({v.instruction for v in vs}) == 4
    msgs = ipip.item_messages("SYS", ipip.load_items()[0], vs[1])  # cyclic order (2, 3, 4, 5, 1)
    assert msgs[0] == {"role": "system", "content": "SYS"}
    user = msgs[1]["content"]
    assert "1. Moderately inaccurate" in user and "5. Very inaccurate" in user
    assert user.endswith('Statement: "Worry about things"')
