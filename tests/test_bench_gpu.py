"""bench/gpu: the CPU-side logic of the prepared GPU check (no GPU here).

The wheel slimmer on a wheel built in the test; the MiniCPM-2B shape; the smoke recipe the
check derives (validated by the kit's own recipe loader); and the whole script's dry run on a
tiny MiniCPM-shaped model (the CUDA-only arms must be recorded as skipped, not crash).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "bench" / "gpu"
sys.path.insert(0, str(GPU))


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr("pkg-1.0.dist-info/RECORD", "stale\n")
    return path


def test_slim_keeps_only_the_cuda130_library_and_rewrites_record(tmp_path):
    import slim_wheels

    w = _wheel(tmp_path / "bitsandbytes-0.50.2-py3-none-any.whl", {
        "bitsandbytes/__init__.py": b"x", "bitsandbytes/libbitsandbytes_cuda130.so": b"a" * 10,
        "bitsandbytes/libbitsandbytes_cuda128.so": b"b" * 10, "bitsandbytes/libbitsandbytes_rocm72.so": b"c",
        "bitsandbytes/libbitsandbytes_cpu.so": b"d", "pkg-1.0.dist-info/METADATA": b"m"})
    slim_wheels.slim(w, slim_wheels.KEEP["bitsandbytes-"])
    with zipfile.ZipFile(w) as z:
        names = set(z.namelist())
        record = z.read("pkg-1.0.dist-info/RECORD").decode()
    assert "bitsandbytes/libbitsandbytes_cuda130.so" in names and "bitsandbytes/libbitsandbytes_cpu.so" in names
    assert not any("cuda128" in n or "rocm" in n for n in names)
    assert "bitsandbytes/libbitsandbytes_cuda130.so,sha256=" in record and "stale" not in record


def test_slim_drops_unsloth_studio_and_report_checks_the_limit(tmp_path, capsys):
    import slim_wheels

    w = _wheel(tmp_path / "unsloth-2026.10.9-py3-none-any.whl", {
        "unsloth/__init__.py": b"x", "studio/app.js": b"y" * 5000, "unsloth_cli/main.py": b"z",
        "unsloth-2026.10.9.dist-info/METADATA": b"m"})
    assert slim_wheels.main([str(tmp_path), "--limit-mib", "1"]) == 0
    with zipfile.ZipFile(w) as z:
        assert {n.split("/")[0] for n in z.namelist()} == {"unsloth", "unsloth-2026.10.9.dist-info", "pkg-1.0.dist-info"}
    assert "fits" in capsys.readouterr().out
    assert slim_wheels.report(tmp_path, limit_mib=0.0001, tree_mib=0) == 1


def test_minicpm_2b_shape_and_dry_run_args():
    import arms
    import run

    n = arms.param_count(arms.MINICPM_2B)
    assert 2.35e9 < n["non_embedding"] < 2.5e9  # "2.4B"
    assert 2.65e9 < n["minicpm"] < 2.8e9 and n["llama_folded"] - n["minicpm"] == 122753 * 2304
    args = run.parse_args(["--dry-run", "--out", "x"])
    assert (args.seq, args.steps, args.no_smoke) == (64, 2, True)
    assert run.parse_args(["--out", "x"]).seq == 2048


def test_smoke_recipe_is_a_valid_unsloth_recipe(tmp_path):
    import run

    from kit.spec.recipe import load_recipe

    loaded = load_recipe(run.smoke_recipe(tmp_path))
    assert loaded.spec.train.backend == "unsloth" and loaded.spec.teacher.kind == "scripted"
    assert Path(loaded.spec.persona).is_absolute() or (ROOT / loaded.spec.persona).is_dir()


def test_ratios_and_table():
    import run

    arms = {"unsloth_qlora": {"tokens_per_s": 3000.0, "peak_alloc_gib": 4.0},
            "trl_qlora": {"tokens_per_s": 1500.0, "peak_alloc_gib": 5.0},
            "trl_lora_bf16": {"tokens_per_s": 6000.0, "peak_alloc_gib": 10.0}}
    r = run.ratios(arms)
    assert r["unsloth_vs_trl_qlora_tokens_per_s"] == 2.0
    assert r["trl_qlora_vs_trl_lora_bf16_peak_vram"] == 0.5
    text = run.table({"arms": {**arms, "x": {"error": "boom"}}, "ratios": r, "smoke": None})
    assert "| unsloth_qlora | 3000.0 | 4.0 |" in text and "boom" in text


@pytest.mark.slow
def test_dry_run_end_to_end(tmp_path):
    pytest.importorskip("trl")
    proc = subprocess.run([sys.executable, str(GPU / "run.py"), "--dry-run", "--out", str(tmp_path),
                           "--budget-s", "300"], capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rep = json.loads((tmp_path / "gpu_check.json").read_text())
    bf16 = rep["arms"]["trl_lora_bf16"]
    assert bf16.get("tokens_per_s", 0) > 0, bf16
    assert bf16["steps_done"] == 2 and bf16["final_loss"] > 0
    for arm in ("unsloth_qlora", "trl_qlora"):
        assert "skipped" in rep["arms"][arm] and "error" not in rep["arms"][arm], rep["arms"][arm]
    assert rep["build"]["rc"] == 0 and "| trl_lora_bf16 |" in proc.stdout
