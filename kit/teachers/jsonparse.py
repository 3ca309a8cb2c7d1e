"""Robust JSON extraction from model text.

Servers without structured output (and small models even with it) wrap JSON in prose or
code fences, or stop mid-object at ``max_tokens``. We take the first balanced object,
and as a last resort close a truncated one (an unterminated string, open brackets), so
a reply cut at the token limit still yields the fields it finished.
"""

from __future__ import annotations

import json
import re

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


class JSONExtractError(ValueError):
    """The text holds no JSON object we can recover."""


def _scan(body: str):
    """Walk JSON text yielding (index, char) for every character outside string literals.

    One place knows string/escape rules; both the balanced-object finder and the
    truncation repair use it. Ends with the final (in_string, escape_pending) state.
    """
    in_str, esc = False, False
    for i, c in enumerate(body):
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
            continue
        if c == '"':
            in_str = True
            continue
        yield i, c
    return in_str, esc


def _scan_state(body: str) -> tuple[list[tuple[int, str]], bool, bool]:
    gen = _scan(body)
    out = []
    while True:
        try:
            out.append(next(gen))
        except StopIteration as stop:
            in_str, esc = stop.value
            return out, in_str, esc


def _balanced_object(text: str) -> str | None:
    start = text.find("{")
    if start == -1:
        return None
    depth = 0
    for i, c in _scan(text[start:]):
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return text[start:start + i + 1]
    return None  # the first object never closes: leave it to _close_truncated


def _close_truncated(text: str) -> str | None:
    """Close an object cut off mid-way: finish the open string, drop a dangling key, close brackets."""
    start = text.find("{")
    if start == -1:
        return None
    body = text[start:]
    stack = []
    chars, in_str, esc = _scan_state(body)
    for _, c in chars:
        if c in "{[":
            stack.append("}" if c == "{" else "]")
        elif c in "}]" and stack:
            stack.pop()
    if esc:
        body = body[:-1]
    if in_str:
        body += '"'
    body = body.rstrip()
    # A key with no value yet ("key": or "key") cannot be completed: cut it away.
    body = re.sub(r',\s*"[^"]*"\s*:?\s*$', "", body)
    body = re.sub(r'[{,]\s*"[^"]*"\s*:\s*$', lambda m: m.group(0)[0] if m.group(0)[0] == "{" else "", body)
    body = body.rstrip().rstrip(",")
    return body + "".join(reversed(stack))


def _as_dict(text: str | None) -> dict | None:
    """``text`` parsed as a JSON object, or None when it is not one."""
    if not text:
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def extract_json(text: str) -> tuple[dict, bool]:
    """Return (object, repaired). Raises JSONExtractError when nothing usable is found."""
    text = (text or "").strip()
    candidates = [text]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    for cand in candidates:
        obj = _as_dict(cand)
        if obj is None:
            obj = _as_dict(_balanced_object(cand))
        if obj is not None:
            return obj, False
    obj = _as_dict(_close_truncated(text))
    if obj:  # an empty repaired object carries nothing the caller asked for
        return obj, True
    raise JSONExtractError(f"no JSON object in reply: {text[:80]!r}")


def check_schema(obj: dict, schema: dict) -> str | None:
    """Minimal structural check (required keys, basic types). Returns a problem or None."""
    props = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in obj:
            return f"missing key '{key}'"
    types = {"string": str, "boolean": bool, "integer": int, "number": (int, float), "array": list,
             "object": dict}
    for key, sub in props.items():
        if key in obj and "type" in sub and sub["type"] in types:
            if not isinstance(obj[key], types[sub["type"]]):
                return f"key '{key}' is not {sub['type']}"
            if sub["type"] == "string" and "enum" in sub and obj[key] not in sub["enum"]:
                return f"key '{key}' not in {sub['enum']}"
    return None
