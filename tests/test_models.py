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
