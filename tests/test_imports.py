"""Importing the package and its CLI must stay light: no heavy backends at import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli

HEAVY = ["torch", "transformers", "trl", "peft", "mlx", "mlx_lm", "llama_cpp", "unsloth",
         "textual", "sentence_transformers", "matplotlib", "datasets"]


@pytest.mark.parametrize("module", ["kit", "kit.cli", "kit.spec.recipe", "kit.spec.persona", "kit.rundir"])
def test_import_is_light(module):
    code = (f"import sys, {module}\n"
            f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imported {out.stdout.strip()}"


def test_help_imports_nothing_heavy():
    code = ("import sys\nfrom kit.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert "Commands:" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY="


@pytest.mark.parametrize("verb", ["init", "persona", "doctor", "construct", "train", "dpo", "eval",
                                  "export", "chat", "serve", "run"])
def test_every_verb_has_help(verb):
    r = run_cli(verb, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout


def test_doctor_runs():
    r = run_cli("doctor")
    assert r.returncode == 0, r.stderr
    assert "torch" in r.stdout and "devices:" in r.stdout


def test_init_scaffold_validates(tmp_path):
    r = run_cli("init", "new-person", "--dir", str(tmp_path), "--recipes", str(tmp_path / "recipes"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "recipes" / "new-person.yaml").is_file()
    r = run_cli("persona", "validate", str(tmp_path / "new-person"))
    assert r.returncode == 0, r.stderr
    r = run_cli("init", "new-person", "--dir", str(tmp_path), "--recipes", str(tmp_path / "recipes"))
    assert r.returncode == 2 and "already exists" in r.stderr
    r = run_cli("init", "Bad Id!", "--dir", str(tmp_path), "--recipes", str(tmp_path / "recipes"))
    assert r.returncode == 2 and "invalid persona id" in r.stderr


# Run outside the repo, `python -m kit` must still import this checkout's kit (and so read its
# quickstart), not whichever clone the venv's editable install points at.
_THIS_CHECKOUT = {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}


def _recipe_diff(recipe: Path) -> list[str]:
    """The lines of ``recipe`` that differ from recipes/quickstart.yaml (ndiff, +/- only)."""
    import difflib

    quick = (REPO / "recipes" / "quickstart.yaml").read_text(encoding="utf-8").splitlines()
    return [ln for ln in difflib.ndiff(quick, recipe.read_text(encoding="utf-8").splitlines())
            if ln.startswith(("+ ", "- "))]


def _allowed(line: str) -> bool:
    body = line[2:]
    return body.startswith(("name:", "persona:")) or (line.startswith("+ ") and body.startswith("#"))


def test_init_recipe_is_the_quickstart(tmp_path):
    """`perskit init` generates its recipe from recipes/quickstart.yaml: in a project that has
    the quickstart's contrast persona, only the name and persona lines (and the header comment
    it adds) differ, so the two cannot drift."""
    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "tomas-reyes").symlink_to(REPO / "personas" / "tomas-reyes")
    r = run_cli("init", "new-person", cwd=tmp_path, env=_THIS_CHECKOUT)
    assert r.returncode == 0, r.stderr
    recipe = tmp_path / "recipes" / "new-person.yaml"
    diff = _recipe_diff(recipe)
    assert [ln for ln in diff if not _allowed(ln)] == []
    assert "- name: quickstart" in diff and "+ name: new-person" in diff
    assert "+ persona: personas/new-person" in diff
    from kit.spec.recipe import load_recipe

    mine, quick = load_recipe(recipe), load_recipe(REPO / "recipes" / "quickstart.yaml")
    a, b = mine.spec.model_dump(mode="json"), quick.spec.model_dump(mode="json")
    for key in ("name", "persona"):
        a.pop(key), b.pop(key)
    assert a == b


def test_init_recipe_outside_a_checkout(tmp_path):
    """In an empty folder the quickstart's contrast persona is not there: the generated recipe
    points at the one bundled with perskit, and nothing else changes."""
    r = run_cli("init", "new-person", "--dir", str(tmp_path / "p"), "--recipes", str(tmp_path / "r"), cwd=tmp_path,
                env=_THIS_CHECKOUT)
    assert r.returncode == 0, r.stderr
    recipe = tmp_path / "r" / "new-person.yaml"
    diff = [ln for ln in _recipe_diff(recipe) if not _allowed(ln)]
    assert diff == ["-   contrast_personas: [personas/tomas-reyes]",
                    f"+   contrast_personas: [{(REPO / 'personas' / 'tomas-reyes').as_posix()}]"]
    from kit.spec.recipe import load_recipe

    loaded = load_recipe(recipe)
    assert loaded.resolve_path(loaded.spec.dpo.contrast_personas[0]) == REPO / "personas" / "tomas-reyes"


def test_init_without_the_quickstart_fails_in_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from kit.commands import init
    from kit.errors import KitError

    monkeypatch.setattr(init, "__file__", str(tmp_path / "kit" / "commands" / "init.py"))
    with pytest.raises(KitError, match="recipes/quickstart.yaml not found") as exc:
        init.find_quickstart(tmp_path / "recipes")
    assert "\n" not in exc.value.one_line()
    res = CliRunner().invoke(init.command, ["x", "--dir", str(tmp_path / "p"), "--recipes", str(tmp_path / "r")])
    assert isinstance(res.exception, KitError) and not (tmp_path / "p" / "x").exists()
