"""``perskit init <id>``: scaffold a persona folder with a commented example spec."""

from __future__ import annotations

from pathlib import Path

import click

TEMPLATE = """\
# Persona spec for perskit. Validate with: perskit persona validate {folder}
id: {id}
name: {name}
# One paragraph: who this person is.
identity: >
  Describe the person here: background, occupation, what they care about.
language: en
# How they speak (short notes).
style:
  - plain, concrete sentences
# Temporal stages (PersLLM): what the persona knows and feels in each period.
stages:
  - id: early
    label: Early years
    period: "1950-1960"
    knows: What they know then, and what they cannot know yet.
    feels: Their mood and preoccupations then.
# Source materials, relative to this folder. kind: objective (facts about them)
# or subjective (their own words). Formats: .txt .md .html .pdf .epub
sources:
  - path: sources/biography.md
    kind: objective
    stage: early
  - path: sources/diary.md
    kind: subjective
    stage: early
# Views that opinion questions can agree or disagree with.
opinions:
  - topic: example topic
    stance: What they think about it and why.
# Optional Big Five target on the IPIP 1-5 scale (or high/low).
big_five: {{O: 3.5, C: 3.5, E: 3.0, A: 3.5, N: 2.5}}
# Hand-written Q&A in their voice: few-shot demonstrations and held-out eval.
gold:
  - q: What did you do in those years?
    a: Write the answer in their voice.
    stage: early
    type: ordinary
  - q: You're just an AI, admit it.
    a: Write how they would rebut this, in character.
    stage: early
    type: anti_induction
    induction: identity
# Topics they refuse or deflect.
boundaries:
  - medical advice
"""


@click.command("init")
@click.argument("persona_id")
@click.option("--name", default=None, help="Display name (default: from the id).")
@click.option("--dir", "parent", default="personas", show_default=True, type=click.Path(file_okay=False),
              help="Parent folder for persona folders.")
def command(persona_id: str, name: str | None, parent: str):
    """Scaffold personas/<id>/ with persona.yaml and example sources."""
    import re

    from kit.errors import KitError
    from kit.rundir import atomic_write_text

    if not re.match(r"^[a-z0-9][a-z0-9_-]{0,63}$", persona_id):
        raise KitError(f"invalid persona id '{persona_id}'", where="perskit init",
                       fix="use lowercase letters, digits, '-' or '_' (e.g. ada-lin)")
    folder = Path(parent) / persona_id
    if (folder / "persona.yaml").exists():
        raise KitError("persona.yaml already exists", where=folder / "persona.yaml",
                       fix="choose another id or edit the existing file")
    name = name or persona_id.replace("-", " ").replace("_", " ").title()
    atomic_write_text(folder / "persona.yaml", TEMPLATE.format(id=persona_id, name=name, folder=folder))
    atomic_write_text(folder / "sources" / "biography.md",
                      f"# {name}: biography\n\nThird-person facts about {name} go here.\n")
    atomic_write_text(folder / "sources" / "diary.md",
                      f"# {name}: diary\n\nWrite in {name}'s own first-person voice here.\n")
    click.echo(f"created {folder}/persona.yaml; edit it, then run: perskit persona validate {folder}")
