"""Export end to end on the tiny SentencePiece Llama: PEFT adapter -> merged HF -> f16 GGUF ->
Q8_0 / Q4_K_M -> LoRA GGUF -> Modelfile + card -> verified bundle, plus the bad inputs.

The adapter is a real PEFT LoRA with random non-zero A and B (init_lora_weights=False),
made here so the test does not depend on the train stage. One export runs per module
(~25 s on one core); the other tests read its bundle.
"""

from __future__ import annotations

import errno
import json
import shutil
import textwrap
from pathlib import Path

import pytest

from kit.errors import KitError
from conftest import run_cli

pytestmark = pytest.mark.slow

PERSONA = """\
id: tess
name: Tess Moreau
identity: A retired lighthouse keeper who talks about the sea.
style: ["Short sentences", "Mentions the weather"]
stages:
  - {id: keeper, label: Lighthouse keeper, period: 1970-1990, knows: "The lamp, the fog horn, the logbook."}
  - {id: retired, label: Retired, period: 1991-now}
big_five: {O: high, C: high, E: low, A: medium, N: low}
gold:
  - {q: "What did you do at night?", a: "I kept the lamp lit.", stage: keeper}
  - {q: "Do you miss the sea?", a: "Every morning."}
"""


@pytest.fixture(scope="module")
def converter():
    from kit.export.converter import converter_dir

    try:
        return converter_dir()
    except KitError as exc:
        pytest.skip(f"llama.cpp converter not installed ({exc.one_line()})")


def make_adapter(base: Path, out: Path, seed: int = 1) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    peft_model = get_peft_model(model, cfg)
    peft_model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))  # what the train stage saves too
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_llama, converter):
    root = tmp_path_factory.mktemp("export-proj")
    (root / "personas" / "tess").mkdir(parents=True)
    (root / "personas" / "tess" / "persona.yaml").write_text(PERSONA)
    (root / "recipe.yaml").write_text(textwrap.dedent("""\
        name: t
        persona: personas/tess
        teacher: {kind: scripted}
        train: {backend: trl, model: tiny-llama-spm}
        export: {quants: [Q8_0, Q4_K_M], out_dir: out, parity_prompts: 6, verify_questions: 2}
        """))
    make_adapter(tiny_llama, root / "runs" / "tess-t" / "sft" / "adapter")
    (root / "runs" / "tess-t" / "construct").mkdir(parents=True)
    (root / "runs" / "tess-t" / "construct" / "passages.jsonl").write_text("".join(json.dumps(p) + "\n" for p in (
        {"id": "p1", "source": "log.md", "kind": "subjective", "stage": "keeper", "stage_index": 0, "words": 14,
         "text": "I lit the lamp at Skerry Point every night in 1974 and wrote the weather in the logbook."},
        {"id": "p2", "source": "notes.md", "kind": "subjective", "stage": "retired", "stage_index": 1, "words": 12,
         "text": "Since 1991 I have walked to Skerry Point on Sundays to see the new automatic light."})))
    return root


def _open(project, *overrides):
    from kit.commands._common import open_run

    return open_run(str(project / "recipe.yaml"), None, tuple(overrides))


@pytest.fixture(scope="module")
def bundle(project):
    from kit.export.bundle import export_run

    loaded, persona, run = _open(project)
    manifest = export_run(loaded, persona, run)
    return project / "out" / "tess", manifest


