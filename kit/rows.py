"""The rows that cross stages, with one schema each: how they are read and written.

- ``SftRow``: ``{"messages": [system?, user, assistant, ...], "meta": {...}}`` — what
  construct writes (train.jsonl, test.jsonl), SFT trains on and eval holds out.
- ``PreferencePair``: ``{"prompt": [messages], "chosen": [assistant], "rejected": [assistant],
  "meta": {...}}`` — TRL's conversational preference format, what DPO mining writes and
  every DPO backend reads.

Both are plain JSON lines on disk that TRL and mlx-lm read untouched; the readers here
check every line and name the first bad one (file and line) in a one-line error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from kit.errors import KitError
from kit.rundir import read_jsonl
from kit.spec.base import Strict


class Message(Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class SftRow(Strict):
    messages: list[Message] = Field(min_length=1)
    meta: dict = Field(default_factory=dict)


class PreferencePair(Strict):
    prompt: list[Message] = Field(min_length=1)
    chosen: list[Message] = Field(min_length=1)
    rejected: list[Message] = Field(min_length=1)
    meta: dict = Field(default_factory=dict)


def _sft_problem(row) -> tuple[str, str] | None:
    """(problem, fix) for a row that is not an SFT row, else None."""
    msgs = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(msgs, list) or not msgs:
        return "has no 'messages' list", 'each line must be {"messages": [{"role": ..., "content": ...}, ...]}'
    for m in msgs:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                or not isinstance(m.get("content"), str):
            return f"has a malformed message {str(m)[:60]!r}", "roles are system/user/assistant and content is a string"
    if not any(m["role"] == "assistant" for m in msgs):
        return "has no assistant turn to learn from", "add the persona's answer as an assistant message"
    return None


def read_sft_rows(path: Path, what: str = "train.jsonl") -> list[dict]:
    """Every line of an SFT file, checked (the row dicts, as TRL and mlx-lm take them)."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{what} not found", where=path, fix="run `perskit construct <recipe>` first")
    rows = read_jsonl(path)
    for i, row in enumerate(rows, 1):
        problem = _sft_problem(row)
        if problem:
            raise KitError(f"line {i} {problem[0]}", where=path, fix=problem[1])
    if not rows:
        raise KitError(f"{what} is empty", where=path, fix="rebuild the dataset with `perskit construct`")
    return rows


def read_pairs(path: Path) -> list[dict]:
    """Every preference pair of a pairs file, as ``{"prompt", "chosen", "rejected"}`` dicts."""
    rows = read_jsonl(path)
    out = []
    for i, r in enumerate(rows, 1):
        if not all(isinstance(r.get(k), list) and r.get(k) for k in ("prompt", "chosen", "rejected")):
            raise KitError(f"line {i} is not a conversational preference pair", where=path,
                           fix='each line needs "prompt", "chosen" and "rejected" message lists')
        out.append({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]})
    if not out:
        raise KitError("no preference pairs were mined", where=path,
                       fix="enable more dpo.negatives or add dpo.contrast_personas")
    return out


def sft_row(messages: list[dict], **meta) -> dict:
    """A checked SFT row for writing."""
    return SftRow(messages=messages, meta=meta).model_dump(mode="json")


def preference_pair(prompt: list[dict], chosen: str, rejected: str, **meta) -> dict:
    """A checked preference pair for writing (``chosen``/``rejected`` are assistant replies)."""
    return PreferencePair(prompt=prompt, chosen=[{"role": "assistant", "content": chosen}],
                          rejected=[{"role": "assistant", "content": rejected}], meta=meta).model_dump(mode="json")
