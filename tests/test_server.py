"""The OpenAI-compatible server, driven by the official ``openai`` client.

Unit part: the FastAPI app on uvicorn in a thread with a scripted engine (exact stage
routing). Integration part: a live ``perskit serve`` subprocess on a real GGUF bundle.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from chat_helpers import STAGES, SlowScripted, make_bundle, smollm2_gguf
from kit.engine.base import GenParams
from kit.engine.bundle import StageInfo
from kit.server.app import ServedPersona, create_app
from kit.server.runner import serve_in_thread
from kit.server.settings import ServerSettings

openai = pytest.importorskip("openai")


def echo_system(messages):
    return f"[{messages[0]['content'][:24]}] you said: {messages[-1]['content']}"


class Recording(SlowScripted):
    """Records the GenParams of every call (what reached the engine)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.params = []

    def stream(self, messages, params):
        self.params.append(params)
        yield from super().stream(messages, params)


def served(engine, sampling=None, **settings):
    persona = ServedPersona("ada-lin", "Ada Lin", [StageInfo(**s) for s in STAGES], "young", engine,
                            sampling or GenParams())
    return serve_in_thread(create_app([persona], ServerSettings(**settings)))


@pytest.fixture
def scripted_server():
    engine = Recording(echo_system, delay=0)
    with served(engine, GenParams(temperature=0.3, repeat_penalty=1.15, max_tokens=40), api_key="k") as url:
        yield url, engine


def client_for(url, key="k"):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=20)


