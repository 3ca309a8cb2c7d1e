"""Teacher clients: the models that annotate data (construct) and judge answers (eval).

Interface (shared by construct and eval):

    from kit.teachers import make_teacher
    teacher = make_teacher(recipe.teacher, cache_dir=run.path / "construct" / "cache")
    obj = teacher.complete_json(messages, schema, tag="judge_consistency")   # -> dict, cached
    objs = teacher.complete_json_many([{"messages": m, "schema": s, "tag": t}, ...])
    teacher.stats      # {"calls", "cache_hits", "retries", "invalid_json", "failures", ...}
    teacher.close()

``complete_json`` returns a dict that has the schema's required keys, or raises
``TeacherError`` after bounded retries (the caller counts it; nothing is dropped
silently). ``complete_json_many`` runs requests with the teacher's own concurrency
(``openai``: a bounded pool; ``llamacpp``: one at a time) and puts a TeacherError in
the slot of each failed item. Every successful call is cached on disk (see base.py).

Kinds: ``llamacpp`` (in-process GGUF, grammar-constrained), ``openai`` (any
OpenAI-compatible server over httpx), ``scripted`` (unit tests only).
"""

from __future__ import annotations

from pathlib import Path

from kit.teachers.base import BaseTeacher, TeacherError

__all__ = ["make_teacher", "BaseTeacher", "TeacherError"]


def make_teacher(cfg, cache_dir: str | Path | None) -> BaseTeacher:
    """Build the teacher named by ``cfg.kind`` (imports only that backend)."""
    if cfg.kind == "llamacpp":
        from kit.teachers.llamacpp import LlamaCppTeacher

        return LlamaCppTeacher(cfg, cache_dir)
    if cfg.kind == "openai":
        from kit.teachers.openai_http import OpenAITeacher

        return OpenAITeacher(cfg, cache_dir)
    if cfg.kind == "scripted":
        from kit.teachers.scripted import ScriptedTeacher

        return ScriptedTeacher(cfg, cache_dir)
    raise ValueError(f"unknown teacher kind {cfg.kind!r}")
