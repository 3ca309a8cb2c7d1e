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


def evaluate_variant(engine, inputs: Inputs, judge, progress=None, log=None) -> tuple[dict, list[dict]]:
    """All metrics for one engine. Returns (results, answer rows with their judgements)."""
    from kit.eval.similarity import embed

    cfg, persona = inputs.cfg, inputs.persona
    system = lambda stage: inputs.system(stage, engine.name)  # noqa: E731
    greedy = GenParams(temperature=0.0, max_tokens=cfg.gen_max_tokens, seed=cfg.seed)
    rows: list[dict] = []
    res: dict = {"engine": engine.name, "timings_s": {}}

    def answer(qs_msgs: list[list[dict]], params=greedy) -> list[str]:
        return ipip.batched_complete(engine, qs_msgs, params, cfg.batch_size, progress)

    def msgs(system: str, text: str) -> list[dict]:
        return [{"role": "system", "content": system}, {"role": "user", "content": text}]

    # Big Five ------------------------------------------------------------------------------
    t0 = time.perf_counter()
    if cfg.big_five:
        items = ipip.subset(ipip.load_items(), cfg.ipip_items)
        admin = ipip.administer(engine, system(None), items, ipip.make_variants(cfg.ipip_variants, cfg.seed),
                                mode=cfg.ipip_mode, batch_size=cfg.batch_size, progress=progress)
        target = persona.big_five.scores() if persona.big_five else None
        bf = {"mode": admin["mode"], "n_items": admin["n_items"], "summary": admin["summary"],
              "variants": admin["variants"], "target": target}
        for kind in ("expected", "argmax"):
            means = {t: v["mean"] for t, v in admin["summary"][kind].items()}
            bf[f"error_{kind}"] = ipip.errors_to_target(means, target) if target else None
            bf[f"variant_errors_{kind}"] = ([ipip.errors_to_target(v[kind]["domains"], target)
                                             for v in admin["variants"]] if target else None)
        res["big_five"] = bf
        rows += [{"metric": "big_five", **r} for r in admin["items"]]
    res["timings_s"]["big_five"] = round(time.perf_counter() - t0, 2)
    if log:
        log(f"{engine.name}: big_five done in {res['timings_s']['big_five']} s")

    own_answers: list[str] = []

    # Induction resistance --------------------------------------------------------------------
    t0 = time.perf_counter()
    qs = by_pattern(inputs.questions, "anti_induction", limit=cfg.max_questions)
    texts = answer([msgs(system(q.stage), q.text) for q in qs])
    verdicts = []
    for q, a in zip(qs, texts):
        v = judge.induction(persona=persona, stage=persona.stage(q.stage), question=q.text, answer=a,
                            reference=q.reference, kind=q.induction)
        verdicts.append(v)
        rows.append({"metric": "induction", "qid": q.qid, "stage": q.stage, "question": q.text,
                     "induction": q.induction, "reference": q.reference, "answer": a, "verdict": v})
    own_answers += texts
    res["induction"] = metrics.induction_resistance(verdicts, cfg.seed)
    res["timings_s"]["induction"] = round(time.perf_counter() - t0, 2)
    if log:
        log(f"{engine.name}: induction done in {res['timings_s']['induction']} s")

    # Knowledge ---------------------------------------------------------------------------------
    t0 = time.perf_counter()
    qs = [q for q in by_pattern(inputs.questions, "ordinary", limit=cfg.max_questions) if q.reference]
    texts = answer([msgs(system(q.stage), q.text) for q in qs])
    verdicts = []
    for q, a in zip(qs, texts):
        v = judge.knowledge(question=q.text, answer=a, reference=q.reference)
        verdicts.append(v)
        rows.append({"metric": "knowledge", "qid": q.qid, "stage": q.stage, "question": q.text,
                     "reference": q.reference, "answer": a, "verdict": v})
    own_answers += texts
    res["knowledge"] = metrics.knowledge(verdicts, cfg.seed)
    res["timings_s"]["knowledge"] = round(time.perf_counter() - t0, 2)
    if log:
        log(f"{engine.name}: knowledge done in {res['timings_s']['knowledge']} s")

    # Consistency -------------------------------------------------------------------------------
    t0 = time.perf_counter()
    qs = consistency_questions(inputs.questions, cfg.max_questions)
    paras = [judge.paraphrases(q.text, cfg.paraphrases) for q in qs]
    flat = answer([msgs(system(q.stage), p) for q, ps in zip(qs, paras) for p in ps])
    groups, verdicts, k = [], [], 0
    for q, ps in zip(qs, paras):
        group = flat[k:k + len(ps)]
        k += len(ps)
        groups.append(group)
        v = judge.consistency(question=q.text, answers=group)
        verdicts.append(v)
        rows.append({"metric": "consistency", "qid": q.qid, "stage": q.stage, "paraphrases": ps,
                     "answers": group, "verdict": v})
        own_answers.append(group[0])
    res["consistency"] = metrics.consistency(groups, verdicts, embed, cfg.seed)
    res["timings_s"]["consistency"] = round(time.perf_counter() - t0, 2)
    if log:
        log(f"{engine.name}: consistency done in {res['timings_s']['consistency']} s")

    # Distinctiveness: the same questions under every stage and every contrast persona ----------
    t0 = time.perf_counter()
    qs = distinct_questions(inputs.questions, cfg.distinct_questions)
    labels = [(persona.id, s.id, system(s.id)) for s in persona.stages]
    labels += [(pid, "-", inputs.contrast_system(other, engine.name)) for pid, other in inputs.contrasts]
    specs = [(q, lab, s) for q in qs for lab in labels for s in range(cfg.samples)]
    texts = []
    for s in range(cfg.samples):  # one seed per sample index keeps the draws reproducible
        sampled = GenParams(temperature=cfg.temperature, max_tokens=cfg.gen_max_tokens, seed=cfg.seed + 1 + s)
        part = [(q, lab) for q, lab, si in specs if si == s]
        texts.append(answer([msgs(lab[2], q.text) for q, lab in part], sampled))
    dist_rows = []
    for s in range(cfg.samples):
        part = [(q, lab) for q, lab, si in specs if si == s]
        for (q, lab), a in zip(part, texts[s]):
            dist_rows.append({"qid": q.qid, "persona": lab[0], "stage": lab[1], "text": a, "sample": s})
            rows.append({"metric": "distinctiveness", "qid": q.qid, "question": q.text, "persona": lab[0],
                         "stage": lab[1], "sample": s, "answer": a})
    res["distinctiveness"] = metrics.distinctiveness(dist_rows, embed, cfg.seed)
    res["timings_s"]["distinctiveness"] = round(time.perf_counter() - t0, 2)
    if log:
        log(f"{engine.name}: distinctiveness done in {res['timings_s']['distinctiveness']} s")

    # Style: the persona's own answers vs its own (subjective) writing ----------------------------
    writing = [p["text"] for p in inputs.passages]
    source = "construct/passages.jsonl (subjective)"
    if not writing:
        writing = [g.a for g in persona.gold]
        source = "persona gold answers (no subjective passages)"
    res["style"] = metrics.style([a for a in own_answers if a], writing, embed, cfg.seed)
    res["style"]["reference"] = source
    return res, [{"variant": engine.name, **r} for r in rows]


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