def test_bundle_files_hashes_and_no_leftovers(bundle, project):
    from kit.rundir import sha256_file

    out, manifest = bundle
    from kit.text import embed_available

    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    cards = [f"tess.{st}card.{ext}" for st in ("", "keeper.", "retired.") for ext in ("json", "png", "v3.json")]
    index = ["index/passages.jsonl"] + (["index/embeddings.npy"] if embed_available() else [])
    assert names == sorted(["LICENSE-base-model.md", "Modelfile", "Modelfile.keeper", "Modelfile.retired", "README.md",
                            "manifest.json", "tess-Q4_K_M.gguf", "tess-Q8_0.gguf", "tess-lora-f16.gguf", *cards,
                            *index])
    assert set(manifest["files"]) == set(names) - {"manifest.json"}
    # each stage's card carries a lorebook bounded by that stage: the keeper's never holds 1991
    books = {st: json.loads((out / f"tess.{st}.card.json").read_text())["data"]["character_book"]
             for st in ("keeper", "retired")}
    assert [e["content"][:12] for e in books["keeper"]["entries"]] == ["I lit the la"]
    assert len(books["retired"]["entries"]) == 2 and "Skerry Point" in books["retired"]["entries"][0]["keys"]
    for name, info in manifest["files"].items():
        assert info["sha256"] == sha256_file(out / name)
        assert info["bytes"] == (out / name).stat().st_size > 0
    assert [s["id"] for s in manifest["stages"]] == ["keeper", "retired"]
    assert "Lighthouse keeper" in manifest["stages"][0]["system_prompt"]
    assert manifest["base_model"] == "tiny-llama-spm" and manifest["adapter"]["stage"] == "sft"
    # No staging or scratch folders survive; the stage manifest says done.
    assert [p.name for p in (project / "out").iterdir()] == ["tess"]
    stage = json.loads((project / "runs" / "tess-t" / "export" / "manifest.json").read_text())
    assert stage["status"] == "done" and not list((project / "runs" / "tess-t" / "export").glob(".work-*"))


def test_parity_tokenizer_and_metadata(bundle, tiny_llama):
    from kit.export import ggufops

    out, manifest = bundle
    par = manifest["verify"]["parity"]
    assert par["f16"]["top1"] >= 0.99 and par["f16"]["positions"] > 100
    assert par["f16"]["kl"] < 1e-4
    assert par["Q8_0"]["kl"] < par["Q4_K_M"]["kl"]  # more bits, closer to the HF model
    # Same ids as the trained model: HF-rendered prompts, bare questions and the GGUF's own chat path.
    assert manifest["verify"]["tokenizer"] == {k: {"exact": 6, "prompts": 6} for k in ("hf_text", "plain_text",
                                                                                         "chat_path")}
    assert manifest["verify"]["metadata"]["add_bos_token"] == "false" and not manifest["warnings"]
    llm = ggufops.load_llama(out / "tess-Q4_K_M.gguf")
    meta = ggufops.metadata(llm)
    template = (out.parent.parent / "runs" / "tess-t" / "sft" / "adapter" / "chat_template.jinja").read_text()
    assert meta["tokenizer.chat_template"] == template
    assert llm.token_eos() == int(meta["tokenizer.ggml.eos_token_id"])
    assert llm.detokenize([llm.token_eos()], special=True) == b"<|im_end|>"
    reply = llm.create_chat_completion([{"role": "system", "content": manifest["stages"][1]["system_prompt"]},
                                        {"role": "user", "content": "Do you miss the sea?"}],
                                       max_tokens=8, temperature=0)
    assert reply["choices"][0]["finish_reason"] in ("stop", "length")
    assert len(manifest["verify"]["chat"]["samples"]) == 2


def test_lora_gguf_loads_and_changes_output(bundle, tiny_llama, tmp_path):
    import numpy as np

    from kit.export import ggufops, parity

    out, manifest = bundle
    base_gguf = tmp_path / "base.gguf"
    ggufops.convert_hf(tiny_llama, base_gguf)
    ids = [[4, 300, 301, 302, 5, 4, 310, 311]]
    plain = next(parity.gguf_logits(ggufops.load_llama(base_gguf, logits_all=True), ids))
    lora = next(parity.gguf_logits(ggufops.load_llama(base_gguf, lora=out / "tess-lora-f16.gguf", logits_all=True),
                                   ids))
    assert np.abs(plain - lora).max() > 1e-2
    assert manifest["verify"]["lora"]["vs_merged"]["top1"] >= 0.95  # base+LoRA ~ merged f16


