"""``perskit run``: construct -> sft -> dpo -> eval -> export over one run directory.

It walks the stage registry (``kit/stages.py``); each stage runs as its own
``perskit <verb>`` subprocess. Why: the memory a stage
used (a teacher model, a trainer) is returned to the OS before the next one starts,
the peak RSS of every stage can be measured exactly (``wait4`` rusage), and a
backend that patches libraries at import (unsloth) never leaks into the next stage.
Stages are individually resumable and skip themselves when their inputs are
unchanged, so the pipeline is resumable simply by running it again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from kit.errors import KitError
from kit.rundir import atomic_write_json
from kit.stages import STAGES


def run_stage_subprocess(verb: str, recipe: str, run_dir: Path, overrides: list[str], force: bool,
                         env: dict | None = None) -> tuple[int, float, float]:
    """Run one stage verb; return (exit code, wall seconds, peak RSS MiB of the stage)."""
    cmd = [sys.executable, "-m", "kit", verb, recipe, "--run-dir", str(run_dir)]
    for o in overrides:
        cmd += ["--set", o]
    if force:
        cmd.append("--force")  # every stage verb takes it (kit/stages.py)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})})
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - t0, round(usage.ru_maxrss / 1024, 1)


def run_pipeline(recipe: str, run_dir: str | None, overrides: list[str], *, start: str | None = None,
                 only: list[str] | None = None, console=None) -> dict:
    from rich.console import Console

    from kit.context import open_run

    console = console or Console(stderr=True)
    names = [s.name for s in STAGES]
    # flags are checked before the run directory is created, so a typo writes nothing
    if start is not None and start not in names:
        raise KitError(f"unknown stage '{start}'", where="--from", fix=f"use one of {names}")
    for name in only or []:
        if name not in names:
            raise KitError(f"unknown stage '{name}'", where="--only", fix=f"use one of {names}")
    loaded, persona, run = open_run(recipe, run_dir, overrides)
    summary_path = run.path / "pipeline.json"
    previous = {}
    if summary_path.exists():
        try:
            previous = json.loads(summary_path.read_text()).get("stages", {})
        except json.JSONDecodeError:
            previous = {}
    todo = [s for s in STAGES if not (only and s.name not in only)
            and not (s.section and not getattr(loaded.spec, s.section).enabled)]
    forced = set(names[names.index(start):]) if start else set()
    # measured times from an earlier run when present, else each stage's share of ~10 min
    est = {s.name: (previous.get(s.name, {}).get("wall_s") or s.weight * 600) for s in todo}
    record = {"recipe": str(loaded.path), "run_dir": str(run.path), "stages": {}}
    t_start = time.perf_counter()
    for i, info in enumerate(todo, 1):
        name = info.name
        remaining = sum(est[s.name] for s in todo[i - 1:])
        console.rule(f"[bold]stage {i}/{len(todo)}: {name}[/]  (elapsed {time.perf_counter() - t_start:.0f}s, "
                     f"ETA ~{remaining:.0f}s)")
        code, wall, rss = run_stage_subprocess(info.verb, str(loaded.path), run.path, overrides, name in forced)
        record["stages"][name] = {"exit_code": code, "wall_s": round(wall, 2), "peak_rss_mb": rss,
                                  "status": "done" if code == 0 else "failed"}
        atomic_write_json(summary_path, record)
        if code != 0:
            if code == 2:
                raise SystemExit(2)  # the stage already printed its one-line error
            raise KitError(f"stage '{name}' failed (exit code {code})", where=str(run.path / name),
                           fix=f"read the output above, then rerun `perskit run {recipe}` to resume")
    record["wall_s"] = round(time.perf_counter() - t_start, 2)
    atomic_write_json(summary_path, record)
    return {"record": record, "loaded": loaded, "persona": persona, "run": run}


def final_summary(result: dict) -> list[str]:
    """Where the bundle is, the headline eval numbers and how to chat."""
    loaded, persona, run = result["loaded"], result["persona"], result["run"]
    rec = result["record"]
    lines = [f"run directory: {run.path}"]
    for name, s in rec["stages"].items():
        lines.append(f"  {name:9s} {s['status']:6s} {s['wall_s']:8.1f}s  peak RSS {s['peak_rss_mb']:8.1f} MiB")
    lines.append(f"  total     {rec.get('wall_s', 0):15.1f}s")
    if run.eval_results.exists():
        from kit.stages import by_name

        lines += [f"  eval {line}" for line in by_name("eval").load().headlines(run)]
        lines.append(f"  report: {run.eval_report}")
    bundle = loaded.resolve_path(loaded.spec.export.out_dir) / persona.spec.id
    if (bundle / "manifest.json").exists():
        lines.append(f"bundle: {bundle}")
        lines.append(f"chat with it:  {perskit_exe()} chat {_rel(bundle)}")
    return lines


def perskit_exe() -> str:
    """How to call perskit so the printed command works as pasted: plain ``perskit`` when
    the shell finds this same install, else the path of this venv's script (after
    ``make quickstart`` the venv is not on the user's PATH)."""
    import shutil

    mine = Path(sys.executable).parent / "perskit"
    found = shutil.which("perskit")
    if found and mine.exists() and Path(found).resolve() == mine.resolve():
        return "perskit"
    if not mine.exists():
        return "perskit"
    local = Path.cwd() / ".venv" / "bin" / "perskit"
    if local.exists() and local.resolve() == mine.resolve():
        return ".venv/bin/perskit"
    return str(mine)


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)
