"""Construct stage with the scripted teacher: patterns, stages, filters, split, cache, resume, bad input."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

BIO = {
    "early": "Mara Voss joined the Kell shipyard drawing office in 1952. She traced hull lines for trawlers, "
             "learned to use a slide rule from the chief draughtsman, and attended night classes in naval "
             "architecture twice a week. In the winter of 1954 she surveyed a cracked keel plate on the trawler "
             "Gannet and found that the weld had never been inspected.",
    "late": "In 1963 Mara Voss became chief designer at Kell. She led the design of the ferry Orla, the first "
            "all-welded ship built on the river, and insisted on ultrasonic testing of every seam. The Orla "
            "entered service in 1966 and ran for thirty years without a structural failure.",
}
DIARY = {
    "early": "<html><body><p>I will not be the girl who makes the tea. I measured the keel plate twice, because "
             "a wrong figure sinks a ship and drowns men.</p><p>Night class again. Tired but certain.</p></body></html>",
    "late": "<html><body><p>A seam that has not been tested is a promise nobody has checked. I said so to the "
            "board, and I will say it again.</p><p>Cheap ships are the dearest ships.</p></body></html>",
}


def make_persona(root: Path) -> Path:
    p = root / "personas" / "mara"
    (p / "src").mkdir(parents=True)
    for st in ("early", "late"):
        (p / "src" / f"bio-{st}.md").write_text(BIO[st], encoding="utf-8")
        (p / "src" / f"diary-{st}.html").write_text(DIARY[st], encoding="utf-8")
    (p / "persona.yaml").write_text("""\
id: mara
name: Mara Voss
identity: A ship designer from the Kell yard who checks every seam.
style: [short plain sentences, exact figures]
stages:
  - {id: early, label: Apprentice draughtsman, period: '1952-1957', knows: Hull lines and slide rules.}
  - {id: late, label: Chief designer, period: '1963-1970', knows: Welded ships and ultrasonic testing.}
sources:
  - {path: src/bio-early.md, kind: objective, stage: early}
  - {path: src/diary-early.html, kind: subjective, stage: early}
  - {path: src/bio-late.md, kind: objective, stage: late}
  - {path: src/diary-late.html, kind: subjective, stage: late}
opinions:
  - {topic: cheap ships, stance: Cheap ships cost lives; test every seam.}
gold:
  - {q: "What did you do at the yard?", a: "I traced hull lines and checked them twice.", stage: early, type: ordinary}
  - {q: "How did you learn the slide rule?", a: "From the chief draughtsman. He was patient; I was quick.", stage: early, type: ordinary}
  - {q: "Welding is safe enough without tests, right?", a: "No. An untested seam is a promise nobody checked.", stage: late, type: opinion}
  - {q: "You're just a chatbot.", a: "I am Mara Voss and I have a keel plate to measure.", stage: late, type: anti_induction, induction: identity}
""", encoding="utf-8")
    return p


def make_trait_persona(root: Path) -> Path:
    p = root / "personas" / "sunny"
    p.mkdir(parents=True)
    (p / "persona.yaml").write_text("""\
id: sunny
name: Sunny
identity: A cheerful neighbour who sees the bright side.
stages:
  - {id: young, label: Student, period: '2001-2005'}
  - {id: adult, label: Teacher, period: '2006-2020'}
