"""The eval stage: every metric for every model variant, written to ``<run>/eval/``.

Variants: ``prompted`` (base model + persona system prompt), ``sft`` (base + sft/adapter),
``dpo`` (base + dpo/adapter), ``gguf`` (eval.gguf through llama.cpp) — whichever exist.
Resume granularity is one variant: a finished variant's results and answers are written
atomically to ``eval/parts/`` and reused by a rerun with the same inputs.
"""

from __future__ import annotations

import time
from pathlib import Path

from kit.engine.base import GenParams
from kit.errors import KitError
from kit.eval import ipip, metrics
from kit.eval.questions import Question, by_pattern, consistency_questions, distinct_questions, load_questions
from kit.rundir import atomic_write_json, hash_obj, hash_paths, read_jsonl, write_jsonl


class Inputs:
    """Everything the eval reads, gathered once (and hashed for the manifest)."""

    def __init__(self, loaded, lp, run):
        self.recipe = loaded.spec
        self.cfg = loaded.spec.eval
        if self.cfg.ipip_mode not in ("auto", "logprob", "generate"):
            raise KitError(f"unknown ipip_mode '{self.cfg.ipip_mode}'", where="recipe: eval.ipip_mode",
                           fix="use auto, logprob or generate")
        self.persona = lp.spec
        self.run = run
        self.test_path = run.path / "construct" / "test.jsonl"
        self.passages_path = run.path / "construct" / "passages.jsonl"
        self.questions: list[Question] = load_questions(self.persona, self.test_path)
        self.passages = [p for p in read_jsonl(self.passages_path) if p.get("kind") == "subjective"]
        self.contrasts = self._contrasts(loaded)
        self.adapters = {v: run.path / v / "adapter" for v in ("sft", "dpo")}
        self.gguf = loaded.resolve_path(self.cfg.gguf) if self.cfg.gguf else None

    def _contrasts(self, loaded) -> list[tuple[str, object]]:
        """(label, persona spec or None for a plain assistant) asked the distinctiveness questions."""
        from kit.spec.persona import load_persona

        paths = self.cfg.contrast_personas
        if paths is None:
            paths = list(self.recipe.dpo.contrast_personas)
        out = []
        for p in paths:
            other = load_persona(loaded.resolve_path(p)).spec
            if other.id != self.persona.id:
                out.append((other.id, other))
        if not out:  # without another persona, the generic assistant is the "other"
            out.append(("assistant", None))
        return out

    def variants(self) -> list[str]:
        out = []
        for v in self.cfg.variants:
            if v not in ("prompted", "sft", "dpo", "gguf"):
                raise KitError(f"unknown eval variant '{v}'", where="recipe: eval.variants",
                               fix="use prompted, sft, dpo and/or gguf")
            if v == "prompted":
                out.append(v)
            elif v in self.adapters and (self.adapters[v] / "adapter_config.json").is_file():
                out.append(v)
            elif v == "gguf" and self.gguf is not None:
                out.append(v)
        if self.gguf is not None and "gguf" not in out:
            out.append("gguf")
        return out

    def hash(self) -> str:
        train = self.test_path.parent / "train.jsonl"  # decides which gold questions are held out
        files = [p for p in (self.test_path, self.passages_path, train) if p.exists()]
        files += [a for a in self.adapters.values() if a.is_dir()]
        files += [self.gguf] if self.gguf and self.gguf.exists() else []
        return hash_obj({"eval": self.cfg.model_dump(mode="json"), "model": self.recipe.train.model,
                         "teacher": self.recipe.teacher.model_dump(mode="json"),
                         "persona": self.persona.model_dump(mode="json"), "files": hash_paths(files),
                         "style": self.recipe.construct.prompt_style()})

    def system(self, stage: str | None, variant: str, persona=None) -> str:
        """The prompted baseline gets the full persona text (the strongest prompt-only rival);
        a trained variant gets the prompt style it was trained with (construct.system_prompt)."""
        persona = persona or self.persona
        style = self.recipe.construct.prompt_style()
        if variant == "prompted":
            style = {**style, "brief": False}
        return persona.system_prompt(stage, **style)

    def contrast_system(self, other, variant: str) -> str:
        return "You are a helpful assistant." if other is None else self.system(None, variant, other)


def make_engine(name: str, inputs: Inputs, base: Path | None):
    if name == "gguf":
        from kit.engine.llamacpp import LlamaCppEngine

        return LlamaCppEngine(inputs.gguf, name="gguf", seed=inputs.cfg.seed)
    from kit.engine.hf import HFEngine

    adapter = inputs.adapters.get(name) if name != "prompted" else None
    return HFEngine(base, adapter, name=name)


