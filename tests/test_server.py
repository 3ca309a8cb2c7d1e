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

import httpx
import pytest

from chat_helpers import STAGES, SlowScripted, make_bundle, smollm2_gguf
from kit.engine.bundle import StageInfo
from kit.server.app import ServedPersona, create_app
from kit.server.runner import serve_in_thread
from kit.server.settings import ServerSettings

openai = pytest.importorskip("openai")


def echo_system(messages):
    return f"[{messages[0]['content'][:24]}] you said: {messages[-1]['content']}"


@pytest.fixture
def scripted_server():
    engine = SlowScripted(echo_system, delay=0)
    persona = ServedPersona("ada-lin", "Ada Lin", [StageInfo(**s) for s in STAGES], "young", engine)
    with serve_in_thread(create_app([persona], ServerSettings(api_key="k"))) as url:
        yield url, engine


def test_models_and_stage_routing(scripted_server):
    url, engine = scripted_server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=20)
    models = client.models.list()
    assert [m.id for m in models.data] == ["ada-lin"]
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


def test_streaming_matches_non_streaming(scripted_server):
    url, _ = scripted_server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=20)
    msgs = [{"role": "user", "content": "tell me about the bridge"}]
    full = client.chat.completions.create(model="ada-lin", messages=msgs).choices[0].message.content
    chunks = list(client.chat.completions.create(model="ada-lin", messages=msgs, stream=True))
    assert len(chunks) > 3 and chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == full


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
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=20)
    with pytest.raises(openai.NotFoundError, match="available: \\['ada-lin'\\]"):
        client.chat.completions.create(model="bo", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="unknown stage 'middle'"):
        client.chat.completions.create(model="ada-lin:middle", messages=[{"role": "user", "content": "x"}])
    bad_key = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0, timeout=20)
    with pytest.raises(openai.AuthenticationError):
        bad_key.models.list()
    # The server is still up after all of that.
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_live_perskit_serve_with_real_gguf(tmp_path):
    bundle = make_bundle(tmp_path / "ada", smollm2_gguf(), quant="Q4_1")
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "kit", "serve", str(bundle), "--port", str(port),
                             "--api-key", "secret", "--n-ctx", "1024", "--max-tokens", "24"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "perskit serve did not come up"
            time.sleep(0.2)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="secret", max_retries=0, timeout=60)
        assert client.models.list().data[0].id == "ada-lin"
        msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
        r = client.chat.completions.create(model="ada-lin:young", messages=msgs, temperature=0, max_tokens=12)
        text = r.choices[0].message.content
        assert "paris" in text.lower() and r.usage.prompt_tokens > 10 and 1 <= r.usage.completion_tokens <= 12
        stream = client.chat.completions.create(model="ada-lin:young", messages=msgs, temperature=0, max_tokens=12,
                                                stream=True)
        pieces = [c.choices[0].delta.content or "" for c in stream]
        assert "".join(pieces) == text and len([p for p in pieces if p]) > 1
        r = httpx.post(f"{url}/v1/chat/completions", content=b"[", headers={"Authorization": "Bearer secret"})
        assert r.status_code == 400
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serve_cli_help_and_missing_manifest(tmp_path):
    from conftest import run_cli

    r = run_cli("serve", "--help")
    assert r.returncode == 0 and "--api-key" in r.stdout and "127.0.0.1" in r.stdout
    r = run_cli("serve", str(tmp_path))
    assert r.returncode == 2 and "bundle has no manifest.json" in r.stderr and "Traceback" not in r.stderr
