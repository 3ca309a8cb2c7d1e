"""One base model from train to export (kit/models/base.py, kit/models/hub.py).

- a hub id is found in a local Hugging Face cache (HF_HOME, HF_HUB_OFFLINE=1) and the whole
  smoke pipeline runs on it, with the real embedded teacher;
- a hub id that is not cached, offline, is one line saying how to fetch it (gated families
  get the licence hint);
- the sft manifest records the resolved folder and its fingerprint, and a later stage
  refuses when the base on disk changed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli

HUB_ID = "acme/tiny-persona-base"


def hf_cache_with(model_dir: Path, hf_home: Path, repo_id: str) -> Path:
    """Lay ``model_dir`` out the way ``hf download`` does: hub/models--owner--name/{refs,snapshots}."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in model_dir.iterdir():
        if f.is_file() and not f.name.startswith("."):
            shutil.copy2(f, snap / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snap


def test_hub_id_from_local_cache_offline(tmp_path, tiny_llama, monkeypatch):
    from kit.models.resolve import materialize

    snap = hf_cache_with(tiny_llama, tmp_path / "hf", HUB_ID)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert materialize(HUB_ID) == snap


@pytest.mark.parametrize("repo_id, gated", [("acme/not-cached", False), ("google/gemma-3-1b-it", True)])
def test_missing_hub_id_offline_is_one_line(tmp_path, monkeypatch, repo_id, gated):
    from kit.errors import KitError
    from kit.models.resolve import materialize

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(KitError) as e:
        materialize(repo_id)
    line = e.value.one_line()
    assert "\n" not in line and "offline" in line and f"hf download {repo_id}" in line
    assert ("licence" in line) is gated


def test_fingerprint_and_recorded_base_refuse_a_changed_base(tmp_path, tiny_llama):
    from kit.errors import KitError
    from kit.models.base import BaseModelRecord, fingerprint, recorded_base
    from kit.rundir import RunDir

    base = tmp_path / "base"
    shutil.copytree(tiny_llama, base)
    fp = fingerprint(base)
    assert fp == fingerprint(base) and len(fp) == 16

    class Loaded:  # the two fields recorded_base reads
        class spec:
            class train:
                model = str(base)

    run = RunDir(tmp_path / "run")
    stage = run.stage("sft")
    stage.begin("h", base=BaseModelRecord(str(base), str(base), fp).as_dict())
    assert recorded_base(Loaded, run, "eval").fingerprint == fp
    cfg = json.loads((base / "config.json").read_text())
    cfg["rms_norm_eps"] = 1e-3
    (base / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(KitError, match="changed since training"):
        recorded_base(Loaded, run, "eval")
    Loaded.spec.train.model = "something-else"
    with pytest.raises(KitError, match="trained on"):
        recorded_base(Loaded, run, "eval")


RECIPE_EXTRA = """\
eval:
  ipip_items: 10
  ipip_variants: 1
  max_questions: 3
  paraphrases: 2
  distinct_questions: 2
  gen_max_tokens: 12
  judge: heuristic
export:
  quants: [Q8_0]
  out_dir: export
  parity_prompts: 3
  min_top1_f16: 0.9
  verify_questions: 1
"""


@pytest.mark.slow
def test_pipeline_on_a_hub_id_offline(tmp_path, tiny_llama):
    """train -> dpo -> eval -> export on `acme/tiny-persona-base` from a temporary HF cache,
    offline, then chat with the bundle; a changed base makes a forced export refuse in one line.
    The constructed rows are written by hand (tests/train_helpers.py): construct never touches
    the student, and its real-teacher run is the smoke test's job."""
    from train_helpers import write_construct, write_project

    snap = hf_cache_with(tiny_llama, tmp_path / "hf", HUB_ID)
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    recipe = write_project(tmp_path, RECIPE_EXTRA)
    run_dir = tmp_path / "run"
    write_construct(run_dir, tmp_path)
    sets = ["--set", f"train.model={HUB_ID}", "--set", "train.max_steps=4", "--set", "dpo.max_steps=2",
            "--set", "dpo.max_pairs=8"]
    stages = [a for s in ("sft", "dpo", "eval", "export") for a in ("--only", s)]
    r = run_cli("run", str(recipe), "--run-dir", str(run_dir), *sets, *stages, env=env, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    sft = json.loads((run_dir / "sft" / "manifest.json").read_text())
    assert sft["base"]["name"] == HUB_ID and Path(sft["base"]["path"]) == snap
    for stage in ("dpo", "eval", "export"):
        manifest = json.loads((run_dir / stage / "manifest.json").read_text())
        assert manifest["status"] == "done", stage
    assert json.loads((run_dir / "dpo" / "manifest.json").read_text())["base_model"] == str(snap)
    bundle = tmp_path / "export" / "ada-test"
    assert json.loads((bundle / "manifest.json").read_text())["base_model"] == HUB_ID
    chat = run_cli("chat", str(bundle), "--prompt", "What is your work?", env=env, timeout=300)
    assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr[-2000:]

    cfg = json.loads((snap / "config.json").read_text())
    (snap / "config.json").write_text(json.dumps({**cfg, "rms_norm_eps": 1e-3}))
    r = run_cli("export", str(recipe), "--run-dir", str(run_dir), *sets, "--force", env=env)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "changed since training" in r.stderr
