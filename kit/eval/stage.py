"""The ``eval`` stage: prompted baseline and trained variants -> eval/results.json,
answers, report.md and plots (the work is ``kit.eval.runner``).

``--force`` recomputes every variant: the manifest and the per-variant parts that an
interrupted run would otherwise reuse are removed first.
"""

from __future__ import annotations

import json
import shutil

from kit.rundir import Manifest


def run(ctx) -> Manifest:
    from kit.eval.runner import run_eval

    stage = ctx.run.stage("eval")
    if not ctx.loaded.spec.eval.enabled:
        ctx.echo("eval is disabled in the recipe (eval.enabled: false); nothing to do")
        return stage.manifest()
    if ctx.force:
        shutil.rmtree(stage.path / "parts", ignore_errors=True)
        stage.manifest_path.unlink(missing_ok=True)
    run_eval(ctx.loaded, ctx.persona, ctx.run, console=ctx.console)
    return stage.manifest()


def headlines(run) -> list[str]:
    """One line per evaluated variant with its headline numbers (empty before eval ran)."""
    from kit.eval.report import headline

    if not run.eval_results.is_file():
        return []
    data = json.loads(run.eval_results.read_text(encoding="utf-8"))
    lines = []
    for variant, res in data.get("variants", {}).items():
        shown = ", ".join(f"{k}={v:.3f}" for k, v in headline(res).items() if v is not None)
        lines.append(f"{variant}: {shown}")
    return lines


def report(ctx, m: Manifest) -> list[str]:
    if m.get("status") != "done":
        return []
    return headlines(ctx.run) + [f"report: {ctx.run.eval_report}"]
