"""Untrusted-spec builders shared by the bad-input corpus and the spec fuzz suite."""

from __future__ import annotations


def alias_bomb(levels: int = 8, width: int = 9) -> str:
    """The issue's bomb: ``levels`` nested lists of ``width`` aliases each, under 1 KB."""
    text, prev = 'l0: &l0 ["lol"]\n', "l0"
    for n in range(1, levels + 1):
        text += f"l{n}: &l{n} [" + ", ".join([f"*{prev}"] * width) + "]\n"
        prev = f"l{n}"
    return text


def flow_bomb(levels: int = 8, width: int = 9) -> str:
    """The same bomb as one flow-style YAML value (for ``--set``)."""
    parts, prev = ["&l0 [lol]"], "l0"
    for n in range(1, levels + 1):
        parts.append(f"&l{n} [" + ",".join([f"*{prev}"] * width) + "]")
        prev = f"l{n}"
    return "[" + ", ".join(parts) + "]"
