"""The construct stage runner: the only part of construction that writes files.

ingest → passages.jsonl → plan slots → questions (teacher, cached) → answers with CoT
(teacher, cached) → optional judge → records.jsonl (append-only; a resume skips ids
already there) → filters → train.jsonl / test.jsonl / card.md → manifest.json.

Resume: records carry the stage's inputs hash; on start we keep the valid rows that
match (dropping a torn tail) and redo only missing slots, whose teacher calls are
mostly cache hits. The final files are rebuilt from records sorted by slot order, so
an interrupted-and-resumed run writes exactly what an uninterrupted one writes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from kit.construct import generate as gen
from kit.construct.filters import apply_filters
from kit.construct.ingest import ingest_persona
from kit.construct.prompts import prompts_dir, template_hash
from kit.construct.retrieve import Retriever
from kit.construct.split import card, gold_record, split_gold, stratified_split, to_row
from kit.errors import KitError
from kit.rundir import append_jsonl, atomic_write_text, hash_obj, hash_paths, peak_rss_mb, read_jsonl, write_jsonl
from kit.teachers import TeacherError, make_teacher

MAX_CONSECUTIVE_FAILURES = 8


def templates() -> dict[str, str]:
    names = sorted(p.name for p in prompts_dir().glob("*.j2") if p.name.startswith(("construct_", "judge_")))
    return {f"{n}@{template_hash(n)}": n for n in names}


def inputs_hash(loaded, lp) -> str:
    spec = loaded.spec
    return hash_obj({"persona": lp.spec.model_dump(mode="json"),
                     "sources": hash_paths([lp.source_path(s) for s in lp.spec.sources]),
                     "teacher": spec.teacher.model_dump(mode="json"),
                     "construct": spec.construct.model_dump(mode="json"), "templates": sorted(templates())})


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def _check_teacher(teacher) -> None:
    if teacher.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
        raise KitError(f"teacher failed {teacher.consecutive_failures} calls in a row ({teacher.last_error})",
                       where="recipe: teacher",
                       fix="check the teacher (server up? model path?) and rerun; finished records are kept")


def run_construct(loaded, lp, run, *, force: bool = False, console=None) -> dict:
    """Run (or resume) the construct stage; returns the final manifest."""
    from rich.console import Console

    console = console or Console(stderr=True)
    cfg, persona = loaded.spec.construct, lp.spec
    stage = run.stage("construct")
    out: Path = stage.path
    passages = ingest_persona(lp, cfg.passage_words)  # bad sources fail here, before any call
    h = inputs_hash(loaded, lp)
    if not force and stage.is_done(h):
        console.print(f"construct: up to date ({out}); use --force to rebuild from the cache")
        return stage.manifest()
    stage.begin(h, persona=persona.id)
    write_jsonl(out / "passages.jsonl", passages)
    rec_path = out / "records.jsonl"
    rows = [] if force else [r for r in read_jsonl(rec_path) if r.get("inputs_hash") == h]
    uniq = {r["id"]: r for r in rows}  # a resume can never hold a slot twice
    write_jsonl(rec_path, sorted(uniq.values(), key=lambda r: r["order"]))  # also drops a torn tail

    teacher = make_teacher(loaded.spec.teacher, out / "cache")
    try:
        retriever = Retriever(passages, cfg.retriever)
        gold_train, gold_test = split_gold(persona, cfg.test_fraction, cfg.seed)
        selected = gen.select_passages(passages, cfg.max_passages, len(persona.stages))
        by_id = {p["id"]: p for p in passages}
        slots = gen.plan_slots(persona, selected, cfg.patterns)
        todo = [s for s in slots if s["id"] not in uniq]
        faults: Counter = Counter()
        with _progress(console) as prog:
            _answer_slots(todo, persona, by_id, retriever, teacher, cfg, gold_train, h, rec_path, prog, faults)
        records = sorted({r["id"]: r for r in read_jsonl(rec_path) if r.get("inputs_hash") == h}.values(),
                         key=lambda r: r["order"])
        if not records and slots:
            raise KitError(f"no records: all {len(slots)} answers failed ({teacher.last_error or 'unknown error'})",
                           where="recipe: teacher", fix="fix the teacher problem shown and rerun")
        kept, drops = apply_filters(records, cfg, persona.language, retriever)
        faults = +faults  # keep only faults that happened
        drops.update({f"teacher_{k}": v for k, v in faults.items()})
        train_recs, test_recs = stratified_split(kept, cfg.test_fraction, cfg.seed)
        if cfg.include_gold:
            train_recs += [gold_record(persona, g) for g in gold_train]
        test_recs += [gold_record(persona, g) for g in gold_test]
        kw = {"style": cfg.prompt_style(), "train_on_cot": cfg.train_on_cot}
        train = [to_row(persona, r, **kw) for r in train_recs]
        test = [to_row(persona, r, **{**kw, "train_on_cot": False}) for r in test_recs]
        write_jsonl(out / "train.jsonl", train)
        write_jsonl(out / "test.jsonl", test)
        fallbacks = Counter(r["question_issue"] for r in records if r.get("question_source") == "template")
        counts = _counts(persona, slots, records, kept, train, test, drops, fallbacks)
        teacher_info = {k: v for k, v in loaded.spec.teacher.model_dump(mode="json").items()}
        atomic_write_text(out / "card.md", card(persona, train=train, test=test, drops=drops,
                                                stats=dict(teacher.stats), teacher=teacher_info,
                                                templates=templates(), fallbacks=fallbacks,
                                                retriever=retriever.mode))
        return stage.finish(counts=counts, teacher_stats=dict(teacher.stats), faults=dict(faults),
                            retriever=retriever.mode, templates=sorted(templates()), peak_rss_mb=peak_rss_mb())
    finally:
        teacher.close()


def _answer_slots(todo, persona, by_id, retriever, teacher, cfg, gold_train, h, rec_path, prog, faults) -> None:
    """Questions then answers (then judge) for the missing slots, appending records per chunk."""
    chunk = max(4, teacher.concurrency * 4)
    budget = getattr(getattr(teacher.cfg, "sampling", None), "max_tokens", None)
    tq = prog.add_task("questions", total=len(todo))
    questions: dict[str, tuple[str, str, str | None]] = {}
    for i in range(0, len(todo), chunk):
        part = todo[i:i + chunk]
        reqs = [gen.question_request(persona, s, by_id.get(s["passage_id"]), gold_train, budget) for s in part]
        res = teacher.complete_json_many(reqs, on_result=lambda *_: prog.advance(tq))
        for s, r in zip(part, res):
            if isinstance(r, TeacherError):
                faults["question_failed"] += 1
            questions[s["id"]] = gen.resolve_question(s, by_id.get(s["passage_id"]), persona, r)
        _check_teacher(teacher)
    ta = prog.add_task("answers", total=len(todo))
    for i in range(0, len(todo), chunk):
        part = todo[i:i + chunk]
        reqs, ctx = [], []
        for s in part:
            q = questions[s["id"]][0]
            req, kn, st = gen.answer_request(persona, s, q, by_id.get(s["passage_id"]), retriever, cfg, gold_train,
                                             budget)
            reqs.append(req)
            ctx.append((kn, st))
        res = teacher.complete_json_many(reqs, on_result=lambda *_: prog.advance(ta))
        _check_teacher(teacher)
        done = [(s, r, c) for s, r, c in zip(part, res, ctx) if not isinstance(r, TeacherError)]
        faults["answer_failed"] += len(part) - len(done)
        judged: list = [None] * len(done)
        if cfg.judge and done:
            jreqs = [gen.judge_request(persona, s, questions[s["id"]][0], str(r.get("response", "")))
                     for s, r, _ in done]
            judged = teacher.complete_json_many(jreqs)
            faults["judge_failed"] += sum(isinstance(j, TeacherError) for j in judged)
        rows = []
        for (s, r, (kn, st)), j in zip(done, judged):
            q, qsrc, qissue = questions[s["id"]]
            rows.append({**{k: s.get(k) for k in ("id", "order", "pattern", "subtype", "pressure", "stage",
                                                   "stage_index", "kind", "passage_id")},
                         "question": q, "question_source": qsrc, "question_issue": qissue,
                         "analysis": str(r.get("analysis", "")).strip() or None,
                         "response": str(r.get("response", "")).strip(),
                         "knowledge_ids": kn, "style_ids": st,
                         "judge": None if j is None or isinstance(j, TeacherError) else j,
                         "source": "teacher", "inputs_hash": h})
        if rows:
            append_jsonl(rec_path, rows)


def _counts(persona, slots, records, kept, train, test, drops, fallbacks) -> dict:
    rows = train + test
    per_pattern = Counter(r["meta"]["pattern"] for r in rows)
    per_stage = Counter(r["meta"]["stage"] for r in rows)
    want_patterns = sorted({s["pattern"] for s in slots})
    gen_rows = [r for r in rows if r["meta"].get("source") == "teacher"]
    missing = [f"pattern:{p}" for p in want_patterns if not any(r["meta"]["pattern"] == p for r in gen_rows)]
    missing += [f"stage:{s}" for s in sorted({s["stage"] for s in slots})
                if not any(r["meta"]["stage"] == s for r in gen_rows)]
    return {"slots": len(slots), "records": len(records), "kept": len(kept), "train": len(train),
            "test": len(test), "per_pattern": dict(per_pattern), "per_stage": dict(per_stage),
            "per_kind": dict(Counter(r["meta"].get("kind") or "none" for r in rows)),
            "dropped": dict(drops), "question_fallbacks": dict(fallbacks), "missing": missing}
