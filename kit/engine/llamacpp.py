"""In-process llama.cpp chat engine (GGUF + optional LoRA GGUF) behind ``ChatEngine``.

The chat template comes from the GGUF metadata (``tokenizer.chat_template``) or the
bundle, and is rendered here in jinja's *immutable sandbox*: a GGUF or bundle is
untrusted input, and llama-cpp-python's own formatter renders templates in a plain
environment. Generation goes through ``Llama.create_completion`` on the token ids we
render, so the engine adds no per-token work beyond llama-cpp-python's own loop
(bench/chat_decode.py measures that).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path
from typing import Iterator

from kit.engine.base import GenParams, Message
from kit.errors import KitError, require

GGUF_MAGIC = b"GGUF"


class ChatTemplate:
    """A chat template compiled in an immutable sandboxed jinja environment."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "", where: str = "chat template"):
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        self.source = source
        self.where = where
        self.bos_token = bos_token
        self.eos_token = eos_token
        # Same options, extension, filter and globals transformers gives chat templates, so a
        # template renders here exactly as it did in training (export's Modelfile check too).
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, autoescape=False,
                                            extensions=["jinja2.ext.loopcontrols"])

        def raise_exception(message):
            raise TemplateError(message)

        def strftime_now(fmt):
            return time.strftime(fmt)

        env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False, indent=indent)
        env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
        try:
            self._tpl = env.from_string(source)
        except TemplateError as exc:
            raise KitError(f"chat template does not compile: {exc}", where=where,
                           fix="fix the jinja template or pass --template with a working one") from None

    def render(self, messages: list[Message], add_generation_prompt: bool = True) -> str:
        from jinja2 import TemplateError
        from jinja2.sandbox import SecurityError

        try:
            return self._tpl.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                    bos_token=self.bos_token, eos_token=self.eos_token)
        except SecurityError as exc:
            raise KitError(f"chat template tried an unsafe operation: {exc}", where=self.where,
                           fix="use a plain chat template (the sandbox blocks attribute access and mutation)") from None
        except (TemplateError, TypeError, KeyError, ValueError, IndexError) as exc:
            raise KitError(f"chat template failed to render: {exc}", where=self.where,
                           fix="check the template or the message roles it expects") from None


def check_gguf(path: str | Path, what: str = "GGUF") -> Path:
    """Fail with one line if ``path`` is not a readable GGUF file (before llama.cpp sees it)."""
    p = Path(path)
    if not p.is_file():
        raise KitError(f"{what} file not found", where=p, fix="check the path (export a bundle with `perskit export`)")
    with open(p, "rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        raise KitError(f"not a GGUF file (header {head!r})", where=p,
                       fix="point at a .gguf written by `perskit export` or llama.cpp")
    return p


_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def gguf_kv(path: str | Path, key: str):
    """One metadata value from a GGUF header (scalars and strings), or None. Reads the header
    sequentially and stops at ``key``, so a LoRA file is checked without loading a model."""
    import struct

    def read(f, fmt):
        size = struct.calcsize(fmt)
        data = f.read(size)
        if len(data) < size:
            raise EOFError
        return struct.unpack(fmt, data)[0]

    def read_str(f):
        return f.read(read(f, "<Q")).decode("utf-8", "replace")

    def value(f, vtype):
        if vtype == 8:
            return read_str(f)
        if vtype == 9:
            etype, n = read(f, "<I"), read(f, "<Q")
            for _ in range(n):
                value(f, etype)
            return None
        return read(f, _SCALAR[vtype])

    try:
        with open(path, "rb") as f:
            if f.read(4) != GGUF_MAGIC:
                return None
            read(f, "<I")
            read(f, "<Q")
            for _ in range(read(f, "<Q")):
                k = read_str(f)
                v = value(f, read(f, "<I"))
                if k == key:
                    return v
    except (EOFError, KeyError, OSError, struct.error, MemoryError):
        return None
    return None


