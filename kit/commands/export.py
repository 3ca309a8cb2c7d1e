"""``perskit export <recipe>``: merge the trained adapter, convert to GGUF, quantize,
write the Ollama Modelfile + character card, verify, and place the bundle.

    perskit export recipes/quickstart.yaml
    perskit export recipes/smoke.yaml --set export.quants='[Q8_0,Q4_K_M]'
    perskit export recipes/quickstart.yaml --run-dir runs/ada-lin-quickstart --force

Uses ``<run>/dpo/adapter`` when DPO ran, else ``<run>/sft/adapter``; the bundle lands in
``<export.out_dir>/<persona id>/`` and the stage manifest in ``<run>/export/``.
"""

from __future__ import annotations

import click

from kit.commands._common import open_run, recipe_options


@click.command("export")
@recipe_options
@click.option("--force", is_flag=True, help="Rebuild the bundle even if it is up to date.")
def command(recipe, run_dir, overrides, force):
    """Merge, convert to GGUF, quantize, bundle and verify a trained persona."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from kit.export.bundle import export_run

    loaded, persona, run = open_run(recipe, run_dir, overrides)
    _quiet_transformers()
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("export", total=None)
        manifest = export_run(loaded, persona, run, force=force,
                              progress=lambda msg: bar.update(task, description=f"export: {msg}"))
    out = loaded.resolve_path(loaded.spec.export.out_dir) / persona.spec.id
    click.echo(f"bundle: {out}")
    for name, info in manifest["files"].items():
        click.echo(f"  {name:40s} {info['bytes'] / 1e6:9.2f} MB")
    for q, p in manifest["verify"]["parity"].items():
        click.echo(f"  parity {q:7s} top-1 {p['top1']:.3f} (confident {p['top1_confident']:.3f})  "
                   f"KL {p['kl']:.2e}  ({p['positions']} positions)")
    for w in manifest.get("warnings", []):
        click.echo(f"  warning: {w}")


def _quiet_transformers() -> None:
    """Keep the terminal to our own progress line (transformers prints per-load bars)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
