"""The real trl DPO path at tiny scale: same-prompt negatives, held-out reward accuracy, answer-to-prompt
similarity per source in the manifest, two iterative rounds (re-mined with the round-1 policy) and the
general-text perplexity of base, SFT and DPO."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")

from train_helpers import write_construct, write_project  # noqa: E402

from kit.cli import main  # noqa: E402
from kit.rundir import read_jsonl  # noqa: E402

EXTRA = "  rounds: 2\n  heldout_share: 0.3\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llama):
    root = tmp_path_factory.mktemp("dporounds")
    recipe = write_project(root, recipe_extra=EXTRA)
    run = root / "runs" / "ada"
    write_construct(run, root)
    sets = ["--set", "train.max_steps=6", "--set", "dpo.max_steps=4"]
    assert main(["train", str(recipe), "--run-dir", str(run), *sets]) == 0
    assert main(["dpo", str(recipe), "--run-dir", str(run), *sets]) == 0
    return run, json.loads((run / "dpo" / "manifest.json").read_text())


def _questions(pairs):
    return {p["prompt"][-1]["content"] for p in pairs}


def test_same_prompt_pairs_and_heldout_questions(trained):
    run, m = trained
    train, held = read_jsonl(run / "dpo" / "pairs.jsonl"), read_jsonl(run / "dpo" / "heldout.jsonl")
    assert train and held and not _questions(train) & _questions(held)
    for p in train + held:
        assert p["meta"]["source"] in ("base_brief", "sft_other_stage", "sft_contrast", "induction", "knows_later")
        assert p["chosen"][0]["content"] != p["rejected"][0]["content"]
    first = m["rounds"][0]
    assert first["split"] == {"train": first["pair_counts"]["total"] - first["split"]["heldout"],
                              "heldout": first["split"]["heldout"]}
    assert first["pair_counts"]["base_brief"] > 0 and first["pair_counts"]["sft_contrast"] > 0
    sim = m["prompt_similarity"]
    assert sim["embedder"] == "bow" or sim["embedder"] == "minilm"
    for source in ("base_brief", "sft_other_stage", "sft_contrast"):
        assert -1 <= sim[source]["rejected_similarity"] <= 1 and sim[source]["n"] > 0


def test_heldout_reward_accuracy_is_reported_per_round(trained):
    run, m = trained
    assert [r["round"] for r in m["rounds"]] == [1, 2]
    held = m["heldout"]
    assert held == m["rounds"][-1]["heldout"] and held["n"] == len(read_jsonl(run / "dpo" / "heldout.jsonl"))
    assert 0 <= held["reward_accuracy"] <= 1 and isinstance(held["reward_margin"], float)
    assert sum(v["n"] for v in held["by_source"].values()) == held["n"]
    # round 1's policy was trained from SFT and kept; round 2 trained from it on freshly mined pairs
    assert (run / "dpo" / "round-1" / "adapter" / "adapter_model.safetensors").is_file()
    assert (run / "dpo" / "round-2" / "pairs.jsonl").is_file()
    assert (run / "dpo" / "adapter" / "adapter_model.safetensors").is_file()
    assert m["rounds"][0]["heldout"] != m["rounds"][1]["heldout"]  # a different policy scores differently


def test_general_perplexity_before_and_after(trained):
    run, m = trained
    g = m["general"]
    assert g["texts"] >= 5 and g["tokens"] > 100
    ppl = g["perplexity"]
    assert set(ppl) == {"base", "sft", "dpo"} and all(v > 1 for v in ppl.values())
    assert ppl["sft"] != ppl["dpo"]  # the DPO adapter is a different model
