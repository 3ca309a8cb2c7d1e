"""SFT then DPO through the CLI on a tiny local model with the trl backend."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")

from train_helpers import write_construct, write_project  # noqa: E402

from kit.cli import main  # noqa: E402
from kit.rundir import read_jsonl  # noqa: E402


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_llama):
    root = tmp_path_factory.mktemp("proj")
    recipe = write_project(root)
    run = root / "runs" / "ada"
    write_construct(run, root)
    return root, recipe, run


def _mean(xs):
    return sum(xs) / len(xs)


def test_sft_then_dpo_via_cli(project, capsys):
    root, recipe, run = project
    assert main(["train", str(recipe), "--run-dir", str(run)]) == 0
    sft = run / "sft"
    adapter = sft / "adapter"
    for f in ("adapter_model.safetensors", "adapter_config.json", "chat_template.jinja", "tokenizer_config.json"):
        assert (adapter / f).is_file(), f
    man = json.loads((sft / "manifest.json").read_text())
    assert man["status"] == "done" and man["peak_rss_mb"] > 0
    assert man["metrics"]["steps"] == 24 and man["metrics"]["tokens_per_s"] > 0
    assert "eval_loss" in man["metrics"]
    losses = [r["loss"] for r in read_jsonl(sft / "metrics.jsonl")]
    assert len(losses) == 24
    assert _mean(losses[-4:]) < _mean(losses[:4]) - 0.3, losses
    # The adapter carries the exact template used in training (later written into the GGUF).
    from kit.models.resolve import materialize
    from kit.tuning.hf import load_tokenizer

    base_tpl = load_tokenizer(materialize("tiny-llama-spm")).chat_template
    assert (adapter / "chat_template.jinja").read_text() == base_tpl
    assert not list((sft / "checkpoints").rglob("training_args.bin"))  # no pickles left behind

    # Unchanged inputs: the stage is skipped.
    capsys.readouterr()
    assert main(["train", str(recipe), "--run-dir", str(run)]) == 0
    assert "up to date" in capsys.readouterr().out

    assert main(["dpo", str(recipe), "--run-dir", str(run)]) == 0
    pairs = read_jsonl(run / "dpo" / "pairs.jsonl")
    dman = json.loads((run / "dpo" / "manifest.json").read_text())
    counts = dman["counts"]
    # same-prompt negatives by default (#16); the held-out share is in dpo/heldout.jsonl
    assert counts["base_brief"] > 0 and counts["sft_other_stage"] > 0 and counts["sft_contrast"] > 0
    assert counts["total"] == len(pairs) + len(read_jsonl(run / "dpo" / "heldout.jsonl"))
    assert counts["total"] == sum(v for s, v in counts.items() if s != "total")
    assert dman["mine_notes"]["induction_checked"] == 4
    for p in pairs:
        assert p["prompt"][-1]["role"] == "user" and p["chosen"][0]["role"] == "assistant"
        assert p["chosen"][0]["content"] != p["rejected"][0]["content"]
    m = dman["metrics"]
    assert m["reward_accuracy"] > 0.5, m  # chance is 0.5
    assert m["reward_margin"] > 0
    logged = [r for r in read_jsonl(run / "dpo" / "metrics.jsonl") if "rewards/accuracies" in r]
    assert len(logged) == 12 and "rewards/margins" in logged[0]
    assert (run / "dpo" / "adapter" / "chat_template.jinja").read_text() == base_tpl


def test_dpo_prompts_longer_than_max_length_is_one_line_error(project, capsys):
    root, recipe, run = project
    rc = main(["dpo", str(recipe), "--run-dir", str(run), "--set", "dpo.max_length=32", "--force"])
    err = capsys.readouterr().err
    assert rc == 2 and "dpo.max_length" in err and "Traceback" not in err
    assert (run / "dpo" / "pairs.jsonl").is_file()  # mined pairs were reused, not regenerated


def test_adapters_reload_and_differ(project):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from kit.models.resolve import materialize
    from kit.tuning.hf import generate

    root, recipe, run = project
    base = materialize("tiny-llama-spm")
    sft_w = load_file(str(run / "sft" / "adapter" / "adapter_model.safetensors"))
    dpo_w = load_file(str(run / "dpo" / "adapter" / "adapter_model.safetensors"))
    assert sft_w.keys() == dpo_w.keys() and not any(".ref." in k for k in dpo_w)
    assert any(not torch.equal(sft_w[k], dpo_w[k]) for k in sft_w)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), str(run / "dpo" / "adapter"))
    assert model.peft_config["default"].r == 8
    out = generate(base, run / "dpo" / "adapter", [[{"role": "user", "content": "What is your work?"}]], 8)
    assert len(out) == 1 and isinstance(out[0], str)


def test_resume_from_checkpoint(project):
    root, recipe, run = project
    run2 = root / "runs" / "resume"
    write_construct(run2, root)
    sets = ["--set", "train.max_steps=6", "--set", "train.save_every=3"]
    assert main(["train", str(recipe), "--run-dir", str(run2), *sets]) == 0
    assert (run2 / "sft" / "checkpoints" / "checkpoint-6").is_dir()
    sets = ["--set", "train.max_steps=9", "--set", "train.save_every=3"]
    assert main(["train", str(recipe), "--run-dir", str(run2), "--resume", *sets]) == 0
    m = json.loads((run2 / "sft" / "manifest.json").read_text())["metrics"]
    assert m["resumed_from"].endswith("checkpoint-6") and m["steps"] == 9
    steps = [r["step"] for r in read_jsonl(run2 / "sft" / "metrics.jsonl")]
    assert steps == list(range(1, 10))  # the resumed run appended steps 7-9 to the log


def test_missing_data_is_one_line_error(project, capsys):
    root, recipe, run = project
    assert main(["train", str(recipe), "--run-dir", str(root / "runs" / "empty")]) == 2
    err = capsys.readouterr().err
    assert "train.jsonl" in err and "perskit construct" in err and "Traceback" not in err


def test_packing_and_general_mix(project, tmp_path):
    """Packing (padding-free BFD) trains, and general chat rows are mixed in at the set ratio."""
    from kit.models.resolve import materialize
    from kit.train.config import TrlTrain
    from kit.train.trl_sft import sft

    root, recipe, run = project
    general = tmp_path / "general.jsonl"
    general.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                                                        {"role": "assistant", "content": f"It is {2 * i}."}]}) + "\n"
                               for i in range(20)))
    cfg = TrlTrain(model="tiny-llama-spm", max_steps=4, batch_size=2, max_seq_len=256, packing=True,
                   learning_rate=1e-2, mix_general=str(general), mix_ratio=0.2, save_every=100)
    r = sft(cfg, run / "construct" / "train.jsonl", None, tmp_path / "packed", materialize("tiny-llama-spm"))
    assert r["steps"] == 4 and r["packing"] is True and r["general_rows"] == 4 and r["records"] == 20
    assert r["train_tokens"] > 4 * 2 * 100  # packed rows are ~max_seq_len long, not one short record
    assert (tmp_path / "packed" / "adapter" / "adapter_model.safetensors").is_file()
