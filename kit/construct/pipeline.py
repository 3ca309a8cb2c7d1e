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

import time
from collections import Counter
from pathlib import Path

from kit.construct import generate as gen
from kit.construct.filters import GATES_VERSION, apply_filters
from kit.construct.ingest import ingest_persona
from kit.construct.ownwords import heldout_passages, leaks, own_word_spans, reask_off_topic, span_question
from kit.construct.prompts import prompts_dir, template_hash
from kit.retrieval import Retriever
from kit.construct.split import card, gold_record, probe_row, split_gold, stratified_split, to_row
from kit.errors import KitError
from kit.rundir import (append_jsonl, atomic_write_text, hash_obj, hash_paths, peak_rss_mb, read_jsonl, settings,
                        write_jsonl)
from kit.teachers import TeacherError, make_teacher

MAX_CONSECUTIVE_FAILURES = 8


def templates() -> dict[str, str]:
    names = sorted(p.name for p in prompts_dir().glob("*.j2") if p.name.startswith(("construct_", "judge_")))
    return {f"{n}@{template_hash(n)}": n for n in names}


def inputs_hash(loaded, lp) -> str:
    spec = loaded.spec
    return hash_obj({"persona": settings(lp.spec),
                     "sources": hash_paths([lp.source_path(s) for s in lp.spec.sources]),
                     "teacher": settings(spec.teacher),
                     "construct": settings(spec.construct), "templates": sorted(templates()),
                     "gates": GATES_VERSION})


def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from kit.progress import progress  # rich bars on a terminal, a line every 30 s in a log

    return progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False, name="construct")


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
    t0 = time.monotonic()
    gold_train, gold_test = split_gold(persona, cfg.test_fraction, cfg.seed)
    held, own = _own_words(cfg, persona, passages)
    write_jsonl(out / "passages.jsonl", passages)
    rec_path = out / "records.jsonl"
    rows = [] if force else [r for r in read_jsonl(rec_path) if r.get("inputs_hash") == h]
    uniq = {r["id"]: r for r in rows}  # a resume can never hold a slot twice
    write_jsonl(rec_path, sorted(uniq.values(), key=lambda r: r["order"]))  # also drops a torn tail

    teacher = make_teacher(loaded.spec.teacher, out / "cache")
    try:
        usable = [p for p in passages if not p["heldout"]]  # the teacher never sees a held-out passage
        retriever = Retriever(usable, cfg.retriever)
        selected = gen.select_passages(usable, cfg.max_passages, len(persona.stages))
        by_id = {p["id"]: p for p in passages}
        slots = gen.plan_slots(persona, selected, cfg.patterns, own)
        todo = [s for s in slots if s["id"] not in uniq]
        faults: Counter = Counter()
        with _progress(console) as prog:
            _answer_slots(todo, persona, by_id, retriever, teacher, cfg, gold_train, h, rec_path, prog, faults)
        records = sorted({r["id"]: r for r in read_jsonl(rec_path) if r.get("inputs_hash") == h}.values(),
                         key=lambda r: r["order"])
        if not records and slots:
            raise KitError(f"no records: all {len(slots)} answers failed ({teacher.last_error or 'unknown error'})",
                           where="recipe: teacher", fix="fix the teacher problem shown and rerun")
        reask_off_topic(records, cfg.min_relevance, persona)  # counted below as off_topic fallbacks
        kept, drops, gates = apply_filters(records, cfg, persona.language, retriever, persona)
        faults = +faults  # keep only faults that happened
        fallbacks = Counter(r["question_issue"] for r in records if r.get("question_source") == "template")
        rates = _check_rates(cfg, slots, records, drops, fallbacks)
        drops.update({f"teacher_{k}": v for k, v in faults.items()})
        train, test, probes = _write_rows(out, persona, cfg, records, kept, gold_train, gold_test)
        _check_leaks(persona, passages, train)
        counts = {**_counts(persona, slots, records, kept, train, test, drops, fallbacks),
                  "probes": len(probes), "gates": dict(gates), "rates": rates,
                  "heldout_passages": len(held), "throughput": _throughput(teacher.stats, train, t0)}
        teacher_info = {k: v for k, v in loaded.spec.teacher.model_dump(mode="json").items()}
        atomic_write_text(out / "card.md", card(persona, train=train, test=test, drops=drops,
                                                stats=dict(teacher.stats), teacher=teacher_info,
                                                templates=templates(), fallbacks=fallbacks, gates=gates,
                                                retriever=retriever.mode))
        return stage.finish(counts=counts, teacher_stats=dict(teacher.stats), faults=dict(faults),
                            retriever=retriever.mode, templates=sorted(templates()), peak_rss_mb=peak_rss_mb())
    finally:
        teacher.close()


