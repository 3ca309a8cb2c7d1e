"""The ``dpo`` stage: mine pairs into dpo/pairs.jsonl, then train dpo/adapter from sft/adapter.

Mining and training are resumable separately: pairs are kept when the mining inputs
(training data, SFT adapter, dpo section, contrast personas) are unchanged, so a failed
or interrupted DPO training does not regenerate base/SFT answers.
"""

from __future__ import annotations

from pathlib import Path

from kit.errors import KitError
from kit.rundir import Manifest, hash_obj, hash_paths, read_jsonl, write_jsonl


def contrast_records(loaded, names: list[str]) -> dict[str, list[dict]]:
    """Answers of other personas: their constructed data when a run exists, else their gold examples."""
    from kit.rundir import RunDir
    from kit.spec.persona import load_persona

    out: dict[str, list[dict]] = {}
    for name in names:
        path = loaded.resolve_path(name)
        if not path.exists() and (loaded.root / "personas" / name).exists():
            path = loaded.root / "personas" / name
        try:
            other = load_persona(path).spec
        except KitError as exc:
            raise KitError(f"contrast persona cannot be loaded: {exc.message}", where=f"dpo.contrast_personas: {name}",
                           fix="name a persona folder (e.g. personas/tomas-reyes)") from None
        run_train = RunDir(loaded.root / "runs" / f"{other.id}-{loaded.spec.name}").train_rows
        rows = read_jsonl(run_train) if run_train.is_file() else []
        if not rows:
            rows = [{"messages": [{"role": "system", "content": other.system_prompt(g.stage)},
                                  {"role": "user", "content": g.q}, {"role": "assistant", "content": g.a}],
                     "meta": {"stage": g.stage, "pattern": g.type}} for g in other.gold]
        out[other.id] = rows
    return out


def _judge(loaded, run):
    from kit.judge import make_judge
    from kit.judge.rules import RuleJudge

    mode = loaded.spec.dpo.judge
    teacher = loaded.spec.teacher
    if mode == "auto" and teacher.kind == "scripted":
        return RuleJudge()  # scripted teachers produce test fixtures, not judgements
    return make_judge(mode, teacher, run.path / "dpo" / "cache", where="dpo.judge")


def mine_stage(loaded, persona, run, base, echo=print) -> tuple[Path, dict]:
    from kit.dpo.mine import mine_pairs

    dcfg = loaded.spec.dpo
    train, adapter, pairs_path = run.train_rows, run.sft_adapter, run.dpo_pairs
    stage = run.stage("dpo")
    # Only what changes the pairs: retuning beta or steps must not regenerate answers.
    mining = dcfg.model_dump(mode="json", exclude={"enabled", "beta", "max_steps", "learning_rate", "batch_size",
                                                    "max_length"})
    mine_hash = hash_obj({"data": hash_paths([train, adapter]), "dpo": mining,
                          "base": base.fingerprint, "backend": loaded.spec.train.backend})
    m = stage.manifest()
    if m.get("mine_hash") == mine_hash and pairs_path.is_file():
        echo(f"dpo: reusing {m.get('pair_counts', {})} pairs in {pairs_path}")
        return pairs_path, m.get("pair_counts", {})
    records = read_jsonl(train)
    judge = _judge(loaded, run) if dcfg.sources.induction else None
    from kit.tuning import generate

    backend = loaded.spec.train.backend
    gen = lambda ad: (lambda msgs: generate(backend, base.folder, ad, msgs, dcfg.gen_max_tokens))  # noqa: E731
    res = mine_pairs(records, dcfg, contrast=contrast_records(loaded, dcfg.contrast_personas),
                     generate_base=gen(None), generate_sft=gen(adapter), judge=judge, persona=getattr(persona, "spec", persona),
                     seed=loaded.spec.train.seed, progress=echo)
    if not res.pairs:
        raise KitError(f"no preference pairs could be mined ({res.notes})", where="dpo.sources",
                       fix="enable base_model/wrong_stage sources or add dpo.contrast_personas")
    write_jsonl(pairs_path, res.pairs)
    counts = {**res.counts, "total": len(res.pairs)}
    stage.update(mine_hash=mine_hash, pair_counts=counts, mine_notes=res.notes,
                 judge_failures=getattr(judge, "failures", 0))
    return pairs_path, counts


def run(ctx) -> Manifest:
    from kit.dpo.backends import get_backend
    from kit.models.base import base_for_run
    from kit.rundir import peak_rss_mb
    from kit.tuning import is_main_process

    loaded, run_dir, echo = ctx.loaded, ctx.run, ctx.echo
    cfg = loaded.train_config()
    dcfg = loaded.spec.dpo
    stage = run_dir.stage("dpo")
    if not dcfg.enabled:
        echo("dpo: disabled in the recipe (dpo.enabled: false)")
        return stage.manifest()
    train, adapter = run_dir.train_rows, run_dir.sft_adapter
    if not run_dir.has_adapter(adapter):
        raise KitError("no SFT adapter", where=adapter, fix="run `perskit train <recipe>` first")
    if not train.is_file():
        raise KitError("no training data", where=train, fix="run `perskit construct <recipe>` first")
    backend = get_backend(cfg.backend)
    base = base_for_run(loaded, run_dir, "dpo")
    inputs = hash_obj({"data": hash_paths([train, adapter]), "dpo": loaded.spec.section_hash("dpo", "train"),
                       "base": base.fingerprint})
    if not ctx.force and stage.is_done(inputs) and run_dir.has_adapter(run_dir.dpo_adapter):
        echo(f"dpo: up to date ({run_dir.dpo_adapter}); use --force to retrain")
        return stage.manifest()
    keep = {k: v for k, v in stage.manifest().items()
            if k in ("mine_hash", "pair_counts", "mine_notes", "judge_failures")}
    stage.begin(inputs, backend=cfg.backend, base_model=base.path, **keep)
    pairs_path, counts = mine_stage(loaded, ctx.persona, run_dir, base, echo=echo)
    echo(f"dpo: pairs per source {counts}")
    result = backend.dpo(cfg, dcfg, pairs_path, stage.path, base.folder, adapter, resume=ctx.resume)
    peak = max(result.get("peak_rss_mb") or 0, peak_rss_mb())
    if not is_main_process():
        return {"metrics": result, "peak_rss_mb": peak}
    return stage.finish(counts=counts, metrics=result, peak_rss_mb=peak, adapter=str(run_dir.dpo_adapter))


def report(ctx, m: Manifest) -> list[str]:
    if not m.get("adapter"):
        return []  # dpo disabled, or a non-zero rank under accelerate launch
    r = m.get("metrics", {})
    return [f"dpo: {r.get('steps')} steps on {r.get('pairs')} pairs {m.get('counts', {})}; "
            f"reward accuracy {r.get('reward_accuracy')}, margin {r.get('reward_margin')}, "
            f"peak RSS {m.get('peak_rss_mb')} MiB",
            f"  adapter: {m.get('adapter')}"]
