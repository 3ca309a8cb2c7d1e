"""The ``sft`` stage: construct/train.jsonl -> sft/adapter, with a manifest.

The stage resolves the base model once (``kit.models.base``) and records the local folder
and its fingerprint in the manifest; DPO, eval and export use that record. The stage is
skipped when its inputs (training data, train section of the recipe, chat-template and
general-data files, base model fingerprint) are unchanged since a finished run;
``--resume`` continues an interrupted run from its newest checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from kit.errors import KitError
from kit.rundir import Manifest, hash_obj, hash_paths


def run(ctx) -> Manifest:
    from kit.models.base import resolve_base
    from kit.rundir import peak_rss_mb
    from kit.train.backends import get_backend
    from kit.tuning import is_main_process

    loaded, run_dir = ctx.loaded, ctx.run
    cfg = loaded.train_config()
    train, test = run_dir.train_rows, run_dir.test_rows
    if not train.is_file():
        raise KitError("no training data", where=train, fix="run `perskit construct <recipe>` first")
    backend = get_backend(cfg.backend)
    base = resolve_base(loaded)
    stage = run_dir.stage("sft")
    files = [Path(f) for f in (cfg.chat_template, cfg.mix_general) if f]
    inputs = hash_obj({"data": hash_paths([train] + ([test] if test.is_file() else []) + files),
                       "train": loaded.spec.section_hash("train"), "base": base.fingerprint})
    if not ctx.force and stage.is_done(inputs) and run_dir.has_adapter(run_dir.sft_adapter):
        ctx.echo(f"sft: up to date ({run_dir.sft_adapter}); use --force to retrain")
        return stage.manifest()
    main = is_main_process()
    if main:
        stage.begin(inputs, backend=cfg.backend, base_model=base.path, base=base.as_dict())
    data, replay = _with_replay(cfg, base, train, stage.path, ctx.echo)
    data = _with_gold_repeat(cfg, data, stage.path, ctx.echo)
    cfg = _sized(cfg, data, ctx.echo)
    result = backend.sft(cfg, data, test if test.is_file() else None, stage.path, base.folder, resume=ctx.resume)
    peak = max(result.get("peak_rss_mb") or 0, peak_rss_mb())
    if not main:
        return {"metrics": result, "peak_rss_mb": peak}
    result["reproduction"] = _reproduction(cfg, base, train, run_dir.sft_adapter, ctx.echo)
    return stage.finish(counts={"steps": result.get("steps"), "records": result.get("records"),
                                "general_rows": result.get("general_rows"), "replay": replay},
                        metrics=result, peak_rss_mb=peak, adapter=str(run_dir.sft_adapter))


def _sized(cfg, data: Path, echo):
    """``train.epochs`` as a step count: passes over the rows, not a bare number of steps."""
    if not cfg.epochs:
        return cfg
    import math

    from kit.rundir import read_jsonl

    rows = len(read_jsonl(data))
    steps = max(1, math.ceil(cfg.epochs * rows / (cfg.batch_size * cfg.grad_accum)))
    echo(f"sft: {cfg.epochs:g} epochs over {rows} rows = {steps} steps")
    return cfg.model_copy(update={"max_steps": steps})


def _with_gold_repeat(cfg, data: Path, out: Path, echo) -> Path:
    """``train.gold_repeat`` copies of every gold row. At 135M two epochs over ~50 rows left the
    model holding none of its hand-written answers; more epochs over everything cost time on rows
    the user checks least (measured in docs/benchmarks.md)."""
    if cfg.gold_repeat <= 1:
        return data
    from kit.rundir import read_jsonl, write_jsonl

    rows = read_jsonl(data)
    gold = [r for r in rows if (r.get("meta") or {}).get("source") == "gold"]
    echo(f"sft: {len(gold)} gold rows x {cfg.gold_repeat} per epoch")
    write_jsonl(out / "train_gold_repeat.jsonl", rows + gold * (cfg.gold_repeat - 1))
    return out / "train_gold_repeat.jsonl"


def _reproduction(cfg, base, train: Path, adapter: Path, echo) -> dict | None:
    """How often the tuned model gives back its own training answers: greedy answers to up to
    ``reproduce_items`` training questions (gold and own-word rows first), token F1 against the
    trained answer; 'held' = F1 >= 0.5."""
    if not cfg.reproduce_items:
        return None
    from kit.rundir import read_jsonl
    from kit.text import token_f1
    from kit.tuning import generate

    rows = read_jsonl(train)
    order = {"gold": 0, "backtranslation": 1}  # the hand-written answers first, then her own words
    rows.sort(key=lambda r: order.get((r.get("meta") or {}).get("source"), 2))
    rows = rows[:cfg.reproduce_items]
    if not rows:
        return None
    echo(f"sft: answering {len(rows)} of its own training questions")
    prompts = [[m for m in r["messages"] if m["role"] != "assistant"] for r in rows]
    answers = generate(cfg.backend, base.folder, adapter, prompts, 96)
    f1 = [token_f1(a, r["messages"][-1]["content"]) for a, r in zip(answers, rows)]
    return {"n": len(rows), "token_f1_mean": round(sum(f1) / len(f1), 3),
            "held": sum(x >= 0.5 for x in f1), "examples": [{"question": p[-1]["content"], "answer": a}
                                                           for p, a in zip(prompts[:3], answers[:3])]}


def _with_replay(cfg, base, train: Path, out: Path, echo) -> tuple[Path, dict | None]:
    """The SFT file to train on: construct's rows, plus replay rows when ``train.replay`` is set.
    Every rank of a multi-process run builds the same file (greedy, so identical)."""
    if not cfg.replay:
        return train, None
    from kit.train.replay import build_replay, mixed_train_file
    from kit.tuning import generate

    echo(f"sft: replay: the base model answers {cfg.replay} general requests")
    counts = build_replay(out / "replay.jsonl", cfg.replay, cfg.seed, cfg.replay_max_tokens, base.fingerprint,
                          lambda msgs: generate(cfg.backend, base.folder, None, msgs, cfg.replay_max_tokens))
    if not counts["kept"]:
        return train, counts
    return mixed_train_file(train, out / "replay.jsonl", out / "train_mixed.jsonl"), counts


def report(ctx, m: Manifest) -> list[str]:
    if not m.get("adapter"):
        return []  # a non-zero rank under accelerate launch: rank 0 reports
    r = m.get("metrics", {})
    replay = (m.get("counts") or {}).get("replay") or {}
    rep = r.get("reproduction") or {}
    return [f"sft: {r.get('steps')} steps on {r.get('records')} records ({replay.get('kept', 0)} replay, "
            f"+{r.get('general_rows', 0)} general), "
            f"final loss {r.get('final_loss')}, held-out loss {r.get('eval_loss')}, {r.get('tokens_per_s')} tok/s, "
            f"peak RSS {m.get('peak_rss_mb')} MiB",
            f"  holds its rows: {rep.get('held', '–')} of {rep.get('n', '–')} training answers given back "
            f"(token F1 >= 0.5; mean {rep.get('token_f1_mean', '–')})",
            f"  adapter: {m.get('adapter')}"]
