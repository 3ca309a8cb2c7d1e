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
    result = backend.sft(cfg, data, test if test.is_file() else None, stage.path, base.folder, resume=ctx.resume)
    peak = max(result.get("peak_rss_mb") or 0, peak_rss_mb())
    if not main:
        return {"metrics": result, "peak_rss_mb": peak}
    return stage.finish(counts={"steps": result.get("steps"), "records": result.get("records"),
                                "general_rows": result.get("general_rows"), "replay": replay},
                        metrics=result, peak_rss_mb=peak, adapter=str(run_dir.sft_adapter))


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
    return [f"sft: {r.get('steps')} steps on {r.get('records')} records ({replay.get('kept', 0)} replay, "
            f"+{r.get('general_rows', 0)} general), "
            f"final loss {r.get('final_loss')}, {r.get('tokens_per_s')} tok/s, peak RSS {m.get('peak_rss_mb')} MiB",
            f"  adapter: {m.get('adapter')}"]
