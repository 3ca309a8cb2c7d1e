"""Opening a run: the recipe, its persona and the run directory, loaded and checked once,
and the ``StageContext`` every stage's ``run(ctx)`` receives.

Shared by the CLI verbs (``kit/commands``) and the pipeline (``kit/pipeline.py``), so the
library never imports the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


def open_run(recipe: str, run_dir: str | None, overrides: tuple[str, ...] | list[str]):
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


@dataclass
class StageContext:
    """Everything a stage's ``run`` gets: the loaded recipe and persona, the run directory
    and the verb's flags."""

    loaded: Any
    persona: Any
    run: Any
    force: bool = False
    resume: bool = False
    echo: Callable[[str], None] = print
    console: Any = None


def open_context(recipe: str, run_dir: str | None, overrides, **flags) -> StageContext:
    loaded, persona, run = open_run(recipe, run_dir, overrides)
    return StageContext(loaded=loaded, persona=persona, run=run, **flags)
