"""Options shared by the stage verbs: a recipe, ``--run-dir`` and ``--set`` overrides."""

from __future__ import annotations

import functools

import click


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


def open_run(recipe: str, run_dir: str | None, overrides: tuple[str, ...]):
    """Load and validate the recipe and persona; the resolved recipe is saved into the run
    dir when the first stage begins (nothing is written for input that fails first)."""
    from kit.rundir import RunDir
    from kit.spec.persona import load_persona
    from kit.spec.recipe import load_recipe

    loaded = load_recipe(recipe, list(overrides))
    persona = load_persona(loaded.persona_path())
    run = RunDir.for_recipe(loaded, run_dir)
    run.remember_recipe(loaded.spec)
    return loaded, persona, run
