"""``perskit construct <recipe>``: build personified training data (PersLLM-style).

    perskit construct recipes/smoke.yaml
    perskit construct recipes/ada.yaml --set construct.max_passages=10 --set teacher.sampling.max_tokens=200
    perskit construct recipes/ada.yaml --force      # rebuild the dataset from the call cache

Interrupt it any time: rerunning the same command resumes without repeating calls.
"""

from __future__ import annotations

import click

from kit.commands._common import open_run, recipe_options


@click.command("construct")
@recipe_options
@click.option("--force", is_flag=True, help="Rebuild records and the dataset even if up to date (uses the cache).")
def command(recipe, run_dir, overrides, force):
    """Build personified SFT data from a persona's materials."""
    from kit.construct.pipeline import run_construct

    loaded, persona, run = open_run(recipe, run_dir, overrides)
    m = run_construct(loaded, persona, run, force=force)
    c = m.get("counts", {})
    click.echo(f"construct: {c.get('train', 0)} train / {c.get('test', 0)} test rows in {run.path / 'construct'}")
    click.echo(f"  per pattern: {c.get('per_pattern', {})}")
    click.echo(f"  per stage:   {c.get('per_stage', {})}")
    click.echo(f"  dropped:     {c.get('dropped', {})}  template questions: {c.get('question_fallbacks', {})}")
    click.echo(f"  teacher:     {m.get('teacher_stats', {})}")
    if c.get("missing"):
        click.echo(f"  warning: no generated rows for {', '.join(c['missing'])} "
                   "(raise construct.max_passages or use a stronger teacher)", err=True)
