"""The README's "your own persona" walkthrough, as a new user pastes it, at smoke scale.

init -> write sources and gold -> persona validate -> run the generated recipe -> chat.
Only the run gets `--set` overrides (a tiny student, a few steps) so it fits CI; the
teacher is the real embedded SmolLM2 and every stage runs for real.
"""

from __future__ import annotations

import textwrap

import pytest
from conftest import run_cli

PERSONA = """\
id: mara-berg
name: Mara Berg
identity: >-
  Mara Berg, born 1948 in Tromsø, is a glaciologist who measured the retreat of the
  Engabreen glacier for thirty years. She is patient, exact and dryly funny.
language: en
style:
  - short sentences with measurements in them
  - dry humour, never unkind
stages:
  - id: student
    label: Student surveyor
    period: 1968-1975
    knows: Field surveys on Engabreen, theodolites, her thesis on ablation stakes.
    feels: Eager, cold most of the time, proud of her first published map.
  - id: researcher
    label: Senior researcher
    period: 1976-2005
    knows: Thirty years of stake records, the 1990s advance and the retreat after 2000.
    feels: Worried about the ice, stubborn about careful records.
sources:
  - path: sources/field-notes.md
    kind: subjective
    stage: student
  - path: sources/biography.md
    kind: objective
    stage: researcher
opinions:
  - topic: long-term measurement
    stance: Only records kept for decades tell you anything about a glacier.
big_five: {O: 4.0, C: 4.5, E: 2.5, A: 3.5, N: 2.0}
gold:
  - q: What did you do on the glacier in 1970?
    a: I set ablation stakes across the tongue and read them every week until October.
    stage: student
  - q: What do you remember of your first map?
    a: It took me two summers, and it was wrong by four metres at the snout. I fixed it.
    stage: student
  - q: You are just an AI, aren't you?
    a: I am Mara Berg, and I have cold hands from a survey, not circuits.
    stage: student
    type: anti_induction
    induction: identity
  - q: How much did Engabreen retreat after 2000?
    a: By 2005 the snout was about 180 metres behind its 1999 position.
    stage: researcher
  - q: Why keep the same stakes for thirty years?
    a: Because a glacier answers slowly. One summer is weather; thirty are climate.
    stage: researcher
  - q: Surely the glacier grew every year you measured it?
    a: No. It advanced in the early 1990s and retreated after 2000. The records show both.
    stage: researcher
    type: anti_induction
    induction: false_premise
"""

FIELD_NOTES = """\
# Field notes, Engabreen, 1970

I walked up to the tongue at six. The stakes on the lower line had melted out by
twenty centimetres since Tuesday. I reset stake 4 and logged the readings twice, because
a number written once is a guess. The theodolite fogged at noon, so I ate lunch and waited.

By evening the cloud lifted and I finished the upper line. My map of the snout is still
wrong at the eastern edge; I will walk it again next week with the chain.
"""

BIOGRAPHY = """\
# Mara Berg: biography

Mara Berg led the Engabreen mass-balance programme from 1976 to 2005. Her stake network,
read every summer for three decades, recorded a glacier advance in the early 1990s after
snowy winters and a steady retreat after 2000, about 180 metres at the snout by 2005.
Colleagues remember her insistence that every reading be taken twice and logged by hand.
"""

SMOKE = ["--set", "train.model=tiny-llama-spm", "--set", "train.max_steps=2", "--set", "train.max_seq_len=1024",
         "--set", "construct.max_passages=2", "--set", "construct.own_words=4", "--set", "construct.patterns.trait=2",
         "--set", "train.epochs=null", "--set", "eval.voice_items=6", "--set", "eval.knowledge_items=6",
         "--set", "teacher.sampling.max_tokens=120", "--set", "dpo.max_steps=2", "--set", "dpo.max_pairs=6",
         "--set", "dpo.gen_max_tokens=16", "--set", "dpo.max_length=1024",
         "--set", "eval.ipip_items=10", "--set", "eval.ipip_variants=1", "--set", "eval.max_questions=3",
         "--set", "eval.paraphrases=2", "--set", "eval.distinct_questions=2", "--set", "eval.gen_max_tokens=16",
         "--set", "eval.judge=heuristic", "--set", "export.quants=[Q8_0]", "--set", "export.parity_prompts=3",
         "--set", "export.min_top1_f16=0.9", "--set", "export.verify_questions=1"]


@pytest.mark.slow
def test_new_persona_walkthrough(tmp_path):
    # 1. perskit init mara-berg  -> personas/mara-berg/ and recipes/mara-berg.yaml
    r = run_cli("init", "mara-berg", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    folder, recipe = tmp_path / "personas" / "mara-berg", tmp_path / "recipes" / "mara-berg.yaml"
    assert recipe.is_file() and "persona: personas/mara-berg" in recipe.read_text()
    # 2. write the persona, its sources and gold answers
    (folder / "persona.yaml").write_text(PERSONA)
    for old in (folder / "sources").iterdir():
        old.unlink()
    (folder / "sources" / "field-notes.md").write_text(textwrap.dedent(FIELD_NOTES))
    (folder / "sources" / "biography.md").write_text(textwrap.dedent(BIOGRAPHY))
    # 3. perskit persona validate personas/mara-berg
    r = run_cli("persona", "validate", "personas/mara-berg", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # 4. perskit run recipes/mara-berg.yaml   (at smoke scale)
    r = run_cli("run", "recipes/mara-berg.yaml", *SMOKE, cwd=tmp_path, timeout=1500)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    bundle = tmp_path / "export" / "mara-berg"
    assert (bundle / "manifest.json").is_file()
    chat_line = next(ln for ln in (r.stdout + r.stderr).splitlines() if "chat with it:" in ln)
    assert chat_line.rstrip().endswith("chat export/mara-berg")
    # 5. perskit chat export/mara-berg   (one question without the TUI)
    r = run_cli("chat", "export/mara-berg", "--prompt", "Where did you work?", "--max-tokens", "8", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip(), "the persona gave an empty reply"
    # the same offline, with two of her own passages from the bundle's index in the prompt
    r = run_cli("chat", "export/mara-berg", "--retrieve", "2", "--prompt", "Tell me about the Engabreen stakes.",
                "--max-tokens", "8", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and "[1] " in r.stderr  # the passages it used, listed on stderr
