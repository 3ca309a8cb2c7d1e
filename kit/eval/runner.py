"""The eval stage: every metric for every model variant, written to ``<run>/eval/``.

Variants: ``prompted`` (base model + persona system prompt), ``sft`` (base + sft/adapter),
``dpo`` (base + dpo/adapter), ``gguf`` (eval.gguf through llama.cpp) — whichever exist.
Resume granularity is one variant: a finished variant's results and answers are written
atomically to ``eval/parts/`` and reused by a rerun with the same inputs.
"""

from __future__ import annotations

import time
from pathlib import Path

from kit.errors import KitError
from kit.eval.measures import METRICS, Ctx
from kit.eval.questions import Question, load_questions, split_questions
from kit.rundir import atomic_write_json, hash_obj, hash_paths, read_jsonl, settings, write_jsonl


# Bump when what a metric asks or counts changes, so saved per-variant results are recomputed.
METHOD = ("2026-12-07 likelihood metrics (voice, stage, persona, multiple-choice knowledge); "
          "knowledge: trusted references; knowledge and consistency ask back-translated questions")


class Inputs:
    """Everything the eval reads, gathered once (and hashed for the manifest)."""

    def __init__(self, loaded, lp, run):
        self.recipe = loaded.spec
        self.cfg = loaded.spec.eval
        self.persona = lp.spec
        self.run = run
        self.test_path = run.path / "construct" / "test.jsonl"
        self.passages_path = run.path / "construct" / "passages.jsonl"
        held = load_questions(self.persona, self.test_path)
        self.questions: list[Question] = split_questions(held, self.cfg.split, self.cfg.dev_share)
        self.held_out = _held_out(held, self.questions, self.cfg)
        self.passages = [p for p in read_jsonl(self.passages_path) if p.get("kind") == "subjective"]
        self.contrasts = self._contrasts(loaded)
        self.adapters = {v: run.path / v / "adapter" for v in ("sft", "dpo")}
        self.gguf = loaded.resolve_path(self.cfg.gguf) if self.cfg.gguf else None
        # the contrast personas' own adapters answer in every variant's distinctiveness
        self.contrast_dirs = [loaded.resolve_path(f) for f in (self.cfg.contrast_adapters or {}).values()]
        self._retriever = None

    def retriever(self):
        """One index over every passage of the persona's materials, for the *_rag variants."""
        if self._retriever is None:
            from kit.retrieval import Retriever

            self._retriever = Retriever(read_jsonl(self.passages_path), self.recipe.construct.retriever,
                                        where="recipe: construct.retriever")
        return self._retriever

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
            root = v.removesuffix("_rag")  # a rag variant needs what its plain variant needs
            if root in ("prompted", "placebo", "base_brief"):
                out.append(v)
            elif root in self.adapters and (self.adapters[root] / "adapter_config.json").is_file():
                out.append(v)
            elif v == "gguf" and self.gguf is not None:
                out.append(v)
        if self.gguf is not None and "gguf" not in out:
            out.append("gguf")
        return out

    def hash(self, *, per_variant: bool = False) -> str:
        """The inputs of the whole eval; ``per_variant`` leaves out the variant list and the
        trained adapters (``part_key`` adds a variant's own), so adding a variant to a finished
        eval (prompted_rag, or dpo once trained) reuses the parts of the others."""
        cfg = settings(self.cfg)
        if per_variant:
            cfg.pop("variants", None)
        probes = self.test_path.with_name("probes.jsonl")
        files = [p for p in (self.test_path, probes, self.passages_path) if p.exists()]
        files += [a for a in self.contrast_dirs if a.is_dir()]
        if not per_variant:
            files += [a for a in self.adapters.values() if a.is_dir()]
        files += [self.gguf] if self.gguf and self.gguf.exists() else []
        return hash_obj({"eval": cfg, "model": self.recipe.train.model, "teacher": settings(self.recipe.teacher),
                         "persona": settings(self.persona), "files": hash_paths(files),
                         "style": self.recipe.construct.prompt_style(), "method": METHOD})

    def part_key(self, shared: str, variant: str) -> str:
        """A variant's saved-part key: the shared inputs plus its own adapter, if it has one."""
        adapter = self.adapters.get(variant.removesuffix("_rag"))
        own = hash_paths([adapter]) if adapter is not None and adapter.is_dir() else None
        return shared if own is None else hash_obj({"inputs": shared, "adapter": own})

    def system(self, stage: str | None, variant: str, persona=None) -> str:
        """The prompted baseline gets the full persona text (the strongest prompt-only rival);
        a trained variant gets the prompt style it was trained with (construct.system_prompt)."""
        persona = persona or self.persona
        style = self.recipe.construct.prompt_style()
        variant = variant.removesuffix("_rag")
        if variant in ("prompted", "placebo"):
            style = {**style, "brief": False}
        elif variant == "base_brief":  # the untrained model under the trained variants' own prompt
            style = {**style, "brief": True}
        return persona.system_prompt(stage, **style)

    def validity_persona(self):
        """The first contrast persona with a Big Five target (the known-groups partner)."""
        return next((o for _, o in self.contrasts if o is not None and o.big_five), None)

    def contrast_system(self, other, variant: str) -> str:
        return "You are a helpful assistant." if other is None else self.system(None, variant, other)


