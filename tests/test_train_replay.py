"""Replay rows (train.replay): the base model's own answers to general requests, mixed into SFT."""

from __future__ import annotations

import json

import pytest

from kit.rundir import read_jsonl
from kit.train.replay import build_replay, general_prompts, mixed_train_file, usable, whole_sentences


def test_bundled_prompts_are_general_and_distinct():
    prompts = general_prompts()
    assert len(prompts) >= 80 and len(set(prompts)) == len(prompts)
    banned = ("you an ai", "are you a", "who are you", "your name", "chatbot", "language model")
    assert not [p for p in prompts if any(b in p.lower() for b in banned)]


def test_cut_replies_end_on_a_whole_sentence_and_loops_are_dropped():
    assert whole_sentences("Water boils at 100 C. At altitude the air pressure is lo") == "Water boils at 100 C."
    assert whole_sentences('He said "stop." Then he') == 'He said "stop."'
    assert whole_sentences("no sentence end here") == ""
    assert usable("Water boils at one hundred degrees.")
    assert not usable("Yes.") and not usable("the the the the the the the the the the.")


def test_build_replay_writes_once_per_key(tmp_path):
    calls = []

    def gen(convs):
        calls.append(len(convs))
        return [f"An answer to {c[0]['content'][:20]} in a sentence. And a cut-off tai" for c in convs]

    path = tmp_path / "replay.jsonl"
    first = build_replay(path, 6, seed=0, max_tokens=64, key="base-a", generate=gen)
    assert first == {"asked": 6, "kept": 6, "reused": False} and calls == [6]
    rows = read_jsonl(path)
    assert all(r["meta"]["source"] == "replay" and r["messages"][0]["role"] == "user" for r in rows)
    assert all(r["messages"][1]["content"].endswith("sentence.") for r in rows)
    assert build_replay(path, 6, seed=0, max_tokens=64, key="base-a", generate=gen)["reused"] is True
    assert calls == [6]  # a rerun (resume) costs no generation
    assert build_replay(path, 6, seed=0, max_tokens=64, key="base-b", generate=gen)["reused"] is False
    assert calls == [6, 6]  # another base model: generated again


def test_mixed_file_holds_persona_then_replay_rows(tmp_path):
    row = lambda q: {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "A."}]}  # noqa: E731
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row(f"p{i}")) + "\n" for i in range(3)))
    (tmp_path / "replay.jsonl").write_text(json.dumps(row("g")) + "\n")
    out = mixed_train_file(tmp_path / "train.jsonl", tmp_path / "replay.jsonl", tmp_path / "mixed.jsonl")
    assert [r["messages"][0]["content"] for r in read_jsonl(out)] == ["p0", "p1", "p2", "g"]


def test_sft_stage_generates_replay_with_the_base_model(tmp_path, tiny_llama):
    pytest.importorskip("trl")
    from train_helpers import write_construct, write_project

    from kit.cli import main

    recipe = write_project(tmp_path)
    run = tmp_path / "runs" / "ada"
    write_construct(run, tmp_path)
    assert main(["train", str(recipe), "--run-dir", str(run), "--set", "train.replay=4",
                 "--set", "train.max_steps=2", "--set", "train.replay_max_tokens=24"]) == 0
    man = json.loads((run / "sft" / "manifest.json").read_text())
    replay = man["counts"]["replay"]
    assert replay["asked"] == 4 and replay["reused"] is False and 0 <= replay["kept"] <= 4
    assert (run / "sft" / "replay.jsonl").is_file()
    n_train = len(read_jsonl(run / "construct" / "train.jsonl"))
    assert man["metrics"]["records"] == n_train + replay["kept"]
