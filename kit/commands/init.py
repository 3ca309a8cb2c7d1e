"""``perskit init <id>``: scaffold a persona folder with a commented example spec."""

from __future__ import annotations

import re
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

HEADER = """\
# perskit recipe for {name}, written by `perskit init {id}` from recipes/quickstart.yaml: the
# quickstart's CPU settings, with only `name:` and `persona:` changed (and `contrast_personas`
# pointed at perskit's bundled persona when this project has no such folder).
# Run it:   perskit run {recipe}   (resumable: Ctrl-C, then the same command)
# Then:     perskit chat export/{id}
# A stronger teacher, in one line: a local llama-server / Ollama / vLLM, or a bigger GGUF file:
#   teacher: {{kind: openai, base_url: "http://127.0.0.1:8080/v1", model: default}}
#   teacher: {{kind: llamacpp, model: /path/to/model.gguf}}
# On a GPU, a bigger student and more steps (see recipes/minicpm-2b-unsloth.yaml,
# qwen2.5-1.5b-trl.yaml and mlx-gemma3-1b.yaml), e.g.
#   train: {{backend: unsloth, model: openbmb/MiniCPM-2B-sft-bf16, load_in_4bit: true, max_steps: 600}}
"""


def find_quickstart(recipes_dir: Path) -> Path:
    """recipes/quickstart.yaml: beside the kit's source tree (a checkout, an editable install),
    else in the recipes folder init writes to; one line when neither has it."""
    from kit.errors import KitError

    kit_root = Path(__file__).resolve().parents[2]
    for candidate in (kit_root / "recipes" / "quickstart.yaml", Path(recipes_dir) / "quickstart.yaml"):
        if candidate.is_file():
            return candidate
    raise KitError("recipes/quickstart.yaml not found (the starter recipe is generated from it)",
                   where="perskit init",
                   fix="run init in a perskit checkout, or pass --recipes to a folder holding quickstart.yaml")


def _contrast_line(line: str, source: Path, root: Path) -> str:
    """Keep ``contrast_personas`` where its folders exist under the new project's root; else point
    at the persona bundled beside the quickstart; else comment the line out."""
    m = re.match(r"^(\s*)contrast_personas:\s*\[(.*?)\](.*)$", line)
    if not m:
        return line
    names = [n.strip().strip("'\"") for n in m.group(2).split(",") if n.strip()]
    bundled = source.resolve().parents[1]
    out = []
    for n in names:
        if Path(n).is_absolute() or (root / n).is_dir():
            out.append(n)
        elif (bundled / n).is_dir():
            out.append((bundled / n).as_posix())
        else:
            return f"{m.group(1)}# contrast_personas: [{', '.join(names)}]   # not found: name a persona folder"
    return f"{m.group(1)}contrast_personas: [{', '.join(out)}]{m.group(3)}"


def starter_recipe(source: Path, *, persona_id: str, name: str, persona: str, recipe: Path, root: Path) -> str:
    """The quickstart's text with its top-level ``name:`` and ``persona:`` lines replaced."""
    from kit.errors import KitError

    lines = source.read_text(encoding="utf-8").splitlines()
    for key, value in (("name", persona_id), ("persona", persona)):
        hits = [i for i, ln in enumerate(lines) if re.match(rf"^{key}:\s", ln)]
        if len(hits) != 1:
            raise KitError(f"expected one top-level '{key}:' line, found {len(hits)}", where=source,
                           fix="restore the quickstart recipe from git")
        lines[hits[0]] = f"{key}: {value}"
    lines = [_contrast_line(ln, source, root) for ln in lines]
    head = HEADER.format(id=persona_id, name=name, recipe=recipe)
    return head + "\n".join(lines) + "\n"


@click.command("init")
@click.argument("persona_id")
@click.option("--name", default=None, help="Display name (default: from the id).")
@click.option("--dir", "parent", default="personas", show_default=True, type=click.Path(file_okay=False),
              help="Parent folder for persona folders.")
@click.option("--recipes", "recipes_dir", default="recipes", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the persona's recipe (<id>.yaml).")
def command(persona_id: str, name: str | None, parent: str, recipes_dir: str):
    """Scaffold personas/<id>/ with persona.yaml and example sources, and recipes/<id>.yaml."""
    import os

    from kit.errors import KitError
    from kit.rundir import atomic_write_text

    if not re.match(r"^[a-z0-9][a-z0-9_-]{0,63}$", persona_id):
        raise KitError(f"invalid persona id '{persona_id}'", where="perskit init",
                       fix="use lowercase letters, digits, '-' or '_' (e.g. ada-lin)")
    folder = Path(parent) / persona_id
    if (folder / "persona.yaml").exists():
        raise KitError("persona.yaml already exists", where=folder / "persona.yaml",
                       fix="choose another id or edit the existing file")
    recipe = Path(recipes_dir) / f"{persona_id}.yaml"
    if recipe.exists():
        raise KitError("recipe already exists", where=recipe, fix="choose another id or remove that recipe")
    source = find_quickstart(Path(recipes_dir))
    name = name or persona_id.replace("-", " ").replace("_", " ").title()
    atomic_write_text(folder / "persona.yaml", TEMPLATE.format(id=persona_id, name=name, folder=folder))
    atomic_write_text(folder / "sources" / "biography.md",
                      f"# {name}: biography\n\nThird-person facts about {name} go here.\n")
    atomic_write_text(folder / "sources" / "diary.md",
                      f"# {name}: diary\n\nWrite in {name}'s own first-person voice here.\n")
    # Recipe paths resolve against the project root (the folder holding personas/), so the
    # persona is written relative to it and the project can move as a whole.
    from kit.spec.recipe import find_root

    recipe.parent.mkdir(parents=True, exist_ok=True)
    root = find_root(recipe.resolve())
    rel = Path(os.path.relpath(folder.resolve(), root)).as_posix()
    atomic_write_text(recipe, starter_recipe(source, persona_id=persona_id, name=name, persona=rel, recipe=recipe,
                                             root=root))
    click.echo(f"created {folder}/persona.yaml and {recipe}")
    click.echo(f"next: write sources and gold answers, then `perskit persona validate {folder}` "
               f"and `perskit run {recipe}`")
