"""Importing the package and its CLI must stay light: no heavy backends at import."""

from __future__ import annotations

import subprocess
import sys

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
