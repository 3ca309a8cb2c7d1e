"""Every real-hardware recipe, as shipped, end to end on a CPU at smoke scale, offline.

The recipe's own hub id (``openbmb/MiniCPM-2B-sft-bf16``, ``Qwen/Qwen2.5-1.5B-Instruct``,
``google/gemma-3-1b-it``) is served from a temporary Hugging Face cache holding a tiny model
of the same family (tiny-minicpm: model_type minicpm with µP scales and tied embeddings;
tiny-qwen2; tiny-gemma3), with ``HF_HUB_OFFLINE=1``. So ``train.model`` is left as shipped
and the hub-id path (cache lookup, the MiniCPM -> Llama fold of a hub snapshot, the base
recorded once for dpo/eval/export) runs for real. What cannot run here is swapped: the
backend for trl where the shipped one needs CUDA (unsloth, 4-bit), the teacher for the
scripted one (the shipped ones are a local server or a GGUF on the user's disk), and step
counts and sizes for smoke scale. Persona, contrast personas, LoRA shape and export quants
come from the recipe file, so a recipe cannot rot unnoticed. The exported GGUF must pass
the export's checks: f16 top-1 agreement >= 0.99 with the merged model, same tokens.

The Qwen recipe stops after eval: llama.cpp's converter accepts a byte-level BPE vocabulary only
when it recognises its pre-tokenizer (a hash over published tokenizers, Qwen2.5's among them),
so no made-up tiny BPE can become a GGUF; the test checks that Qwen2.5's hash is known instead.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from test_base_model import hf_cache_with

pytestmark = pytest.mark.slow

# Smoke scale: a few passages, rows and steps; a small eval; the recipe's first quant only.
SMOKE = ["train.max_steps=2", "train.max_seq_len=2048", "train.batch_size=2", "train.grad_accum=1",
         "construct.max_passages=2", "construct.own_words=4",
         "construct.patterns={ordinary: 1, opinion: 1, anti_induction: 1, trait: 2}",
         "dpo.max_steps=2", "dpo.max_pairs=4", "dpo.batch_size=2", "dpo.gen_max_tokens=8", "dpo.max_length=2048",
         "eval.ipip_items=10", "eval.ipip_variants=1", "eval.max_questions=2", "eval.paraphrases=2",
         "eval.distinct_questions=2", "eval.gen_max_tokens=8", "eval.judge=heuristic", "eval.voice_items=6",
         "eval.knowledge_items=6",
         "export.parity_prompts=3", "export.min_top1_f16=0.99", "export.verify_questions=1",
         "export.lora_gguf=false", "teacher={kind: scripted}", "dpo.negatives=[base_brief, sft_other_stage]",
         "construct.retriever=bm25", "construct.min_relevance=0"]  # no MiniLM load in construct

ALL = ("construct", "sft", "dpo", "eval", "export")
RECIPES = {  # recipe -> (tiny model of the same family, swaps the CPU needs, stages run)
    "minicpm-2b-unsloth.yaml": ("tiny-minicpm", ["train.backend=trl", "train.load_in_4bit=false"], ALL),
    # Qwen stops after eval: see the module docstring.
    "qwen2.5-1.5b-trl.yaml": ("tiny-qwen2", [], ALL[:4]),
    # No DPO: mlx-lm's DPO on a CPU took 514 s at this scale (2 steps, ~3 tokens/s on a loaded
    # 2-core box); SFT on mlx, the mlx adapter's conversion and its export still run.
    "mlx-gemma3-1b.yaml": ("tiny-gemma3", [], ("construct", "sft", "eval", "export")),
}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_dry_run(recipe, repo, tmp_path):
    if RECIPES[recipe][0] == "tiny-gemma3" and importlib.util.find_spec("mlx_lm") is None:
        pytest.skip("mlx-lm is not installed (pip install 'mlx-lm[cpu]' on Linux)")
    from kit.models.resolve import materialize

    shipped = yaml.safe_load((repo / "recipes" / recipe).read_text())
    hub_id, (tiny, swaps, stages) = shipped["train"]["model"], RECIPES[recipe]
    snap = hf_cache_with(materialize(tiny), tmp_path / "hf", hub_id)
    quant = shipped["export"]["quants"][0]
    sets = [*swaps, *SMOKE, f"export.quants=[{quant}]", f"export.out_dir={tmp_path / 'bundles'}"]
    run_dir, t0 = tmp_path / "run", time.perf_counter()
    args = [a for s in sets for a in ("--set", s)] + [a for st in stages for a in ("--only", st)]
    res = run_cli("run", str(repo / "recipes" / recipe), "--run-dir", str(run_dir), *args,
                  env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    print(f"{recipe}: {time.perf_counter() - t0:.0f} s")

    base = json.loads((run_dir / "sft" / "manifest.json").read_text())["base"]
    assert base["name"] == hub_id
    if tiny == "tiny-minicpm":  # trained, merged and exported on the folded Llama twin
        folded = Path(base["path"])
        assert folded.name.endswith("-minicpm-llama")
        assert json.loads((folded / "config.json").read_text())["model_type"] == "llama"
    else:
        assert base["path"] == str(snap)
    assert (run_dir / "eval" / "results.json").is_file()
    if tiny == "tiny-qwen2":  # Qwen2's BPE (shared by Qwen1.5, 2 and 2.5) is one the converter knows
        from kit.export.converter import converter_dir

        sources = "".join(f.read_text() for f in converter_dir().rglob("*.py"))
        assert "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea" in sources
        return
    bundle = json.loads((tmp_path / "bundles" / shipped["persona"].split("/")[-1] / "manifest.json").read_text())
    assert bundle["base_model"] == hub_id
    verify = bundle["verify"]
    assert verify["parity"]["f16"]["top1"] >= 0.99 and quant in verify["parity"]
    assert all(v["exact"] == v["prompts"] == 3 for v in verify["tokenizer"].values()), verify["tokenizer"]
