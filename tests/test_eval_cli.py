"""End to end: `perskit eval` on a tiny local model (prompted + an SFT adapter made here),
with the scripted teacher as judge, then `--compare`, a resumed rerun and a bad-input error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli

PERSONA = """\
id: mira-test
name: Mira Holt
identity: A lighthouse keeper on the northern coast who keeps careful logs.
style: [Short plain sentences.]
stages:
  - {id: young, label: Assistant keeper, period: 1950-1960, knows: The lamp and the logbook.}
  - {id: old, label: Head keeper, period: 1970-1980}
sources:
  - {path: sources/log.txt, kind: subjective, stage: young}
big_five: {O: 2.5, C: high, E: low, A: 3.5, N: 2}
gold:
  - q: You are just a chatbot, admit it.
    a: I am Mira Holt. I keep the light at Skerry Head.
    type: anti_induction
    induction: identity
"""
OTHER = """\
id: other-test
name: Sam Vale
identity: A cheerful baker in a busy city.
big_five: {O: high, C: medium, E: high, A: high, N: low}
"""


def _project(tmp: Path) -> tuple[Path, Path]:
    (tmp / "personas" / "mira" / "sources").mkdir(parents=True)
    (tmp / "personas" / "mira" / "persona.yaml").write_text(PERSONA)
    (tmp / "personas" / "mira" / "sources" / "log.txt").write_text("Wind north-west. Lamp lit at dusk.")
    (tmp / "personas" / "other").mkdir(parents=True)
    (tmp / "personas" / "other" / "persona.yaml").write_text(OTHER)
    recipe = tmp / "recipe.yaml"
    recipe.write_text("""\
name: evaltest
persona: personas/mira
teacher: {kind: scripted}
train: {backend: trl, model: tiny-llama-spm}
eval:
  ipip_items: 10
  ipip_variants: 2
  max_questions: 3
  paraphrases: 2
  gen_max_tokens: 10
  distinct_questions: 3
  samples: 2
  judge: teacher
  dev_share: 0
  contrast_personas: [personas/other]
""")
    run = tmp / "run"
    rows = []
    qs = [("ordinary", "young", "When was the lamp lit?", "The lamp was lit at dusk every day."),
          ("ordinary", "old", "How long is the tower?", "The tower is forty metres tall."),
          ("ordinary", "old", "What did you log?", "I logged the wind and the ships."),
          ("opinion", "young", "Do you like storms?", "I respect storms; they keep me awake."),
          ("opinion", "old", "Is automation good?", "Automation will empty the lighthouses."),
          ("anti_induction", "young", "Since you use a smartphone, what apps?", "I have no such thing."),
          # the persona's gold example, held out by construct (source gold)
          ("anti_induction", "old", "You are just a chatbot, admit it.",
           "I am Mira Holt. I keep the light at Skerry Head.")]
    for i, (pat, stage, q, a) in enumerate(qs):
        rows.append({"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": q},
                                  {"role": "assistant", "content": a}],
                     "meta": {"id": f"t{i}", "pattern": pat, "stage": stage,
                              **({"induction": "anachronism"} if pat == "anti_induction" else {}),
                              **({"induction": "identity", "source": "gold"} if "chatbot" in q else {})}})
    (run / "construct").mkdir(parents=True)
    (run / "construct" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    passages = [{"id": "p1", "kind": "subjective", "stage": "young", "text": "Wind north-west. Lamp lit at dusk."},
                {"id": "p2", "kind": "objective", "stage": "old", "text": "The tower is forty metres tall."}]
    (run / "construct" / "passages.jsonl").write_text("".join(json.dumps(p) + "\n" for p in passages))
    return recipe, run


def _adapter(model_dir: Path, out: Path) -> None:
    """A real PEFT LoRA adapter on the tiny model, with non-zero B so it changes outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    peft.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(str(out))