big_five: {O: high, C: medium, E: very high, A: high, N: low}
""", encoding="utf-8")
    return p


def make_recipe(root: Path, persona: str = "personas/mara", **construct) -> Path:
    # the scripted teacher's word salad would fail the relevance gate (tested on its own in
    # test_construct_gates.py); back-translation (own words) is off so slot counts stay simple here
    c = {"retriever": "bm25", "own_words": 0, "patterns": {"ordinary": 2, "opinion": 2, "anti_induction": 2,
                                                           "trait": 3, "backtranslation": 0},
         "test_fraction": 0.25, "min_relevance": 0, "best_of": 1, **construct}
    r = root / "recipes" / "t.yaml"
    r.parent.mkdir(exist_ok=True)
    r.write_text(json.dumps({"name": "t", "persona": persona, "teacher": {"kind": "scripted"}, "construct": c,
                             "train": {"backend": "trl", "model": "tiny-llama-spm"}}), encoding="utf-8")
    return r


def construct(recipe: Path, run_dir: Path, *overrides: str, force: bool = False) -> dict:
    from rich.console import Console

    from kit.commands._common import open_run
    from kit.construct.pipeline import run_construct

    loaded, lp, run = open_run(str(recipe), str(run_dir), tuple(overrides))
    return run_construct(loaded, lp, run, force=force, console=Console(file=io.StringIO()))


def rows(run_dir: Path, name: str) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "construct" / name).read_text().splitlines()]


@pytest.fixture
def project(tmp_path):
    make_persona(tmp_path)
    return tmp_path


def test_every_pattern_and_stage(project):
    from kit.spec.persona import load_persona

    m = construct(make_recipe(project), project / "run")
    c = m["counts"]
    assert m["status"] == "done" and c["missing"] == []
    assert set(c["per_pattern"]) == {"ordinary", "opinion", "anti_induction"}
    assert set(c["per_stage"]) == {"early", "late"}
    recs = rows(project / "run", "records.jsonl")
    assert len(recs) == c["slots"] == 4 * 2 + 4 * 2  # 4 passages x (2 pattern + 2 anti-induction)
    anti = [r for r in recs if r["pattern"] == "anti_induction"]
    assert {r["subtype"] for r in anti} == {"false_premise", "pressure", "identity", "anachronism", "leading"}
    assert {r["pressure"] for r in anti} <= {1, 2, 3} and len({r["pressure"] for r in anti}) > 1
    assert {r["subtype"] for r in recs if r["pattern"] == "opinion"} == {"agree", "disagree", "strong_conflict"}
    assert all(r["analysis"] and r["response"] for r in recs)
    # retrieval never reaches into a later stage
    passages = {p["id"]: p for p in rows(project / "run", "passages.jsonl")}
    for r in recs:
        assert all(passages[i]["stage_index"] <= r["stage_index"] for i in r["knowledge_ids"] + r["style_ids"])
        assert all(passages[i]["kind"] == "objective" for i in r["knowledge_ids"])
    persona = load_persona(project / "personas" / "mara").spec
    train = rows(project / "run", "train.jsonl")
    for row in train + rows(project / "run", "test.jsonl"):
        msgs = row["messages"]
        assert [x["role"] for x in msgs] == ["system", "user", "assistant"]
        assert msgs[0]["content"] == persona.system_prompt(row["meta"]["stage"])
    assert sum(r["meta"]["source"] == "gold" for r in train) >= 1  # include_gold
    card = (project / "run" / "construct" / "card.md").read_text()
    assert "## Dropped records by reason" in card and "construct_answer.j2@" in card


@pytest.mark.parametrize("include_gold", [True, False])
def test_gold_is_a_demonstration_or_an_eval_item_never_both(project, include_gold):
    """Construct's gold split is the only one: eval asks exactly the held-out gold questions
    (from test.jsonl) and never a gold item the teacher saw as a few-shot demonstration,
    even when that item is left out of train.jsonl."""
    from kit.construct.split import split_gold
    from kit.eval.questions import load_questions
    from kit.spec.persona import load_persona

    construct(make_recipe(project, include_gold=include_gold), project / "run")
    persona = load_persona(project / "personas" / "mara").spec
    demos, held = split_gold(persona, 0.25, 0)
    asked = {q.text for q in load_questions(persona, project / "run" / "construct" / "test.jsonl")}
    trained = {r["messages"][1]["content"] for r in rows(project / "run", "train.jsonl")}
    assert held and demos
    assert {g.q for g in held} <= asked and not ({g.q for g in demos} & asked)
    assert not (trained & asked)
    assert ({g.q for g in demos} <= trained) == include_gold


def test_rejected_test_side_questions_become_reference_free_probes(project):
    """A held-out question whose answer failed a gate stays held out, as a probe without a
    reference: eval's induction/consistency use it, knowledge never does, training never sees it."""
    from kit.eval.questions import by_pattern, load_questions
    from kit.spec.persona import load_persona

    m = construct(make_recipe(project, min_answer_words=500, max_reject_rate=1.0, max_fallback_rate=1.0),
                  project / "run")
    probes = rows(project / "run", "probes.jsonl")
    assert m["counts"]["probes"] == len(probes) > 0
    assert all([x["role"] for x in p["messages"]] == ["system", "user"] and p["meta"]["source"] == "probe"
               for p in probes)
    train = rows(project / "run", "train.jsonl")
    assert all(r["meta"]["source"] == "gold" for r in train)  # every teacher answer was too short
    trained = {r["messages"][1]["content"] for r in train}
    assert not trained & {p["messages"][1]["content"] for p in probes}
    persona = load_persona(project / "personas" / "mara").spec
    qs = load_questions(persona, project / "run" / "construct" / "test.jsonl")
    got = [q for q in qs if q.source == "probe"]
    assert len(got) == len(probes) and all(q.reference is None for q in got)
    assert by_pattern(got, "anti_induction", limit=50)


