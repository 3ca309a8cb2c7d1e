"""LlamaCppEngine, the sandboxed chat template, bundle loading and context fitting."""

from __future__ import annotations

import json
import math

import pytest

from chat_helpers import STAGES, make_bundle, smollm2_gguf, tiny_gguf
from kit.chat.context import fit_messages
from kit.engine.base import ChatEngine, GenParams
from kit.engine.bundle import load_bundle, parse_modelfile
from kit.engine.llamacpp import ChatTemplate, LlamaCppEngine, check_gguf
from kit.errors import KitError

MSGS = [{"role": "system", "content": "You are Ada."}, {"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def gguf(perskit_home):
    return tiny_gguf(perskit_home)


@pytest.fixture(scope="module")
def engine(gguf):
    e = LlamaCppEngine(gguf, n_ctx=512, stop=["<|im_end|>"])
    yield e
    e.close()


# -- sandboxed template ------------------------------------------------------------------------
def test_template_renders_like_hf():
    t = ChatTemplate("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                     "{% if add_generation_prompt %}<assistant>{% endif %}", bos_token="<s>")
    assert t.render(MSGS) == "<system>You are Ada.\n<user>hello there\n<assistant>"


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",          # classic sandbox escape
    "{% set x = messages.append({'role': 'x'}) %}{{ x }}",      # mutation: immutable sandbox refuses
])
def test_template_sandbox_blocks_unsafe(source):
    with pytest.raises(KitError, match="unsafe"):
        ChatTemplate(source).render(MSGS)


def test_template_errors_are_one_line():
    with pytest.raises(KitError, match="does not compile"):
        ChatTemplate("{% for m in messages %}")
    with pytest.raises(KitError, match="failed to render.*roles must alternate"):
        ChatTemplate("{{ raise_exception('roles must alternate') }}").render(MSGS)


# -- files ---------------------------------------------------------------------------------------
def test_missing_and_corrupt_gguf(tmp_path):
    with pytest.raises(KitError, match="not found"):
        check_gguf(tmp_path / "nope.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(KitError, match="not a GGUF"):
        LlamaCppEngine(bad)
    truncated = tmp_path / "trunc.gguf"
    truncated.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(KitError, match="could not load"):
        LlamaCppEngine(truncated)


def test_bad_lora_is_one_line_error(tmp_path, gguf):
    bad = tmp_path / "lora.gguf"
    bad.write_bytes(b"nope")
    with pytest.raises(KitError, match="not a GGUF"):
        LlamaCppEngine(gguf, lora_path=bad)
    with pytest.raises(KitError, match="not a LoRA adapter"):  # a model GGUF is not a LoRA adapter
        LlamaCppEngine(gguf, lora_path=gguf, n_ctx=256)


def test_bundle_without_manifest_and_bad_manifest(tmp_path):
    with pytest.raises(KitError, match="no manifest.json"):
        load_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(KitError, match="not valid JSON"):
        load_bundle(tmp_path)


@pytest.mark.parametrize("layout", ["export", "brief"])
def test_bundle_loads_manifest_and_modelfile(tmp_path, gguf, layout):
    b = load_bundle(make_bundle(tmp_path / "ada", gguf, layout=layout, chat_template="{{ messages[0]['content'] }}"))
    assert (b.persona_id, b.name, b.quant, b.default_stage) == ("ada-lin", "Ada Lin", "f16", "young")
    assert [s.id for s in b.stages] == ["young", "late"]
    assert b.stage("late").system_prompt == STAGES[1]["system_prompt"]
    assert b.stop == ["<|im_end|>"]
    # kit/export keeps the jinja template in the GGUF; a jinja string in the manifest overrides it.
    assert b.chat_template == (None if layout == "export" else "{{ messages[0]['content'] }}")
    with pytest.raises(KitError, match="unknown stage"):
        b.stage("middle")
    with pytest.raises(KitError, match="no 'Q8_0' GGUF"):
        load_bundle(tmp_path / "ada", quant="Q8_0")
    # Missing optional keys fall back: no gguf map (files discovered), no stages, no stops.
    minimal = tmp_path / "min"
    make_bundle(minimal, gguf, persona_id="min", layout=layout)
    (minimal / "manifest.json").write_text(json.dumps({"persona": {"id": "min"}}), encoding="utf-8")
    m = load_bundle(minimal)
    assert m.gguf.name == "min-f16.gguf" and m.stages[0].system_prompt == STAGES[0]["system_prompt"]
    assert m.stop == ["<|im_end|>"]  # from the Modelfile's PARAMETER stop


def test_parse_modelfile(tmp_path):
    p = tmp_path / "Modelfile"
    p.write_text('FROM ./ada-Q4_K_M.gguf\nTEMPLATE """{{ .System }}\n{{ .Prompt }}"""\n'
                 'SYSTEM """You are Ada.\nBe brief."""\nPARAMETER stop "<|im_end|>"\nPARAMETER stop "</s>"\n')
    m = parse_modelfile(p)
    assert m["from"] == "./ada-Q4_K_M.gguf" and m["system"] == "You are Ada.\nBe brief."
    assert m["stop"] == ["<|im_end|>", "</s>"] and "{{ .Prompt }}" in m["template"]


def test_bare_gguf_with_system_and_template(tmp_path, gguf):
    tpl = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant] "
    b = load_bundle(gguf, system="You are Bo.", template=tpl)
    assert b.stages[0].system_prompt == "You are Bo."
    e = b.open_engine(n_ctx=256)
    try:
        assert e.render(MSGS) == "[system] You are Ada.\n[user] hello there\n[assistant] "
    finally:
        e.close()


# -- real GGUF -------------------------------------------------------------------------------------
def test_engine_streams_and_reports_usage(engine):
    assert isinstance(engine, ChatEngine)
    assert "<|im_start|>" in engine.render(MSGS)  # the GGUF's own template, from its metadata
    pieces = list(engine.stream(MSGS, GenParams(max_tokens=8, temperature=0)))
    assert pieces and all(isinstance(p, str) for p in pieces)
    u = engine.last_usage
    assert u["prompt_tokens"] == engine.count_tokens(MSGS) and 1 <= u["completion_tokens"] <= 8
    assert u["ttft_s"] is not None and u["finish_reason"] in ("length", "stop")


def test_engine_is_deterministic_at_temperature_zero_and_with_seed(engine):
    p0 = GenParams(max_tokens=8, temperature=0)
    assert engine.complete(MSGS, p0) == engine.complete(MSGS, p0)
    ps = GenParams(max_tokens=8, temperature=1.0, seed=7)
    assert engine.complete(MSGS, ps) == engine.complete(MSGS, ps)


def test_seed_minus_one_samples_afresh_in_every_process(gguf):
    """seed -1 (the bundles' default) means random: a new engine (a new `chat --prompt`, a new
    chat) must not give the same first sampled reply every time, as llama.cpp's default seed did."""
    p = GenParams(max_tokens=8, temperature=1.0, seed=-1)
    firsts = set()
    for _ in range(4):
        e = LlamaCppEngine(gguf, n_ctx=256, stop=["<|im_end|>"])
        firsts.add(e.complete(MSGS, p))
        e.close()
    assert len(firsts) > 1


def test_closing_the_stream_stops_generation(engine):
    gen = engine.stream(MSGS, GenParams(max_tokens=64, temperature=0))
    first = next(gen)
    gen.close()
    assert first and engine.last_usage["completion_tokens"] == 1
    assert engine.last_usage["finish_reason"] == "stopped"


def test_choice_logprobs_match_a_second_evaluation(engine):
    choices = ["1", "2", "3", "4", "5"]
    a = engine.choice_logprobs(MSGS, choices, prefix="Answer: ")
    _ = engine.complete(MSGS, GenParams(max_tokens=4, temperature=0))  # moves the KV cache elsewhere
    b = engine.choice_logprobs(MSGS, choices, prefix="Answer: ")
    assert a == pytest.approx(b, abs=1e-4)
    assert all(x < 0 for x in a) and sum(math.exp(x) for x in a) <= 1.0 + 1e-6


def test_prompt_longer_than_context_is_one_line_error(gguf):
    e = LlamaCppEngine(gguf, n_ctx=128)
    try:
        long = [{"role": "user", "content": "word " * 400}]
        with pytest.raises(KitError, match="context holds 128"):
            list(e.stream(long, GenParams(max_tokens=4)))
        fitted, notice = fit_messages(long, e.n_ctx, 16, e.count_tokens)
        assert notice and "cut" in notice and e.count_tokens(fitted) <= e.n_ctx - 16
        assert list(e.stream(fitted, GenParams(max_tokens=4, temperature=0)))
    finally:
        e.close()


def test_fit_messages_drops_oldest_turns_keeps_system():
    msgs = [{"role": "system", "content": "S" * 40}] + [
        {"role": r, "content": f"{r} {i} " + "x" * 80} for i in range(6) for r in ("user", "assistant")]
    msgs.append({"role": "user", "content": "last question"})
    fitted, notice = fit_messages(msgs, n_ctx=200, reserve=50)
    assert fitted[0]["role"] == "system" and fitted[-1]["content"] == "last question"
    assert fitted[1]["role"] == "user" and len(fitted) < len(msgs)
    assert notice.startswith("context full (200 tokens)")
    assert fit_messages(msgs[:2], 2048, 256) == (msgs[:2], None)


@pytest.mark.slow
def test_smollm2_answers_in_english():
    e = LlamaCppEngine(smollm2_gguf(), n_ctx=512)
    try:
        msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
        assert "paris" in e.complete(msgs, GenParams(max_tokens=12, temperature=0)).lower()
        paris, london, berlin = e.choice_logprobs(msgs, ["Paris", "London", "Berlin"])
        assert paris > max(london, berlin) + 3
    finally:
        e.close()


@pytest.mark.slow
def test_real_lora_gguf_changes_the_model(tmp_path, perskit_home, gguf):
    """A PEFT LoRA on the tiny Llama, converted by llama.cpp's converter, applied in-process."""
    if gguf.name.startswith("SmolLM2"):
        pytest.skip("the llama.cpp converter is not installed (scripts/fetch_converter.py)")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kit.export.ggufops import convert_lora
    from kit.models.resolve import materialize

    base = materialize("tiny-llama-spm")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base)
    # init_lora_weights=False: random A and B, so the adapter visibly changes the logits.
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    convert_lora(tmp_path / "adapter", base, tmp_path / "lora.gguf")
    plain = LlamaCppEngine(gguf, n_ctx=256)
    with_lora = LlamaCppEngine(gguf, lora_path=tmp_path / "lora.gguf", n_ctx=256)
    try:
        choices = ["a", "b", "c"]
        a, b = plain.choice_logprobs(MSGS, choices), with_lora.choice_logprobs(MSGS, choices)
        assert max(abs(x - y) for x, y in zip(a, b)) > 1e-3
    finally:
        plain.close()
        with_lora.close()