def test_modelfile_matches_template(bundle):
    from kit.export.ollama import FAMILIES, parse_modelfile

    out, manifest = bundle
    mf = parse_modelfile((out / "Modelfile").read_text())
    assert mf["FROM"] == "./tess-Q8_0.gguf" and (out / "tess-Q8_0.gguf").is_file()
    chatml = next(f for f in FAMILIES if f.name == "chatml")
    assert mf["TEMPLATE"] == chatml.go_template()
    assert mf["SYSTEM"] == manifest["stages"][-1]["system_prompt"]
    assert ("stop", "<|im_end|>") in mf["PARAMETER"]


def test_card_json_and_png_round_trip(bundle):
    from kit.export.card import read_cards, validate_card

    out, _ = bundle
    v2 = json.loads((out / "tess.card.json").read_text())
    validate_card(v2)
    embedded = read_cards((out / "tess.card.png").read_bytes())
    assert embedded["chara"] == v2
    validate_card(embedded["ccv3"])
    assert embedded["ccv3"]["data"]["name"] == "Tess Moreau"
    assert set(v2["data"]["extensions"]["perskit"]["stage_prompts"]) == {"keeper", "retired"}


def test_stage_files_model_card_licence_and_gguf_metadata(bundle):
    from kit.engine.llamacpp import gguf_kv
    from kit.export.card import read_cards
    from kit.export.modelcard import front_matter
    from kit.export.ollama import parse_modelfile

    out, manifest = bundle
    for st in manifest["stages"]:
        assert parse_modelfile((out / f"Modelfile.{st['id']}").read_text())["SYSTEM"] == st["system_prompt"]
        card = read_cards((out / f"tess.{st['id']}.card.png").read_bytes())["chara"]["data"]
        assert card["system_prompt"] == st["system_prompt"]
    keeper = json.loads((out / "tess.keeper.card.json").read_text())["data"]
    assert keeper["first_mes"].endswith("I kept the lamp lit.") and "Do you miss the sea" not in keeper["mes_example"]
    readme = (out / "README.md").read_text()
    front = front_matter(readme)
    assert front["base_model"] == "tiny-llama-spm" and front["tags"][:2] == ["gguf", "persona"]
    assert "license" in front and "`tess:keeper`" in readme and "## Intended use and limits" in readme
    assert "Base model licence" in (out / "LICENSE-base-model.md").read_text()
    for q in ("Q8_0", "Q4_K_M"):
        assert gguf_kv(out / f"tess-{q}.gguf", "general.name") == "Tess Moreau (perskit)"
        assert gguf_kv(out / f"tess-{q}.gguf", "general.license") == front["license"]
        assert gguf_kv(out / f"tess-{q}.gguf", "general.base_model.count") == 1
    assert manifest["sampling"]["temperature"] >= 0


def test_rerun_is_skipped(bundle, project):
    from kit.export.bundle import export_run

    out, manifest = bundle
    loaded, persona, run = _open(project)
    again = export_run(loaded, persona, run)
    assert again["created_at"] == manifest["created_at"]


def test_disk_full_keeps_old_bundle_and_leaves_nothing(bundle, project, monkeypatch):
    from kit.export import bundle as bundle_mod

    out, manifest = bundle
    before = (out / "manifest.json").read_bytes()
    calls = {"n": 0}
    real_write = bundle_mod._write

    def full_disk(path, data):
        calls["n"] += 1
        if calls["n"] == 2:  # the character card, after the Modelfile went through
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    monkeypatch.setattr(bundle_mod, "_write", full_disk)
    loaded, persona, run = _open(project)
    with pytest.raises(KitError, match="disk full"):
        bundle_mod.export_run(loaded, persona, run, force=True)
    assert (out / "manifest.json").read_bytes() == before  # the complete old bundle is untouched
    assert [p.name for p in (project / "out").iterdir()] == ["tess"]
    assert not list((project / "runs" / "tess-t" / "export").glob(".work-*"))


