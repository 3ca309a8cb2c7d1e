"""The ``dpo`` stage: mine pairs into dpo/pairs.jsonl (held-out share in dpo/heldout.jsonl), train
dpo/adapter from sft/adapter, and score the policy on the held-out pairs.

Mining and training are resumable separately: first-round pairs are kept when the mining
inputs (training data, SFT adapter, dpo section, contrast personas) are unchanged, so a
failed or interrupted DPO training does not regenerate base/SFT answers. With
``dpo.rounds: N`` each later round re-mines with the previous round's policy (on-policy
negatives), trains from it (it is that round's reference too) and is scored on the same
held-out questions against the SFT reference.
"""

from __future__ import annotations

from pathlib import Path

from kit.errors import KitError
from kit.progress import heartbeat
from kit.rundir import Manifest, hash_obj, hash_paths, read_jsonl, settings, write_jsonl


def _contrast_specs(loaded, names: list[str]) -> list:
    from kit.spec.persona import load_persona

    out = []
    for name in names:
        path = loaded.resolve_path(name)
        if not path.exists() and (loaded.root / "personas" / name).exists():
            path = loaded.root / "personas" / name
        try:
            out.append(load_persona(path).spec)
        except KitError as exc:
            raise KitError(f"contrast persona cannot be loaded: {exc.message}", where=f"dpo.contrast_personas: {name}",
                           fix="name a persona folder (e.g. personas/tomas-reyes)") from None
    return out


def contrast_records(loaded, names: list[str]) -> dict[str, list[dict]]:
    """Answers of other personas: their constructed data when a run exists, else their gold examples."""
    from kit.rundir import RunDir

    out: dict[str, list[dict]] = {}
    for other in _contrast_specs(loaded, names):
        run_train = RunDir(loaded.root / "runs" / f"{other.id}-{loaded.spec.name}").train_rows
        rows = read_jsonl(run_train) if run_train.is_file() else []
        if not rows:
            rows = [{"messages": [{"role": "system", "content": other.system_prompt(g.stage)},
                                  {"role": "user", "content": g.q}, {"role": "assistant", "content": g.a}],
                     "meta": {"stage": g.stage, "pattern": g.type}} for g in other.gold]
        out[other.id] = rows
    return out


def contrast_systems(loaded, names: list[str], style: dict) -> dict[str, list[str]]:
    """Each contrast persona's system prompt for every stage, in the training rows' style, so the
    SFT model "told it is the contrast persona" reads the prompt the way it was trained to."""
    return {o.id: [o.system_prompt(s.id, **style) for s in o.stages] for o in _contrast_specs(loaded, names)}


def _judge(loaded, run):
    from kit.judge import make_judge
    from kit.judge.rules import RuleJudge

    mode = loaded.spec.dpo.judge
    teacher = loaded.spec.teacher
    if mode == "auto" and teacher.kind == "scripted":
        return RuleJudge()  # scripted teachers produce test fixtures, not judgements
    return make_judge(mode, teacher, run.path / "dpo" / "cache", where="dpo.judge")


def heldout_path(run) -> Path:
    return run.dpo_pairs.with_name("heldout.jsonl")


