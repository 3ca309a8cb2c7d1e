"""Fidelity by likelihood: the answer NLL equals a hand computation on a tiny model (batched,
with a shared prefix, as one by one), and the multiple-choice items pick a planted right option."""

from __future__ import annotations

import pytest

from kit.eval import likelihood, mc


def _by_hand(eng, messages, answer) -> tuple[float, int]:
    """One plain forward over prompt + answer, no cache, no batching."""
    import torch

    pre = eng._encode(eng.prompt_text(messages))
    full = eng._encode(eng.prompt_text(messages) + answer)
    with torch.inference_mode():
        logp = torch.log_softmax(eng.model(input_ids=torch.tensor([full])).logits.float()[0], dim=-1)
    total = -sum(float(logp[j - 1, full[j]]) for j in range(len(pre), len(full)))
    return total, len(full) - len(pre)


@pytest.mark.parametrize("model", ["tiny_llama", "tiny_gemma3"])
def test_answer_nll_matches_a_hand_computation(model, request):
    from kit.engine.hf import HFEngine

    eng = HFEngine(request.getfixturevalue(model))
    system = "You are Demo Person, a bridge engineer from a port town. Stay in character at all times."
    items = [([{"role": "system", "content": system}, {"role": "user", "content": q}], a)
             for q, a in (("Where were you born?", " I was born by the river in 1931."),
                          ("What did you build?", "Bridges, mostly, and one long viaduct over the salt marsh."),
                          ("Why?", "Because somebody has to."))]
    batched = eng.answer_nll_batch(items)
    for (msgs, ans), (got, n) in zip(items, batched):
        want, n_want = _by_hand(eng, msgs, ans)
        assert n == n_want > 0
        assert got == pytest.approx(want, rel=1e-4, abs=1e-3)
    assert eng.answer_nll_batch(items[1:2])[0][0] == pytest.approx(batched[1][0], rel=1e-4, abs=1e-3)


PASSAGES = [
    {"stage": "young", "text": "I left the valley in 1872 with a few coins in my pocket. The school at Hampton took "
                               "me in after I swept the recitation room three times over. I worked as a janitor "
                               "for my board and I studied at night by a lamp."},
    {"stage": "young", "text": "In 1875 I finished the course and went home to teach the children of Malden again. "
                               "We had 80 pupils in the day school and as many grown people at night."},
    {"stage": "late", "text": "The school opened in 1881 in a shanty church with 30 students and one teacher. "
                              "Later we bought the Bowen farm for 500 dollars and moved the classes there in 1882. "
                              "General Armstrong sent me Miss Davidson in 1883, and I owe her more than I can say."},
]


def test_items_blank_a_value_and_offer_same_type_distractors():
    items = mc.build_items(PASSAGES, "Demo Person", 20, seed=0, min_words=6)
    assert items and len({it.iid for it in items}) == len(items)
    for it in items:
        assert it.answer in it.options and len(it.options) == 4 and len(set(it.options)) == 4
        q, answers = it.memorised()
        assert mc.BLANK in q and it.answer not in q.split('"')[1]
        assert answers[it.correct] == it.sentence
        if it.kind == "year":
            assert all(o.isdigit() and len(o) == 4 for o in it.options)
        xq, xa = it.extractable()
        assert "I " not in xq and xa[it.correct] == f"{it.answer}."
    assert {it.stage for it in items} == {"young", "late"}


class _Planted:
    """A fake scorer (unit test only): exactly the planted answers are likely, all else is not."""

    name = "planted"

    def __init__(self, planted: set[str]):
        self.planted = planted

    def answer_nll_batch(self, items):
        return [(1.0 if (m[-1]["content"], a) in self.planted else 9.0, 4) for m, a in items]


class _Ctx:
    def __init__(self, engine, tmp_path):
        from types import SimpleNamespace

        from kit.rundir import write_jsonl

        write_jsonl(tmp_path / "passages.jsonl", PASSAGES)
        write_jsonl(tmp_path / "train.jsonl", [])
        cfg = SimpleNamespace(batch_size=4, knowledge_items=20, seed=0, voice_items=10)
        persona = SimpleNamespace(name="Demo Person", stages=[SimpleNamespace(id="young"), SimpleNamespace(id="late")])
        self.inputs = SimpleNamespace(passages_path=tmp_path / "passages.jsonl", test_path=tmp_path / "test.jsonl")
        self.engine, self.cfg, self.persona, self.seed = engine, cfg, persona, 0
        self.paired, self.cache, self.progress = {}, {}, None

    def system(self, stage, query=None, exclude=frozenset()):
        return f"You are Demo Person ({stage})."


def _answers(items, right: bool) -> set[str]:
    out = set()
    for it in items:
        for form in (it.memorised, it.extractable):
            q, answers = form()
            out |= {(q, a) for i, a in enumerate(answers) if (i == it.correct) == right}
    return out


def test_a_planted_correct_option_wins_and_a_wrong_one_loses(tmp_path):
    items = mc.build_items(PASSAGES, "Demo Person", 20, 0)
    right = likelihood.knowledge_by_likelihood(_Ctx(_Planted(_answers(items, True)), tmp_path))
    assert right["items"] == len(items) >= 4
    assert right["memorised"]["mean"] == 1.0 and right["extractable"]["mean"] == 1.0
    worst = likelihood.knowledge_by_likelihood(_Ctx(_Planted(_answers(items, False)), tmp_path))
    assert worst["memorised"]["mean"] == 0.0 and worst["extractable"]["mean"] == 0.0