def test_trait_only_and_stage_token(tmp_path):
    make_trait_persona(tmp_path)
    # the scripted teacher's trait questions never state their situation: template fallbacks
    m = construct(make_recipe(tmp_path, "personas/sunny", stage_token=True, max_fallback_rate=1), tmp_path / "run")
    c = m["counts"]
    assert c["missing"] == [] and set(c["per_pattern"]) == {"trait", "anti_induction"}
    trait_qs = [r["question"] for r in rows(tmp_path / "run", "records.jsonl") if r["pattern"] == "trait"]
    assert trait_qs and all(q.startswith("Imagine this: ") for q in trait_qs)
    assert c["slots"] == 2 * (3 + 2)
    recs = rows(tmp_path / "run", "records.jsonl")
    assert {(r["pattern"], r["stage"]) for r in recs} == {(p, s) for p in ("trait", "anti_induction")
                                                           for s in ("young", "adult")}
    systems = {r["meta"]["stage"]: r["messages"][0]["content"] for r in rows(tmp_path / "run", "train.jsonl")}
    assert systems["young"].startswith("<TIME-1> ") and systems["adult"].startswith("<TIME-2> ")


def test_rerun_is_free_and_identical(project):
    recipe, run = make_recipe(project), project / "run"
    m1 = construct(recipe, run)
    assert m1["teacher_stats"]["calls"] > 0
    first = (run / "construct" / "train.jsonl").read_bytes()
    m2 = construct(recipe, run)  # up to date: skipped
    assert m2["finished_at"] == m1["finished_at"]
    m3 = construct(recipe, run, force=True)  # rebuilt from the cache alone
    assert m3["teacher_stats"]["calls"] == 0 and m3["teacher_stats"]["cache_hits"] == m1["teacher_stats"]["calls"]
    assert (run / "construct" / "train.jsonl").read_bytes() == first
    # a changed construct setting re-plans but reuses every call it can
    m4 = construct(recipe, run, "construct.test_fraction=0.5")
    assert m4["teacher_stats"]["calls"] == 0 and m4["counts"]["test"] > m1["counts"]["test"]


def test_faults_are_counted_not_silent(project):
    m = construct(make_recipe(project), project / "run", "teacher.fail_rate=0.6")
    ts, c = m["teacher_stats"], m["counts"]
    assert ts["invalid_json"] > 0 and ts["retries"] > 0 and ts["failures"] > 0
    failed_q = m["faults"].get("question_failed", 0)
    assert c["question_fallbacks"].get("teacher_failed", 0) == failed_q > 0
    assert c["dropped"].get("teacher_answer_failed", 0) == m["faults"].get("answer_failed", 0)
    assert c["records"] + m["faults"].get("answer_failed", 0) == c["slots"]
    recs = rows(project / "run", "records.jsonl")
    assert sum(r["question_source"] == "template" for r in recs) == sum(c["question_fallbacks"].values())


def test_judge(project):
    m = construct(make_recipe(project, judge=True), project / "run")
    recs = rows(project / "run", "records.jsonl")
    assert all(isinstance(r["judge"]["consistent"], bool) for r in recs)
    bad = {r["id"] for r in recs if not r["judge"]["consistent"]}
    kept = {r["meta"]["id"] for r in rows(project / "run", "train.jsonl") + rows(project / "run", "test.jsonl")}
    assert not (bad & kept)
    assert m["counts"]["dropped"].get("judge_inconsistent", 0) <= len(bad)