def mine(loaded, persona, run, base, policy: Path, echo=print) -> tuple[list[dict], dict]:
    """Mine pairs with ``policy`` as the SFT/current model; returns (pairs, figures)."""
    from kit.dpo.mine import make_embedder, mine_pairs
    from kit.dpo.negatives import prompt_similarity
    from kit.text import embed_available
    from kit.tuning import generate

    dcfg = loaded.spec.dpo
    style = loaded.spec.construct.prompt_style()
    judge = _judge(loaded, run) if {"induction", "knows_later"} & set(dcfg.negatives) else None
    backend = loaded.spec.train.backend
    gen = lambda ad: (lambda msgs: generate(backend, base.folder, ad, msgs, dcfg.gen_max_tokens))  # noqa: E731
    names = dcfg.contrast_personas
    res = mine_pairs(read_jsonl(run.train_rows), dcfg,
                     contrast=contrast_records(loaded, names) if "other_persona" in dcfg.negatives else {},
                     contrast_systems=contrast_systems(loaded, names, style), generate_base=gen(None),
                     generate_sft=gen(policy), judge=judge, persona=persona.spec, style=style,
                     seed=loaded.spec.train.seed, progress=echo)
    if not res.pairs:
        raise KitError(f"no preference pairs could be mined ({res.notes})", where="dpo.negatives",
                       fix="add base_brief/sft_other_stage to dpo.negatives or add dpo.contrast_personas")
    # MiniLM when installed (the figure the issue quotes), else the bag-of-words vector; named either way.
    embedder = "minilm" if embed_available() else "bow"
    sim = prompt_similarity(res.pairs, make_embedder(embedder))
    return res.pairs, {"pair_counts": {**{k: v for k, v in res.counts.items() if v}, "total": len(res.pairs)},
                       "mine_notes": res.notes, "judge_failures": getattr(judge, "failures", 0),
                       "prompt_similarity": {"embedder": embedder, **sim}}


def split_and_write(loaded, run, pairs: list[dict], path: Path) -> dict:
    from kit.dpo.negatives import holdout_split

    train, held = holdout_split(pairs, loaded.spec.dpo.heldout_share, loaded.spec.train.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, train)
    write_jsonl(heldout_path(run), held)
    return {"train": len(train), "heldout": len(held)}


def mine_stage(loaded, persona, run, base, echo=print) -> tuple[Path, dict]:
    """First-round pairs (reused when the mining inputs are unchanged)."""
    dcfg = loaded.spec.dpo
    pairs_path, stage = run.dpo_pairs, run.stage("dpo")
    # Only what changes the pairs: retuning beta or steps must not regenerate answers.
    training_only = {"enabled", "beta", "max_steps", "learning_rate", "batch_size", "max_length", "rounds"}
    mining = {k: v for k, v in settings(dcfg).items() if k not in training_only}
    mine_hash = hash_obj({"data": hash_paths([run.train_rows, run.sft_adapter]), "dpo": mining,
                          "style": loaded.spec.construct.prompt_style(),
                          "base": base.fingerprint, "backend": loaded.spec.train.backend})
    m = stage.manifest()
    if m.get("mine_hash") == mine_hash and pairs_path.is_file() and heldout_path(run).is_file():
        echo(f"dpo: reusing {m.get('pair_counts', {})} pairs in {pairs_path}")
        return pairs_path, m.get("pair_counts", {})
    pairs, figures = mine(loaded, persona, run, base, run.sft_adapter, echo)
    figures["split"] = split_and_write(loaded, run, pairs, pairs_path)
    stage.update(mine_hash=mine_hash, **figures)
    return pairs_path, figures["pair_counts"]


def _score(loaded, run, base, policy: Path) -> dict:
    from kit.dpo.heldout import heldout_rewards

    held = heldout_path(run)
    pairs = read_jsonl(held) if held.is_file() else []  # written by split_and_write, same run
    dcfg = loaded.spec.dpo
    return heldout_rewards(base.folder, run.sft_adapter, policy, pairs, dcfg.beta, dcfg.max_length)


