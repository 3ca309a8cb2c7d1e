"""The GPU check, in one run: QLoRA/LoRA speed and memory on a MiniCPM-2.4B-shaped model,
then the smoke pipeline with ``train.backend=unsloth``.

Made for one H200 with torch/transformers/peft/accelerate preinstalled and no network
(trl, unsloth, bitsandbytes, datasets travel as wheels: bench/gpu/prepare.sh, go.sh).
Every measurement runs in its own subprocess with its own time budget; a failure or a
timeout is recorded with its error and the run goes on. Results: ``<out>/gpu_check.json``
and a table on stdout; every subprocess's output goes to ``<out>/gpu_check.log``.

    bash bench/gpu/go.sh                                  # on the GPU machine
    python3 bench/gpu/run.py --dry-run --out /tmp/gpu     # CPU: tiny model, 2 steps per arm
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from arms import ARMS, MINICPM_2B, param_count  # noqa: E402  (stdlib-only at import)

GOALS = {"unsloth_vs_trl_qlora_tokens_per_s": 1.5, "qlora_peak_vram_gib": 6.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "bench" / "results" / "gpu"))
    ap.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    ap.add_argument("--seq", type=int, default=2048, help="Tokens per row (the recipe's max_seq_len).")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=8, help="Timed steps per arm (after --warmup).")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=540.0, help="Whole run; the device allows 600 s a command.")
    ap.add_argument("--arm-budget-s", type=float, default=140.0, help="Per arm, model load included.")
    ap.add_argument("--smoke-reserve-s", type=float, default=150.0, help="Kept back for the smoke pipeline.")
    ap.add_argument("--no-smoke", action="store_true", help="Skip the smoke pipeline.")
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU check of this script: tiny MiniCPM-shaped model, seq 64, 2 steps, no smoke pipeline.")
    args = ap.parse_args(argv)
    if args.dry_run:
        args.seq, args.steps, args.warmup, args.no_smoke = min(args.seq, 64), 2, 0, True
    return args


class Runner:
    """Subprocesses under one deadline; their output is appended to one log file."""

    def __init__(self, log: Path, budget_s: float):
        self.log, self.deadline = log, time.monotonic() + budget_s
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]), "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "UNSLOTH_DISABLE_STATISTICS": "1", "TOKENIZERS_PARALLELISM": "false"}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def __call__(self, name: str, cmd: list[str], timeout: float) -> dict:
        timeout = max(1.0, min(timeout, self.left()))
        t0 = time.perf_counter()
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(f"\n===== {name}: {' '.join(cmd)} (timeout {timeout:.0f} s)\n")
            fh.flush()
            try:
                rc = subprocess.run(cmd, cwd=ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                    timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        out = {"rc": rc, "wall_s": round(time.perf_counter() - t0, 1)}
        if rc != 0:
            out["error"] = f"timed out after {timeout:.0f} s" if rc == "timeout" else _tail(self.log)
        return out


def _tail(log: Path, n: int = 6) -> str:
    lines = [x for x in log.read_text(encoding="utf-8", errors="replace").splitlines() if x.strip()]
    return " | ".join(lines[-n:])[-800:]


def environment() -> dict:
    """What the numbers were measured on (never fails: a missing package is recorded)."""
    from importlib import metadata

    env = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "bitsandbytes", "unsloth",
                "unsloth_zoo", "triton", "xformers"):
        try:
            env[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            env[pkg] = None
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.get_device_name(0) "
                            "if torch.cuda.is_available() else 'cpu')"], capture_output=True, text=True)
    env["device"] = probe.stdout.strip() or probe.stderr.strip()[-200:]
    return env


def measure_arms(args, run: Runner, work: Path) -> tuple[dict, dict]:
    ckpt = work / ("minicpm-tiny-llama" if args.dry_run else "minicpm-2b-llama")
    build = run("build", [sys.executable, str(HERE / "arms.py"), "build", "--ckpt", str(ckpt)]
                + (["--tiny"] if args.dry_run else []), timeout=180)
    results: dict = {}
    for arm in args.arms:
        if build["rc"] != 0:
            results[arm] = {"error": "checkpoint build failed: " + build.get("error", "")}
            continue
        reserve = 0 if args.no_smoke else args.smoke_reserve_s
        budget = min(args.arm_budget_s, run.left() - reserve)
        if budget < 30:
            results[arm] = {"error": f"not run: {run.left():.0f} s left of the run's budget"}
            continue
        res_path = work / f"{arm}.json"
        cmd = [sys.executable, str(HERE / "arms.py"), "arm", arm, "--ckpt", str(ckpt), "--result", str(res_path),
               "--seq", str(args.seq), "--batch", str(args.batch), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--budget-s", str(budget - 15)]
        status = run(arm, cmd, timeout=budget)
        results[arm] = json.loads(res_path.read_text()) if res_path.is_file() else {}
        results[arm].update({k: v for k, v in status.items() if k in ("error", "wall_s")})
    return build, results


def smoke_recipe(work: Path) -> Path:
    """recipes/smoke.yaml with the unsloth backend and the scripted teacher (the GPU box has no
    llama-cpp-python and no embedded teacher GGUF; this checks the training backend)."""
    import yaml

    spec = yaml.safe_load((ROOT / "recipes" / "smoke.yaml").read_text(encoding="utf-8"))
    spec["persona"] = str(ROOT / spec["persona"])
    spec["teacher"] = {"kind": "scripted"}
    spec["train"]["backend"] = "unsloth"
    spec["dpo"]["contrast_personas"] = [str(ROOT / p) for p in spec["dpo"].get("contrast_personas", [])]
    out = work / "smoke-unsloth.yaml"
    out.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return out


def run_smoke(run: Runner, work: Path) -> dict:
    """construct -> sft -> dpo with unsloth (eval needs the embedding model, export llama.cpp: not there)."""
    recipe = smoke_recipe(work)
    cmd = [sys.executable, "-m", "kit", "run", str(recipe), "--run-dir", str(work / "smoke-run"),
           "--only", "construct", "--only", "sft", "--only", "dpo"]
    status = run("smoke", cmd, timeout=run.left())
    out = {"stages": ["construct", "sft", "dpo"], **status}
    for stage in ("sft", "dpo"):
        man = work / "smoke-run" / stage / "manifest.json"
        if man.is_file():
            out[stage] = {k: v for k, v in json.loads(man.read_text()).items() if k in ("status", "counts", "metrics")}
    return out


def ratios(arms: dict) -> dict:
    tps = {a: r.get("tokens_per_s") for a, r in arms.items() if r.get("tokens_per_s")}
    out = {}
    if "unsloth_qlora" in tps and "trl_qlora" in tps:
        out["unsloth_vs_trl_qlora_tokens_per_s"] = round(tps["unsloth_qlora"] / tps["trl_qlora"], 2)
    if "trl_lora_bf16" in tps:
        out.update({f"{a}_vs_trl_lora_bf16_tokens_per_s": round(v / tps["trl_lora_bf16"], 2)
                    for a, v in tps.items() if a != "trl_lora_bf16"})
    vram = {a: r["peak_alloc_gib"] for a, r in arms.items() if r.get("peak_alloc_gib")}
    if "trl_lora_bf16" in vram:
        out.update({f"{a}_vs_trl_lora_bf16_peak_vram": round(v / vram["trl_lora_bf16"], 2)
                    for a, v in vram.items() if a != "trl_lora_bf16"})
    return out


def table(report: dict) -> str:
    rows = ["| arm | tokens/s | peak alloc GiB | peak reserved GiB | load s | steps | note |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for arm, r in report["arms"].items():
        note = r.get("skipped") or r.get("error") or ""
        rows.append(f"| {arm} | {r.get('tokens_per_s', '-')} | {r.get('peak_alloc_gib', '-')} | "
                    f"{r.get('peak_reserved_gib', '-')} | {r.get('load_s', '-')} | {r.get('steps_done', '-')} | "
                    f"{note[:160]} |")
    rows += [f"- {k}: {v}" for k, v in report["ratios"].items()]
    smoke = report.get("smoke") or {}
    rows.append(f"- smoke pipeline (unsloth): {'ok' if smoke.get('rc') == 0 else smoke.get('error', 'not run')}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "gpu_check.log"
    log.write_text("", encoding="utf-8")
    run = Runner(log, args.budget_s)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    report = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "model": {"config": MINICPM_2B if not args.dry_run else "tiny MiniCPM (dry run)",
                        "params": param_count(MINICPM_2B)},
              "environment": environment(), "goals": GOALS}
    report["build"], report["arms"] = measure_arms(args, run, work)
    report["ratios"] = ratios(report["arms"])
    report["smoke"] = None if args.no_smoke else run_smoke(run, work)
    report["wall_s"] = round(args.budget_s - run.left(), 1)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
