"""``perskit persona validate <path>``: check a persona spec and its sources."""

from __future__ import annotations

import click


@click.group("persona")
def command():
    """Persona tools."""


@command.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def validate_cmd(paths):
    """Validate persona folders (or persona.yaml files); exit 2 on the first problem."""
    from kit.spec.persona import load_persona

    for p in paths:
        lp = load_persona(p)
        s = lp.spec
        kind = "trait-only" if s.trait_only else "material-based"
        click.echo(f"ok  {s.id}: {s.name} ({kind}; {len(s.stages)} stages, {len(s.sources)} sources, "
                   f"{len(s.gold)} gold examples)")
