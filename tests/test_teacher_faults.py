"""A teacher that fails ~30% of calls: ``perskit construct`` against a fault-injecting
OpenAI-compatible server on 127.0.0.1 (tests/fault_server.py).

Asserts: the run completes; retries are bounded (counted server-side: no prompt is sent
more than ``retries + 1`` times, and in total at most ``(retries + 1) x`` distinct prompts);
every fault the server injected is counted in the construct manifest (429/500/timeouts/
bad bodies as ``transient_errors``, prose-instead-of-JSON as ``invalid_json``); faults do not
change the data (same train/test bytes as a fault-free server); a rerun makes no calls;
and a teacher that fails every call stops with a one-line error (exit 2), then resumes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fault_server import FAULTS, FaultServer

REPO = Path(__file__).resolve().parents[1]
RETRIES = 4
TIMEOUT_S = 2.0  # generous: a slow *successful* reply must never look like an injected timeout

RECIPE = """\
name: teacher-faults
persona: {persona}
teacher:
  kind: openai
  base_url: {base_url}
  model: fault-model
  retries: {retries}
  timeout_s: {timeout}
  concurrency: 4
construct:
  max_passages: 4
  own_words: 0
  patterns: {{ordinary: 2, opinion: 2, anti_induction: 2, trait: 2}}
  knowledge_words: 120
  style_words: 60
  few_shot: 1
  test_fraction: 0.2
  retriever: bm25
train: {{backend: trl, model: tiny-llama-spm}}
"""


def _construct(folder: Path, base_url: str, run_dir: Path, home: Path) -> subprocess.CompletedProcess:
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / "recipe.yaml"
    recipe.write_text(RECIPE.format(persona=REPO / "personas" / "ada-lin", base_url=base_url, retries=RETRIES,
                                    timeout=TIMEOUT_S))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PERSKIT_HOME": str(home), "OPENAI_API_KEY": ""}
    return subprocess.run([sys.executable, "-m", "kit", "construct", str(recipe), "--run-dir", str(run_dir)],
                          env=env, capture_output=True, text=True, timeout=300)


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "construct" / "manifest.json").read_text())


def test_construct_survives_a_teacher_failing_30_percent(tmp_path, perskit_home):
    with FaultServer(fail_rate=0.3, seed=7, hold_s=TIMEOUT_S + 1.0) as srv:
        res = _construct(tmp_path / "faulty", srv.base_url, tmp_path / "run-faulty", perskit_home)
        assert res.returncode == 0, res.stderr[-3000:]
        served = dict(srv.counts)
        per_prompt = dict(srv.per_prompt)
        # a rerun of a finished stage is a no-op: not one request reaches the server
        again = _construct(tmp_path / "faulty", srv.base_url, tmp_path / "run-faulty", perskit_home)
        assert again.returncode == 0, again.stderr[-3000:]
        assert srv.counts["requests"] == served["requests"]

    m = _manifest(tmp_path / "run-faulty")
    stats = m["teacher_stats"]
    faults = {f: served.get(f, 0) for f in FAULTS}
    print(f"\nserved {served}; teacher_stats {stats}; manifest faults {m.get('faults')}")
    assert m["status"] == "done"
    # the server really failed about 30% of requests, of every kind
    assert 0.15 <= sum(faults.values()) / served["requests"] <= 0.5, served
    assert all(n >= 1 for n in faults.values()), served

    # bounded retries, counted server-side
    assert max(per_prompt.values()) <= RETRIES + 1, per_prompt
    assert served["requests"] <= (RETRIES + 1) * len(per_prompt) + stats["format_fallbacks"]
    # every request the server saw is an attempt the client counted (+ format step-downs)
    assert served["requests"] == stats["calls"] + stats["format_fallbacks"]
    assert stats["calls"] - stats["retries"] == len(per_prompt)  # one first attempt per prompt
    # every injected fault is counted in the manifest, by kind
    assert stats["transient_errors"] == faults["429"] + faults["500"] + faults["timeout"] + faults["bad_body"]
    assert stats["invalid_json"] == faults["bad_json"]
    assert stats["failures"] == sum(m.get("faults", {}).values())
    assert m["counts"]["train"] > 0

    # faults change nothing in the data: a fault-free server yields the same files
    with FaultServer(fail_rate=0.0) as clean:
        ok = _construct(tmp_path / "clean", clean.base_url, tmp_path / "run-clean", perskit_home)
        assert ok.returncode == 0, ok.stderr[-3000:]
        assert clean.counts["requests"] == len(per_prompt)
    if stats["failures"] == 0:
        for name in ("train.jsonl", "test.jsonl"):
            assert (tmp_path / "run-faulty" / "construct" / name).read_bytes() == \
                (tmp_path / "run-clean" / "construct" / name).read_bytes(), name


def test_teacher_down_stops_with_one_line_then_resumes(tmp_path, perskit_home):
    run_dir = tmp_path / "run"
    # Retry-After: 0 on the 500s too: this test is about giving up with one line, not about
    # backoff timing (the 30% test above still sees bare 500s and the client's own backoff);
    # without it the client sleeps 0.5+1+2+4 s per prompt and the test takes twice as long
    with FaultServer(fail_rate=1.0, faults=("429", "500"), retry_after="0", retry_after_500="0") as down:
        res = _construct(tmp_path / "r", down.base_url, run_dir, perskit_home)
    assert res.returncode == 2, res.stderr[-3000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("perskit: error:")]
    assert len(errors) == 1 and "teacher failed" in errors[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert _manifest(run_dir)["status"] == "running"
    assert not (run_dir / "construct" / "train.jsonl").exists()
    # bounded: the stage gave up after a handful of calls, each tried retries + 1 times
    assert down.counts["requests"] <= (RETRIES + 1) * 16

    # the same port may be taken by now; a new server is a new base_url, which is a new
    # teacher identity (new inputs), so the stage starts over cleanly instead of mixing data
    with FaultServer(fail_rate=0.0) as up:
        ok = _construct(tmp_path / "r", up.base_url, run_dir, perskit_home)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert _manifest(run_dir)["status"] == "done"
    assert (run_dir / "construct" / "train.jsonl").stat().st_size > 0


@pytest.mark.parametrize("mode", ["object", "none"])
def test_fault_server_answers_every_structured_output_mode(mode):
    """The server itself: schema-shaped JSON via json_object, and a question when no schema is sent."""
    import httpx

    schema = {"type": "object", "properties": {"analysis": {"type": "string", "minLength": 10, "maxLength": 400},
                                               "response": {"type": "string", "minLength": 20, "maxLength": 900}},
              "required": ["analysis", "response"]}
    with FaultServer(fail_rate=0.0) as srv:
        body = {"model": "m", "messages": [{"role": "user", "content": "Tell me about the Tollan bridge inquiry."}]}
        if mode == "object":
            body["response_format"] = {"type": "json_object", "schema": schema}
        r = httpx.post(srv.base_url + "/chat/completions", json=body, timeout=10)
    content = json.loads(r.json()["choices"][0]["message"]["content"])
    if mode == "object":
        assert set(content) == {"analysis", "response"}
        assert 20 <= len(content["response"]) <= 900 and 10 <= len(content["analysis"]) <= 400
    else:
        assert content["question"].endswith("?")
