"""Teacher configs: a tagged union on ``teacher.kind``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kit.spec.base import Strict


class Sampling(Strict):
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature for annotation.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int = Field(384, ge=1, description="Max new tokens per teacher call.")
    seed: int = Field(0, description="Sampling seed (part of the cache key).")


class LlamaCppTeacher(Strict):
    kind: Literal["llamacpp"] = "llamacpp"
    model: str = Field("smollm2-135m-instruct",
                       description="A GGUF path, or an embedded alias: smollm2-135m-instruct.")
    n_ctx: int = Field(4096, description="Context window for the teacher.")
    n_threads: int | None = Field(None, description="CPU threads (default: all cores).")
    n_gpu_layers: int = Field(0, ge=-1, description="Model layers offloaded to the GPU: 0 = CPU only, -1 = all. "
                              "Needs llama-cpp-python built with CUDA or Metal (README: GPU offload); "
                              "a CPU-only build ignores it.")
    grammar: bool = Field(True, description="Constrain output to the JSON schema with a llama.cpp grammar.")
    repeat_penalty: float = Field(1.15, ge=1, le=2, description="llama.cpp repetition penalty; small teachers loop without it.")
    sampling: Sampling = Field(default_factory=Sampling)
    retries: int = Field(2, ge=0, description="Re-asks when the output does not parse.")


class OpenAITeacher(Strict):
    kind: Literal["openai"] = "openai"
    base_url: str = Field("http://127.0.0.1:8080/v1", description="Any OpenAI-compatible server.")
    model: str = Field("default", description="Model name the server knows.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Env var holding the key (empty is fine locally).")
    concurrency: int = Field(4, ge=1, le=256, description="Parallel requests (bounded pool).")
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout.")
    retries: int = Field(4, ge=0, description="Retries on 429/5xx/timeouts/bad JSON, with backoff.")
    json_mode: Literal["schema", "object", "none"] = Field(
        "schema", description="Structured output: json_schema response_format, json_object, or prompt-only.")
    sampling: Sampling = Field(default_factory=Sampling)


class ScriptedTeacher(Strict):
    """Unit tests only: answers come from a deterministic script, never from a model."""

    kind: Literal["scripted"] = "scripted"
    seed: int = Field(0, description="Seed mixed into the scripted replies.")
    fail_rate: float = Field(0.0, ge=0, le=1, description="Share of calls that return junk (fault tests).")
    delay_s: float = Field(0.0, ge=0, description="Sleep per call, so tests can kill a run mid-way.")


TeacherConfig = LlamaCppTeacher | OpenAITeacher | ScriptedTeacher
