"""Export pieces that need no model: chat-template -> Ollama TEMPLATE, Modelfile, character
cards and their PNG, converter install from an sdist, adapter discovery, quant names."""

from __future__ import annotations

import base64
import io
import json
import struct
import tarfile
import zlib
from pathlib import Path

import pytest

from kit.errors import KitError
from kit.export import card as cards
from kit.export import ollama
from kit.models import presets, tiny

# The published templates the embedded models ship (SmolLM2-Instruct and a Gemma 3-style one).
SMOLLM2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
           "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
           "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
           "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
GEMMA3 = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first_user_prefix = messages[0]['content'] "
          "+ '\n\n' %}{% set loop_messages = messages[1:] %}{% else %}{% set first_user_prefix = '' %}"
          "{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}"
          "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
          "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim "
          "+ '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")


@pytest.mark.parametrize("template,family", [
    (tiny.CHATML, "chatml"), (SMOLLM2, "chatml"), (presets.LLAMA3, "llama3"),
    (presets.GEMMA, "gemma"), (tiny.GEMMA, "gemma"), (GEMMA3, "gemma3"),
])
def test_template_families_match_jinja(template, family):
    # SmolLM2's tokenizer calls <|im_start|> its BOS; the template does not print bos_token.
    bos = {"llama3": "<|begin_of_text|>", "gemma": "<bos>", "gemma3": "<bos>"}.get(family, "<|im_start|>")
    fam = ollama.detect_family(template, bos=bos)
    assert fam.name == family
    ref = ollama.render_jinja(template, ollama.SAMPLE, bos=bos)
    ref = ref.removeprefix(bos) if "bos_token" in template else ref
    assert fam.render(ollama.SAMPLE) == ref


def test_chatml_go_template_text():
    fam = ollama.detect_family(tiny.CHATML)
    assert fam.go_template() == (
        '{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}'
        '{{- range .Messages }}{{- if ne .Role "system" }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n'
        '{{ end }}{{- end }}<|im_start|>assistant\n')
    gemma = ollama.detect_family(tiny.GEMMA, bos="<bos>").go_template()
    assert '{{ if eq .Role "assistant" }}model{{ else }}' in gemma and gemma.endswith("<start_of_turn>model\n")


def test_unknown_template_fails_clearly():
    alpaca = "{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}\n\n{% endfor %}### assistant:\n"
    with pytest.raises(KitError, match="no Ollama TEMPLATE translation") as exc:
        ollama.detect_family(alpaca)
    assert "jinja" in exc.value.one_line()
    # A ChatML look-alike that renders differently is not accepted either.
    with pytest.raises(KitError):
        ollama.detect_family(tiny.CHATML.replace("'\n' }}{% endfor %}", "'\n\n' }}{% endfor %}"))


def test_modelfile_round_trip_and_quoting():
    text = ollama.modelfile("a-Q4_K_M.gguf", system="You are Ada.\nBe brief.", template="{{ .Prompt }}",
                            stops=["<|im_end|>", 'x"y'], params={"temperature": 0.7}, comment="made by perskit")
    parsed = ollama.parse_modelfile(text)
    assert parsed["FROM"] == "./a-Q4_K_M.gguf" and parsed["SYSTEM"] == "You are Ada.\nBe brief."
    assert parsed["TEMPLATE"] == "{{ .Prompt }}"
    assert parsed["PARAMETER"] == [("stop", "<|im_end|>"), ("stop", 'x"y'), ("temperature", "0.7")]
    with pytest.raises(KitError, match='"""'):
        ollama.modelfile("a.gguf", system='say """hi"""', template=None, stops=[])
    with pytest.raises(KitError, match="no FROM"):
        ollama.parse_modelfile('SYSTEM """x"""\n')




@pytest.fixture()
def persona(tmp_path):
    from kit.spec.persona import load_persona

    (tmp_path / "persona.yaml").write_text(
        "id: ada\nname: Ada Lin\nidentity: A bridge engineer.\nstyle: [Plain]\n"
        "stages:\n  - {id: young, label: Young, period: 1950s}\n  - {id: old, label: Old, period: 1990s}\n"
        "big_five: {O: high, C: 4.5, E: low, A: medium, N: low}\n"
        "gold:\n  - {q: 'What do you build?', a: 'Bridges.'}\n")
    return load_persona(tmp_path)


