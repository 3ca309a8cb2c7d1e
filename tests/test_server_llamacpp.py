"""The bundle's GGUF runs elsewhere: llama-cpp-python's own server (``python -m llama_cpp.server``)
answers chat completions from it with the chat template embedded in the GGUF, and the
``general.*`` metadata export writes (name, licence, base model) survive quantization and load.

The GGUF is made the way ``perskit export`` makes it: llama.cpp's converter with the bundle's
metadata override, then llama.cpp's quantizer.
"""

from __future__ import annotations

import pytest

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def bundle_gguf(tmp_path_factory, perskit_home):
    from kit.errors import KitError
    from kit.export import ggufops, modelcard
    from kit.export.converter import converter_dir
    from kit.models.resolve import materialize

    try:
        converter_dir()
    except KitError as exc:
        pytest.skip(f"llama.cpp converter not installed: {exc.message}")
    out = tmp_path_factory.mktemp("bundle")
    info = modelcard.base_model_info("smollm2-135m-instruct")
    f16 = out / "ada-lin-f16.gguf"
    ggufops.convert_hf(materialize("tiny-llama-spm"), f16, model_name="Ada Lin (perskit)",
                       metadata=modelcard.gguf_metadata(info, "Ada Lin (perskit)"))
    q8 = out / "ada-lin-Q8_0.gguf"
    ggufops.quantize(f16, q8, "Q8_0", n_threads=1)
    return q8


def test_bundle_gguf_metadata_survives_quantization(bundle_gguf):
    from kit.engine.llamacpp import gguf_kv
    from kit.export.ggufops import load_llama, metadata

    assert gguf_kv(bundle_gguf, "general.name") == "Ada Lin (perskit)"
    assert gguf_kv(bundle_gguf, "general.license") == "apache-2.0"
    assert gguf_kv(bundle_gguf, "general.base_model.count") == 1
    assert gguf_kv(bundle_gguf, "general.base_model.0.organization") == "HuggingFaceTB"
    assert gguf_kv(bundle_gguf, "general.base_model.0.repo_url").endswith("HuggingFaceTB/SmolLM2-135M-Instruct")
    meta = metadata(load_llama(bundle_gguf, n_ctx=128))  # llama.cpp still loads it
    assert meta["general.license"] == "apache-2.0" and "tokenizer.chat_template" in meta


@pytest.mark.slow
def test_llama_cpp_server_answers_with_the_embedded_template(bundle_gguf, tmp_path):
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python's [server] extras")
    from test_server import running_server

    args = ["-m", "llama_cpp.server", "--model", str(bundle_gguf), "--host", "127.0.0.1", "--n_ctx", "512",
            "--n_threads", "1", "--verbose", "True"]
    with open(tmp_path / "server.log", "w") as log, running_server(args, "/v1/models", log) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=60)
        msgs = [{"role": "system", "content": "You are Ada Lin."}, {"role": "user", "content": "Hello there."}]
        r = client.chat.completions.create(model="ada-lin", messages=msgs, max_tokens=8, temperature=0)
        assert r.choices[0].message.role == "assistant" and r.usage.completion_tokens >= 1
        chunks = list(client.chat.completions.create(model="ada-lin", messages=msgs, max_tokens=8, temperature=0,
                                                      stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    text = (tmp_path / "server.log").read_text(errors="replace")
    # The server formatted the chat with the GGUF's own jinja template, not a built-in format.
    assert "Using gguf chat template" in text and "<|im_start|>" in text
