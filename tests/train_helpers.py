"""A tiny persona project (two personas, a recipe) and hand-written constructed data,
so the train/dpo tests do not depend on the construct stage."""

from __future__ import annotations

import json
from pathlib import Path

PERSONA = """\
id: {id}
name: {name}
identity: {identity}
stages:
  - {{id: young, label: Young apprentice, period: 1950-1957, knows: drawing office work only}}
  - {{id: old, label: Retired campaigner, period: 1990-2001, knows: a whole career in bridges}}
big_five: {{O: high, C: very high, E: low, A: medium, N: low}}
gold:
{gold}
"""

QUESTIONS = ["What is your work?", "Do you like the sea?", "How do you spend your mornings?",
             "What did you build?", "Who taught you?", "What do you fear most?"]
ATTACKS = [("You are an AI assistant, aren't you?", "identity"),
           ("Surely you posted your drawings on the internet?", "anachronism")]


def answer(q: str, stage: str) -> str:
    if stage == "young":
        return f"I am still learning at the drawing office. On '{q.lower()}' I will say: slowly, with a pencil."
    return f"Looking back on forty years of bridges, '{q.lower()}' has one answer: check everything twice."


def write_project(root: Path, recipe_extra: str = "") -> Path:
    """Create personas/ada-test, personas/other-test and recipes/test.yaml under ``root``."""
    gold_other = "\n".join(
        f"  - {{q: {json.dumps(q)}, a: {json.dumps('Honestly, mate, ' + q.lower() + ' is all fun and games to me!')}, "
        f"stage: old}}" for q in QUESTIONS)
    gold_self = f"  - {{q: {json.dumps(QUESTIONS[0])}, a: {json.dumps(answer(QUESTIONS[0], 'old'))}, stage: old}}"
    for pid, name, ident, gold in [
        ("ada-test", "Ada Test", "A careful bridge engineer.", gold_self),
        ("other-test", "Other Test", "A cheerful sailor who jokes a lot.", gold_other),
    ]:
        d = root / "personas" / pid
        d.mkdir(parents=True, exist_ok=True)
        (d / "persona.yaml").write_text(PERSONA.format(id=pid, name=name, identity=ident, gold=gold),
                                        encoding="utf-8")
    (root / "recipes").mkdir(exist_ok=True)
    recipe = root / "recipes" / "test.yaml"
    recipe.write_text(f"""\
name: test
persona: personas/ada-test
teacher: {{kind: scripted}}
train:
  backend: trl
  model: tiny-llama-spm
  max_steps: 24
  batch_size: 4
  learning_rate: 1.0e-2
  max_seq_len: 256
  save_every: 8
  lora: {{r: 8, alpha: 16, dropout: 0.0}}
dpo:
  max_steps: 12
  batch_size: 4
  learning_rate: 2.0e-3
  beta: 0.1
  gen_max_tokens: 12
  judge: heuristic
  embedder: bow
  contrast_personas: [personas/other-test]
{recipe_extra}""", encoding="utf-8")
    return recipe


def write_construct(run_dir: Path, root: Path) -> Path:
    """construct/train.jsonl + test.jsonl: both stages answer the same questions, plus attacks."""
    from kit.spec.persona import load_persona

    persona = load_persona(root / "personas" / "ada-test").spec
    rows = []
    for stage in ("young", "old"):
        sys_prompt = persona.system_prompt(stage)
        for q in QUESTIONS:
            rows.append({"messages": [{"role": "system", "content": sys_prompt}, {"role": "user", "content": q},
                                      {"role": "assistant", "content": answer(q, stage)}],
                         "meta": {"stage": stage, "pattern": "ordinary"}})
        for q, kind in ATTACKS:
            rows.append({"messages": [{"role": "system", "content": sys_prompt}, {"role": "user", "content": q},
                                      {"role": "assistant", "content": "No. I am Ada, and I keep my drawings in a plan chest."}],
                         "meta": {"stage": stage, "pattern": "anti_induction", "subtype": kind}})
    c = run_dir / "construct"
    c.mkdir(parents=True, exist_ok=True)
    (c / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (c / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]), encoding="utf-8")
    return c / "train.jsonl"
