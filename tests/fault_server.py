"""A fault-injecting OpenAI-compatible ``/v1/chat/completions`` server for tests.

It runs ``http.server`` in a daemon thread on 127.0.0.1 (a free port picked by the OS)
and answers like a small, well-behaved instruct model — except that a seeded share of
requests fails, cycling through the ways real servers fail:

- ``429``      rate limited (with ``Retry-After``)
- ``500``      server error (no ``Retry-After`` unless ``retry_after_500`` is set: the client's own backoff applies)
- ``timeout``  the reply is held past the client's timeout, then the socket is dropped
- ``bad_body`` HTTP 200 whose body is not JSON
- ``bad_json`` HTTP 200 with a well-formed envelope whose message is prose, not JSON

Successful replies are JSON objects built for the schema the client sends in
``response_format`` (``json_schema`` or ``json_object`` + ``schema``): every property of
the schema gets a value of its type and length bounds, with text made from the prompt's
own words, so answers differ per prompt and are identical for the same prompt.

Bounded: the server stops itself after ``lifetime_s`` or ``max_requests``, and ``stop()``
wakes any held (``timeout``) request at once. Every request is counted by prompt and by
outcome, so tests can check retries server-side.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("429", "500", "timeout", "bad_body", "bad_json")
_STOP = set("the a an and or of to in on at for with is was were be by it this that as from what your you are "
            "about ask asks write question answer json user reply only one new must they their them these those "
            "facts above should would could have has had which who whom when where there here then than".split())


def _words(text: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Za-z][a-z]{3,}", text) if w.lower() not in _STOP]


def _fit(text: str, spec: dict) -> str:
    lo, hi = int(spec.get("minLength", 0)), int(spec.get("maxLength", 10_000))
    while len(text) < lo:
        text += " and I still think about it often"
    return text[:hi].rstrip()


def reply_for(messages: list[dict], schema: dict | None) -> dict:
    """A deterministic, schema-shaped reply built from the last user message's words."""
    prompt = str(messages[-1].get("content", "")) if messages else ""
    h = hashlib.sha256(prompt.encode("utf-8")).digest()
    words = _words(prompt) or ["harbour", "bridge", "work", "family"]
    pick = [words[(h[i] * 31 + i * 17) % len(words)] for i in range(10)]
    props = (schema or {}).get("properties") or {"question": {"type": "string"}}
    out: dict = {}
    for key, spec in props.items():
        typ = spec.get("type", "string")
        if typ == "boolean":
            out[key] = True
        elif typ in ("integer", "number"):
            out[key] = int(spec.get("minimum", 1))
        elif typ == "array":
            out[key] = [pick[0]]
        elif key == "question":
            # mentions being a machine so identity probes stay on type; ends with '?'
            out[key] = _fit(f"What do you recall about {pick[0]} and {pick[1]}, and would a mere machine "
                            f"or AI remember {pick[2]} the way you do?", spec)
        elif key == "analysis":
            out[key] = _fit(f"At this stage I know about {pick[3]} and {pick[4]}; I check the premise first.", spec)
        elif key == "response":
            out[key] = _fit(f"Well, {pick[5]} mattered to me more than I can say. When I think of {pick[6]} "
                            f"and {pick[7]}, I see how hard we worked, and {pick[8]} still makes me smile. "
                            f"That is what I remember of {pick[9]}.", spec)
        elif key == "reason":
            out[key] = _fit("in voice and in period", spec)
        elif "enum" in spec:
            out[key] = spec["enum"][0]
        else:
            out[key] = _fit(f"{pick[0]} {pick[1]} {pick[2]}", spec)
    return out


class FaultServer:
    """``with FaultServer(fail_rate=0.3, hold_s=1.5) as srv: ... srv.base_url ... srv.counts``."""

    def __init__(self, *, fail_rate: float = 0.3, seed: int = 0, hold_s: float = 2.0, faults=FAULTS,
                 retry_after: str = "0.1", retry_after_500: str | None = None, lifetime_s: float = 300.0, max_requests: int = 5000):
        self.fail_rate = fail_rate
        self.faults = tuple(faults)
        self.hold_s = hold_s
        self.retry_after = retry_after
        # None (the default) keeps 500s bare so the client's own backoff is exercised; a test
        # that only needs "the teacher is down" sets "0" so it does not sit through 0.5+1+2+4 s
        self.retry_after_500 = retry_after_500
        self.lifetime_s = lifetime_s
        self.max_requests = max_requests
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.counts: Counter = Counter()       # outcome -> n ("ok" or a fault name), plus "requests"
        self.per_prompt: Counter = Counter()   # sha256 of the messages -> requests
        self._n_faults = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> "FaultServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):  # noqa: N802 - http.server naming
                server._handle(self)

            def do_GET(self):  # noqa: N802
                self._send_json(404, {"error": {"message": "not found"}})

            def _send_json(self, code, obj, headers=None):
                body = json.dumps(obj).encode()
                self._send(code, body, "application/json", headers)

            def _send(self, code, body: bytes, ctype: str, headers=None):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="fault-server")
        self._thread.start()
        self._timer = threading.Timer(self.lifetime_s, self.stop)  # never outlives a stuck test
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._httpd is not None:
            httpd, self._httpd = self._httpd, None
            httpd.shutdown()  # safe from any thread but the serving one (handlers have their own)
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FaultServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- request handling ---------------------------------------------------------------------
    def _choose(self) -> str:
        with self._lock:
            self.counts["requests"] += 1
            if self.counts["requests"] > self.max_requests:
                return "500"
            if self._rng.random() < self.fail_rate:
                fault = self.faults[self._n_faults % len(self.faults)]
                self._n_faults += 1
                return fault
            return "ok"

    def _handle(self, h) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length)
        try:
            req = json.loads(raw)
            messages = req["messages"]
        except (ValueError, KeyError, TypeError):
            h._send_json(400, {"error": {"message": "body must be a chat completion request"}})
            return
        key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        with self._lock:
            self.per_prompt[key] += 1
        outcome = self._choose()
        with self._lock:
            self.counts[outcome] += 1
        if outcome == "429":
            h._send_json(429, {"error": {"message": "rate limited"}}, {"Retry-After": self.retry_after})
        elif outcome == "500":
            extra = {"Retry-After": self.retry_after_500} if self.retry_after_500 is not None else None
            h._send_json(500, {"error": {"message": "internal error"}}, extra)
        elif outcome == "timeout":
            self._stopping.wait(self.hold_s)  # the client gives up first
            h.close_connection = True
            try:
                h.connection.shutdown(2)
            except OSError:
                pass
        elif outcome == "bad_body":
            h._send(200, b'{"choices": [{"message": {"content": "trunc', "application/json")
        else:
            rf = req.get("response_format") or {}
            schema = (rf.get("json_schema") or {}).get("schema") if rf.get("type") == "json_schema" else rf.get("schema")
            if outcome == "bad_json":
                content = "Sure! Here is what you asked for, written as plain prose instead."
            else:
                content = json.dumps(reply_for(messages, schema))
            h._send_json(200, {"id": f"chatcmpl-{key[:12]}", "object": "chat.completion", "created": int(time.time()),
                               "model": req.get("model", "fault-server"),
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": content}}],
                               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
