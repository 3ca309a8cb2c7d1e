"""One function per metric over a shared per-variant context, and the METRICS table.

Every metric records, besides its summary, the per-item values it was computed from in
``c.paired[name]`` ({item id: value}), so trained and prompted can be compared on the same
items (kit/eval/paired.py). All answers are greedy: the only randomness is in the statistics.
"""

from __future__ import annotations

from kit.engine.base import GenParams
from kit.eval import bigfive, ipip, likelihood, metrics
from kit.eval.paraphrase import paraphrases, wrappers
from kit.eval.questions import (Question, by_pattern, consistency_questions, distinct_questions, knowledge_questions,
                                own_passage)


class Ctx:
    """What every metric of one variant needs: the engine, its prompts, the judge, the rows."""

    def __init__(self, engine, inputs, judge, progress, contrast_engines=None):
        self.engine, self.inputs, self.judge, self.progress = engine, inputs, judge, progress
        self.cfg, self.persona = inputs.cfg, inputs.persona
        # The placebo is the prompted variant under another seed: everything seeded moves.
        self.seed = self.cfg.seed + (1 if engine.name == "placebo" else 0)
        self.greedy = GenParams(temperature=0.0, max_tokens=self.cfg.gen_max_tokens, seed=self.seed)
        self.contrast_engines = contrast_engines or {}
        self.rows: list[dict] = []
        self.paired: dict[str, dict] = {}
        self.own_answers: list[str] = []  # the persona's own greedy answers, for the style metric
        self.cache: dict = {}  # work shared by several metrics (likelihood: span scores)

    def system(self, stage: str | None, query: str | None = None, exclude=frozenset()) -> str:
        """The variant's system prompt; a *_rag variant adds the top passages for ``query``
        (bounded by the stage, never those in ``exclude``: the item's own passage)."""
        base = self.inputs.system(stage, self.engine.name)
        if not self.engine.name.endswith("_rag") or not query:
            return base
        from kit.retrieval import with_passages

        bound = self.persona.stage_index(stage or self.persona.stages[-1].id)
        return with_passages(base, self.inputs.retriever().top_k(query, self.cfg.rag_k, bound, exclude))

    def answer(self, convs: list[list[dict]], engine=None) -> list[str]:
        return ipip.batched_complete(engine or self.engine, convs, self.greedy, self.cfg.batch_size, self.progress)

    def ask(self, qs: list[Question]) -> list[str]:
        """Greedy answers to held-out questions, each under its own stage's system prompt."""
        return self.answer([msgs(self.system(q.stage, q.text, own_passage(q)), q.text) for q in qs])