# Held-out questions whose answer failed a gate still measure what needs no reference answer
# (induction resistance, consistency, distinctiveness); back-translation questions are about
# a source span, not the persona, so they are not asked.
_PROBE_PATTERNS = ("anti_induction", "opinion", "trait", "ordinary")


def _write_rows(out: Path, persona, cfg, records, kept, gold_train, gold_test) -> tuple[list, list, list]:
    """Split every record by question (kept or not, so a rejected answer does not move its
    question to the other side), write the kept ones as SFT rows with the gold demonstrations
    (train) and gold eval items (test), and the rejected test-side questions as probes."""
    asked = [r for r in records if isinstance(r.get("question"), str) and r["question"].strip()]
    # With own words on, held-out own words are whole passages (voice items) and every other
    # own-word row trains; the per-question split is for the teacher-written patterns.
    whole = cfg.own_words != 0
    split = [r for r in asked if not (whole and r.get("pattern") == "backtranslation")]
    train_side, test_side = stratified_split(split, cfg.test_fraction, cfg.seed)
    train_side += [r for r in asked if whole and r.get("pattern") == "backtranslation" and not r.get("heldout")]
    test_side += [r for r in asked if r.get("heldout")]
    by_id = {r["id"]: r for r in kept}
    train_recs = [by_id[r["id"]] for r in train_side if r["id"] in by_id]
    test_recs = [by_id[r["id"]] for r in test_side if r["id"] in by_id]
    probe_recs = [r for r in test_side if r["id"] not in by_id and r.get("pattern") in _PROBE_PATTERNS]
    if cfg.include_gold:
        train_recs += [gold_record(persona, g) for g in gold_train]
    test_recs += [gold_record(persona, g) for g in gold_test]
    kw = {"style": cfg.prompt_style(), "train_on_cot": cfg.train_on_cot}
    train = [to_row(persona, r, **kw) for r in train_recs]
    test = [to_row(persona, r, **{**kw, "train_on_cot": False}) for r in test_recs]
    probes = [probe_row(persona, r, style=cfg.prompt_style()) for r in probe_recs]
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "test.jsonl", test)
    write_jsonl(out / "probes.jsonl", probes)
    return train, test, probes


_SLOT_KEYS = ("id", "order", "pattern", "subtype", "pressure", "stage", "stage_index", "stage_end", "kind",
              "passage_id", "later_topic", "domain", "heldout")


def _own_words(cfg, persona, passages: list[dict]) -> tuple[set, list | None]:
    """(held-out passage ids, own-word spans to plan), marking each passage held out or not."""
    held, own = set(), None
    if cfg.own_words != 0:
        held = heldout_passages(passages, cfg.heldout_passages, cfg.seed, [g.a for g in persona.gold])
        own = own_word_spans(passages, held, None if cfg.own_words == "all" else cfg.own_words)
    for p in passages:
        p["heldout"] = p["id"] in held
    return held, own


def _check_leaks(persona, passages: list[dict], train: list[dict]) -> None:
    """Fail the run if a training row carries text found only in a held-out passage."""
    held = [p for p in passages if p["heldout"]]
    if not held:
        return
    elsewhere = [p["text"] for p in passages if not p["heldout"]] + [g.a for g in persona.gold]
    elsewhere += [persona.system_prompt(st.id) for st in persona.stages]
    bad = leaks(train, held, elsewhere)
    if bad:
        raise KitError(f"{len(bad)} training rows carry text of a held-out passage (first: row {bad[0][0]}, "
                       f"passage {bad[0][1]})", where="construct/train.jsonl",
                       fix="report this as a bug: held-out passages must never reach training")


