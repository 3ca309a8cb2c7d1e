"""Fidelity by likelihood: forward passes only, no judge, no generation.

- ``voice``: per-token negative log-likelihood of held-out own-word spans (whole passages
  construct never trained on), as the answer to their question under their stage's prompt;
- ``stage_by_likelihood``: for each span, which stage's prompt gives it the highest
  likelihood; accuracy against chance (1 / stages);
- ``persona_by_likelihood``: the span under this persona against the contrast persona (its
  own trained model where the recipe has one, else its prompt on this model): 1 when this
  persona's is the likelier;
- ``knowledge_by_likelihood``: multiple-choice items from the materials (kit/eval/mc.py),
  memorised and extractable forms apart; chance 0.25.

Each records per-item values in ``c.paired`` so variants are compared on the same items.
Engines that cannot score an answer (llama.cpp here) skip them.
"""

from __future__ import annotations

from kit.eval import mc
from kit.eval.questions import own_passage
from kit.eval.similarity import bootstrap_ci
from kit.rundir import read_jsonl


def can_score(engine) -> bool:
    return hasattr(engine, "answer_nll_batch")


def nll(c, engine, items: list[tuple[str, str, str]]) -> list[tuple[float, int]]:
    """(summed NLL, tokens) per (system, question, answer), batched by system prompt so the
    shared prefix runs once."""
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it[0], []).append(i)
    size = max(1, min(8, c.cfg.batch_size))  # full-sequence logits: keep a batch's memory small
    # a batch never mixes system prompts, so each prompt's prefix is run once and reused
    batches = [idx[k:k + size] for idx in groups.values() for k in range(0, len(idx), size)]
    out: list = [None] * len(items)
    for idx in batches:
        batch = [([{"role": "system", "content": items[i][0]}, {"role": "user", "content": items[i][1]}],
                  items[i][2]) for i in idx]
        for i, r in zip(idx, engine.answer_nll_batch(batch)):
            out[i] = r
        if c.progress:
            c.progress(len(idx))
    return out


def voice_items(c) -> tuple[list, str]:
    """Held-out own-word spans: whole held-out passages; without them (own_words off), own-word
    rows held out by question."""
    bt = [q for q in c.inputs.questions if q.pattern == "backtranslation" and q.reference]
    whole = [q for q in bt if q.meta.get("heldout")]
    items = whole or bt
    return items[:c.cfg.voice_items], ("whole held-out passages" if whole else "held-out questions")


UNTRAINED = ("prompted", "base_brief", "placebo", "prompted_rag")


def _contrast(c):
    """(id, system prompt, engine) of the first contrast persona, or None. A trained variant
    meets the contrast persona's own trained model where the recipe has one; an untrained one
    meets its prompt on the same base model, so both sides are equally untrained."""
    for pid, other in c.inputs.contrasts:
        if other is not None:
            own = c.contrast_engines.get(pid) if c.engine.name not in UNTRAINED else None
            return pid, c.inputs.contrast_system(other, c.engine.name), own or c.engine
    return None


def _span_scores(c) -> dict:
    """Per item: NLL per token under every stage's prompt and under the contrast persona (once)."""
    if "span_scores" in c.cache:
        return c.cache["span_scores"]
    qs, source = voice_items(c)
    stages = [s.id for s in c.persona.stages]
    flat = [(c.system(st, q.text, own_passage(q)), q.text, q.reference) for q in qs for st in stages]
    scored = nll(c, c.engine, flat)
    per = {}
    for i, q in enumerate(qs):
        row = scored[i * len(stages):(i + 1) * len(stages)]
        per[q.qid] = {"stage": q.stage, "by_stage": {st: s / max(n, 1) for st, (s, n) in zip(stages, row)},
                      "tokens": row[0][1]}
    con = _contrast(c)
    if con is not None:
        pid, system, engine = con
        for q, (s, n) in zip(qs, nll(c, engine, [(system, q.text, q.reference) for q in qs])):
            per[q.qid]["contrast"] = s / max(n, 1)
    c.cache["span_scores"] = out = {"items": per, "source": source, "contrast": con[0] if con else None}
    return out


def voice(c):
    if not can_score(c.engine):
        return None
    sc = _span_scores(c)
    vals = {qid: r["by_stage"][r["stage"]] for qid, r in sc["items"].items()}
    c.paired["voice_nll"] = vals
    return {"nll_per_token": bootstrap_ci(list(vals.values()), seed=c.seed), "source": sc["source"],
            "tokens": sum(r["tokens"] for r in sc["items"].values())}


def stage_by_likelihood(c):
    if not can_score(c.engine) or len(c.persona.stages) < 2:
        return None
    sc = _span_scores(c)
    hits = {qid: float(min(r["by_stage"], key=r["by_stage"].get) == r["stage"]) for qid, r in sc["items"].items()}
    c.paired["stage_by_likelihood"] = hits
    return {"accuracy": bootstrap_ci(list(hits.values()), seed=c.seed), "chance": 1 / len(c.persona.stages)}


def persona_by_likelihood(c):
    if not can_score(c.engine):
        return None
    sc = _span_scores(c)
    if sc["contrast"] is None:
        return None
    items = sc["items"].values()
    hits = {qid: float(r["by_stage"][r["stage"]] < r["contrast"]) for qid, r in sc["items"].items()}
    c.paired["persona_by_likelihood"] = hits
    margin = [r["contrast"] - r["by_stage"][r["stage"]] for r in items]
    return {"accuracy": bootstrap_ci(list(hits.values()), seed=c.seed), "chance": 0.5, "contrast": sc["contrast"],
            "margin_nats": bootstrap_ci(margin, seed=c.seed)}


def mc_items(c) -> list[mc.Item]:
    passages = read_jsonl(c.inputs.passages_path)
    trained = [r["messages"][-1]["content"] for r in read_jsonl(c.inputs.test_path.with_name("train.jsonl"))]
    return mc.build_items(passages, c.persona.name, c.cfg.knowledge_items, c.cfg.seed, trained)


def knowledge_by_likelihood(c):
    if not can_score(c.engine) or not c.cfg.knowledge_items:
        return None
    items = mc_items(c)
    if not items:
        return None
    out = {"items": len(items), "chance": 0.25, "trained_sentences": sum(it.trained for it in items)}
    for form in ("memorised", "extractable"):
        flat, spans = [], []
        for it in items:
            q, answers = getattr(it, form)()
            spans.append((len(flat), len(answers)))
            flat += [(c.system(it.stage, q, {it.passage_id}), q, a) for a in answers]
        scored = nll(c, c.engine, flat)
        hits = {}
        for it, (k, n) in zip(items, spans):
            hits[it.iid] = float(mc.pick([-s for s, _ in scored[k:k + n]]) == it.correct)
        c.paired[f"knowledge_mc_{form}"] = hits
        out[form] = bootstrap_ci(list(hits.values()), seed=c.seed)
        out[f"{form}_by_kind"] = {kind: sum(hits[it.iid] for it in items if it.kind == kind) /
                                  max(1, sum(it.kind == kind for it in items)) for kind in ("year", "number", "name")}
    return out


METRICS = (("voice", voice), ("stage_by_likelihood", stage_by_likelihood),
           ("persona_by_likelihood", persona_by_likelihood), ("knowledge_by_likelihood", knowledge_by_likelihood))