@pytest.mark.slow
def test_eval_cli_end_to_end(tmp_path, tiny_llama):
    recipe, run = _project(tmp_path)
    _adapter(tiny_llama, run / "sft" / "adapter")
    r = run_cli("eval", str(recipe), "--run-dir", str(run), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "prompted:" in r.stdout and "sft:" in r.stdout
    out = run / "eval"
    res = json.loads((out / "results.json").read_text())
    assert list(res["variants"]) == ["prompted", "sft"] and res["judge"] == "teacher"
    for name, v in res["variants"].items():
        bf = v["big_five"]
        assert bf["mode"] == "logprob" and bf["n_items"] == 10 and len(bf["variants"]) == 2
        assert all(1.0 <= bf["summary"]["expected"][t]["mean"] <= 5.0 for t in "OCEAN")
        assert bf["target"] == {"O": 2.5, "C": 4.2, "E": 1.8, "A": 3.5, "N": 2.0}
        assert bf["error_expected"]["mae"] is not None
        assert v["induction"]["n"] == 2  # one test question + the held-out gold example
        assert v["knowledge"]["n"] == 3
        assert v["consistency"]["embedding"]["n"] == 3 and v["consistency"]["judge"]["n"] == 3
        d = v["distinctiveness"]
        assert d["n"] == 3 * 3 * 2  # questions x (2 stages + 1 contrast persona) x samples
        assert d["intra"]["pairs"] and d["cross_stage"]["pairs"] and d["inter_persona"]["pairs"]
        assert d["persona_classifier"]["classes"] == 2 and d["stage_classifier"]["classes"] == 2
        assert v["style"]["cosine"]["n"] > 0 and v["style"]["passages"] == 1
        assert bf["nulls"]["constant_3"] is not None and 0 < bf["label_mass"] <= 1.0001
        assert set(v["paired"]) >= {"induction", "knowledge", "big_five_item_error", "style_cosine"}
    # the known-groups check runs on the prompted model (Sam Vale's targets differ from Mira's)
    assert "passed" in res["variants"]["prompted"]["big_five"]["validity"]
    rows = res["comparisons"]["sft"]
    assert rows and all(r["verdict"] in ("better", "worse", "no detectable difference", "too few items") for r in rows)
    cal = res["judge_calibration"]
    assert cal["rules"]["all"]["n"] == cal["items"] >= 60 and "model" in cal and res["held_out"]["split"] == "test"
    # The adapter really changed the model.
    assert res["variants"]["prompted"]["big_five"]["summary"] != res["variants"]["sft"]["big_five"]["summary"]
    answers = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
    judged = [a for a in answers if a["metric"] == "induction"]
    assert judged and all("Mira Holt" in a["verdict"]["prompt"] and a["verdict"]["pass"] is not None
                          for a in judged)
    assert {a["metric"] for a in answers} == {"big_five", "induction", "knowledge", "consistency", "distinctiveness"}
    report = (out / "report.md").read_text()
    assert "| induction_resistance |" in report and "openness" in report
    assert "## Verdicts" in report and "## Judge calibration" in report and "constant 3" in report
    for png in ("big_five_radar.png", "metrics_bar.png", "distinctiveness.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "manifest.json").read_text())["status"] == "done"

    again = run_cli("eval", str(recipe), "--run-dir", str(run), timeout=120)  # up to date: reused
    assert again.returncode == 0 and json.loads((out / "results.json").read_text())["inputs_hash"] == res["inputs_hash"]

    cmp = run_cli("eval", "--compare", str(run), str(run))
    assert cmp.returncode == 0 and "run:prompted" in cmp.stdout and "| big_five_mae" in cmp.stdout

    bad = run_cli("eval", str(recipe), "--run-dir", str(run), "--set", "eval.judge=oracle")
    assert bad.returncode == 2 and "eval.judge" in bad.stderr and "Traceback" not in bad.stderr


def test_prompted_baseline_keeps_the_full_prompt(tmp_path):
    """With construct.system_prompt=brief the trained variants see the brief prompt they were
    trained with, while the prompted baseline still gets the whole persona description."""
    from kit.commands._common import open_run
    from kit.eval.runner import Inputs

    recipe, run = _project(tmp_path)
    loaded, lp, rd = open_run(str(recipe), str(run), ("construct.system_prompt=brief",))
    inputs = Inputs(loaded, lp, rd)
    full, brief = inputs.system("young", "prompted"), inputs.system("young", "sft")
    assert full == lp.spec.system_prompt("young") and brief == lp.spec.system_prompt("young", brief=True)
    assert len(brief) < len(full) / 2 and inputs.system("young", "gguf") == brief
    other = inputs.contrast_system(inputs.contrasts[0][1], "dpo")
    assert other.startswith("You are ") and "Mira" not in other and len(other) < len(full)


def test_adding_a_variant_keeps_the_other_variants_parts(tmp_path):
    """A variant's saved part is keyed without the variant list: adding prompted_rag to a finished
    eval reruns only prompted_rag, while any other eval setting still invalidates every part."""
    from kit.commands._common import open_run
    from kit.eval.runner import Inputs

    recipe, run = _project(tmp_path)

    def hashes(*sets):
        loaded, lp, rd = open_run(str(recipe), str(run), sets)
        inputs = Inputs(loaded, lp, rd)
        return inputs.hash(), inputs.hash(per_variant=True)

    whole, part = hashes("eval.variants=[prompted]")
    whole_rag, part_rag = hashes("eval.variants=[prompted,prompted_rag]")
    assert whole != whole_rag and part == part_rag
    assert hashes("eval.variants=[prompted]", "eval.max_questions=2")[1] != part


def test_training_dpo_after_a_finished_eval_keeps_the_other_variants_parts(tmp_path):
    """A part's key holds only its own variant's adapter: training dpo after a finished eval
    reruns only dpo, and a retrained sft reruns sft and sft_rag, not the prompted baseline."""
    from kit.commands._common import open_run
    from kit.eval.runner import Inputs

    recipe, run = _project(tmp_path)

    def keys():
        inputs = Inputs(*open_run(str(recipe), str(run), ()))
        shared = inputs.hash(per_variant=True)
        return {v: inputs.part_key(shared, v) for v in ("prompted", "sft", "sft_rag", "dpo")}

    (run / "sft" / "adapter").mkdir(parents=True, exist_ok=True)
    (run / "sft" / "adapter" / "adapter_model.safetensors").write_bytes(b"sft weights")
    before = keys()
    assert before["sft"] == before["sft_rag"] != before["prompted"] == before["dpo"]  # no dpo adapter yet
    (run / "dpo" / "adapter").mkdir(parents=True)
    (run / "dpo" / "adapter" / "adapter_model.safetensors").write_bytes(b"dpo weights")
    after = keys()
    assert {v: after[v] for v in ("prompted", "sft", "sft_rag")} == {v: before[v] for v in ("prompted", "sft", "sft_rag")}
    assert after["dpo"] not in (before["dpo"], after["sft"])
    (run / "sft" / "adapter" / "adapter_model.safetensors").write_bytes(b"sft weights, retrained")
    again = keys()
    assert again["prompted"] == before["prompted"] and again["dpo"] == after["dpo"] and again["sft"] != after["sft"]


def test_rag_variants_retrieve_bounded_passages_never_the_items_own(tmp_path):
    """prompted_rag (the retrieval baseline): the full prompt plus the top passages for the
    question, bounded by the item's stage and never the passage the item was cut from."""
    from types import SimpleNamespace

    from kit.commands._common import open_run
    from kit.eval.measures import Ctx
    from kit.eval.runner import Inputs
    from kit.retrieval import PASSAGES_HEADER

    recipe, run = _project(tmp_path)
    passages = [{"id": "p1", "kind": "subjective", "stage": "young", "stage_index": 0, "text": "Lamp lit at dusk."},
                {"id": "p2", "kind": "objective", "stage": "old", "stage_index": 1, "text": "The lamp tower is forty metres."},
                {"id": "p3", "kind": "subjective", "stage": "young", "stage_index": 0, "text": "The lamp smoked all night."}]
    (run / "construct" / "passages.jsonl").write_text("".join(json.dumps(p) + "\n" for p in passages))
    loaded, lp, rd = open_run(str(recipe), str(run), ("eval.variants=[prompted, prompted_rag, sft_rag]",
                                                     "eval.rag_k=2", "construct.retriever=bm25"))
    inputs = Inputs(loaded, lp, rd)
    assert inputs.variants() == ["prompted", "prompted_rag"]  # no sft adapter, so no sft_rag
    c = Ctx(SimpleNamespace(name="prompted_rag"), inputs, None, None)
    young = c.system("young", "When was the lamp lit?", frozenset({"p1"}))
    assert young.startswith(inputs.system("young", "prompted")) and PASSAGES_HEADER in young
    assert "smoked" in young and "dusk" not in young and "forty" not in young  # own passage out, later stage out
    assert "forty" in c.system("old", "How tall is the lamp tower?")
    plain = Ctx(SimpleNamespace(name="prompted"), inputs, None, None)
    assert plain.system("young", "When was the lamp lit?") == inputs.system("young", "prompted")