def test_card_v2_v3_valid(persona):
    v2 = cards.build_card_v2(persona, stage_id=None, model_file="ada-Q4_K_M.gguf")
    cards.validate_card(v2)
    assert v2["data"]["system_prompt"] == persona.spec.system_prompt("old")
    assert "{{user}}: What do you build?" in v2["data"]["mes_example"]
    v3 = cards.build_card_v3(v2)
    cards.validate_card(v3)
    bad = json.loads(json.dumps(v2))
    bad["data"]["tags"] = "x"
    with pytest.raises(KitError, match="data.tags"):
        cards.validate_card(bad)
    with pytest.raises(KitError, match="bad card spec"):
        cards.validate_card({"spec": "chara_card_v1", "data": {}})


def test_card_png_round_trip_and_reembed(persona, tmp_path):
    v2 = cards.build_card_v2(persona, stage_id="young", model_file="m.gguf")
    png = cards.card_png(tmp_path, "ada", {"chara": v2, "ccv3": cards.build_card_v3(v2)})
    back = cards.read_cards(png)
    assert back["chara"] == v2 and back["ccv3"]["spec"] == "chara_card_v3"
    # Independent check of the image itself: IHDR says 256x256 RGB and IDAT inflates to it.
    chunks = dict((k, p) for k, p in cards.read_chunks(png) if k in (b"IHDR", b"IDAT"))
    w, h, depth, ctype = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (w, h, depth, ctype) == (256, 256, 8, 2)
    assert len(zlib.decompress(chunks[b"IDAT"])) == h * (1 + 3 * w)
    # Re-embedding replaces the card instead of adding a second one.
    v2b = json.loads(json.dumps(v2))
    v2b["data"]["name"] = "Ada L."
    again = cards.embed_cards(png, {"chara": v2b})
    texts = [p.split(b"\0", 1)[0] for k, p in cards.read_chunks(again) if k == b"tEXt"]
    assert texts == [b"chara"] and cards.read_cards(again)["chara"]["data"]["name"] == "Ada L."
    # A user's avatar.png is used as the image.
    (tmp_path / "avatar.png").write_bytes(cards.solid_png("other", size=8))
    with_avatar = cards.card_png(tmp_path, "ada", {"chara": v2})
    assert struct.unpack(">II", cards.read_chunks(with_avatar)[0][1][:8]) == (8, 8)


def test_png_corruption_is_detected(persona, tmp_path):
    v2 = cards.build_card_v2(persona, stage_id=None, model_file="m.gguf")
    png = bytearray(cards.card_png(tmp_path, "ada", {"chara": v2}))
    png[40] ^= 0xFF
    with pytest.raises(KitError, match="CRC"):
        cards.read_cards(bytes(png))
    with pytest.raises(KitError, match="not a PNG"):
        cards.read_cards(b"GIF89a")
    data = base64.b64encode(b"not json")
    bad = cards.embed_cards(cards.solid_png("x", 4), {})
    bad = bad[:-12] + cards._chunk(b"tEXt", b"chara\0" + data) + bad[-12:]
    with pytest.raises(KitError, match="not base64 JSON"):
        cards.read_cards(bad)


def _fake_sdist(path: Path, version: str = "9.9.9", evil: bool = False) -> Path:
    root = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    files = {root + "convert_hf_to_gguf.py": b"print('hf')\n", root + "convert_lora_to_gguf.py": b"print('lora')\n",
             root + "conversion/__init__.py": b"", root + "gguf-py/gguf/__init__.py": b"",
             root + "gguf-py/gguf/scripts/gguf_dump.py": b"", root + "ggml/src/big.c": b"x" * 100,
             root + "LICENSE": b"MIT\n"}
    if evil:
        files[root + "conversion/../../../../escape.py"] = b"bad"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_install_converter_from_sdist(tmp_path, monkeypatch):
    from kit.export import converter

    dest = converter.install_from_sdist(_fake_sdist(tmp_path / "s.tar.gz"), tmp_path / "llama.cpp-9.9.9")
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert got == [".complete", "LICENSE", "conversion/__init__.py", "convert_hf_to_gguf.py",
                   "convert_lora_to_gguf.py", "gguf-py/gguf/__init__.py"]
    monkeypatch.setenv("PERSKIT_CONVERTER_DIR", str(dest))
    assert converter.converter_dir() == dest
    with pytest.raises(KitError, match="unsafe path"):
        converter.install_from_sdist(_fake_sdist(tmp_path / "e.tar.gz", evil=True), tmp_path / "evil")
    assert not (tmp_path.parent / "escape.py").exists() and not (tmp_path / "evil").exists()


