"""OpenAI-compatible teacher over httpx: llama-server, vLLM, Ollama, LM Studio, OpenAI.

Bounded concurrency (a thread pool of ``concurrency`` workers sharing one connection
pool), retries with exponential backoff on 429/5xx/timeouts/connection errors (honouring
``Retry-After``), and structured output that degrades on its own: ``json_schema``
response_format → ``json_object`` (with the schema, which llama-cpp-python's server
honours) → prompt-only, with robust JSON extraction from whatever comes back.
"""

from __future__ import annotations

import os

from kit.teachers.base import BaseTeacher, Fatal, Transient

MODES = ("schema", "object", "none")


class OpenAITeacher(BaseTeacher):
    kind = "openai"

    def __init__(self, cfg, cache_dir):
        super().__init__(cache_dir)
        import httpx

        self.cfg = cfg
        self.retries = cfg.retries
        self.concurrency = cfg.concurrency
        self.mode = cfg.json_mode
        key = os.environ.get(cfg.api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=cfg.base_url.rstrip("/"), headers=headers,
                                  timeout=httpx.Timeout(cfg.timeout_s, connect=10.0),
                                  limits=httpx.Limits(max_connections=cfg.concurrency * 2))

    def identity(self) -> dict:
        # the mode is not part of the key: it changes how we ask, not what we want back
        return {"kind": "openai", "base_url": self.cfg.base_url, "model": self.cfg.model,
                "sampling": self.cfg.sampling.model_dump()}

    def _body(self, messages, schema, mode, attempt=0):
        s = self.cfg.sampling
        body = {"model": self.cfg.model, "messages": messages,
                "temperature": self.retry_temperature(s.temperature, attempt),
                "top_p": s.top_p, "max_tokens": s.max_tokens, "seed": s.seed + attempt}
        if mode == "schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "reply", "schema": schema, "strict": False}}
        elif mode == "object":
            body["response_format"] = {"type": "json_object", "schema": schema}
        return body

    def _call(self, messages, schema, attempt):
        import httpx

        while True:
            mode = self.mode
            try:
                r = self._http.post("/chat/completions", json=self._body(messages, schema, mode, attempt))
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise Transient(f"{type(exc).__name__} talking to {self.cfg.base_url}") from exc
            # only an error about response_format means "ask without it" (llama-cpp-python's
            # server even reports that validation error as HTTP 500); a 400 for a too-long
            # prompt must not silently switch structured output off
            rejected_format = (mode != "none" and r.status_code in (400, 422, 500)
                               and ("response_format" in r.text or "json_schema" in r.text))
            if rejected_format:
                # the server does not take this response_format: step down once, for good
                with self._lock:
                    if self.mode == mode:
                        self.mode = MODES[MODES.index(mode) + 1]
                        self.stats["format_fallbacks"] += 1
                continue
            if r.status_code == 429 or r.status_code >= 500:
                ra = r.headers.get("retry-after")
                try:
                    wait = float(ra) if ra else None
                except ValueError:
                    wait = None
                raise Transient(f"HTTP {r.status_code} from {self.cfg.base_url}", retry_after=wait)
            if r.status_code >= 400:
                raise Fatal(f"HTTP {r.status_code} from {self.cfg.base_url}: {r.text[:120]}")
            try:
                return r.json()["choices"][0]["message"]["content"] or ""
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise Transient(f"malformed response from {self.cfg.base_url}") from exc

    def close(self):
        self._http.close()