def make_engine(name: str, inputs: Inputs, base: Path | None):
    if name == "gguf":
        from kit.engine.llamacpp import LlamaCppEngine

        return LlamaCppEngine(inputs.gguf, name="gguf", seed=inputs.cfg.seed)
    from kit.engine.hf import HFEngine

    adapter = inputs.adapters.get(name.removesuffix("_rag"))  # prompted and placebo: the base model alone
    return HFEngine(base, adapter, name=name)


def contrast_engines(inputs: Inputs, base: Path | None, loaded) -> dict:
    """Contrast personas trained by the recipe answer with their own adapter."""
    from kit.engine.hf import HFEngine

    out = {}
    for pid, folder in (inputs.cfg.contrast_adapters or {}).items():
        path = loaded.resolve_path(folder)
        if not (path / "adapter_config.json").is_file():
            raise KitError(f"no adapter for contrast persona '{pid}'", where=f"recipe: eval.contrast_adapters.{pid}",
                           fix="point it at the contrast persona's sft/adapter or dpo/adapter folder")
        out[pid] = HFEngine(base, path, name=f"contrast-{pid}")
    return out


def _held_out(held: list[Question], used: list[Question], cfg) -> dict:
    """What the eval holds out, for the report: its sources and the dev/test split."""
    by_source: dict[str, int] = {}
    for q in used:
        by_source[q.source] = by_source.get(q.source, 0) + 1
    return {"split": cfg.split, "dev_share": cfg.dev_share, "held_out": len(held), "used": len(used),
            "by_source": by_source,
            "rule": "construct/test.jsonl: questions held out by construct (never in train.jsonl), with the "
                    "held-out gold items (never few-shot demonstrations), plus construct/probes.jsonl: held-out "
                    "questions whose teacher answer failed a gate (no reference; induction, consistency and "
                    "distinctiveness only); knowledge asks referenced ordinary and back-translated questions (the "
                    "latter's reference is the persona's own words; with eval.knowledge_references: trusted, "
                    "never a teacher-written reference); DPO mines train.jsonl only; "
                    "questions split dev/test by a hash of their text"}


def evaluate_variant(engine, inputs: Inputs, judge, progress=None, log=None,
                     contrast_engines=None) -> tuple[dict, list[dict]]:
    """All metrics for one engine. Returns (results, answer rows with their judgements)."""
    c = Ctx(engine, inputs, judge, progress, contrast_engines)
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
    res["paired"] = c.paired
    return res, [{"variant": engine.name, **r} for r in c.rows]


