"""Multi-process data-parallel SFT through ``accelerate launch`` on CPU (2 processes, gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("accelerate")

from train_helpers import write_construct, write_project  # noqa: E402

from kit.rundir import read_jsonl  # noqa: E402


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tmp_path, tiny_llama):
    accelerate = Path(sys.executable).with_name("accelerate")
    if not accelerate.exists():
        accelerate = Path(shutil.which("accelerate") or "accelerate")
    recipe = write_project(tmp_path)
    run = tmp_path / "runs" / "ddp"
    write_construct(run, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    # Without CUDA, accelerate's multi-process launcher (torchrun) sets up DDP over gloo on CPU.
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "kit", "train", str(recipe),
           "--run-dir", str(run), "--set", "train.max_steps=6"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    man = json.loads((run / "sft" / "manifest.json").read_text())
    assert man["status"] == "done" and man["metrics"]["world_size"] == 2
    assert (run / "sft" / "adapter" / "adapter_model.safetensors").is_file()
    steps = [r["step"] for r in read_jsonl(run / "sft" / "metrics.jsonl")]
    assert steps == list(range(1, 7))  # one log line per step: only rank 0 writes
    assert proc.stdout.count("adapter:") == 1