def test_missing_converter_is_one_line(tmp_path, monkeypatch):
    from kit.export import converter

    monkeypatch.setenv("PERSKIT_CONVERTER_DIR", str(tmp_path / "nothing"))
    with pytest.raises(KitError) as exc:
        converter.converter_dir()
    assert "fetch_converter.py" in exc.value.one_line() and "\n" not in exc.value.one_line()


def test_find_adapter_prefers_dpo_and_rejects_empty(tmp_path):
    from kit.export import merge

    with pytest.raises(KitError, match="no trained adapter"):
        merge.find_adapter(tmp_path)
    for stage in ("sft", "dpo"):
        a = tmp_path / stage / "adapter"
        a.mkdir(parents=True)
        (a / "adapter_config.json").write_text("{}")
        (a / "adapter_model.safetensors").write_bytes(b"")
    assert merge.find_adapter(tmp_path) == ("dpo", tmp_path / "dpo" / "adapter")
    (tmp_path / "dpo" / "adapter" / "adapter_model.safetensors").unlink()
    assert merge.find_adapter(tmp_path)[0] == "sft"
    mlx = tmp_path / "mlx"
    mlx.mkdir()
    (mlx / "adapter_config.json").write_text("{}")
    (mlx / "adapters.safetensors").write_bytes(b"")
    with pytest.raises(KitError, match="not an mlx-lm LoRA adapter config"):  # converted, not guessed at
        merge.merge_adapter(tmp_path, mlx, tmp_path / "out")
    (mlx / "adapter_config.json").write_text('{"fine_tune_type": "dora", "lora_parameters": {"rank": 4, "scale": 2}}')
    with pytest.raises(KitError, match="cannot be exported as a LoRA"):
        merge.merge_adapter(tmp_path, mlx, tmp_path / "out")


def test_quant_names():
    from kit.export.ggufops import check_quants, read_header

    assert check_quants(["q4_k_m", "Q8_0", "Q4_K_M", "F16"]) == ["Q4_K_M", "Q8_0", "f16"]
    with pytest.raises(KitError, match="unknown quant 'Q3_XL'"):
        check_quants(["Q3_XL"])
    with pytest.raises(KitError, match="no quant"):
        check_quants([])
    with pytest.raises(KitError, match="cannot read GGUF"):
        read_header(Path("/nonexistent/x.gguf"))


@pytest.fixture()
def staged_persona(tmp_path):
    from kit.spec.persona import load_persona

    (tmp_path / "persona.yaml").write_text(
        "id: ada\nname: Ada Lin\nidentity: A bridge engineer.\nstyle: [Plain]\n"
        "stages:\n  - {id: young, label: Young, period: 1950s}\n  - {id: old, label: Old, period: 1990s}\n"
        "big_five: {O: high, C: 4.5, E: low, A: medium, N: low}\n"
        "gold:\n"
        "  - {q: 'What do you do all day?', a: 'I trace drawings.', stage: young}\n"
        "  - {q: 'Is it hard?', a: 'Only when the foreman is wrong.', stage: young, type: opinion}\n"
        "  - {q: 'You studied at Oxford, right?', a: 'No. Stannard Tech, nights.', stage: young,"
        " type: anti_induction, induction: false_premise}\n"
        "  - {q: 'What are you proud of?', a: 'The viaduct still stands.'}\n")
    return load_persona(tmp_path)


def test_stage_cards_take_that_stages_gold_answers(staged_persona):
    young = cards.build_card_v2(staged_persona, stage_id="young", model_file="m.gguf")["data"]
    old = cards.build_card_v2(staged_persona, stage_id="old", model_file="m.gguf")["data"]
    assert young["first_mes"].endswith("I trace drawings.") and "Young, 1950s" in young["first_mes"]
    assert [g.split("\n\n")[-1] for g in young["alternate_greetings"]] == ["Only when the foreman is wrong."]
    assert "Stannard Tech" in young["mes_example"] and "viaduct" not in young["mes_example"]
    assert old["first_mes"].endswith("The viaduct still stands.") and old["alternate_greetings"] == []
    assert young["system_prompt"] != old["system_prompt"]
    assert young["extensions"]["perskit"]["model_id"] == "ada:young"


