"""HFEngine on tiny local models: batched scoring equals one-at-a-time scoring (with and
without the shared-prefix cache), multi-token choices, batched and streamed generation."""

from __future__ import annotations

import math

import pytest

from kit.engine.base import ChatEngine, GenParams
from kit.eval import ipip

SYSTEM = "You are Mira Holt, a lighthouse keeper who keeps careful logs of wind and weather. " * 3


def _msgs(n: int, variant: int = 0):
    var = ipip.make_variants(variant + 1)[variant]
    return [ipip.item_messages(SYSTEM, it, var) for it in ipip.load_items()[:n]]


@pytest.mark.parametrize("model", ["tiny_llama", "tiny_qwen2", "tiny_gemma3"])
def test_batched_logprobs_match_unbatched(model, request):
    from kit.engine.hf import HFEngine

    eng = HFEngine(request.getfixturevalue(model))
    assert isinstance(eng, ChatEngine)
    msgs = _msgs(7)
    eng.prefix_cache = False
    single = [eng.choice_logprobs(m, list(ipip.LABELS)) for m in msgs]
    eng.prefix_cache = True
    batched = eng.choice_logprobs_batch(msgs[:4], list(ipip.LABELS))
    batched += eng.choice_logprobs_batch(msgs[4:], list(ipip.LABELS))  # reuses the cached prefix
    assert eng._prefix is not None and len(eng._prefix[0]) >= 16
    for a, b in zip(single, batched):
        assert a == pytest.approx(b, abs=1e-4)
        assert all(x <= 0 for x in a)
    # A different administration (reversed options) changes the prefix: recomputed, still exact.
    other = _msgs(3, variant=1)
    eng.prefix_cache = False
    ref = [eng.choice_logprobs(m, list(ipip.LABELS)) for m in other]
    eng.prefix_cache = True
    for a, b in zip(ref, eng.choice_logprobs_batch(other, list(ipip.LABELS))):
        assert a == pytest.approx(b, abs=1e-4)


def test_multi_token_choices_score_whole_continuation(tiny_llama):
    import torch

    from kit.engine.hf import HFEngine

    eng = HFEngine(tiny_llama)
    msgs = _msgs(1)[0]
    choices = ["Very accurate", "Very inaccurate"]
    got = eng.choice_logprobs(msgs, choices)
    text = eng.prompt_text(msgs)
    base = eng._encode(text)
    for c, lp in zip(choices, got):
        full = eng._encode(text + c)
        with torch.no_grad():
            logits = eng.model(input_ids=torch.tensor([full])).logits[0].log_softmax(-1)
        want = sum(float(logits[i - 1, full[i]]) for i in range(len(base), len(full)))
        assert lp == pytest.approx(want, abs=1e-4)
    assert math.isfinite(got[0]) and got[0] != got[1]


def test_generation_batch_stream_and_stop(tiny_qwen2):
    from kit.engine.hf import HFEngine

    eng = HFEngine(tiny_qwen2)
    msgs = [[{"role": "user", "content": q}] for q in ("Hello there", "What is the weather like today?")]
    greedy = GenParams(temperature=0.0, max_tokens=8)
    outs = eng.complete_batch(msgs, greedy)
    assert len(outs) == 2 and all(isinstance(o, str) for o in outs)
    single = eng.complete(msgs[1], greedy)  # the longest prompt has no padding: same tokens
    assert single == outs[1]
    streamed = "".join(eng.stream(msgs[1], greedy))
    assert streamed.strip() == single
    it = eng.stream(msgs[0], GenParams(temperature=0.0, max_tokens=64))
    first = next(it, "")
    it.close()  # closing stops generation (the worker thread joins)
    assert isinstance(first, str)
    if single:
        cut = eng.complete(msgs[1], GenParams(temperature=0.0, max_tokens=8, stop=[single[1:3] or single]))
        assert len(cut) < len(single)
    s1 = eng.complete(msgs[0], GenParams(temperature=1.0, max_tokens=8, seed=3))
    s2 = eng.complete(msgs[0], GenParams(temperature=1.0, max_tokens=8, seed=3))
    assert s1 == s2  # seeded sampling is reproducible


def test_adapter_and_bad_paths(tmp_path, tiny_llama):
    from kit.engine.hf import HFEngine
    from kit.errors import KitError

    with pytest.raises(KitError, match="config.json"):
        HFEngine(tmp_path)
    (tmp_path / "adapter").mkdir()
    with pytest.raises(KitError, match="adapter_config.json"):
        HFEngine(tiny_llama, tmp_path / "adapter")


@pytest.mark.parametrize("model", ["tiny_llama", "tiny_gemma3"])
def test_shared_prefix_generation_matches_plain(model, request):
    """Greedy decoding from the shared prefix cache gives the tokens transformers' own
    generate gives for each prompt alone."""
    from kit.engine.hf import HFEngine

    eng = HFEngine(request.getfixturevalue(model))
    msgs = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]
            for q in ("Hello", "What do you write in the log every evening?", "Storms?")]
    greedy = GenParams(temperature=0.0, max_tokens=12)
    shared = eng.complete_batch(msgs, greedy)
    assert (eng._prefix is not None) == (model != "tiny_gemma3")  # gemma 3: sliding window, plain generate
    eng.prefix_cache = False
    plain = [eng.complete(m, greedy) for m in msgs]
    assert shared == plain
    eng.prefix_cache = True
    a = eng.complete_batch(msgs, GenParams(temperature=0.9, max_tokens=12, seed=5))
    b = eng.complete_batch(msgs, GenParams(temperature=0.9, max_tokens=12, seed=5))
    assert a == b


def test_sampling_kwargs_keep_sampling_with_and_without_repeat_penalty():
    from kit.engine.base import GenParams
    from kit.engine.hf import HFEngine

    fake = HFEngine.__new__(HFEngine)  # only the kwargs builder is exercised: no model needed
    fake.tok = type("Tok", (), {"pad_token_id": 0})()
    kw = HFEngine._gen_kwargs(fake, GenParams(temperature=0.7, repeat_penalty=1.0))
    assert kw["do_sample"] is True and kw["temperature"] == 0.7 and "repetition_penalty" not in kw
    kw = HFEngine._gen_kwargs(fake, GenParams(temperature=0.7, repeat_penalty=1.2))
    assert kw["do_sample"] is True and kw["repetition_penalty"] == 1.2
    kw = HFEngine._gen_kwargs(fake, GenParams(temperature=0, repeat_penalty=1.2))
    assert kw["do_sample"] is False and kw["repetition_penalty"] == 1.2
