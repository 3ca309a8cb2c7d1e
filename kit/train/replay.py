"""Replay rows: the base model's own answers to general requests, mixed into SFT.

Tuning a small model on a few hundred rows of one persona pulls it away from what it could
already do. Self-distillation replay keeps a share of the training signal on the base
model's *own* behaviour: before SFT the base model answers bundled general requests
(``kit/data/general_prompts.txt``; greedy, under its own default system prompt) and those
rows are trained on beside the persona rows. They need no internet and no other model, and
they teach nothing new, so what they protect is measured by the general-text perplexity
check of the DPO stage (base, SFT, DPO) rather than by the persona metrics.
"""

from __future__ import annotations

import random
import re
from importlib import resources
from pathlib import Path

from kit.rows import read_sft_rows, sft_row
from kit.rundir import hash_obj, read_jsonl, write_jsonl

_END = re.compile(r"[.!?](?:[\"')\]]*)(?=\s|$)")


def general_prompts() -> list[str]:
    text = resources.files("kit.data").joinpath("general_prompts.txt").read_text(encoding="utf-8")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def pick_prompts(n: int, seed: int) -> list[str]:
    prompts = general_prompts()
    random.Random(seed).shuffle(prompts)
    return prompts[:n]


def whole_sentences(text: str) -> str:
    """The reply up to its last finished sentence: a reply cut at the token limit would
    otherwise teach the model to stop mid-sentence (the end-of-turn token is trained on)."""
    text = text.strip()
    ends = [m.end() for m in _END.finditer(text)]
    return text[:ends[-1]].strip() if ends else ""


def usable(reply: str) -> bool:
    """At least a short sentence and not a loop (a greedy 135M model repeats itself)."""
    words = reply.split()
    return len(words) >= 5 and len(set(words)) / len(words) >= 0.4


def build_replay(path: Path, n: int, seed: int, max_tokens: int, key: str, generate) -> dict:
    """Write ``path`` (SFT rows) unless it already holds rows for the same ``key`` (base
    model, prompts, settings); ``generate(conversations) -> replies`` is the base model.
    Returns counts for the manifest."""
    prompts = pick_prompts(n, seed)
    key = hash_obj({"key": key, "prompts": prompts, "max_tokens": max_tokens})
    old = read_jsonl(path)  # [] when missing
    if old and all(r.get("meta", {}).get("replay_key") == key for r in old):
        return {"asked": len(prompts), "kept": len(old), "reused": True}
    replies = generate([[{"role": "user", "content": p}] for p in prompts]) if prompts else []
    rows = []
    for p, r in zip(prompts, replies):
        answer = whole_sentences(r or "")
        if usable(answer):
            rows.append(sft_row([{"role": "user", "content": p}, {"role": "assistant", "content": answer}],
                                source="replay", pattern="replay", replay_key=key))
    write_jsonl(path, rows)
    return {"asked": len(prompts), "kept": len(rows), "reused": False}


def mixed_train_file(train: Path, replay: Path, out: Path) -> Path:
    """The persona rows followed by the replay rows, as one SFT file for the backend (the
    trainers shuffle, so order does not matter)."""
    rows = read_sft_rows(train) + read_jsonl(replay)  # replay rows were checked when written
    write_jsonl(out, rows)
    return out
