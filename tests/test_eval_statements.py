"""The agreement-likelihood Big Five measure on fixed data: first-person items, keyed 1..5
scores from agree/disagree log-odds, its acquiescence null and the known-groups check."""

from __future__ import annotations

import math
import re

import pytest

from kit.eval import bigfive, ipip
from kit.eval.statements import FRAMES, acquiescence_scores, administer_statements, agreement_score, first_person

TARGET = {"O": 3.2, "C": 4.8, "E": 1.8, "A": 2.7, "N": 2.3}


def test_every_item_reads_in_the_first_person():
    for it in ipip.load_items():
        s = first_person(it.text)
        assert s.startswith("I ") and s.endswith(".") and not re.search(r"\byou(r|rself)?\b", s, re.I), s
    assert first_person("Believe that you are better than others") == "I believe that I am better than others."
    assert first_person("Are afraid to draw attention to yourself") == "I am afraid to draw attention to myself."
    assert first_person("Do more than what's expected ofyou") == "I do more than what's expected of me."


def test_agreement_score_is_keyed_and_centred():
    assert agreement_score(-1.0, -1.0, 1)["expected"] == pytest.approx(3.0)
    hi = agreement_score(math.log(0.9), math.log(0.1), 1)
    assert hi["p_agree"] == pytest.approx(0.9) and hi["expected"] == pytest.approx(4.6)
    assert agreement_score(math.log(0.9), math.log(0.1), -1)["expected"] == pytest.approx(1.4)
    assert hi["label_mass"] == pytest.approx(1.0)


class Scripted:
    """Unit-test engine: agrees with a statement when the system prompt names its domain's word
    (and its key is +1), with a fixed yes-bias (the bias alone for "You are someone."); records
    the reply frames it was asked for."""

    WORDS = {"O": "curious", "C": "orderly", "E": "outgoing", "A": "kind", "N": "anxious"}

    def __init__(self, items):
        self.by_text = {first_person(it.text): it for it in items}
        self.prefixes = set()

    def choice_logprobs_batch(self, batch, choices, prefix=""):
        self.prefixes.add((prefix, tuple(choices)))
        out = []
        for msgs in batch:
            system, user = msgs[0]["content"], msgs[-1]["content"]
            it = self.by_text[re.search(r'"(.+)"', user).group(1)]
            high = self.WORDS[it.domain] in system
            agree = 0.3 + (1.0 if high == (it.key > 0) else -1.0) if "You are someone" not in system else 0.3
            out.append([math.log(0.5) + agree / 2, math.log(0.5) - agree / 2])
        return out


def test_administration_has_the_likert_shape_and_passes_known_groups():
    items = ipip.subset(ipip.load_items(), 40)
    eng = Scripted(items)
    a = administer_statements(eng, "You are orderly.", items, batch_size=7)
    b = administer_statements(eng, "You are outgoing, curious, anxious and kind.", items, batch_size=7)
    assert eng.prefixes == {(start, choices) for start, choices in FRAMES}
    assert a["mode"] == "statement" and len(a["variants"]) == len(FRAMES) and len(a["items"]) == 40 * len(FRAMES)
    dom = {t: v["mean"] for t, v in a["summary"]["expected"].items()}
    assert dom["C"] > 3.5 and dom["A"] < 2.5 and dom["E"] < 2.5 and dom["N"] < 2.5
    other = {"O": 4.7, "C": 1.9, "E": 4.5, "A": 3.7, "N": 3.9}
    kg = bigfive.known_groups(a, b, TARGET, other)
    assert kg["passed"] and set(kg["domains"]) == {"O", "C", "E", "A", "N"}
    blind = administer_statements(eng, "You are someone.", items)  # the yes-bias alone
    assert blind["acquiescence"] == pytest.approx(1 / (1 + math.exp(-0.3)))
    assert not bigfive.known_groups(blind, blind, TARGET, other)["passed"]


def test_acquiescence_null_by_hand():
    items = ipip.subset(ipip.load_items(), 20)
    # agreeing with everything at p = 0.5 is the constant-3 responder
    assert acquiescence_scores(items, 0.5) == [3.0] * 20
    n = bigfive.null_baselines(items, ipip.make_variants(3), TARGET, None, draws=10, acquiescence=0.5)
    assert n["position_bias"] == pytest.approx(n["constant_3"])
    yes = bigfive.null_baselines(items, ipip.make_variants(3), TARGET, None, draws=10, acquiescence=1.0)
    assert yes["position_bias"] != pytest.approx(n["constant_3"])


def test_report_names_the_statement_measure_and_hides_an_invalid_mae():
    from kit.eval.report_sections import big_five_section

    items = ipip.subset(ipip.load_items(), 20)
    eng = Scripted(items)
    admin = administer_statements(eng, "You are someone.", items)
    bf = {"mode": admin["mode"], "n_items": admin["n_items"], "summary": admin["summary"],
          "variants": admin["variants"], "target": TARGET, "label_mass": admin["label_mass"],
          "error_expected": {"mae": 0.9}, "nulls": bigfive.null_baselines(
              items, ipip.make_variants(3), TARGET, None, draws=10, acquiescence=admin["acquiescence"]),
          "validity": {"other": "tomas-reyes", **bigfive.known_groups(admin, admin, TARGET, {**TARGET, "C": 1.9})}}
    text = "\n".join(big_five_section({"prompted": {"big_five": bf}}, ["prompted"], interpretable=False))
    assert "agreement with first-person statements" in text and "I agree/disagree" in text
    assert "Not interpretable at this size" in text and "| prompted | not interpretable |" in text


def test_real_engine_scores_the_frames_batched_as_one_by_one(tiny_llama):
    """On a real (tiny) HF model the batched, prefix-cached scoring of the reply frames gives
    the same log-odds as scoring each prompt alone."""
    from kit.engine.hf import HFEngine
    from kit.eval.statements import statement_messages

    items = ipip.subset(ipip.load_items(), 10)
    eng = HFEngine(tiny_llama, None, name="prompted")
    admin = administer_statements(eng, "You are Ada, a quiet archivist.", items, batch_size=4)
    assert len(admin["items"]) == 10 * len(FRAMES) and 0 < admin["acquiescence"] < 1
    for row in admin["items"][:3] + admin["items"][-3:]:
        it = next(i for i in items if i.idx == row["item"])
        start, choices = FRAMES[row["variant"]]
        lp = eng.choice_logprobs(statement_messages("You are Ada, a quiet archivist.", it), list(choices), prefix=start)
        assert row["expected"] == pytest.approx(agreement_score(lp[0], lp[1], it.key)["expected"], abs=1e-3)