def test_models_and_stage_routing(scripted_server):
    url, engine = scripted_server
    client = client_for(url)
    assert [m.id for m in client.models.list().data] == ["ada-lin", "ada-lin:young", "ada-lin:late"]
    r = client.chat.completions.create(model="ada-lin", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "[You are Ada Lin, 24, a j] you said: hi"
    assert r.model == "ada-lin:young"
    r = client.chat.completions.create(model="ada-lin:late", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content.startswith("[You are Ada Lin, 70")
    r = client.chat.completions.create(model="ada-lin", messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"stage": "late"})
    assert r.model == "ada-lin:late"
    # A client's own system message is kept, after the persona's stage prompt.
    client.chat.completions.create(model="ada-lin", messages=[
        {"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "hi"}])
    assert engine.calls[-1][0]["content"] == STAGES[0]["system_prompt"] + "\n\nAnswer briefly."


def test_card_system_prompt_is_not_sent_twice(scripted_server):
    url, engine = scripted_server
    client = client_for(url)
    # What SillyTavern sends after importing the stage's card: the card's system prompt plus its own text.
    card_system = STAGES[1]["system_prompt"] + "\n\nWrite Ada's next reply."
    client.chat.completions.create(model="ada-lin:late", messages=[
        {"role": "system", "content": card_system}, {"role": "system", "content": card_system},
        {"role": "user", "content": "hi"}])
    sent = engine.calls[-1]
    assert [m["role"] for m in sent] == ["system", "user"] and sent[0]["content"] == card_system


def test_sampling_penalties_and_bundle_defaults_reach_the_engine(scripted_server):
    url, engine = scripted_server
    client = client_for(url)
    client.chat.completions.create(model="ada-lin", messages=[{"role": "user", "content": "hi"}])
    p = engine.params[-1]
    assert (p.temperature, p.repeat_penalty, p.max_tokens) == (0.3, 1.15, 40)  # the bundle's sampling
    client.chat.completions.create(model="ada-lin", messages=[{"role": "user", "content": "hi"}], temperature=0.9,
                                   frequency_penalty=0.5, presence_penalty=-0.25, max_tokens=7, seed=3,
                                   extra_body={"repeat_penalty": 1.3, "min_p": 0.1})
    p = engine.params[-1]
    assert (p.temperature, p.frequency_penalty, p.presence_penalty, p.repeat_penalty, p.min_p, p.max_tokens,
            p.seed) == (0.9, 0.5, -0.25, 1.3, 0.1, 7, 3)


def test_streaming_matches_non_streaming_and_reports_usage(scripted_server):
    url, _ = scripted_server
    client = client_for(url)
    msgs = [{"role": "user", "content": "tell me about the bridge"}]
    full = client.chat.completions.create(model="ada-lin:late", messages=msgs)
    chunks = list(client.chat.completions.create(model="ada-lin:late", messages=msgs, stream=True))
    assert len(chunks) > 3 and chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage is None
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == full.choices[0].message.content
    chunks = list(client.chat.completions.create(model="ada-lin:late", messages=msgs, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_bad_requests_get_clear_errors(scripted_server):
    url, _ = scripted_server
    auth = {"Authorization": "Bearer k"}
    r = httpx.post(f"{url}/v1/chat/completions", content=b"{not json", headers=auth)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/chat/completions", json={"model": "ada-lin"}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(f"{url}/v1/chat/completions", json={"model": "ada-lin", "messages": [
        {"role": "user", "content": "x"}], "temperature": 9}, headers=auth)
    assert r.status_code == 400 and "temperature" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/chat/completions", content=b"x" * (9 << 20), headers=auth)
    assert r.status_code == 413
    client = client_for(url)
    with pytest.raises(openai.NotFoundError, match="available: \\['ada-lin'\\]"):
        client.chat.completions.create(model="bo", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="unknown stage 'middle'"):
        client.chat.completions.create(model="ada-lin:middle", messages=[{"role": "user", "content": "x"}])
    for key in ("wrong", "k" * 40, ""):
        with pytest.raises(openai.AuthenticationError):
            client_for(url, key or "x").models.list()
    # The server is still up after all of that.
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_cors_is_opt_in():
    origin = "http://localhost:5173"
    with served(SlowScripted(echo_system, delay=0)) as url:
        r = httpx.options(f"{url}/v1/chat/completions", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in r.headers
    with served(SlowScripted(echo_system, delay=0), api_key="k", cors_origins=[origin]) as url:
        r = httpx.options(f"{url}/v1/chat/completions", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin  # no key needed
        r = httpx.get(f"{url}/v1/models", headers={"Origin": origin, "Authorization": "Bearer k"})
        assert r.headers["access-control-allow-origin"] == origin
        r = httpx.get(f"{url}/v1/models", headers={"Origin": "http://evil.example", "Authorization": "Bearer k"})
        assert "access-control-allow-origin" not in r.headers


def test_beyond_capacity_gets_429_or_503_with_retry_after():
    import concurrent.futures as cf

    engine = SlowScripted(echo_system, delay=0.05)
    body = {"model": "ada-lin", "messages": [{"role": "user", "content": "one two three four five"}]}
    with served(engine, max_queue=1, queue_timeout_s=30) as url:
        with cf.ThreadPoolExecutor(6) as pool:
            rs = list(pool.map(lambda _: httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30), range(6)))
        codes = sorted(r.status_code for r in rs)
        assert codes.count(200) >= 2 and set(codes) <= {200, 429}
        busy = [r for r in rs if r.status_code == 429]
        assert busy and all(int(r.headers["retry-after"]) >= 1 for r in busy)
        assert busy[0].json()["error"]["type"] == "rate_limit_error"
    with served(SlowScripted(echo_system, delay=0.3), queue_timeout_s=0.2) as url:
        with cf.ThreadPoolExecutor(2) as pool:
            rs = list(pool.map(lambda _: httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30), range(2)))
        assert sorted(r.status_code for r in rs) == [200, 503]
        assert int(next(r for r in rs if r.status_code == 503).headers["retry-after"]) >= 1
        # the queue is free again afterwards
        assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).status_code == 200


def test_client_leaving_mid_stream_frees_the_engine():
    engine = SlowScripted(lambda m: " ".join(["word"] * 200), delay=0.02)
    body = {"model": "ada-lin", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 200}
    with served(engine, queue_timeout_s=20) as url:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}, timeout=20) as r:
            next(r.iter_lines())  # the first event, then the client goes away
        t0 = time.monotonic()
        r = httpx.post(f"{url}/v1/chat/completions", json={**body, "max_tokens": 3}, timeout=20)
        assert r.status_code == 200 and time.monotonic() - t0 < 3  # not 200 x 0.02 s behind a dead stream


