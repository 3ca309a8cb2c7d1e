"""Render teacher prompts from ``kit/prompts/*.j2`` into chat messages.

A template holds the teacher's system text, a line ``=== user ===``, then the user
text. The template's content hash goes into the teacher cache key and the dataset
card, so editing a prompt invalidates exactly the calls it affects.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

SPLIT = "=== user ==="


def prompts_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "prompts"


@lru_cache(maxsize=None)
def _env():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(prompts_dir())),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                              trim_blocks=False, autoescape=False)


def template_hash(name: str) -> str:
    return hashlib.sha256((prompts_dir() / name).read_bytes()).hexdigest()[:12]


def render(template: str, /, **variables) -> tuple[list[dict], str]:
    """(messages, template id ``name@hash``) for one teacher call."""
    text = _env().get_template(template).render(**variables)
    system, _, user = text.partition(SPLIT)
    messages = [{"role": "system", "content": system.strip()}, {"role": "user", "content": user.strip()}]
    return messages, f"{template}@{template_hash(template)}"