def run_eval(loaded, lp, run, *, console=None) -> dict:
    """Evaluate every available variant and write results, answers, report and plots."""
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
    judge = _make_judge(loaded, run)
    stage.begin(h)
    variants = inputs.variants()
    base = None
    if any(v != "gguf" for v in variants):
        from kit.models.base import base_for_run

        base = base_for_run(loaded, run, "eval").folder  # the folder the adapters were trained on
    results = {"persona": inputs.persona.id, "model": loaded.spec.train.model, "judge": judge.kind,
               "judge_model": _judge_words(judge, loaded), "held_out": inputs.held_out,
               "prompt_style": loaded.spec.construct.system_prompt,
               "inputs_hash": h, "variants": {}, "n_questions": len(inputs.questions),
               "skipped_variants": [v for v in inputs.cfg.variants if v not in variants]}
    all_rows: list[dict] = []
    parts = out_dir / "parts"
    contrasts = contrast_engines(inputs, base, loaded)
    part_hash = inputs.hash(per_variant=True)
    for name in variants:
        results["variants"][name], rows = _variant(name, inputs, judge, base, contrasts, parts, part_hash, console)
        all_rows += rows
    for e in contrasts.values():
        e.close()
    if getattr(judge, "failures", 0):
        results["judge_failures"] = judge.failures
    if inputs.cfg.calibrate:
        from kit.judge.calibration import calibrate

        results["judge_calibration"] = calibrate(judge, inputs.cfg.calibrate_items)
    write_outputs(out_dir, results, all_rows, inputs.persona)
    from kit.rundir import peak_rss_mb

    stage.finish(counts={"variants": len(variants), "answers": len(all_rows)}, peak_rss_mb=peak_rss_mb())
    return results


def _variant(name: str, inputs: Inputs, judge, base, contrasts, parts: Path, shared: str, console):
    """One variant's results and answer rows: reused from eval/parts when its inputs match."""
    part, key = parts / f"{name}.json", inputs.part_key(shared, name)
    if part.exists():
        import json

        saved = json.loads(part.read_text(encoding="utf-8"))
        if saved.get("inputs_hash") == key:  # finished before an interruption: reuse
            return saved["results"], read_jsonl(parts / f"{name}.answers.jsonl")
    t0 = time.perf_counter()
    engine = make_engine(name, inputs, base)
    try:
        with _progress(console, f"eval {name}") as tick:
            res, rows = evaluate_variant(engine, inputs, judge, progress=tick, contrast_engines=contrasts,
                                         log=console.print if console is not None else None)
    finally:
        engine.close()
    res["wall_s"] = round(time.perf_counter() - t0, 2)
    write_jsonl(parts / f"{name}.answers.jsonl", rows)
    atomic_write_json(part, {"inputs_hash": key, "results": res})
    return res, rows


def _make_judge(loaded, run):
    """The shared judge (kit/judge): eval.judge_model when given, else the recipe's teacher."""
    from kit.judge import make_judge

    cfg = loaded.spec.eval
    return make_judge(cfg.judge, cfg.judge_model or loaded.spec.teacher, run.path / "eval" / "cache",
                      where="eval.judge")


def _judge_words(judge, loaded) -> str:
    """Which judge it was, and whether it is the student's own base model (a weak judge)."""
    if judge.kind != "teacher":
        return "rule layer only (no model)"
    cfg = loaded.spec.eval.judge_model or loaded.spec.teacher
    same = getattr(cfg, "model", None) == loaded.spec.train.model
    return judge.label + (" — the same model as the student's base" if same else "")


class _progress:
    """A rich progress counter (prompts processed) for one variant."""

    def __init__(self, console, label: str):
        self.console, self.label = console, label

    def __enter__(self):
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        from kit.progress import progress  # rich on a terminal, a line every 30 s in a log

        self.p = progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} prompts"),
                          TimeElapsedColumn(), console=self.console, transient=True, unit="prompts")
        self.p.__enter__()
        self.task = self.p.add_task(self.label, total=None)
        return lambda n: self.p.advance(self.task, n)

    def __exit__(self, *exc):
        return self.p.__exit__(*exc)
