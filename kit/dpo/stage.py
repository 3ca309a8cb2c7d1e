"""The ``dpo`` stage: mine pairs into dpo/pairs.jsonl, then train dpo/adapter from sft/adapter.

Mining and training are resumable separately: pairs are kept when the mining inputs
(training data, SFT adapter, dpo section, contrast personas) are unchanged, so a failed
or interrupted DPO training does not regenerate base/SFT answers.
"""

from __future__ import annotations

from pathlib import Path

from kit.errors import KitError
from kit.rundir import hash_obj, hash_paths, read_jsonl, write_jsonl


def contrast_records(loaded, names: list[str]) -> dict[str, list[dict]]:
    """Answers of other personas: their constructed data when a run exists, else their gold examples."""
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
        run_train = loaded.root / "runs" / f"{other.id}-{loaded.spec.name}" / "construct" / "train.jsonl"
        rows = read_jsonl(run_train) if run_train.is_file() else []
        if not rows:
            rows = [{"messages": [{"role": "system", "content": other.system_prompt(g.stage)},
                                  {"role": "user", "content": g.q}, {"role": "assistant", "content": g.a}],
                     "meta": {"stage": g.stage, "pattern": g.type}} for g in other.gold]
        out[other.id] = rows
    return out


def _judge(loaded, run):
    from kit.dpo.judge import HeuristicJudge, make_judge

    mode = loaded.spec.dpo.judge
    teacher = loaded.spec.teacher
    if mode == "auto" and teacher.kind == "scripted":
        return HeuristicJudge()  # scripted teachers produce test fixtures, not judgements
    return make_judge(mode, teacher, run.path / "dpo" / "cache")


def mine_stage(loaded, persona, run, backend, base: Path, echo=print) -> tuple[Path, dict]:
    from kit.dpo.mine import mine_pairs

    dcfg = loaded.spec.dpo
    train = run.path / "construct" / "train.jsonl"
    adapter = run.path / "sft" / "adapter"
    stage = run.stage("dpo")
    pairs_path = stage.path / "pairs.jsonl"
    # Only what changes the pairs: retuning beta or steps must not regenerate answers.
    mining = dcfg.model_dump(mode="json", exclude={"enabled", "beta", "max_steps", "learning_rate", "batch_size",
                                                    "max_length"})
    mine_hash = hash_obj({"data": hash_paths([train, adapter]), "dpo": mining,
                          "base": str(base), "backend": loaded.spec.train.backend})
    m = stage.manifest()
    if m.get("mine_hash") == mine_hash and pairs_path.is_file():
        echo(f"dpo: reusing {m.get('pair_counts', {})} pairs in {pairs_path}")
        return pairs_path, m.get("pair_counts", {})
    records = read_jsonl(train)
    judge = _judge(loaded, run) if dcfg.sources.induction else None
    gen = lambda ad: (lambda msgs: backend.generate(base, ad, msgs, dcfg.gen_max_tokens))  # noqa: E731
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


def run_dpo(loaded, persona, run, *, resume: bool = False, force: bool = False, echo=print) -> dict:
    from kit.rundir import peak_rss_mb
    from kit.train.backends import get_backend
    from kit.train.stage import base_model_dir, is_main_process, resolved_cfg

    cfg = resolved_cfg(loaded)
    dcfg = loaded.spec.dpo
    stage = run.stage("dpo")
    if not dcfg.enabled:
        echo("dpo: disabled in the recipe (dpo.enabled: false)")
        return stage.manifest()
    train = run.path / "construct" / "train.jsonl"
    adapter = run.path / "sft" / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise KitError("no SFT adapter", where=adapter, fix="run `perskit train <recipe>` first")
    if not train.is_file():
        raise KitError("no training data", where=train, fix="run `perskit construct <recipe>` first")
    backend = get_backend(cfg.backend)
    base = base_model_dir(loaded, cfg)
    inputs = hash_obj({"data": hash_paths([train, adapter]), "dpo": loaded.spec.section_hash("dpo", "train"),
                       "base": str(base)})
    if not force and stage.is_done(inputs) and (stage.path / "adapter" / "adapter_config.json").is_file():
        echo(f"dpo: up to date ({stage.path / 'adapter'}); use --force to retrain")
        return stage.manifest()
    keep = {k: v for k, v in stage.manifest().items()
            if k in ("mine_hash", "pair_counts", "mine_notes", "judge_failures")}
    stage.begin(inputs, backend=cfg.backend, base_model=str(base), **keep)
    pairs_path, counts = mine_stage(loaded, persona, run, backend, Path(base), echo=echo)
    echo(f"dpo: pairs per source {counts}")
    result = backend.dpo(cfg, dcfg, pairs_path, stage.path, Path(base), adapter, resume=resume)
    peak = max(result.get("peak_rss_mb") or 0, peak_rss_mb())
    if not is_main_process():
        return {"metrics": result, "peak_rss_mb": peak}
    return stage.finish(counts=counts, metrics=result, peak_rss_mb=peak, adapter=str(stage.path / "adapter"))
