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

RECIPE = """\
# perskit recipe for {name}: the quickstart's CPU settings, pointed at {persona}.
# Run it:   perskit run {recipe}        (resumable: Ctrl-C, then the same command)
# Then:     perskit chat {out_dir}/{id}
name: {id}
persona: {persona}
# The teacher writes the training conversations. SmolLM2-135M (embedded) works offline but
# is weak; for a real persona point it at a stronger model, in one line, e.g. a local
# llama-server / Ollama / vLLM:
#   teacher: {{kind: openai, base_url: "http://127.0.0.1:8080/v1", model: default}}
# or a bigger GGUF file:  teacher: {{kind: llamacpp, model: /path/to/model.gguf}}
teacher:
  kind: llamacpp
  model: smollm2-135m-instruct
  n_ctx: 4096
  # n_gpu_layers: -1     # with a CUDA/Metal build of llama-cpp-python
  sampling: {{temperature: 0.7, max_tokens: 256}}
construct:
  max_passages: 9
  patterns: {{ordinary: 1, opinion: 1, anti_induction: 1, trait: 12}}
  knowledge_words: 400
  style_words: 150
  system_prompt: brief   # the model learns the persona; a ~40-token prompt at chat time
  few_shot: 2
  # The embedded 135M teacher writes few answers the quality gates keep; training then rests on
  # your gold answers and back-translated rows (construct/manifest.json reports the rates). With a
  # stronger teacher, delete these two lines so a bad run stops instead of training on too little.
  max_reject_rate: 1.0
  max_fallback_rate: 1.0
# The student. On a GPU use a bigger base and more steps, e.g.
#   train: {{backend: unsloth, model: openbmb/MiniCPM-2B-sft-bf16, load_in_4bit: true, max_steps: 600}}
#   (or backend: trl, model: Qwen/Qwen2.5-1.5B-Instruct; backend: mlx on Apple silicon)
# See recipes/minicpm-2b-unsloth.yaml, qwen2.5-1.5b-trl.yaml and mlx-gemma3-1b.yaml.
train:
  backend: trl
  model: smollm2-135m-instruct
  max_steps: 45
  batch_size: 2
  max_seq_len: 512
  learning_rate: 4.0e-4
  lora: {{r: 16, alpha: 32}}
dpo:
  # contrast_personas: [personas/another-person]   # negatives in another persona's voice
  max_steps: 15
  batch_size: 2
  max_pairs: 40
  max_length: 512
  gen_max_tokens: 80
eval:
  ipip_variants: 2
  max_questions: 16
  paraphrases: 3
  distinct_questions: 5
  gen_max_tokens: 80
export:
  quants: [Q4_K_M]
  out_dir: {out_dir}
"""


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
    recipe = Path(recipes_dir) / f"{persona_id}.yaml"
    if recipe.exists():
        raise KitError("recipe already exists", where=recipe, fix="choose another id or remove that recipe")
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
    atomic_write_text(recipe, RECIPE.format(id=persona_id, name=name, persona=rel, recipe=recipe, out_dir="export"))
    click.echo(f"created {folder}/persona.yaml and {recipe}")
    click.echo(f"next: write sources and gold answers, then `perskit persona validate {folder}` "
               f"and `perskit run {recipe}`")