class LlamaCppEngine:
    """A GGUF model loaded in-process. Not thread-safe: callers serialize (the server
    holds a lock; the TUI runs one worker at a time)."""

    def __init__(self, gguf: str | Path, *, lora_path: str | Path | None = None, n_ctx: int = 2048,
                 chat_template: str | None = None, stop: list[str] | None = None, name: str | None = None,
                 n_threads: int | None = None, seed: int = -1, verbose: bool = False, n_gpu_layers: int = 0):
        llama_cpp = require("llama_cpp", "llamacpp", "the llama.cpp chat engine")
        self.path = check_gguf(gguf)
        if lora_path is not None:
            lora_path = check_gguf(lora_path, "LoRA GGUF")
            # llama.cpp accepts any GGUF here and silently applies nothing: check it is an adapter.
            if gguf_kv(lora_path, "general.type") != "adapter":
                raise KitError("not a LoRA adapter GGUF (general.type is not 'adapter')", where=lora_path,
                               fix="convert the adapter with `perskit export` (convert_lora_to_gguf.py)")
        self.name = name or self.path.stem
        threads = n_threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or None
        kwargs = dict(model_path=str(self.path), n_ctx=n_ctx, verbose=verbose, logits_all=False,
                      n_gpu_layers=n_gpu_layers)  # 0 = CPU; -1 = every layer on the GPU
        if threads:
            kwargs.update(n_threads=threads, n_threads_batch=threads)
        if lora_path is not None:
            kwargs["lora_path"] = str(lora_path)
        # llama.cpp's default seed is the same in every process: -1 must mean a fresh one, or every
        # `chat --prompt` and every chat's first reply is the same sample
        kwargs["seed"] = seed if seed >= 0 else random.SystemRandom().randrange(2**31)
        try:
            self.llm = llama_cpp.Llama(**kwargs)
        except (ValueError, RuntimeError) as exc:
            raise KitError(f"llama.cpp could not load the model: {exc}", where=lora_path or self.path,
                           fix="re-export the GGUF; a corrupt or truncated file cannot load") from None
        # llama.cpp may round the context up, but llama-cpp-python's token buffers keep the
        # requested size: the smaller one is the real limit.
        self.n_ctx = min(n_ctx, self.llm.n_ctx())
        model = self.llm._model  # token texts for bos/eos in the template
        self.bos_token = model.token_get_text(self.llm.token_bos()) if self.llm.token_bos() >= 0 else ""
        self.eos_token = model.token_get_text(self.llm.token_eos()) if self.llm.token_eos() >= 0 else ""
        self._add_bos = bool(model.add_bos_token()) and self.llm.token_bos() >= 0
        source = chat_template or self.llm.metadata.get("tokenizer.chat_template")
        if not source:
            raise KitError("the GGUF has no chat template", where=self.path,
                           fix="pass --template FILE (a jinja chat template) or use an exported bundle")
        self.template = ChatTemplate(source, bos_token=self.bos_token, eos_token=self.eos_token,
                                     where=f"{self.path.name}: chat template")
        self.stop = list(stop or [])
        self.last_usage: dict = {}

    # -- prompt ----------------------------------------------------------------------------
    def render(self, messages: list[Message], add_generation_prompt: bool = True) -> str:
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        return self.template.render(msgs, add_generation_prompt=add_generation_prompt)

    def tokenize_prompt(self, text: str) -> list[int]:
        # The template may already spell the BOS token; add it only when the model wants one.
        add_bos = self._add_bos and not (self.bos_token and text.startswith(self.bos_token))
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def count_tokens(self, messages: list[Message]) -> int:
        return len(self.tokenize_prompt(self.render(messages)))

    # -- generation ------------------------------------------------------------------------
    def stream(self, messages: list[Message], params: GenParams) -> Iterator[str]:
        tokens = self.tokenize_prompt(self.render(messages))
        if len(tokens) >= self.n_ctx:
            raise KitError(f"prompt is {len(tokens)} tokens but the context holds {self.n_ctx}",
                           where=self.name, fix="trim the conversation or raise --n-ctx")
        max_tokens = min(params.max_tokens, self.n_ctx - len(tokens))
        kwargs = dict(prompt=tokens, max_tokens=max_tokens, temperature=params.temperature,
                      top_p=params.top_p, min_p=params.min_p, top_k=params.top_k,
                      repeat_penalty=params.repeat_penalty, frequency_penalty=params.frequency_penalty,
                      presence_penalty=params.presence_penalty, stop=self.stop + list(params.stop), stream=True)
        if params.seed >= 0:
            kwargs["seed"] = params.seed
        t0 = time.perf_counter()
        usage = {"prompt_tokens": len(tokens), "completion_tokens": 0, "ttft_s": None, "decode_s": 0.0,
                 "finish_reason": None}
        self.last_usage = usage
        t_first = None
        gen = self.llm.create_completion(**kwargs)
        try:
            for chunk in gen:
                choice = chunk["choices"][0]
                text = choice.get("text") or ""
                if choice.get("finish_reason"):
                    usage["finish_reason"] = choice["finish_reason"]
                if not text:
                    continue
                now = time.perf_counter()
                if t_first is None:
                    t_first = now
                    usage["ttft_s"] = now - t0
                usage["completion_tokens"] += 1  # one streamed chunk per sampled token
                usage["decode_s"] = now - t_first
                yield text
        finally:
            gen.close()
            if usage["finish_reason"] is None:
                usage["finish_reason"] = "stopped"

    def complete(self, messages: list[Message], params: GenParams) -> str:
        return "".join(self.stream(messages, params))

    def choice_logprobs(self, messages: list[Message], choices: list[str], prefix: str = "") -> list[float]:
        """Log-probs of each choice's first token after the rendered prompt + ``prefix``,
        from the last-position logits of one prompt evaluation (no logits_all needed)."""
        import numpy as np
        import llama_cpp

        tokens = self.tokenize_prompt(self.render(messages) + prefix)
        if len(tokens) >= self.n_ctx:
            raise KitError(f"prompt is {len(tokens)} tokens but the context holds {self.n_ctx}",
                           where=self.name, fix="use a shorter prompt or raise n_ctx")
        # Reuse the KV cache for the shared prefix; always re-evaluate at least the last token
        # so the context's last-position logits belong to this prompt.
        llm = self.llm
        cached = llm.input_ids[: llm.n_tokens].tolist()
        keep = 0
        for a, b in zip(cached, tokens[:-1]):
            if a != b:
                break
            keep += 1
        llm.n_tokens = keep
        llm.eval(tokens[keep:])
        ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float64)
        m = logits.max()
        logz = m + math.log(np.exp(logits - m).sum())
        out = []
        for c in choices:
            ids = llm.tokenize(c.encode("utf-8"), add_bos=False, special=False)
            if not ids:
                raise KitError(f"choice {c!r} has no tokens", where=self.name, fix="use non-empty choices")
            out.append(float(logits[ids[0]] - logz))
        return out

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