def test_corrupted_and_truncated_gguf(bundle, tmp_path):
    from kit.export import ggufops

    out, _ = bundle
    src = (out / "tess-Q8_0.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(src[: len(src) // 2])
    with pytest.raises(KitError, match="corrupted, truncated"):
        ggufops.load_llama(cut)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"NOPE" + src[4:200])
    with pytest.raises(KitError, match="not a GGUF"):
        ggufops.load_llama(junk)


def test_unsupported_architecture(tiny_llama, tmp_path, converter):
    from kit.export import ggufops

    folder = tmp_path / "foo"
    shutil.copytree(tiny_llama, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["FooBarForCausalLM"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(KitError, match="architecture is not supported") as exc:
        ggufops.convert_hf(folder, tmp_path / "foo.gguf")
    assert "\n" not in exc.value.one_line()
    assert not (tmp_path / "foo.gguf").exists() or (tmp_path / "foo.gguf").stat().st_size == 0


def test_unknown_quant_and_missing_adapter_via_cli(project, tmp_path):
    res = run_cli("export", str(project / "recipe.yaml"), "--set", "export.quants=[Q3_XL]")
    assert res.returncode == 2 and "unknown quant 'Q3_XL'" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = run_cli("export", str(project / "recipe.yaml"), "--run-dir", str(tmp_path / "empty-run"))
    assert res.returncode == 2 and "no trained adapter" in res.stderr and "perskit train" in res.stderr
    assert not (tmp_path / "empty-run" / "export").exists()


def test_broken_parity_fails_loudly(bundle, project, tiny_llama, monkeypatch):
    """Fault injection: the GGUF is built from the un-merged base, so it no longer computes
    what the merged HF model does; the export must refuse to ship it."""
    from kit.export import bundle as bundle_mod
    from kit.export import merge

    out, _ = bundle
    before = (out / "manifest.json").read_bytes()
    real_view = merge.converter_view
    monkeypatch.setattr(merge, "converter_view", lambda merged, view: real_view(tiny_llama, view))
    loaded, persona, run = _open(project, "export.quants=[f16]", "export.lora_gguf=false", "export.card=false")
    with pytest.raises(KitError, match="top-1 agreement .* < export.min_top1_f16"):
        bundle_mod.export_run(loaded, persona, run, force=True)
    assert (out / "manifest.json").read_bytes() == before
    assert [p.name for p in (project / "out").iterdir()] == ["tess"]


def test_tokenizer_mismatch_fails_the_export(bundle, project, monkeypatch):
    """Fault injection: the converter is told the tokenizer adds a prefix space, so llama.cpp
    puts '▁' after every chat marker where the trained model has none; same weights, so the
    logits would pass on shared ids -- only the tokenizer check can catch it."""
    from kit.export import bundle as bundle_mod
    from kit.export import merge

    out, _ = bundle
    before = (out / "manifest.json").read_bytes()
    real_view = merge.converter_view

    def prefix_space_view(merged, view):
        real_view(merged, view)
        cfg = json.loads((view / "tokenizer_config.json").read_text())
        (view / "tokenizer_config.json").write_text(json.dumps({**cfg, "add_prefix_space": True}))
        return view

    monkeypatch.setattr(merge, "converter_view", prefix_space_view)
    loaded, persona, run = _open(project, "export.quants=[f16]", "export.lora_gguf=false", "export.card=false")
    with pytest.raises(KitError, match=r"6 of 6 chat prompts tokenize differently .*HF \[.*\] vs GGUF \['▁") as exc:
        bundle_mod.export_run(loaded, persona, run, force=True)
    assert "\n" not in exc.value.one_line()
    assert (out / "manifest.json").read_bytes() == before
