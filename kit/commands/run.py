"""``perskit run <recipe>``: the whole pipeline, resumable.

    perskit run recipes/quickstart.yaml
    perskit run recipes/smoke.yaml --run-dir /tmp/smoke
    perskit run recipes/quickstart.yaml --from dpo      # redo dpo, eval and export
    perskit run recipes/quickstart.yaml --only construct --only sft

Ctrl-C at any point, then run the same command again: finished stages are skipped
(their inputs are unchanged) and the interrupted one resumes.
"""

from __future__ import annotations

import click

from kit.commands._common import recipe_options


@click.command("run")
@recipe_options
@click.option("--from", "start", default=None, metavar="STAGE",
              help="Rerun from this stage on (construct, sft, dpo, eval, export).")
@click.option("--only", multiple=True, metavar="STAGE", help="Run only these stages (repeatable).")
def command(recipe, run_dir, overrides, start, only):
    """Run construct -> sft -> dpo -> eval -> export over one run directory."""
    from rich.console import Console

    from kit.pipeline import final_summary, run_pipeline

    console = Console(stderr=True)
    result = run_pipeline(recipe, run_dir, list(overrides), start=start, only=list(only), console=console)
    console.rule("[bold green]done")
    for line in final_summary(result):
        click.echo(line)
