"""The mlx backend (mlx-lm[cpu] on Linux): SFT then DPO through the CLI, the PEFT copy of
the adapter reproduces the mlx model's logits in torch, and the DPO loss matches its formula."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

pytestmark = [pytest.mark.mlx, pytest.mark.skipif(importlib.util.find_spec("mlx_lm") is None,
                                                   reason="mlx-lm is not installed (pip install 'perskit[mlx]')")]

from train_helpers import write_construct, write_project  # noqa: E402

from kit.cli import main  # noqa: E402
from kit.rundir import read_jsonl  # noqa: E402


@pytest.fixture(scope="module")
def mlx_run(tmp_path_factory, tiny_llama):
    root = tmp_path_factory.mktemp("mlxproj")
    recipe = write_project(root)
    run = root / "runs" / "mlx"
    write_construct(run, root)
    # A larger step than the default so the loss trend clears per-batch noise (batches differ in length).
    sets = ["--set", "train.backend=mlx", "--set", "train.max_steps=30", "--set", "train.learning_rate=1e-3"]
    assert main(["train", str(recipe), "--run-dir", str(run), *sets]) == 0
    assert main(["dpo", str(recipe), "--run-dir", str(run), *sets]) == 0
    return run


def test_sft_and_dpo_via_cli(mlx_run):
    run = mlx_run
    for stage in ("sft", "dpo"):
        a = run / stage / "adapter"
        for f in ("adapter_model.safetensors", "adapter_config.json", "chat_template.jinja",
                  "mlx/adapters.safetensors", "mlx/adapter_config.json"):
            assert (a / f).is_file(), (stage, f)
    losses = [r["loss"] for r in read_jsonl(run / "sft" / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.1, losses
    man = json.loads((run / "dpo" / "manifest.json").read_text())
    assert man["counts"]["total"] > 0  # same-prompt negatives by default (#16): sources vary
    assert man["metrics"]["reward_accuracy"] > 0.5 and man["metrics"]["reward_margin"] > 0
    assert man["peak_rss_mb"] > 0
    dlosses = [r["loss"] for r in read_jsonl(run / "dpo" / "metrics.jsonl") if "loss" in r]
    assert dlosses[0] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at the start


def test_peft_copy_matches_mlx_logits(mlx_run):
    """The PEFT-layout adapter (used by export and the HF engine) is the same function."""
    import mlx.core as mx
    import numpy as np
    import torch
    from mlx_lm import load
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from kit.models.resolve import materialize

    base = materialize("tiny-llama-spm")
    adapter = mlx_run / "dpo" / "adapter"
    mmodel, _ = load(str(base), adapter_path=str(adapter / "mlx"))
    ids = [1, 40, 41, 42, 100, 7, 9, 300]
    ml = np.array(mmodel(mx.array([ids])).astype(mx.float32))
    tmodel = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), str(adapter)).eval()
    with torch.no_grad():
        tl = tmodel(torch.tensor([ids])).logits.numpy()
        plain = AutoModelForCausalLM.from_pretrained(str(base)).eval()(torch.tensor([ids])).logits.numpy()
    assert np.abs(tl - ml).max() < 1e-3
    assert np.abs(plain - ml).max() > 1e-2  # the adapter really changes the model


def test_dpo_loss_matches_formula():
    import mlx.core as mx

    from kit.dpo.mlx_dpo import dpo_from_logps

    beta = 0.5
    pol = mx.array([-3.0, -7.0, -4.0, -2.0])  # chosen rows first, then rejected
    ref = mx.array([-4.0, -6.0, -4.5, -3.0])
    loss = dpo_from_logps(pol, ref, beta)
    z = [beta * ((-3 + 4) - (-4 + 4.5)), beta * ((-7 + 6) - (-2 + 3))]
    want = sum(math.log1p(math.exp(-x)) for x in z) / 2
    assert float(loss) == pytest.approx(want, rel=1e-5)
    # Equal policy and reference: every pair is a coin flip, loss = log 2.
    assert float(dpo_from_logps(ref, ref, beta)) == pytest.approx(math.log(2), rel=1e-6)


def test_raw_mlx_adapter_merges_like_its_peft_copy(mlx_run, tmp_path):
    """Export also takes an adapter folder straight from mlx-lm (adapters.safetensors): it is
    converted to PEFT layout and merged to the same weights as our PEFT copy."""
    import numpy as np
    from safetensors.numpy import load_file

    from kit.export.merge import merge_adapter
    from kit.models.resolve import materialize

    base = materialize("tiny-llama-spm")
    adapter = mlx_run / "sft" / "adapter"
    info_mlx = merge_adapter(base, adapter / "mlx", tmp_path / "from-mlx")
    info_peft = merge_adapter(base, adapter, tmp_path / "from-peft")
    assert info_mlx["format"] == "mlx" and info_peft["format"] == "peft"
    a = load_file(str(tmp_path / "from-mlx" / "model.safetensors"))
    b = load_file(str(tmp_path / "from-peft" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-6
    plain = load_file(str(next(base.glob("*.safetensors"))))
    q = next(k for k in a if k.endswith("q_proj.weight"))
    assert float(np.abs(a[q] - plain[q]).max()) > 1e-4  # the merge really changed the weights
    assert not (tmp_path / "from-mlx.peft-from-mlx").exists()
