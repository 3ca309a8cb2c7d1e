"""Assistant-only loss masks, chat-template choice, general-data mixing and presets."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from kit.errors import KitError  # noqa: E402
from kit.tuning.data import (assistant_spans, load_records, mix_general, resolve_chat_template,  # noqa: E402
                            tokenize_with_mask)

MSGS = [{"role": "system", "content": "You are Ada."}, {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello, friend."}, {"role": "user", "content": "More?"},
        {"role": "assistant", "content": "Yes, two spans."}]


@pytest.mark.parametrize("name", ["tiny-llama-spm", "tiny-qwen2", "tiny-gemma3"])
def test_mask_covers_exactly_the_assistant_turns(name, perskit_home):
    from kit.models.resolve import materialize
    from kit.tuning.hf import load_tokenizer

    path = materialize(name)
    tok = load_tokenizer(path)
    tpl = resolve_chat_template(tok, name, path, None)
    row = tokenize_with_mask(tok, tpl, MSGS)
    ids, mask = row["input_ids"], row["assistant_masks"]
    assert len(ids) == len(mask) and 0 < sum(mask) < len(mask)
    trained = tok.decode([i for i, m in zip(ids, mask) if m])
    ignored = tok.decode([i for i, m in zip(ids, mask) if not m])
    for turn in ("Hello, friend.", "Yes, two spans."):
        assert turn.replace(" ", "") in trained.replace(" ", "")
    for other in ("You are Ada.", "Hi there", "More?"):
        assert other.replace(" ", "") not in trained.replace(" ", "")
        assert other.replace(" ", "") in ignored.replace(" ", "")
    # The end-of-turn token is trained on, so the model learns to stop.
    assert trained.count(tok.eos_token) == 2 or tok.convert_tokens_to_ids(tok.eos_token) in \
        [i for i, m in zip(ids, mask) if m]
    # Two separate spans: the user turn between them is masked.
    runs = sum(1 for a, b in zip([0] + mask, mask) if b and not a)
    assert runs == 2


def test_spans_are_char_exact_for_chatml(perskit_home):
    from kit.models.resolve import materialize
    from kit.tuning.hf import load_tokenizer

    tok = load_tokenizer(materialize("tiny-qwen2"))
    text, spans = assistant_spans(tok, tok.chat_template, MSGS)
    assert [text[a:b] for a, b in spans] == ["Hello, friend.<|im_end|>\n", "Yes, two spans.<|im_end|>\n"]


def test_template_fallbacks(tmp_path, perskit_home):
    from kit.models.presets import GEMMA, preset_for
    from kit.models.resolve import materialize
    from kit.tuning.hf import load_tokenizer

    path = materialize("tiny-llama-spm")
    tok = load_tokenizer(path)
    own = tok.chat_template
    assert resolve_chat_template(tok, "x", path, None) == own
    f = tmp_path / "t.jinja"
    f.write_text(GEMMA)
    assert resolve_chat_template(tok, "x", path, f) == GEMMA
    tok.chat_template = None  # a base model without a template gets its family's
    assert resolve_chat_template(tok, "google/gemma-3-270m", path, None) == preset_for("gemma-3-270m").chat_template
    with pytest.raises(KitError, match="chat template file not found"):
        resolve_chat_template(tok, "x", path, tmp_path / "missing.jinja")


def test_presets_pick_family():
    from kit.models.presets import preset_for

    assert preset_for("openbmb/MiniCPM-2B-sft-bf16").family == "minicpm"
    assert preset_for("Qwen/Qwen2.5-1.5B-Instruct").family == "qwen2"
    assert preset_for("meta-llama/Llama-3.2-1B-Instruct").family == "llama3"
    assert preset_for("google/gemma-3-1b-it").family == "gemma3"
    assert preset_for("smollm2-135m-instruct").family == "smollm2"
    assert preset_for("some/unknown-model").family == "generic"
    assert "o_proj" in preset_for("generic").target_modules


def test_mix_general_ratio_and_bad_rows(tmp_path):
    persona = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
               for i in range(30)]
    gen = tmp_path / "general.jsonl"
    gen.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"g{i}"},
                                                    {"role": "assistant", "content": "b"}]}) + "\n"
                           for i in range(50)))
    mixed, n = mix_general(persona, gen, 0.25, seed=0)
    assert n == 10 and len(mixed) == 40
    assert sum(r.get("meta", {}).get("source") == "general" for r in mixed) == 10
    assert mix_general(persona, None, 0.25, 0) == (persona, 0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "only a question"}]}) + "\n")
    with pytest.raises(KitError, match="line 1 has no assistant turn"):
        load_records(bad)
    with pytest.raises(KitError, match="not found"):
        load_records(tmp_path / "nope.jsonl")


def test_gold_repeat_copies_only_the_gold_rows_and_sizes_the_epochs(tmp_path):
    """``train.gold_repeat`` adds copies of the gold rows (and nothing else) to the file the
    backend trains on, and ``train.epochs`` then counts passes over the enlarged file."""
    from kit.rundir import read_jsonl, write_jsonl
    from kit.train.config import TrlTrain
    from kit.train.stage import _sized, _with_gold_repeat

    def row(i, source):
        return {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
                "meta": {"source": source}}

    train = tmp_path / "train.jsonl"
    write_jsonl(train, [row(0, "gold"), row(1, "backtranslation"), row(2, "teacher"), row(3, "gold")])
    cfg = TrlTrain(model="tiny-llama-spm", epochs=2, batch_size=2)
    assert _with_gold_repeat(cfg, train, tmp_path, print) == train  # gold_repeat 1: the file itself
    cfg = cfg.model_copy(update={"gold_repeat": 3})
    data = _with_gold_repeat(cfg, train, tmp_path, print)
    questions = [r["messages"][0]["content"] for r in read_jsonl(data)]
    assert sorted(questions) == ["q0", "q0", "q0", "q1", "q2", "q3", "q3", "q3"]
    assert read_jsonl(train) and len(read_jsonl(train)) == 4  # construct's file is untouched
    assert _sized(cfg, data, print).max_steps == 8  # 2 epochs x 8 rows / batch 2
