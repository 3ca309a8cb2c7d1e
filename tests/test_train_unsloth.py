"""unsloth is imported only inside its own worker subprocess, never by kit, the CLI or
the trl backend; the unsloth path itself runs where unsloth and a CUDA GPU exist."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest

from train_helpers import write_construct, write_project

from kit.tuning.unsloth import available

UNSLOTH_OK, UNSLOTH_WHY = available()


def test_kit_cli_and_trl_backend_never_import_unsloth(tmp_path, tiny_llama):
    """A fresh interpreter: import kit and the CLI, list verbs, pick backends, train with trl."""
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"question {i}?"}, {"role": "assistant", "content": f"answer {i}."}]}) + "\n"
        for i in range(8)))
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import kit, kit.cli
        from kit.cli import main
        assert main(["--help"]) == 0 and main(["train", "--help"]) == 0 and main(["dpo", "--help"]) == 0
        from kit.train.backends import get_backend
        get_backend("unsloth")   # the backend module itself must not import unsloth
        from kit.dpo.backends import get_backend as dpo_backend
        dpo_backend("unsloth"), dpo_backend("trl")
        b = get_backend("trl")
        from kit.train.config import TrlTrain
        cfg = TrlTrain(model="tiny-llama-spm", max_steps=2, batch_size=2, max_seq_len=64, save_every=50)
        r = b.sft(cfg, Path({str(data)!r}), None, Path({str(tmp_path / 'out')!r}), Path({str(tiny_llama)!r}))
        assert r["steps"] == 2
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("unsloth", "unsloth_zoo", "mlx", "mlx_lm"))
        print("IMPORTED:", bad)
        sys.exit(1 if bad else 0)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "IMPORTED: []" in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("unsloth") is not None, reason="unsloth is installed here")
def test_unsloth_backend_without_unsloth_is_a_one_line_error(tmp_path, capsys, tiny_llama):
    from kit.cli import main

    recipe = write_project(tmp_path)
    run = tmp_path / "runs" / "u"
    write_construct(run, tmp_path)
    rc = main(["train", str(recipe), "--run-dir", str(run), "--set", "train.backend=unsloth"])
    err = capsys.readouterr().err
    assert rc == 2 and "unsloth" in err and "perskit[unsloth]" in err and "Traceback" not in err


@pytest.mark.gpu
@pytest.mark.skipif(not UNSLOTH_OK, reason=f"unsloth path needs unsloth + CUDA: {UNSLOTH_WHY}")
def test_unsloth_sft_and_dpo_via_cli(tmp_path, tiny_llama):
    from kit.cli import main
    from kit.rundir import read_jsonl

    recipe = write_project(tmp_path)
    run = tmp_path / "runs" / "u"
    write_construct(run, tmp_path)
    sets = ["--set", "train.backend=unsloth", "--set", "train.load_in_4bit=false"]
    assert main(["train", str(recipe), "--run-dir", str(run), *sets]) == 0
    assert (run / "sft" / "adapter" / "adapter_model.safetensors").is_file()
    losses = [r["loss"] for r in read_jsonl(run / "sft" / "metrics.jsonl")]
    assert sum(losses[-4:]) < sum(losses[:4])
    assert main(["dpo", str(recipe), "--run-dir", str(run), *sets]) == 0
    m = json.loads((run / "dpo" / "manifest.json").read_text())["metrics"]
    assert m["reward_accuracy"] > 0.5