def _throughput(stats: dict, train: list[dict], t0: float) -> dict:
    """Own-word rows per minute of construct and teacher calls per training row."""
    minutes = (time.monotonic() - t0) / 60
    own = sum(r["meta"].get("source") == "backtranslation" for r in train)
    calls = int(stats.get("calls", 0) or 0)
    return {"wall_s": round(minutes * 60, 1), "own_word_train_rows": own,
            "rows_per_min": round(len(train) / minutes, 2) if minutes else None,
            "teacher_calls": calls, "teacher_calls_per_row": round(calls / len(train), 2) if train else None}


def _answer_slots(todo, persona, by_id, retriever, teacher, cfg, gold_train, h, rec_path, prog, faults) -> None:
    """Questions then answers (then judge) for the missing slots, appending records per chunk.

    Back-translation slots take their answer from the source span; every other slot gets up
    to ``best_of`` teacher answers, a further one only while all so far fail a gate.
    """
    chunk = max(4, teacher.concurrency * 4)
    budget = getattr(getattr(teacher.cfg, "sampling", None), "max_tokens", None)
    questions: dict[str, tuple[str, str, str | None]] = {}
    ask = todo
    if cfg.own_word_questions == "names":  # no teacher call: the question is cut from the span itself
        questions.update({s["id"]: (span_question(s["span"], persona), "template", "names")
                          for s in todo if s["pattern"] == "backtranslation"})
        ask = [s for s in todo if s["id"] not in questions]
    tq = prog.add_task("questions", total=len(ask))
    for i in range(0, len(ask), chunk):
        part = ask[i:i + chunk]
        reqs = [gen.question_request(persona, s, by_id.get(s["passage_id"]), gold_train, budget) for s in part]
        res = teacher.complete_json_many(reqs, on_result=lambda *_: prog.advance(tq))
        for s, r in zip(part, res):
            if isinstance(r, TeacherError):
                faults["question_failed"] += 1
            questions[s["id"]] = gen.resolve_question(s, by_id.get(s["passage_id"]), persona, r)
        _check_teacher(teacher)

    def record(s, **fields):
        q, qsrc, qissue = questions[s["id"]]
        return {**{k: s.get(k) for k in _SLOT_KEYS}, "question": q, "question_source": qsrc,
                "question_issue": qissue, **fields, "inputs_hash": h}

    own = [record(s, analysis=None, response=s["span"], knowledge_ids=[], style_ids=[s["passage_id"]], judge=None,
                  source="backtranslation") for s in todo if s["pattern"] == "backtranslation"]
    if own:
        append_jsonl(rec_path, own)
    asked = [s for s in todo if s["pattern"] != "backtranslation"]
    ta = prog.add_task("answers", total=len(asked))
    for i in range(0, len(asked), chunk):
        part = asked[i:i + chunk]
        rows: dict[str, dict] = {}
        for variant in range(cfg.best_of):
            need = [s for s in part if variant == 0 or _all_failed(rows.get(s["id"]), cfg, persona, retriever)]
            if not need:
                break
            got = _answer_round(need, variant, questions, persona, by_id, retriever, teacher, cfg, gold_train,
                                budget, faults, prog if variant == 0 else None, ta)
            for s, (cand, kn, st) in got.items():
                if s not in rows:
                    rows[s] = record(by_slot(part, s), analysis=cand["analysis"], response=cand["response"],
                                     knowledge_ids=kn, style_ids=st, judge=cand["judge"], source="teacher")
                rows[s].setdefault("candidates", [{k: rows[s][k] for k in ("analysis", "response", "judge")}])
                if variant:
                    rows[s]["candidates"].append(cand)
        out = [rows[s["id"]] for s in part if s["id"] in rows]
        for r in out:
            if len(r.get("candidates", [])) <= 1:
                r.pop("candidates", None)  # one candidate: the record's own fields say it all
        if out:
            append_jsonl(rec_path, out)