def test_non_loopback_bind_needs_a_key_or_insecure(tmp_path):
    from conftest import run_cli

    from kit.server.settings import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    r = run_cli("serve", str(tmp_path), "--host", "0.0.0.0", env={"PERSKIT_API_KEY": ""})
    assert r.returncode == 2 and "without an API key" in r.stderr and "--insecure" in r.stderr
    assert "Traceback" not in r.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(args: list[str], probe: str, log):
    """Start ``python <args>`` on a free port, wait until GET ``probe`` answers, yield its URL, stop it.

    The port is free when picked but only bound when the server starts; with tests in parallel
    another process can take it in between, so a start that fails on a taken port is retried
    on a new one."""
    for attempt in range(3):
        port, seen = free_port(), os.path.getsize(log.name)
        proc = subprocess.Popen([sys.executable, *args, "--port", str(port)],
                                env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            if _came_up(proc, url, probe, args):
                yield url
                return
            taken = b"address already in use" in Path(log.name).read_bytes()[seen:].lower()
            assert taken and attempt < 2, f"server exited with {proc.returncode}"
        finally:
            _stop(proc)


def _came_up(proc, url: str, probe: str, args: list[str]) -> bool:
    """True once GET ``probe`` answers 200; False if the server process exited first."""
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}{probe}", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{args[:2]} did not come up"
        time.sleep(0.2)


def _stop(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_live_perskit_serve_with_real_gguf(tmp_path):
    bundle = make_bundle(tmp_path / "ada", smollm2_gguf(), quant="Q4_1")
    args = ["-m", "kit", "serve", str(bundle), "--api-key", "secret", "--n-ctx", "1024", "--max-tokens", "24"]
    with open(tmp_path / "serve.log", "w") as log, running_server(args, "/health", log) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="secret", max_retries=0, timeout=60)
        assert [m.id for m in client.models.list().data] == ["ada-lin", "ada-lin:young", "ada-lin:late"]
        msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
        r = client.chat.completions.create(model="ada-lin:young", messages=msgs, temperature=0, max_tokens=12)
        text = r.choices[0].message.content
        assert "paris" in text.lower() and r.usage.prompt_tokens > 10 and 1 <= r.usage.completion_tokens <= 12
        stream = client.chat.completions.create(model="ada-lin:young", messages=msgs, temperature=0, max_tokens=12,
                                                stream=True)
        pieces = [c.choices[0].delta.content or "" for c in stream]
        assert "".join(pieces) == text and len([p for p in pieces if p]) > 1
        # Penalties reach llama.cpp: greedy decoding of a repetitive reply changes with them.
        rep = [{"role": "user", "content": "Say the word bridge ten times."}]
        plain = client.chat.completions.create(model="ada-lin:young", messages=rep, temperature=0, max_tokens=20)
        penal = client.chat.completions.create(model="ada-lin:young", messages=rep, temperature=0, max_tokens=20,
                                               frequency_penalty=2.0, presence_penalty=2.0,
                                               extra_body={"repeat_penalty": 1.5})
        assert penal.choices[0].message.content != plain.choices[0].message.content
        r = httpx.post(f"{url}/v1/chat/completions", content=b"[", headers={"Authorization": "Bearer secret"})
        assert r.status_code == 400


def test_serve_cli_help_and_missing_manifest(tmp_path):
    from conftest import run_cli

    r = run_cli("serve", "--help")
    assert r.returncode == 0 and "--api-key" in r.stdout and "127.0.0.1" in r.stdout
    r = run_cli("serve", str(tmp_path))
    assert r.returncode == 2 and "bundle has no manifest.json" in r.stderr and "Traceback" not in r.stderr
