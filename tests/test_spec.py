"""Persona and recipe specs: bundled personas validate; each bad input fails in one line."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from kit.errors import KitError
from kit.spec.persona import load_persona
from kit.spec.recipe import load_recipe

# By name: a user's own `perskit init my-persona` folder must not become a project test.
BUNDLED = ["ada-lin", "booker-washington", "calm-optimist", "tomas-reyes"]

GOOD = """\
id: demo
name: Demo Person
identity: A demo person used in tests.
stages:
  - {id: early, label: Early, period: "1950-1960"}
  - {id: late, label: Late, period: "1961-1970"}
sources:
  - {path: sources/bio.md, kind: objective, stage: early}
  - {path: sources/diary.md, kind: subjective, stage: late}
big_five: {O: 4, C: high, E: 2.5, A: 3, N: low}
gold:
  - {q: "Who are you?", a: "I am Demo.", stage: early}
"""


def make_persona(tmp_path: Path, text: str = GOOD) -> Path:
    folder = tmp_path / "demo"
    (folder / "sources").mkdir(parents=True)
    (folder / "sources" / "bio.md").write_text("Demo was born in 1940.\n")
    (folder / "sources" / "diary.md").write_text("I wrote this myself.\n")
    (folder / "persona.yaml").write_text(textwrap.dedent(text))
    return folder


def test_bundled_personas_exist():
    assert len(BUNDLED) >= 3, BUNDLED


@pytest.mark.parametrize("pid", BUNDLED)
def test_bundled_persona_validates(pid):
    lp = load_persona(REPO / "personas" / pid)
    s = lp.spec
    assert s.id == pid
    if s.trait_only:
        assert s.big_five is not None
    else:
        assert len(s.stages) >= 2
        assert {x.kind for x in s.sources} == {"objective", "subjective"}
        assert len(s.gold) >= 20
        assert any(g.type == "anti_induction" for g in s.gold)
        words = sum(len(lp.source_path(x).read_text().split()) for x in s.sources)
        assert words >= 3000, words


def test_good_persona_and_levels(tmp_path):
    lp = load_persona(make_persona(tmp_path))
    scores = lp.spec.big_five.scores()
    assert scores["O"] == 4.0 and scores["C"] == 4.2 and scores["N"] == 1.8
    prompt = lp.spec.system_prompt("late", stage_token=True)
    assert prompt.startswith("<TIME-2> You are Demo Person.") and "1961-1970" in prompt


def test_trait_only_persona_gets_a_default_stage(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "persona.yaml").write_text("id: t\nname: T\nidentity: x\nbig_five: {O: 1, C: 2, E: 3, A: 4, N: 5}\n")
    spec = load_persona(folder).spec
    assert spec.trait_only and [s.id for s in spec.stages] == ["present"]


BAD = {
    "malformed": (GOOD + "  bad: [unclosed\n", "malformed YAML (line"),
    "unknown_key": (GOOD + "favourite_colour: blue\n", "favourite_colour (line 13): unknown key"),
    "missing_source": (GOOD.replace("sources/bio.md", "sources/nope.md"), "sources[0].path (line 8): source file"),
    "escaping_path": (GOOD.replace("sources/bio.md", "../../etc/passwd"), "escapes the persona folder"),
    "undeclared_stage": (GOOD.replace("stage: late}", "stage: middle}"), "'middle' is not a declared stage"),
    "empty_file": ("", "the file is empty"),
    "empty_persona": ("id: demo\nname: D\nidentity: x\n", "empty persona"),
    "bad_trait": (GOOD.replace("O: 4", "O: 9"), "big_five.O"),
    "bad_type": (GOOD.replace("stages:\n", "stages: 3\nx:\n", 1), "stages"),
}
LINES = {"bad_type": 2}  # every problem, one line each: `stages: 3` and the unknown key `x`


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_persona_one_line_error(tmp_path, case):
    text, expected = BAD[case]
    folder = make_persona(tmp_path, text)
    with pytest.raises(KitError) as exc:
        load_persona(folder)
    assert expected in exc.value.one_line()
    before = sorted(p for p in tmp_path.rglob("*"))
    r = run_cli("persona", "validate", str(folder))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == LINES.get(case, 1), lines
    assert all(ln.startswith("perskit: error: ") and "persona.yaml" in ln for ln in lines), lines
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written


def test_validate_cli_ok_on_bundled():
    r = run_cli("persona", "validate", *[f"personas/{p}" for p in BUNDLED])
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("ok ") == len(BUNDLED)


RECIPE = """\
name: t
persona: personas/demo
teacher: {kind: scripted}
train: {backend: trl, model: tiny-llama-spm}
"""


def write_recipe(tmp_path: Path, text: str) -> Path:
    make_persona(tmp_path / "personas")
    shutil.move(str(tmp_path / "personas" / "demo"), str(tmp_path / "personas" / "demo2"))
    (tmp_path / "personas" / "demo2").rename(tmp_path / "personas" / "demo")
    (tmp_path / "recipes").mkdir(exist_ok=True)
    path = tmp_path / "recipes" / "r.yaml"
    path.write_text(text)
    return path


def test_recipe_defaults_overrides_and_root(tmp_path):
    path = write_recipe(tmp_path, RECIPE)
    lr = load_recipe(path, ["train.lora.r=32", "construct.cot=false", "teacher.seed=7"])
    assert lr.spec.train.lora.r == 32 and lr.spec.construct.cot is False and lr.spec.teacher.seed == 7
    assert lr.root == tmp_path and lr.persona_path() == tmp_path / "personas" / "demo"
    assert lr.spec.dpo.beta == 0.1  # default


def test_a_setting_at_its_default_leaves_the_stage_hash_alone(tmp_path):
    """A stage is redone when its settings change, not when a newer perskit adds a field at a
    default that keeps the old behaviour (written out or left out hashes the same); a changed
    value or a switched backend/teacher kind still changes the hash."""
    from kit.construct.pipeline import inputs_hash
    from kit.spec.persona import load_persona

    path = write_recipe(tmp_path, RECIPE)

    def hashes(*sets):
        lr = load_recipe(path, list(sets))
        return lr.spec.section_hash("train"), inputs_hash(lr, load_persona(lr.persona_path()))

    plain = hashes()
    assert hashes("train.gold_repeat=1", "train.reproduce_items=12", "construct.best_of=2") == plain
    assert hashes("train.gold_repeat=2")[0] != plain[0]
    assert hashes("construct.best_of=1")[1] != plain[1]
    assert hashes("train.backend=mlx")[0] != plain[0]


@pytest.mark.parametrize("text,overrides,expected", [
    (RECIPE.replace("trl", "tensorflow"), [], "train"),
    (RECIPE + "trian: {}\n", [], "trian (line 5): unknown key"),
    (RECIPE, ["train.lora.rank=3"], "train.lora.rank (line 4): unknown key"),
    (RECIPE.replace("model: tiny-llama-spm", "model: tiny-llama-spm, max_steps: -1"), [], "train.max_steps (line 4)"),
    (RECIPE, ["teacher"], "has no '='"),
    (RECIPE.replace("kind: scripted", "kind: gpt9"), [], "teacher"),
])
def test_bad_recipe(tmp_path, text, overrides, expected):
    path = write_recipe(tmp_path, text)
    with pytest.raises(KitError) as exc:
        load_recipe(path, overrides)
    assert expected in exc.value.one_line()


@pytest.mark.parametrize("recipe", sorted(p.name for p in (REPO / "recipes").glob("*.yaml")))
def test_shipped_recipes_validate(recipe):
    lr = load_recipe(REPO / "recipes" / recipe)
    assert lr.persona_path().is_dir()
    load_persona(lr.persona_path())
    for other in lr.spec.dpo.contrast_personas:
        load_persona(lr.resolve_path(other))


def test_every_problem_is_reported_one_line_each(tmp_path):
    """Issue 12: an unknown key no longer hides behind 'identity: Field required (+1 more)'."""
    text = GOOD.replace("identity:", "idntity:").replace("O: 4", "O: 9").replace("stage: late}", "stage: old}")
    with pytest.raises(KitError) as exc:
        load_persona(make_persona(tmp_path, text))
    lines = exc.value.lines()
    assert len(lines) == 4, lines
    assert any("identity: Field required" in ln for ln in lines)
    assert any("idntity (line 3): unknown key" in ln and "rename 'idntity' to 'identity'" in ln for ln in lines)
    assert any("big_five.O (line 10)" in ln for ln in lines)
    assert any("sources[1].stage (line 9): 'old' is not a declared stage" in ln for ln in lines)
    assert all("\n" not in ln for ln in lines)


def test_every_recipe_problem_is_reported(tmp_path):
    text = RECIPE.replace("teacher:", "teachr:").replace("model: tiny-llama-spm", "model: tiny-llama-spm, max_steps: -1")
    with pytest.raises(KitError) as exc:
        load_recipe(write_recipe(tmp_path, text))
    lines = exc.value.lines()
    assert len(lines) == 3, lines
    assert [ln.split(": ", 2)[1] for ln in lines] == ["teacher", "teachr (line 3)", "train.max_steps (line 4)"]


def test_anchors_merges_and_dates_still_load(tmp_path):
    """Ordinary YAML conveniences are not refused; dates stay text (no spec field is a date)."""
    text = GOOD.replace('  - {id: early, label: Early, period: "1950-1960"}\n  - {id: late, label: Late, period: "1961-1970"}',
                        '  - &st {id: early, label: Early, period: "1950-1960"}\n  - {<<: *st, id: late}')
    text = text.replace("stage: early}", "stage: early, date: 1961-05-04}", 1)
    spec = load_persona(make_persona(tmp_path, text)).spec
    assert [(s.id, s.label) for s in spec.stages] == [("early", "Early"), ("late", "Early")]
    assert spec.sources[0].date == "1961-05-04"


def test_line_mapping_does_not_expand_aliases():
    """record_lines walks each node once: the issue's 9^8 bomb maps in a few entries."""
    import time

    import yaml

    from kit.spec.yamlio import record_lines

    text, prev = 'l0: &l0 ["lol"]\n', "l0"
    for n in range(1, 9):
        text += f"l{n}: &l{n} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
        prev = f"l{n}"
    assert len(text) < 1024
    start = time.monotonic()
    lines = record_lines(yaml.compose(text, Loader=yaml.SafeLoader))
    assert time.monotonic() - start < 1 and len(lines) < 100
    assert lines[("l8",)] == 9  # an alias item keeps its anchor's line (8): nodes are shared