class _Ctx:
    """What every metric of one variant needs: the engine, its prompts, the judge, the rows."""

    def __init__(self, engine, inputs: Inputs, judge, progress):
        self.engine, self.inputs, self.judge, self.progress = engine, inputs, judge, progress
        self.cfg, self.persona = inputs.cfg, inputs.persona
        self.greedy = GenParams(temperature=0.0, max_tokens=self.cfg.gen_max_tokens, seed=self.cfg.seed)
        self.rows: list[dict] = []
        self.own_answers: list[str] = []  # the persona's own greedy answers, for the style metric

    def system(self, stage: str | None) -> str:
        return self.inputs.system(stage, self.engine.name)

    def answer(self, convs: list[list[dict]], params=None) -> list[str]:
        return ipip.batched_complete(self.engine, convs, params or self.greedy, self.cfg.batch_size, self.progress)

    def ask(self, qs: list[Question]) -> list[str]:
        """Greedy answers to held-out questions, each under its own stage's system prompt."""
        return self.answer([_msgs(self.system(q.stage), q.text) for q in qs])


def _msgs(system: str, text: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def _big_five(c: _Ctx):
    if not c.cfg.big_five:
        return None
    items = ipip.subset(ipip.load_items(), c.cfg.ipip_items)
    admin = ipip.administer(c.engine, c.system(None), items, ipip.make_variants(c.cfg.ipip_variants, c.cfg.seed),
                            mode=c.cfg.ipip_mode, batch_size=c.cfg.batch_size, progress=c.progress)
    target = c.persona.big_five.scores() if c.persona.big_five else None
    bf = {"mode": admin["mode"], "n_items": admin["n_items"], "summary": admin["summary"],
          "variants": admin["variants"], "target": target}
    for kind in ("expected", "argmax"):
        means = {t: v["mean"] for t, v in admin["summary"][kind].items()}
        bf[f"error_{kind}"] = ipip.errors_to_target(means, target) if target else None
        bf[f"variant_errors_{kind}"] = ([ipip.errors_to_target(v[kind]["domains"], target)
                                         for v in admin["variants"]] if target else None)
    c.rows += [{"metric": "big_five", **r} for r in admin["items"]]
    return bf


def _induction(c: _Ctx):
    qs = by_pattern(c.inputs.questions, "anti_induction", limit=c.cfg.max_questions)
    texts = c.ask(qs)
    verdicts = []
    for q, a in zip(qs, texts):
        v = c.judge.induction(persona=c.persona, stage=c.persona.stage(q.stage), question=q.text, answer=a,
                              reference=q.reference, kind=q.induction)
        verdicts.append(v)
        c.rows.append({"metric": "induction", "qid": q.qid, "stage": q.stage, "question": q.text,
                       "induction": q.induction, "reference": q.reference, "answer": a, "verdict": v})
    c.own_answers += texts
    return metrics.induction_resistance(verdicts, c.cfg.seed)


def _knowledge(c: _Ctx):
    qs = [q for q in by_pattern(c.inputs.questions, "ordinary", limit=c.cfg.max_questions) if q.reference]
    texts = c.ask(qs)
    verdicts = []
    for q, a in zip(qs, texts):
        v = c.judge.knowledge(question=q.text, answer=a, reference=q.reference)
        verdicts.append(v)
        c.rows.append({"metric": "knowledge", "qid": q.qid, "stage": q.stage, "question": q.text,
                       "reference": q.reference, "answer": a, "verdict": v})
    c.own_answers += texts
    return metrics.knowledge(verdicts, c.cfg.seed)


def _consistency(c: _Ctx):
    from kit.eval.similarity import embed

    qs = consistency_questions(c.inputs.questions, c.cfg.max_questions)
    paras = [c.judge.paraphrases(q.text, c.cfg.paraphrases) for q in qs]
    flat = c.answer([_msgs(c.system(q.stage), p) for q, ps in zip(qs, paras) for p in ps])
    groups, verdicts, k = [], [], 0
    for q, ps in zip(qs, paras):
        group = flat[k:k + len(ps)]
        k += len(ps)
        groups.append(group)
        v = c.judge.consistency(question=q.text, answers=group)
        verdicts.append(v)
        c.rows.append({"metric": "consistency", "qid": q.qid, "stage": q.stage, "paraphrases": ps,
                       "answers": group, "verdict": v})
        c.own_answers.append(group[0])
    return metrics.consistency(groups, verdicts, embed, c.cfg.seed)


def _distinctiveness(c: _Ctx):
    """The same questions under every stage of the persona and every contrast persona."""
    from kit.eval.similarity import embed

    cfg = c.cfg
    qs = distinct_questions(c.inputs.questions, cfg.distinct_questions)
    labels = [(c.persona.id, s.id, c.system(s.id)) for s in c.persona.stages]
    labels += [(pid, "-", c.inputs.contrast_system(other, c.engine.name)) for pid, other in c.inputs.contrasts]
    part = [(q, lab) for q in qs for lab in labels]
    dist_rows = []
    for s in range(cfg.samples):  # one seed per sample index keeps the draws reproducible
        sampled = GenParams(temperature=cfg.temperature, max_tokens=cfg.gen_max_tokens, seed=cfg.seed + 1 + s)
        texts = c.answer([_msgs(lab[2], q.text) for q, lab in part], sampled)
        for (q, lab), a in zip(part, texts):
            dist_rows.append({"qid": q.qid, "persona": lab[0], "stage": lab[1], "text": a, "sample": s})
            c.rows.append({"metric": "distinctiveness", "qid": q.qid, "question": q.text, "persona": lab[0],
                           "stage": lab[1], "sample": s, "answer": a})
    return metrics.distinctiveness(dist_rows, embed, cfg.seed)


def _style(c: _Ctx):
    """The persona's own answers vs its own (subjective) writing."""
    from kit.eval.similarity import embed

    writing = [p["text"] for p in c.inputs.passages]
    source = "construct/passages.jsonl (subjective)"
    if not writing:
        writing = [g.a for g in c.persona.gold]
        source = "persona gold answers (no subjective passages)"
    return {**metrics.style([a for a in c.own_answers if a], writing, embed, c.cfg.seed), "reference": source}


# Order matters: style reads the answers the earlier metrics collected.
METRICS = (("big_five", _big_five), ("induction", _induction), ("knowledge", _knowledge),
           ("consistency", _consistency), ("distinctiveness", _distinctiveness), ("style", _style))


def evaluate_variant(engine, inputs: Inputs, judge, progress=None, log=None) -> tuple[dict, list[dict]]:
    """All metrics for one engine. Returns (results, answer rows with their judgements)."""
    c = _Ctx(engine, inputs, judge, progress)
    res: dict = {"engine": engine.name, "timings_s": {}}
    for name, fn in METRICS:
        t0 = time.perf_counter()
        out = fn(c)
        if out is not None:
            res[name] = out
        if name != "style":  # style reuses answers: nothing to time
            res["timings_s"][name] = round(time.perf_counter() - t0, 2)
            if log:
                log(f"{engine.name}: {name} done in {res['timings_s'][name]} s")
    return res, [{"variant": engine.name, **r} for r in c.rows]


def run_eval(loaded, lp, run, *, console=None) -> dict:
    """Evaluate every available variant and write results, answers, report and plots."""
    from kit.eval.judge import make_judge
    from kit.eval.report import write_outputs

    inputs = Inputs(loaded, lp, run)
    if not inputs.test_path.exists() and not inputs.questions:
        raise KitError("no held-out questions", where=str(inputs.test_path),
                       fix="run `perskit construct` first (it writes construct/test.jsonl)")
    h = inputs.hash()
    stage = run.stage("eval")
    out_dir = stage.path
    if stage.is_done(h) and (out_dir / "results.json").exists():
        import json

        return json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    judge = make_judge(inputs.cfg.judge, loaded.spec, run.path / "eval" / "cache")
    stage.begin(h)
    variants = inputs.variants()
    base = None
    if any(v != "gguf" for v in variants):
        from kit.models.resolve import materialize

        base = materialize(loaded.spec.train.model)
    results = {"persona": inputs.persona.id, "model": loaded.spec.train.model, "judge": judge.kind,
               "prompt_style": loaded.spec.construct.system_prompt,
               "inputs_hash": h, "variants": {}, "n_questions": len(inputs.questions),
               "skipped_variants": [v for v in inputs.cfg.variants if v not in variants]}
    all_rows: list[dict] = []
    parts = out_dir / "parts"
    for name in variants:
        part = parts / f"{name}.json"
        if part.exists():
            import json

            saved = json.loads(part.read_text(encoding="utf-8"))
            if saved.get("inputs_hash") == h:  # finished before an interruption: reuse
                results["variants"][name] = saved["results"]
                all_rows += read_jsonl(parts / f"{name}.answers.jsonl")
                continue
        t0 = time.perf_counter()
        engine = make_engine(name, inputs, base)
        try:
            with _progress(console, f"eval {name}") as tick:
                res, rows = evaluate_variant(engine, inputs, judge, progress=tick,
                                             log=console.print if console is not None else None)
        finally:
            engine.close()
        res["wall_s"] = round(time.perf_counter() - t0, 2)
        write_jsonl(parts / f"{name}.answers.jsonl", rows)
        atomic_write_json(part, {"inputs_hash": h, "results": res})
        results["variants"][name] = res
        all_rows += rows
    if getattr(judge, "failures", 0):
        results["judge_failures"] = judge.failures
    write_outputs(out_dir, results, all_rows, inputs.persona)
    from kit.rundir import peak_rss_mb

    stage.finish(counts={"variants": len(variants), "answers": len(all_rows)}, peak_rss_mb=peak_rss_mb())
    return results


class _progress:
    """A rich progress counter (prompts processed) for one variant."""

    def __init__(self, console, label: str):
        self.console, self.label = console, label

    def __enter__(self):
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.p = Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} prompts"),
                          TimeElapsedColumn(), console=self.console, transient=True)
        self.p.__enter__()
        self.task = self.p.add_task(self.label, total=None)
        return lambda n: self.p.advance(self.task, n)

    def __exit__(self, *exc):
        return self.p.__exit__(*exc)
