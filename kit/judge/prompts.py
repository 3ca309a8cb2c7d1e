"""Render the prompt templates under ``kit/prompts/`` (judge and eval templates alike)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def _template(name: str):
    import jinja2

    src = resources.files("kit").joinpath("prompts", name).read_text(encoding="utf-8")
    # trimmed blocks: the templates read like the prompt they make.
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
                             autoescape=False)
    return env.from_string(src)


def render(name: str, **values) -> str:
    return _template(name).render(**values).strip()
