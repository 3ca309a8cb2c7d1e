"""``perskit eval <recipe>``: Big Five, induction resistance, consistency, distinctiveness,
knowledge and style for the prompted baseline and the trained variants.

    perskit eval recipes/smoke.yaml
    perskit eval recipes/quickstart.yaml --set eval.judge=heuristic --set eval.ipip_items=30
    perskit eval --compare runs/ada-lin-smoke runs/ada-lin-full
"""

from __future__ import annotations

import click


@click.command("eval")
@click.argument("target", nargs=-1, required=True)
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: runs/<persona>-<recipe name>).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe field, e.g. --set eval.judge=heuristic (repeatable).")
@click.option("--force", is_flag=True, help="Recompute every variant even if the results are up to date.")
@click.option("--compare", is_flag=True, help="Compare the eval results of the run folders given as TARGET.")
def command(target, run_dir, overrides, force, compare):
    """Evaluate a recipe's run (TARGET = recipe), or compare runs (--compare RUN RUN...)."""
    from kit.errors import KitError

    if compare:
        from kit.eval.report import compare as compare_runs

        click.echo(compare_runs(list(target)))
        return
    if len(target) != 1:
        raise KitError("give exactly one recipe", where="perskit eval",
                       fix="perskit eval <recipe.yaml>, or perskit eval --compare RUN_A RUN_B")
    from kit.commands._common import run_stage

    run_stage("eval", target[0], run_dir, overrides, force=force)
