"""Teacher prompts as chat messages: a template holds the teacher's system text, a line
``=== user ===``, then the user text (rendering itself is ``kit.templating``)."""

from __future__ import annotations

from kit.templating import prompts_dir, template_hash  # noqa: F401  (construct's pipeline lists and hashes them)

SPLIT = "=== user ==="


def render(template: str, /, **variables) -> tuple[list[dict], str]:
    """(messages, template id ``name@hash``) for one teacher call."""
    from kit.templating import render as render_text

    text = render_text(template, trim=False, **variables)
    system, _, user = text.partition(SPLIT)
    messages = [{"role": "system", "content": system.strip()}, {"role": "user", "content": user.strip()}]
    return messages, f"{template}@{template_hash(template)}"
