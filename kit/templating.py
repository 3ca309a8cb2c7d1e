"""Our prompt templates (``kit/prompts/*.j2``): one loader and renderer for every stage.

Construct renders teacher prompts, the judge and eval render judge, paraphrase and IPIP
prompts, all from here. These templates ship with perskit and are trusted; a GGUF's chat
template is not, and is rendered in a sandbox instead (``kit/engine/llamacpp.py``).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


def prompts_dir() -> Path:
    return Path(__file__).resolve().parent / "prompts"


@lru_cache(maxsize=None)
def _env(trim: bool):
    import jinja2

    # trim=True: block tags take their line with them, so a template reads like the prompt it
    # makes (judge/eval). Construct's templates were written without it and keep their exact
    # whitespace, so the teacher's cached answers stay valid.
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(prompts_dir())), undefined=jinja2.StrictUndefined,
                              trim_blocks=trim, lstrip_blocks=trim, keep_trailing_newline=False, autoescape=False)


def template_hash(name: str) -> str:
    """The template file's content hash: it goes into cache keys and dataset cards, so editing
    a prompt invalidates exactly the calls it affects."""
    return hashlib.sha256((prompts_dir() / name).read_bytes()).hexdigest()[:12]


def render(name: str, /, *, trim: bool = True, **values) -> str:
    """The template ``name`` rendered with ``values`` (every variable must be given)."""
    return _env(trim).get_template(name).render(**values).strip()