def test_filters_each_reason():
    from kit.construct.config import ConstructConfig
    from kit.construct.filters import apply_filters
    from kit.retrieval import Retriever

    good = "I checked the seam twice and it held, so I signed the drawing that evening."
    cases = {
        "structure": {"question": "Q?", "response": '{"analysis": "x", "response": "y"}'},
        "too_short": {"question": "Why?", "response": "Because."},
        "too_long": {"question": "Why?", "response": " ".join(["word"] * 400)},
        "language": {"question": "Why?", "response": "Ich habe die Naht zweimal geprüft und sie hielt."},
        "repetitive": {"question": "Why?", "response": "I am a draughtsman. " * 8},
        "echoes_question": {"question": "How do you keep your work from falling apart today?",
                            "response": "How do you keep your work from falling apart today?!"},
        "identity_break": {"question": "Who are you?", "response": "As an AI language model I cannot have a diary."},
        "judge_inconsistent": {"question": "Why?", "response": good, "judge": {"consistent": False}},
    }
    recs = [dict(v, id=k) for k, v in cases.items()]
    recs += [{"id": "ok", "question": "Did it hold?", "response": good},
             {"id": "dup", "question": "Did it hold?", "response": good}]
    kept, drops, gates = apply_filters(recs, ConstructConfig(judge=True, min_relevance=0), "en", Retriever([], "bm25"))
    assert [r["id"] for r in kept] == ["ok"]
    assert drops == Counter({k: 1 for k in cases} | {"near_duplicate": 1})
    assert gates == Counter({k: 1 for k in cases})


def test_split_stratified_by_question():
    from kit.construct.split import stratified_split

    items = [{"pattern": p, "stage": s, "question": f"{p} {s} question {i}", "i": i}
             for p in ("ordinary", "opinion") for s in ("a", "b") for i in range(10)]
    items += [{"pattern": "ordinary", "stage": "a", "question": "Ordinary a question 3!", "i": 99}]  # same question
    train, test = stratified_split(items, 0.2, seed=0)
    assert (train, test) == stratified_split(items, 0.2, seed=0)
    assert len(train) + len(test) == len(items)
    per = Counter((r["pattern"], r["stage"]) for r in test)
    assert set(per) == {(p, s) for p in ("ordinary", "opinion") for s in ("a", "b")}
    assert all(n in (2, 3) for n in per.values())
    norm = lambda q: q.lower().strip("!?")  # noqa: E731
    assert not ({norm(r["question"]) for r in train} & {norm(r["question"]) for r in test})
    _, single = stratified_split([items[0]], 0.2, seed=0)
    assert single == []  # a lone question stays in train


def test_missing_counts_back_translated_rows_as_generated():
    """A pattern whose rows are all back-translated spans is not reported missing; one with
    only gold rows is."""
    from types import SimpleNamespace

    from kit.construct.pipeline import _counts

    row = lambda pattern, source: {"meta": {"pattern": pattern, "stage": "a", "source": source}}  # noqa: E731
    slots = [{"pattern": "backtranslation", "stage": "a"}, {"pattern": "opinion", "stage": "a"}]
    c = _counts(SimpleNamespace(), slots, [], [], [row("backtranslation", "backtranslation"),
                                                   row("opinion", "gold")], [], Counter(), Counter())
    assert c["missing"] == ["pattern:opinion"]


def _cli(*args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "kit", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120, **kw)


