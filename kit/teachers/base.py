"""The teacher base class: JSON completions with an on-disk cache, retries and fault counts.

Subclasses implement ``_call(messages, schema, attempt) -> str`` (raw model text) and
``identity()`` (what, besides the prompt, determines the output). Everything else —
the cache, parsing, bounded retries with backoff, counting — lives here once.

Cache: one JSON file per call under ``cache_dir/<k[:2]>/<k>.json``, written atomically,
where ``k = sha256(tag, template, messages, schema, identity)``. The messages are the
rendered template with its variables, so the key covers template + variables + model +
sampling. A rerun makes zero calls; a killed run leaves at most a temp file, never a
half-written entry. Failed calls are not cached, so a rerun retries them.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

from kit.rundir import atomic_write_json
from kit.teachers.jsonparse import JSONExtractError, check_schema, extract_json


class TeacherError(Exception):
    """One call failed after its bounded retries (counted by the caller, never silent)."""

    def __init__(self, message: str, *, reason: str = "failed"):
        super().__init__(message)
        self.reason = reason


class Transient(Exception):
    """A retryable fault: 429, 5xx, timeout, connection refused."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Fatal(Exception):
    """A fault retrying cannot fix for this call (bad request, prompt too long)."""


STAT_KEYS = ("calls", "cache_hits", "retries", "transient_errors", "invalid_json", "repaired_json",
             "failures", "format_fallbacks")


class BaseTeacher:
    """Common base; see the module docstring. Thread-safe for ``complete_json_many``."""

    kind = "base"
    concurrency = 1
    retries = 2
    backoff_s = 0.5
    backoff_max_s = 20.0

    def __init__(self, cache_dir: str | Path | None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.stats: dict[str, int] = {k: 0 for k in STAT_KEYS}
        self.consecutive_failures = 0
        self.last_error = ""
        self._lock = threading.Lock()

    # -- subclass hooks ---------------------------------------------------------------------
    def identity(self) -> dict:
        raise NotImplementedError

    def _call(self, messages: list[dict], schema: dict, attempt: int) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def retry_temperature(temperature: float, attempt: int) -> float:
        """A re-ask must be able to differ: greedy decoding would repeat the same bad reply."""
        return temperature if attempt == 0 else min(1.2, max(temperature, 0.5) + 0.2 * (attempt - 1))

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] = self.stats.get(key, 0) + n

    def cache_key(self, messages: list[dict], schema: dict, tag: str, template: str | None = None) -> str:
        blob = json.dumps({"tag": tag, "template": template, "messages": messages, "schema": schema,
                           "teacher": self.identity()}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _cache_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / key[:2] / f"{key}.json"

    def cached(self, key: str) -> dict | None:
        p = self._cache_path(key)
        if p is None or not p.exists():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))["result"]
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError, OSError):
            return None  # a damaged entry is just a miss; the call is redone

    # -- public API -------------------------------------------------------------------------
    def complete_json(self, messages: list[dict], schema: dict, *, tag: str,
                      template: str | None = None) -> dict:
        """A JSON object matching ``schema`` (cached). Raises TeacherError after the retries."""
        key = self.cache_key(messages, schema, tag, template)
        hit = self.cached(key)
        if hit is not None:
            self._count("cache_hits")
            return hit
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._count("retries")
            try:
                self._count("calls")
                raw = self._call(messages, schema, attempt)
            except Transient as exc:
                self._count("transient_errors")
                problem = str(exc)
                wait = exc.retry_after if exc.retry_after is not None else self.backoff_s * 2 ** attempt
                if attempt < self.retries:
                    time.sleep(min(self.backoff_max_s, wait) * (1 + 0.25 * random.random()))
                continue
            except Fatal as exc:
                problem = str(exc)
                break
            try:
                obj, repaired = extract_json(raw)
                bad = check_schema(obj, schema)
            except JSONExtractError as exc:
                bad, repaired = str(exc), False
            if bad:
                self._count("invalid_json")
                problem = f"invalid JSON: {bad}"
                continue
            if repaired:
                self._count("repaired_json")
            p = self._cache_path(key)
            if p is not None:
                atomic_write_json(p, {"tag": tag, "template": template, "teacher": self.identity(),
                                      "result": obj, "raw": raw})
            with self._lock:
                self.consecutive_failures = 0
            return obj
        with self._lock:
            self.stats["failures"] += 1
            self.consecutive_failures += 1
            self.last_error = problem
        raise TeacherError(f"{self.kind} teacher failed after {self.retries + 1} tries: {problem}",
                           reason="invalid_json" if problem.startswith("invalid JSON") else "call_failed")

    def complete_json_many(self, requests: list[dict], *,
                           on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
        """Run many ``complete_json(**request)`` with up to ``self.concurrency`` in flight.

        Returns results in request order; a failed item's slot holds its TeacherError.
        ``on_result(index, result_or_error)`` is called as each finishes (in this thread).
        """
        out: list[Any] = [None] * len(requests)
        if self.concurrency <= 1 or len(requests) <= 1:
            for i, req in enumerate(requests):
                try:
                    out[i] = self.complete_json(**req)
                except TeacherError as exc:
                    out[i] = exc
                if on_result:
                    on_result(i, out[i])
            return out
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futs = {pool.submit(self.complete_json, **req): i for i, req in enumerate(requests)}
            for fut in as_completed(futs):
                i = futs[fut]
                try:
                    out[i] = fut.result()
                except TeacherError as exc:
                    out[i] = exc
                if on_result:
                    on_result(i, out[i])
        return out
