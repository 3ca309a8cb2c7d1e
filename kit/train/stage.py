"""The ``sft`` stage: construct/train.jsonl -> sft/adapter, with a Stage manifest.

The stage is skipped when its inputs (training data, train section of the recipe,
chat-template and general-data files, base model folder) are unchanged since a finished
run; ``--resume`` continues an interrupted run from its newest checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from kit.errors import KitError
from kit.rundir import hash_obj, hash_paths


def is_main_process() -> bool:
    """Rank 0 under ``accelerate launch``/torchrun (or a plain single process)."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


def base_model_dir(loaded, cfg) -> Path:
    """The local HF folder for ``train.model`` (MiniCPM converted to Llama on the way)."""
    from kit.models.minicpm import ensure_llama
    from kit.models.resolve import home, materialize

    name = cfg.model
    local = loaded.resolve_path(name)
    base = materialize(str(local) if local.is_dir() else name)
    return ensure_llama(base, home() / "models") if Path(base).is_dir() else base


def _optional_files(loaded, cfg) -> list[Path]:
    files = []
    for field in ("chat_template", "mix_general"):
        value = getattr(cfg, field)
        if value:
            p = loaded.resolve_path(value)
            if not p.is_file():
                raise KitError("file not found", where=f"train.{field}={value}", fix="fix the path in the recipe")
            files.append(p)
    return files


def resolved_cfg(loaded):
    """The train config with file fields made absolute (they are relative to the project root)."""
    cfg = loaded.spec.train
    upd = {f: str(loaded.resolve_path(getattr(cfg, f))) for f in ("chat_template", "mix_general") if getattr(cfg, f)}
    return cfg.model_copy(update=upd)


def run_sft(loaded, run, *, resume: bool = False, force: bool = False, echo=print) -> dict:
    from kit.rundir import peak_rss_mb
    from kit.train.backends import get_backend

    cfg = resolved_cfg(loaded)
    train = run.path / "construct" / "train.jsonl"
    test = run.path / "construct" / "test.jsonl"
    if not train.is_file():
        raise KitError("no training data", where=train, fix="run `perskit construct <recipe>` first")
    backend = get_backend(cfg.backend)
    base = base_model_dir(loaded, cfg)
    stage = run.stage("sft")
    inputs = hash_obj({"data": hash_paths([train] + ([test] if test.is_file() else []) + _optional_files(loaded, cfg)),
                       "train": loaded.spec.section_hash("train"), "base": str(base)})
    if not force and stage.is_done(inputs) and (stage.path / "adapter" / "adapter_config.json").is_file():
        echo(f"sft: up to date ({stage.path / 'adapter'}); use --force to retrain")
        return stage.manifest()
    main = is_main_process()
    if main:
        stage.begin(inputs, backend=cfg.backend, base_model=str(base))
    result = backend.sft(cfg, train, test if test.is_file() else None, stage.path, Path(base), resume=resume)
    peak = max(result.get("peak_rss_mb") or 0, peak_rss_mb())
    if not main:
        return {"metrics": result, "peak_rss_mb": peak}
    return stage.finish(counts={"steps": result.get("steps"), "records": result.get("records"),
                                "general_rows": result.get("general_rows")},
                        metrics=result, peak_rss_mb=peak, adapter=str(stage.path / "adapter"))