def by_slot(part, sid):
    return next(s for s in part if s["id"] == sid)


def _all_failed(rec, cfg, persona, retriever) -> bool:
    """True when a record exists and every candidate so far fails a gate (worth another sample)."""
    if rec is None:
        return False
    from kit.construct.filters import candidate_reasons

    return all(why is not None for why, _ in candidate_reasons([rec], cfg, persona.language, retriever, persona)[0])


def _answer_round(need, variant, questions, persona, by_id, retriever, teacher, cfg, gold_train, budget, faults,
                  prog, task) -> dict:
    """One answer (and judge) call per slot: {slot id: (candidate, knowledge ids, style ids)}."""
    reqs, ctx = [], []
    for s in need:
        req, kn, st = gen.answer_request(persona, s, questions[s["id"]][0], by_id.get(s["passage_id"]), retriever,
                                         cfg, gold_train, budget, variant=variant)
        reqs.append(req)
        ctx.append((kn, st))
    res = teacher.complete_json_many(reqs, on_result=(lambda *_: prog.advance(task)) if prog else None)
    _check_teacher(teacher)
    done = [(s, r, c) for s, r, c in zip(need, res, ctx) if not isinstance(r, TeacherError)]
    faults["answer_failed" if variant == 0 else "extra_answer_failed"] += len(need) - len(done)
    judged: list = [None] * len(done)
    if cfg.judge and done:
        jreqs = [gen.judge_request(persona, s, questions[s["id"]][0], str(r.get("response", "")))
                 for s, r, _ in done]
        judged = teacher.complete_json_many(jreqs)
        faults["judge_failed"] += sum(isinstance(j, TeacherError) for j in judged)
    return {s["id"]: ({"analysis": str(r.get("analysis", "")).strip() or None,
                       "response": str(r.get("response", "")).strip(),
                       "judge": None if j is None or isinstance(j, TeacherError) else j}, kn, st)
            for (s, r, (kn, st)), j in zip(done, judged)}


def _check_rates(cfg, slots, records, drops, fallbacks) -> dict:
    """Reject and fallback rates; past a configured limit the run stops before writing rows."""
    n = len(records)
    rates = {"reject": round(sum(drops.values()) / n, 3) if n else 0.0,
             "fallback": round(sum(fallbacks.values()) / len(slots), 3) if slots else 0.0}
    top = ", ".join(f"{k} {v}" for k, v in (drops + fallbacks).most_common(3))
    for what, limit, field in (("reject", cfg.max_reject_rate, "max_reject_rate"),
                               ("fallback", cfg.max_fallback_rate, "max_fallback_rate")):
        if rates[what] > limit:
            raise KitError(f"{what} rate {rates[what]:.0%} of the teacher's output is over the limit {limit:.0%} "
                           f"(top reasons: {top}); not training on it", where=f"recipe: construct.{field}",
                           fix="use a stronger teacher model or more few_shot/best_of, or raise the limit")
    return rates


def _counts(persona, slots, records, kept, train, test, drops, fallbacks) -> dict:
    rows = train + test
    per_pattern = Counter(r["meta"]["pattern"] for r in rows)
    per_stage = Counter(r["meta"]["stage"] for r in rows)
    want_patterns = sorted({s["pattern"] for s in slots})
    # generated = written for this run (teacher answers and back-translated spans), not gold
    gen_rows = [r for r in rows if r["meta"].get("source") != "gold"]
    missing = [f"pattern:{p}" for p in want_patterns if not any(r["meta"]["pattern"] == p for r in gen_rows)]
    missing += [f"stage:{s}" for s in sorted({s["stage"] for s in slots})
                if not any(r["meta"]["stage"] == s for r in gen_rows)]
    return {"slots": len(slots), "records": len(records), "kept": len(kept), "train": len(train),
            "test": len(test), "per_pattern": dict(per_pattern), "per_stage": dict(per_stage),
            "per_kind": dict(Counter(r["meta"].get("kind") or "none" for r in rows)),
            "dropped": dict(drops), "question_fallbacks": dict(fallbacks), "missing": missing}
