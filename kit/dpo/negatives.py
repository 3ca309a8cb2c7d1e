"""Same-prompt (on-policy) negatives: every rejected answer is generated to the chosen one's own prompt.

PersLLM's similarity-mined negatives (another persona's or another stage's answer to the
nearest question) mostly answer a *different* question (quickstart: mean MiniLM similarity
to the prompt 0.24 and 0.12 against 0.39 for the chosen answers), so they teach "stay on
topic" rather than "be this person at this time". Here each rejected answer is a reply to
the very same user message by a model that is wrong in one named way:

- ``base_brief``: the base model under the brief persona prompt: in character by
  instruction only, the gap tuning must close;
- ``sft_other_stage``: the SFT model told it is another life stage of the same persona;
- ``sft_contrast``: the SFT model told it is the contrast persona;
- ``knows_later``: the SFT model told it is the *last* stage, answering an earlier stage's
  anachronism probe; kept when the judge fails it (it takes the later topic up).

``induction`` (the SFT model's own answer that gave in) lives in mine.py with the judge.
Every generator call is one batch, so a backend loads its model once per source.
"""

from __future__ import annotations

import zlib
from typing import Callable


def with_system(prompt: list[dict], system: str) -> list[dict]:
    """The same conversation under another system prompt."""
    return [{"role": "system", "content": system}] + [m for m in prompt if m["role"] != "system"]


def pick(options: list, key: str):
    """A stable choice for ``key`` (crc32, so reruns and processes agree)."""
    return options[zlib.crc32(key.encode()) % len(options)]


def _kept(todo: list[tuple], replies: list[str], make_pair, differs, source: str) -> list[dict]:
    """Pairs for replies that are non-empty and differ from the chosen answer."""
    out = []
    for (it, meta), r in zip(todo, replies):
        if (r or "").strip() and differs(it.answer, r):
            out.append(make_pair(it, r, source, **meta))
    return out


def mine_base_brief(items, generate_base: Callable, persona, make_pair, differs) -> list[dict]:
    todo = [(it, {}) for it in items if it.stage]
    prompts = [with_system(it.prompt, persona.system_prompt(it.stage, brief=True)) for it, _ in todo]
    return _kept(todo, generate_base(prompts) if prompts else [], make_pair, differs, "base_brief")


def mine_sft_other_stage(items, generate_sft: Callable, persona, style: dict, make_pair, differs) -> list[dict]:
    stages = [s.id for s in persona.stages]
    if len(stages) < 2:
        return []
    todo = [(it, {"from_stage": pick([s for s in stages if s != it.stage], it.question)})
            for it in items if it.stage in stages]
    prompts = [with_system(it.prompt, persona.system_prompt(m["from_stage"], **style)) for it, m in todo]
    return _kept(todo, generate_sft(prompts) if prompts else [], make_pair, differs, "sft_other_stage")


def mine_sft_contrast(items, generate_sft: Callable, systems: dict[str, list[str]], make_pair,
                      differs) -> list[dict]:
    """``systems``: each contrast persona's system prompts (one per stage, in the training style)."""
    owners = sorted(o for o, s in systems.items() if s)
    if not owners:
        return []
    todo, prompts = [], []
    for it in items:
        owner = pick(owners, it.question)
        todo.append((it, {"from_persona": owner}))
        prompts.append(with_system(it.prompt, pick(systems[owner], owner + it.question)))
    return _kept(todo, generate_sft(prompts) if prompts else [], make_pair, differs, "sft_contrast")


def mine_knows_later(items, generate_sft: Callable, persona, style: dict, judge, make_pair,
                     differs) -> tuple[list[dict], dict]:
    last = persona.stages[-1].id
    probes = [it for it in items if it.pattern == "anti_induction" and it.kind == "anachronism"
              and it.stage not in (None, last)]
    notes = {"knows_later_checked": len(probes), "knows_later_kept": 0}
    if not probes:
        return [], notes
    replies = generate_sft([with_system(it.prompt, persona.system_prompt(last, **style)) for it in probes])
    todo = []
    for it, r in zip(probes, replies):
        # A reply that still says "I have never heard of it" is no negative; one the judge fails, or
        # one that takes the named later topic up without denying it, knows what this stage cannot.
        v = judge.induction(question=it.question, answer=r, kind="anachronism", reference=it.answer,
                            persona=persona, stage=it.stage)
        why = v.reason if v.gave_in else _takes_up(it.later_topic, r)
        todo.append((it, {"from_stage": last, "judge_reason": why}) if why else None)
    kept = [(t, r) for t, r in zip(todo, replies) if t is not None]
    pairs = _kept([t for t, _ in kept], [r for _, r in kept], make_pair, differs, "knows_later")
    notes["knows_later_kept"] = len(pairs)
    return pairs, notes


def _takes_up(topic: str | None, reply: str) -> str | None:
    """Why ``reply`` knows the later ``topic`` (its content words, and no plain correction), else None."""
    from kit.judge.rules import content_words, plainly_corrects

    words = set(content_words(topic or ""))
    used = words & set(content_words(reply))
    if words and len(used) * 2 >= len(words) and not plainly_corrects(reply):
        return f"takes up the later topic '{topic}' without denying it"
    return None


def prompt_similarity(pairs: list[dict], embed) -> dict:
    """Mean embedding similarity of rejected (and chosen) answers to their own prompt's question,
    per negative source: a rejected answer that addresses its prompt scores near the chosen one."""
    import numpy as np

    if not pairs:
        return {}
    q = [next(m["content"] for m in reversed(p["prompt"]) if m["role"] == "user") for p in pairs]
    eq = np.asarray(embed(q))
    er = np.asarray(embed([p["rejected"][0]["content"] for p in pairs]))
    ec = np.asarray(embed([p["chosen"][0]["content"] for p in pairs]))
    rej, cho = (eq * er).sum(axis=1), (eq * ec).sum(axis=1)
    out: dict[str, dict] = {}
    for p, r, c in zip(pairs, rej, cho):
        d = out.setdefault(p["meta"]["source"], {"n": 0, "rejected": [], "chosen": []})
        d["n"] += 1
        d["rejected"].append(float(r))
        d["chosen"].append(float(c))
    return {s: {"n": d["n"], "rejected_similarity": round(sum(d["rejected"]) / d["n"], 3),
                "chosen_similarity": round(sum(d["chosen"]) / d["n"], 3)} for s, d in sorted(out.items())}


def holdout_split(pairs: list[dict], share: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held-out) by a hash of the prompt's question, so all pairs of one question sit on
    one side and the held-out reward accuracy is measured on questions DPO never saw."""
    if share <= 0 or not pairs:
        return list(pairs), []

    def held(p) -> bool:
        q = next(m["content"] for m in reversed(p["prompt"]) if m["role"] == "user")
        return zlib.crc32(f"{seed}|{q.strip().lower()}".encode()) % 10_000 < share * 10_000

    train, out = [p for p in pairs if not held(p)], [p for p in pairs if held(p)]
    if not out and len(pairs) > 1:
        # Few questions: hold out the last question's pairs rather than report nothing.
        q = pairs[-1]["prompt"][-1]["content"]
        train, out = [p for p in pairs if p["prompt"][-1]["content"] != q], \
                     [p for p in pairs if p["prompt"][-1]["content"] == q]
    return (train, out) if train else (list(pairs), [])
