"""The run directory's stage manifests."""

from __future__ import annotations

import json

from kit.rundir import RunDir


def test_redoing_a_finished_stage_keeps_its_record(tmp_path):
    """A finished stage whose inputs changed starts afresh, but its finished manifest (figures,
    times) is kept as manifest.prev.json and its training log as metrics.prev.jsonl: a rerun
    that should not have retrained loses no record."""
    stage = RunDir(tmp_path / "run").stage("sft")
    stage.begin("old")
    stage.finish(metrics={"final_loss": 2.84})
    stage.begin("old")  # same inputs (a resume): nothing set aside
    assert not stage.manifest_path.with_name("manifest.prev.json").exists()
    stage.finish(metrics={"final_loss": 2.84})
    (stage.path / "metrics.jsonl").write_text('{"step": 266}\n')
    m = stage.begin("new")
    assert (stage.path / "metrics.prev.jsonl").read_text() == '{"step": 266}\n'
    assert (stage.path / "metrics.jsonl").is_file()  # a --resume with new settings appends to it
    prev = json.loads(stage.manifest_path.with_name("manifest.prev.json").read_text())
    assert prev["status"] == "done" and prev["metrics"]["final_loss"] == 2.84 and prev["inputs_hash"] == "old"
    assert m["status"] == "running" and "metrics" not in m
