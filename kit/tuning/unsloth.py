"""unsloth (CUDA): every SFT, DPO or generation job runs in its own Python subprocess.

Importing unsloth patches transformers, TRL and PEFT in place for the whole process
(and unsloth 2026.10 pins transformers<=5.17, trl<=1.15). The parent therefore never
imports it: it writes a JSON job, runs ``python -m kit.tuning.unsloth_worker job.json``,
streams the worker's output, and reads ``result.json``. A crash in the worker is a
KitError naming the log file, never a half-patched parent.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from kit.errors import KitError, MissingExtra
from kit.rundir import atomic_write_json, peak_rss_mb


def available() -> tuple[bool, str]:
    """(ok, reason) without importing unsloth or initialising CUDA in this process."""
    if importlib.util.find_spec("unsloth") is None:
        return False, "unsloth is not installed (pip install 'perskit[unsloth]', CUDA only)"
    probe = subprocess.run([sys.executable, "-c", "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 3)"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return False, "no CUDA GPU is visible (unsloth trains on NVIDIA GPUs only)"
    return True, ""


def run_job(job: dict, out_dir: Path) -> dict:
    """Run ``job`` (its ``target`` a ``module:function``) in the worker; return its result dict."""
    if importlib.util.find_spec("unsloth") is None:
        raise MissingExtra("unsloth", "unsloth", "train.backend: unsloth")
    out_dir.mkdir(parents=True, exist_ok=True)
    job_path = out_dir / f"{job['op']}_job.json"
    result_path = out_dir / f"{job['op']}_result.json"
    result_path.unlink(missing_ok=True)
    atomic_write_json(job_path, {**job, "result_path": str(result_path)})
    log = out_dir / f"{job['op']}_worker.log"
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "kit.tuning.unsloth_worker", str(job_path)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:  # the worker draws its own rich bar; pass it through
            sys.stdout.write(line)
            fh.write(line)
        rc = proc.wait()
    if rc != 0 or not result_path.is_file():
        raise KitError(f"the unsloth worker failed (exit {rc})", where=log,
                       fix="read the log; set train.backend: trl to train without unsloth")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    result["peak_rss_mb"] = max(result.get("peak_rss_mb", 0), peak_rss_mb())  # RUSAGE_CHILDREN covers the worker
    return result


def generate(base_dir: Path, adapter: Path | None, messages_batch: list[list[dict]], max_tokens: int) -> list[str]:
    out_dir = Path(adapter or base_dir).parent / ".unsloth_generate"
    res = run_job({"target": "kit.tuning.unsloth_worker:generate_job", "op": "generate", "base_dir": str(base_dir),
                   "adapter": str(adapter) if adapter else None, "messages_batch": messages_batch,
                   "max_tokens": max_tokens}, out_dir)
    return res["replies"]