def train_rounds(ctx, backend, base, echo) -> tuple[dict, list[dict]]:
    """One DPO round per ``dpo.rounds``; returns (last backend result, per-round figures)."""
    loaded, run_dir = ctx.loaded, ctx.run
    cfg, dcfg, stage = loaded.train_config(), loaded.spec.dpo, run_dir.stage("dpo")
    pairs_path, counts = mine_stage(loaded, ctx.persona, run_dir, base, echo=echo)
    start, rounds = run_dir.sft_adapter, []
    for k in range(1, dcfg.rounds + 1):
        last = k == dcfg.rounds
        if k > 1:
            echo(f"dpo: round {k}: re-mining with the round-{k - 1} policy")
            pairs, figures = mine(loaded, ctx.persona, run_dir, base, start, echo)
            pairs_path = stage.path / f"round-{k}" / "pairs.jsonl"
            # the held-out questions stay the same: the split is by question hash
            figures["split"] = split_and_write(loaded, run_dir, pairs, pairs_path)
            counts = figures["pair_counts"]
        else:
            figures = {k2: stage.manifest().get(k2) for k2 in ("pair_counts", "prompt_similarity", "split")}
        echo(f"dpo: round {k}/{dcfg.rounds}: pairs per source {counts}")
        out_dir = stage.path if last else stage.path / f"round-{k}"
        result = backend.dpo(cfg, dcfg, pairs_path, out_dir, base.folder, start, resume=ctx.resume and k == 1)
        start = out_dir / "adapter"
        with heartbeat("dpo: held-out rewards"):
            held = _score(loaded, run_dir, base, start)
        echo(f"dpo: round {k}: held-out reward accuracy {held.get('reward_accuracy')} "
             f"margin {held.get('reward_margin')} on {held.get('n')} pairs")
        rounds.append({"round": k, **figures, "heldout": held,
                       "train_reward_accuracy": result.get("reward_accuracy"),
                       "train_reward_margin": result.get("reward_margin"), "steps": result.get("steps")})
    return result, rounds


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
                       "style": loaded.spec.construct.prompt_style(), "base": base.fingerprint})
    if not ctx.force and stage.is_done(inputs) and run_dir.has_adapter(run_dir.dpo_adapter):
        echo(f"dpo: up to date ({run_dir.dpo_adapter}); use --force to retrain")
        return stage.manifest()
    keep = {k: v for k, v in stage.manifest().items()
            if k in ("mine_hash", "pair_counts", "mine_notes", "judge_failures", "prompt_similarity", "split")}
    stage.begin(inputs, backend=cfg.backend, base_model=base.path, **keep)
    result, rounds = train_rounds(ctx, backend, base, echo)
    peak = max(result.get("peak_rss_mb") or 0, peak_rss_mb())
    if not is_main_process():
        return {"metrics": result, "peak_rss_mb": peak}
    general = None
    if dcfg.general_check:
        from kit.dpo.heldout import general_perplexity

        with heartbeat("dpo: general-text perplexity"):
            general = general_perplexity(base.folder, {"base": None, "sft": adapter, "dpo": run_dir.dpo_adapter},
                                         dcfg.max_length)
        echo(f"dpo: general-text perplexity {general['perplexity']}")
    # metrics.reward_accuracy is the trainer's, on the pairs it trained on; heldout is the honest one
    return stage.finish(counts=rounds[-1]["pair_counts"], metrics=result, heldout=rounds[-1]["heldout"],
                        rounds=rounds, general=general, peak_rss_mb=max(peak, peak_rss_mb()),
                        adapter=str(run_dir.dpo_adapter))


def report(ctx, m: Manifest) -> list[str]:
    if not m.get("adapter"):
        return []  # dpo disabled, or a non-zero rank under accelerate launch
    r, h = m.get("metrics", {}), m.get("heldout", {})
    sim = {s: (v["rejected_similarity"], v["chosen_similarity"]) for s, v in m.get("prompt_similarity", {}).items()
           if isinstance(v, dict)}
    return [f"dpo: {r.get('steps')} steps on {r.get('pairs')} pairs {m.get('counts', {})}; "
            f"held-out reward accuracy {h.get('reward_accuracy')}, margin {h.get('reward_margin')} "
            f"({h.get('n')} pairs); peak RSS {m.get('peak_rss_mb')} MiB",
            f"  answer-to-prompt similarity (rejected, chosen) per source: {sim}",
            f"  general-text perplexity (base, sft, dpo): {(m.get('general') or {}).get('perplexity')}",
            f"  adapter: {m.get('adapter')}"]