def test_companion_files_per_stage(staged_persona):
    from kit.export import companion

    files = companion.stage_files(staged_persona, style={"brief": True}, primary="ada-Q4_K_M.gguf",
                                  go_template=None, stops=["<|im_end|>"], params={"temperature": 0.6},
                                  family="chatml", card=True)
    for st in ("young", "old"):
        mf = ollama.parse_modelfile(files[f"Modelfile.{st}"].decode())
        assert mf["SYSTEM"] == staged_persona.spec.system_prompt(st, brief=True)
        assert ("temperature", "0.6") in mf["PARAMETER"]
        png = cards.read_cards(files[f"ada.{st}.card.png"])
        assert png["chara"]["data"]["extensions"]["perskit"]["stage"] == st
        assert png["ccv3"]["spec"] == "chara_card_v3"
        assert json.loads(files[f"ada.{st}.card.v3.json"])["data"]["first_mes"] == png["chara"]["data"]["first_mes"]
    # The unsuffixed files are the last stage, as in older bundles.
    assert files["Modelfile"] == files["Modelfile.old"] and files["ada.card.json"] == files["ada.old.card.json"]


def test_base_model_licence_and_model_card(staged_persona, tmp_path):
    from kit.export import modelcard

    smol = modelcard.base_model_info("smollm2-135m-instruct")
    assert (smol.repo, smol.license) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")
    gemma = modelcard.base_model_info("gemma3-270m")
    assert gemma.license == "gemma" and "Gemma Terms of Use" in modelcard.licence_notice(gemma)
    # The base folder's own model card and licence file win over the table.
    base = tmp_path / "base"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: llama3.2\nbase_model: meta-llama/Llama-3.2-1B\n---\n# hi\n")
    (base / "LICENSE.txt").write_text("LLAMA 3.2 COMMUNITY LICENSE AGREEMENT ...")
    llama = modelcard.base_model_info("meta-llama/Llama-3.2-1B-Instruct", base)
    assert llama.license == "llama3.2" and "LICENSE.txt" in llama.licence_files
    assert "Built with Llama" in modelcard.licence_notice(llama)
    unknown = modelcard.base_model_info("tiny-llama-spm")
    assert "could not determine" in modelcard.licence_notice(unknown)
    meta = modelcard.gguf_metadata(smol, "Ada Lin (perskit)")
    assert meta["general.license"] == "apache-2.0" and meta["general.base_models"][0]["organization"] == "HuggingFaceTB"

    report = tmp_path / "report.md"
    report.write_text("# Evaluation\n\n## Summary\n\n| metric | prompted | dpo |\n|---|---|---|\n"
                      "| knowledge_accuracy | 0.60 | 0.80 |\n| style_cosine | 0.36 | 0.27 |\n\n## Big Five\n\n| x |\n")
    text = modelcard.model_card(persona=staged_persona, info=smol, recipe={"name": "quickstart", "train": {
        "backend": "trl", "max_steps": 45, "learning_rate": 4e-4, "lora": {"r": 16, "alpha": 32}},
        "dpo": {"enabled": True, "beta": 0.1, "max_steps": 15}, "teacher": {"kind": "llamacpp"}},
        stages=[{"id": "young", "label": "Young", "period": "1950s"}], files=["ada-Q4_K_M.gguf"],
        sampling={"temperature": 0.6}, parity={"Q4_K_M": {"top1": 0.82}}, eval_report=report,
        primary="ada-Q4_K_M.gguf")
    front = modelcard.front_matter(text)
    assert front["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and front["license"] == "apache-2.0"
    assert front["tags"][:2] == ["gguf", "persona"]
    assert "| style_cosine | 0.36 | 0.27 |" in text and "Big Five" not in text.split("## Evaluation")[1][:300]
    assert "`ada:young`" in text and "--jinja" in text and "## Intended use and limits" in text
    no_eval = modelcard.model_card(persona=staged_persona, info=smol, recipe={}, stages=[], files=[], sampling={},
                                   parity={}, eval_report=tmp_path / "missing.md", primary="m.gguf")
    assert "not evaluated" in no_eval


def test_parity_gate_ignores_rounding_ties_but_not_clear_flips():
    """A flip between two logits 0.01 apart (f16 rounding) leaves top1_clear at 1.0; a flip
    where the reference's top token leads by 2 nats counts."""
    import numpy as np

    from kit.export.parity import compare

    ref = np.array([[5.0, 4.99, 0.0], [3.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
    tie_flip = ref.copy()
    tie_flip[0] = [4.99, 5.0, 0.0]
    r = compare([ref], [tie_flip])
    assert r["top1"] < 1.0 and r["top1_clear"] == 1.0 and r["clear_positions"] == 2
    clear_flip = ref.copy()
    clear_flip[1] = [1.0, 3.0, 0.0]
    r = compare([ref], [clear_flip])
    assert r["top1_clear"] == 0.5
