"""The ``export`` stage: the trained adapter -> a verified bundle (GGUFs, Modelfile, card)
in ``<export.out_dir>/<persona id>/`` (the work is ``kit.export.bundle``)."""

from __future__ import annotations

import json

from kit.rundir import Manifest


def bundle_dir(ctx):
    return ctx.loaded.resolve_path(ctx.loaded.spec.export.out_dir) / ctx.persona.spec.id


def run(ctx) -> Manifest:
    from rich.console import Console
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    from kit.export.bundle import export_run
    from kit.progress import progress

    _quiet_transformers()
    # a spinner on a terminal; in a log, "export: <step> still running (90 s)" every 30 s
    with progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=ctx.console or Console(stderr=True), transient=True) as bar:
        task = bar.add_task("export", total=None)
        export_run(ctx.loaded, ctx.persona, ctx.run, force=ctx.force,
                   progress=lambda msg: bar.update(task, description=f"export: {msg}"))
    return ctx.run.stage("export").manifest()


def report(ctx, m: Manifest) -> list[str]:
    out = bundle_dir(ctx)
    if not (out / "manifest.json").is_file():
        return []
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    lines = [f"bundle: {out}"]
    for name, info in manifest["files"].items():
        lines.append(f"  {name:40s} {info['bytes'] / 1e6:9.2f} MB")
    for q, p in manifest["verify"]["parity"].items():
        lines.append(f"  parity {q:7s} top-1 {p['top1']:.3f} (clear {p.get('top1_clear', p['top1']):.3f}, "
                     f"confident {p['top1_confident']:.3f})  "
                     f"KL {p['kl']:.2e}  ({p['positions']} positions)")
    for w in manifest.get("warnings", []):
        lines.append(f"  warning: {w}")
    return lines


def _quiet_transformers() -> None:
    """Keep the terminal to our own progress line (transformers prints per-load bars)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