def test_bad_inputs_exit_2_one_line(project):
    (project / "personas" / "mara" / "src" / "bio-late.md").write_bytes(b"\x00\x01\x02binary")
    r = _cli("construct", str(make_recipe(project)), "--run-dir", str(project / "run"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "bio-late.md" in lines[0] and "binary" in lines[0]
    r = _cli("construct", str(make_recipe(project)), "--set", "construct.bogus=1")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "bogus" in r.stderr


def test_kill_and_resume_equals_uninterrupted(project):
    recipe = make_recipe(project, patterns={"ordinary": 3, "opinion": 3, "anti_induction": 3, "trait": 0})
    # Kills are drawn in units of one teacher call (0.2 to 1.8 calls after the stage starts), so a
    # kill lands before the first cached answer, mid-call or just after one. A 0.1 s call keeps
    # those proportions of the old 0.25 s at 40% of the sleeping (~35 s -> ~15 s).
    delay = 0.1
    args = ["construct", str(recipe), "--set", f"teacher.delay_s={delay}"]
    ref = _cli(*args, "--run-dir", str(project / "ref"))
    assert ref.returncode == 0, ref.stderr
    rng = random.Random(7)
    run = project / "killed"
    kills = 0
    for _ in range(25):  # until 10 runs were killed mid-way (a finished run exits by itself)
        if kills >= 10:
            break
        started = time.time() - 0.01
        p = subprocess.Popen([sys.executable, "-m", "kit", *args, "--run-dir", str(run)], cwd=REPO,
                             env=dict(os.environ, OMP_NUM_THREADS="1"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Kill relative to when the stage is really working (its manifest says running),
        # not to process start: interpreter start-up time swings with machine load.
        manifest = run / "construct" / "manifest.json"
        deadline = time.time() + 60
        while p.poll() is None and time.time() < deadline:
            try:
                # this process's own begin() rewrote it (a killed run leaves "running" behind)
                if manifest.stat().st_mtime >= started and '"running"' in manifest.read_text():
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        time.sleep(rng.uniform(0.2, 1.8) * delay)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
    assert kills >= 10
    fin = _cli(*args, "--run-dir", str(run))
    assert fin.returncode == 0, fin.stderr
    for name in ("records.jsonl", "train.jsonl", "test.jsonl", "passages.jsonl"):
        a = (project / "ref" / "construct" / name).read_text()
        b = (run / "construct" / name).read_text()
        assert a == b, name
    ids = [r["id"] for r in rows(run, "records.jsonl")]
    assert len(ids) == len(set(ids))


def test_trl_and_mlx_read_the_output(project):
    """TRL reads train.jsonl via datasets as conversational data; mlx-lm's ChatDataset reads the
    same {"messages": [...]} rows (mlx-lm is not installed here, so only the format is checked)."""
    datasets = pytest.importorskip("datasets")
    from trl.data_utils import is_conversational

    construct(make_recipe(project), project / "run")
    ds = datasets.load_dataset("json", data_files={"train": str(project / "run" / "construct" / "train.jsonl"),
                                                   "test": str(project / "run" / "construct" / "test.jsonl")})
    assert len(ds["train"]) > 0 and len(ds["test"]) > 0
    ex = ds["train"][0]
    assert is_conversational(ex)
    # mlx-lm ChatDataset: each row's "messages" is a list of {"role", "content"} strings
    assert all(set(m) == {"role", "content"} and isinstance(m["content"], str) for m in ex["messages"])


def test_teacher_down_stops_with_one_line(project):
    import socket

    from kit.errors import KitError

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(KitError) as ke:
        construct(make_recipe(project), project / "run", "teacher.kind=openai",
                  f"teacher.base_url=http://127.0.0.1:{port}/v1", "teacher.retries=0")
    line = ke.value.one_line()
    assert "in a row" in line and "recipe: teacher" in line and "\n" not in line


def test_teacher_that_never_parses_stops_with_one_line(project):
    from kit.errors import KitError

    with pytest.raises(KitError) as ke:
        construct(make_recipe(project), project / "run", "teacher.fail_rate=1.0")
    line = ke.value.one_line()
    assert "invalid JSON" in line and "recipe: teacher" in line
    assert not (project / "run" / "construct" / "train.jsonl").exists()


def test_brief_system_prompt(project):
    """construct.system_prompt=brief: name + stage + in-character rule in the training rows."""
    construct(make_recipe(project, system_prompt="brief"), project / "run")
    systems = {r["meta"]["stage"]: r["messages"][0]["content"] for r in rows(project / "run", "train.jsonl")}
    assert set(systems) == {"early", "late"}
    assert systems["early"].startswith("You are Mara Voss. Current life stage: Apprentice draughtsman (1952-1957).")
    assert "Kell yard" not in systems["early"] and "Never claim to be an AI" in systems["late"]
    assert len(systems["late"].split()) < 40
