"""``perskit persona validate <path>``: check a persona spec and read every source."""

from __future__ import annotations

import click


@click.group("persona")
def command():
    """Persona tools."""


@command.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def validate_cmd(paths):
    """Validate persona folders (or persona.yaml files) and read their sources as
    construction will (no models involved). Every problem is listed, one line each;
    exit 2 if there was any."""
    from kit.construct.ingest import open_source
    from kit.errors import KitError, raise_all
    from kit.spec.persona import load_persona

    problems: list[KitError] = []
    for p in paths:
        try:
            lp = load_persona(p, read=open_source)
        except KitError as exc:
            problems.append(exc)
            continue
        s = lp.spec
        kind = "trait-only" if s.trait_only else "material-based"
        click.echo(f"ok  {s.id}: {s.name} ({kind}; {len(s.stages)} stages, {len(s.sources)} sources, "
                   f"{len(s.gold)} gold examples)")
    raise_all(problems)
