"""Held-out split (by question, stratified by pattern and stage), SFT rows and the card."""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict


def _rank(key: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}|{key}".encode()).hexdigest()


def norm_q(q: str) -> str:
    return re.sub(r"\W+", " ", q.lower()).strip()


def holdout_count(n: int, fraction: float) -> int:
    """How many of ``n`` items a stratum holds out: round(n * fraction), at least one when the
    stratum has two or more and fraction > 0."""
    k = round(n * fraction)
    return 1 if fraction > 0 and k == 0 and n >= 2 else k


def stratified_split(items: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Split by question: items sharing a normalised question stay on one side.

    Within each (pattern, stage) stratum, round(n * fraction) questions go to test
    (at least one when the stratum has two or more and fraction > 0).
    """
    strata: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for it in items:
        strata[(it["pattern"], it["stage"])][norm_q(it["question"])].append(it)
    test_q: set[tuple] = set()
    for key, groups in strata.items():
        qs = sorted(groups, key=lambda q: _rank(q, seed))
        test_q.update((key, q) for q in qs[:holdout_count(len(qs), fraction)])
    train, test = [], []
    for it in items:
        side = test if ((it["pattern"], it["stage"]), norm_q(it["question"])) in test_q else train
        side.append(it)
    return train, test


def split_gold(persona, fraction: float, seed: int) -> tuple[list, list]:
    """Gold examples as (train, held-out); held-out ones never become few-shot demos."""
    items = [{"pattern": g.type, "stage": g.stage or persona.stages[-1].id, "question": g.q, "gold": g}
             for g in persona.gold]
    tr, te = stratified_split(items, fraction, seed)
    return [i["gold"] for i in tr], [i["gold"] for i in te]


def to_row(persona, rec: dict, *, style: dict, train_on_cot: bool) -> dict:
    """One chat row; ``style`` is ``ConstructConfig.prompt_style()`` (stage token, brief prompt)."""
    target = rec["response"].strip()
    if train_on_cot and rec.get("analysis"):
        target = f"<think>{rec['analysis'].strip()}</think>\n{target}"
    meta = {k: rec.get(k) for k in ("id", "pattern", "subtype", "pressure", "stage", "kind", "passage_id", "heldout",
                                    "question_source", "source", "knowledge_ids", "style_ids", "later_topic", "domain", "relevance")}
    if rec.get("analysis"):
        meta["analysis"] = rec["analysis"]
    from kit.rows import sft_row

    return sft_row([{"role": "system", "content": persona.system_prompt(rec["stage"], **style)},
                    {"role": "user", "content": rec["question"].strip()},
                    {"role": "assistant", "content": target}], **meta)


def probe_row(persona, rec: dict, *, style: dict) -> dict:
    """A held-out question without a reference answer (its teacher answer failed a gate):
    system + user turns only, for eval metrics that need no reference."""
    meta = {k: rec.get(k) for k in ("id", "pattern", "subtype", "pressure", "stage", "kind", "question_source",
                                    "later_topic", "domain")}
    return {"messages": [{"role": "system", "content": persona.system_prompt(rec["stage"], **style)},
                         {"role": "user", "content": rec["question"].strip()}],
            "meta": {**meta, "source": "probe"}}


def gold_record(persona, g) -> dict:
    stage = g.stage or persona.stages[-1].id
    return {"id": hashlib.sha256(f"gold|{g.q}".encode()).hexdigest()[:16], "pattern": g.type,
            "subtype": g.induction, "pressure": None, "stage": stage, "kind": None, "passage_id": None,
            "question_source": "gold", "source": "gold", "question": g.q, "response": g.a}


def card(persona, *, train: list[dict], test: list[dict], drops: Counter, stats: dict, teacher: dict,
         templates: dict, fallbacks: Counter, retriever: str, gates: Counter | None = None) -> str:
    def table(rows: list[dict], key) -> str:
        c = Counter(key(r["meta"]) for r in rows)
        return "\n".join(f"| {k} | {v} |" for k, v in sorted(c.items(), key=lambda kv: str(kv[0]))) or "| - | 0 |"

    both = train + test
    lines = [f"# Dataset card: {persona.name} ({persona.id})", "",
             f"Built by `perskit construct` (PersLLM-style annotation). Train rows: {len(train)}; "
             f"held-out test rows: {len(test)} (split by question, stratified by pattern and stage).", "",
             "Format: one JSON object per line, `{\"messages\": [system, user, assistant], \"meta\": {...}}` — "
             "read as-is by TRL's SFTTrainer (`datasets.load_dataset('json')`) and mlx-lm's chat dataset.", "",
             "## Rows per pattern", "| pattern | rows |", "| --- | --- |", table(both, lambda m: m["pattern"]), "",
             "## Rows per stage", "| stage | rows |", "| --- | --- |", table(both, lambda m: m["stage"]), "",
             "## Rows per source kind", "| kind | rows |", "| --- | --- |",
             table(both, lambda m: m.get("kind") or m.get("source") or "none"), "",
             "## Anti-induction types", "| type | rows |", "| --- | --- |",
             table([r for r in both if r["meta"]["pattern"] == "anti_induction"], lambda m: m.get("subtype")), "",
             "## Dropped records by reason", "| reason | dropped |", "| --- | --- |",
             "\n".join(f"| {k} | {v} |" for k, v in sorted(drops.items())) or "| none | 0 |", "",
             "## Quality gates (every candidate answer rejected, by gate; best-of-n rescues)",
             "| gate | rejected |", "| --- | --- |",
             "\n".join(f"| {k} | {v} |" for k, v in sorted((gates or {}).items())) or "| none | 0 |", "",
             "## Template questions used instead of the teacher's (counted, by reason)",
             "| reason | count |", "| --- | --- |",
             "\n".join(f"| {k} | {v} |" for k, v in sorted(fallbacks.items())) or "| none | 0 |", "",
             "## Teacher", "```", *[f"{k}: {v}" for k, v in teacher.items()], "```",
             f"Calls this run: {stats}", f"Retriever: {retriever}", "",
             "## Prompt templates", *[f"- `{t}`" for t in sorted(templates)], ""]
    return "\n".join(lines)
