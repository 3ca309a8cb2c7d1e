"""Options shared by the stage verbs (a recipe, ``--run-dir``, ``--set``, ``--force``) and
the one way a verb runs its stage: ``stage_command`` builds the click command from the
stage registry (``kit/stages.py``)."""

from __future__ import annotations

import functools

import click

from kit.context import open_run  # noqa: F401  (the verbs import it from here)


def recipe_options(fn):
    @click.argument("recipe", type=click.Path(dir_okay=False))
    @click.option("--run-dir", type=click.Path(file_okay=False), default=None,
                  help="Run directory (default: runs/<persona>-<recipe name>).")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                  help="Override a recipe field, e.g. --set train.lora.r=32 (repeatable).")
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def run_stage(name: str, recipe: str, run_dir: str | None, overrides, *, force: bool = False,
              resume: bool = False) -> None:
    """Open the run, run one registered stage and print its report."""
    from rich.console import Console

    from kit.context import open_context
    from kit.stages import by_name

    from kit.progress import heartbeat, spoken

    def echo(*args, **kwargs):
        click.echo(*args, **kwargs)
        spoken()

    console = Console(stderr=True)
    ctx = open_context(recipe, run_dir, overrides, force=force, resume=resume, echo=echo, console=console)
    module = by_name(name).load()
    # Off a terminal, a line after every 30 s of silence: model loading, a trainer's evaluate()
    # and other steps with no counter of their own must not look like a hung run in a log.
    with heartbeat(name, console, summary=False):
        manifest = module.run(ctx)
    for line in module.report(ctx, manifest):
        click.echo(line)


def stage_command(name: str, summary: str, force_help: str, resume_help: str | None = None):
    """The click command of a stage verb: recipe options, --force (and --resume where the
    stage can continue from a checkpoint), then ``run_stage``."""
    from kit.stages import by_name

    info = by_name(name)

    def command(recipe, run_dir, overrides, force, resume=False):
        run_stage(name, recipe, run_dir, overrides, force=force, resume=resume)

    command.__doc__ = summary
    command = click.option("--force", is_flag=True, help=force_help)(command)
    if info.resumable:
        resume_help = resume_help or "Continue from the newest checkpoint."
        command = click.option("--resume", is_flag=True, help=resume_help)(command)
    return click.command(info.verb)(recipe_options(command))
