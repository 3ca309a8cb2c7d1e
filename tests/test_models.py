"""Tiny local models load with transformers and generate; materialize caches and validates."""

from __future__ import annotations

import pytest

from kit.errors import KitError
from kit.models.resolve import materialize


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_qwen2", "tiny_gemma3"])
def test_tiny_model_loads_and_generates(fixture, request):
    import torch
    import transformers

    path = request.getfixturevalue(fixture)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    assert tok.chat_template, "a chat template must be saved with the tokenizer"
    enc = tok.apply_chat_template([{"role": "user", "content": "Hello, who are you?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]
    assert sum(p.numel() for p in model.parameters()) < 500_000


def test_materialize_is_cached_and_deterministic(tiny_llama):
    again = materialize("tiny-llama-spm")
    assert again == tiny_llama and (again / ".complete").exists()
    assert (tiny_llama / "tokenizer.model").exists()  # SentencePiece: llama.cpp's converter accepts it


def test_parallel_builders_share_one_build(tmp_path, monkeypatch):
    """Two builders (two test workers, two runs) asking for the same model in one cache: one
    builds under the lock, the other waits and gets the same finished folder; nothing is left
    half-written or replaced under a reader. (flock locks open files, so threads contend like
    processes do.)"""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from kit.models import tiny

    builds = []

    def slow_build(name, out):
        builds.append(name)
        time.sleep(0.5)  # the second builder arrives while the first is still writing
        return real(name, out)

    real = tiny.build_tiny
    monkeypatch.setattr(tiny, "build_tiny", slow_build)
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda _: materialize("tiny-qwen2", cache_dir=tmp_path), range(2)))
    assert builds == ["tiny-qwen2"] and got[0] == got[1] and (got[0] / ".complete").exists()
    name = f"tiny-qwen2-b{tiny.TINY_BUILD}-hf"
    assert sorted(x.name for x in tmp_path.iterdir()) == [f".{name}.lock", name]  # no temp folder left


def test_build_lock_lets_one_builder_in_at_a_time(tmp_path):
    import threading
    import time

    from kit.rundir import build_lock

    inside, order = threading.Event(), []

    def first():
        with build_lock(tmp_path / "model"):
            inside.set()
            time.sleep(0.3)
            order.append("first done")

    t = threading.Thread(target=first)
    t.start()
    inside.wait(10)
    with build_lock(tmp_path / "model"):  # waits for the first builder
        order.append("second in")
    t.join()
    assert order == ["first done", "second in"]


def test_materialize_rejects_unknown(tmp_path):
    with pytest.raises(KitError, match="not a folder"):
        materialize("no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KitError, match="no config.json"):
        materialize(str(tmp_path / "empty"))


@pytest.mark.slow
def test_embedded_smollm2_dequantizes_and_answers():
    import transformers

    path = materialize("smollm2-135m-instruct")
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    enc = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0][enc["input_ids"].shape[1]:])