def msgs(system: str, text: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def _administer(c: Ctx, system: str, items):
    if c.cfg.big_five_measure == "statement":
        from kit.eval.statements import administer_statements

        return administer_statements(c.engine, system, items, batch_size=c.cfg.batch_size, progress=c.progress)
    return ipip.administer(c.engine, system, items, ipip.make_variants(c.cfg.ipip_variants, c.seed),
                           mode=c.cfg.ipip_mode, batch_size=c.cfg.batch_size, progress=c.progress)


def big_five(c: Ctx):
    if not c.cfg.big_five:
        return None
    items = ipip.subset(ipip.load_items(), c.cfg.ipip_items)
    admin = _administer(c, c.system(None), items)
    target = c.persona.big_five.scores() if c.persona.big_five else None
    bf = {"mode": admin["mode"], "n_items": admin["n_items"], "summary": admin["summary"],
          "variants": admin["variants"], "target": target, "label_mass": admin["label_mass"],
          "position_probs": admin["position_probs"], "acquiescence": admin.get("acquiescence")}
    for kind in ("expected", "argmax"):
        means = {t: v["mean"] for t, v in admin["summary"][kind].items()}
        bf[f"error_{kind}"] = ipip.errors_to_target(means, target) if target else None
    if target:
        bf["nulls"] = bigfive.null_baselines(items, ipip.make_variants(len(admin["variants"]), c.seed), target,
                                             admin["position_probs"], seed=c.seed,
                                             acquiescence=admin.get("acquiescence"))
        c.paired["big_five_item_error"] = bigfive.item_errors(admin, target)
    other = c.inputs.validity_persona()
    if target and other is not None and c.engine.name in ("prompted", "placebo"):
        # The instrument's validity is a property of the base model: checked on the prompted one.
        admin_b = _administer(c, c.inputs.system(None, "prompted", other), items)
        bf["validity"] = {"other": other.id, **bigfive.known_groups(
            admin, admin_b, target, other.big_five.scores(), min_gap=c.cfg.validity_gap, seed=c.seed)}
    c.rows += [{"metric": "big_five", **r} for r in admin["items"]]
    return bf


def _judged(c: Ctx, metric: str, qs: list[Question], verdict_fn) -> list[dict]:
    texts = c.ask(qs)
    verdicts = []
    for q, a in zip(qs, texts):
        v = verdict_fn(q, a).as_dict()
        verdicts.append(v)
        c.rows.append({"metric": metric, "qid": q.qid, "stage": q.stage, "question": q.text,
                       "induction": q.induction, "reference": q.reference, "answer": a, "verdict": v})
        if v["pass"] is not None:
            c.paired.setdefault(metric, {})[q.qid] = 1.0 if v["pass"] else 0.0
    c.own_answers += texts
    return verdicts


def induction(c: Ctx):
    qs = by_pattern(c.inputs.questions, "anti_induction", limit=c.cfg.max_questions)
    verdicts = _judged(c, "induction", qs, lambda q, a: c.judge.induction(
        persona=c.persona, stage=c.persona.stage(q.stage), question=q.text, answer=a, reference=q.reference,
        kind=q.induction))
    return metrics.induction_resistance(verdicts, c.seed)


def knowledge(c: Ctx):
    qs = knowledge_questions(c.inputs.questions, c.cfg.max_questions, c.cfg.knowledge_references)
    verdicts = _judged(c, "knowledge", qs, lambda q, a: c.judge.knowledge(question=q.text, answer=a,
                                                                           reference=q.reference))
    return metrics.knowledge(verdicts, c.seed)


def consistency(c: Ctx):
    from kit.text import embed

    qs = consistency_questions(c.inputs.questions, c.cfg.max_questions)
    paras = [paraphrases(c.judge, q.text, c.cfg.paraphrases) for q in qs]
    flat = c.answer([msgs(c.system(q.stage, p, own_passage(q)), p) for q, ps in zip(qs, paras) for p in ps])
    groups, verdicts, k = [], [], 0
    for q, ps in zip(qs, paras):
        group = flat[k:k + len(ps)]
        k += len(ps)
        groups.append(group)
        v = c.judge.consistency(question=q.text, answers=group).as_dict()
        verdicts.append(v)
        c.rows.append({"metric": "consistency", "qid": q.qid, "stage": q.stage, "paraphrases": ps,
                       "answers": group, "verdict": v})
        if v["pass"] is not None:
            c.paired.setdefault("consistency_judge", {})[q.qid] = 1.0 if v["pass"] else 0.0
        c.own_answers.append(group[0])
    out = metrics.consistency(groups, verdicts, embed, c.seed)
    c.paired["consistency_embedding"] = {q.qid: s for q, g, s in zip(qs, groups, _per_group(out, groups))}
    return out


def _per_group(out: dict, groups: list) -> list:
    """Align per-question cosines with the groups (groups with one answer have none)."""
    it = iter(out["per_question"])
    return [next(it) if len(g) >= 2 else None for g in groups]


def distinctiveness(c: Ctx):
    """The same questions, in several wordings, under every stage and every contrast persona;
    a contrast persona with its own trained adapter answers with that model."""
    from kit.text import embed

    qs = distinct_questions(c.inputs.questions, c.cfg.distinct_questions)
    labels = [(c.persona.id, s.id, c.system(s.id), None) for s in c.persona.stages]
    labels += [(pid, "-", c.inputs.contrast_system(other, c.engine.name), c.contrast_engines.get(pid))
               for pid, other in c.inputs.contrasts]
    dist_rows = []
    for engine in {id(lab[3]): lab[3] for lab in labels}.values():  # one batch per answering model
        part = [(q, w, text, lab) for q in qs for w, text in enumerate(wrappers(q.text, c.cfg.samples))
                for lab in labels if lab[3] is engine]
        texts = c.answer([msgs(lab[2], text) for _, _, text, lab in part], engine)
        for (q, w, text, lab), a in zip(part, texts):
            dist_rows.append({"qid": q.qid, "persona": lab[0], "stage": lab[1], "wording": w, "text": a})
            c.rows.append({"metric": "distinctiveness", "qid": q.qid, "question": text, "persona": lab[0],
                           "stage": lab[1], "wording": w, "answer": a,
                           "model": "own adapter" if lab[3] is not None else c.engine.name})
    out = metrics.distinctiveness(dist_rows, embed, c.seed)
    for gap in ("persona_gap", "stage_gap"):
        if gap in out:
            c.paired[gap] = out[gap].pop("per_question")
    return out


def style(c: Ctx):
    """The persona's own answers vs its own (subjective) writing."""
    from kit.text import embed

    writing = [p["text"] for p in c.inputs.passages]
    source = "construct/passages.jsonl (subjective)"
    if not writing:
        writing = [g.a for g in c.persona.gold]
        source = "persona gold answers (no subjective passages)"
    # Every answer, empty ones too: the per-answer values pair by position across variants.
    out = metrics.style(c.own_answers, writing, embed, c.seed)
    c.paired["style_cosine"] = {str(i): v for i, v in enumerate(out.pop("per_answer", []))}
    return {**out, "reference": source}


# Order matters: style reads the answers the earlier metrics collected.
METRICS = (("big_five", big_five), ("induction", induction), ("knowledge", knowledge),
           ("consistency", consistency), ("distinctiveness", distinctiveness), ("style", style),
           *likelihood.METRICS)
