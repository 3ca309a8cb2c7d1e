"""``unsloth`` SFT (CUDA): ``sft`` runs in this process and hands the job to a fresh
worker process (``kit.tuning.unsloth``), where ``work`` runs after ``import unsloth``.
The data pipeline, progress callback and adapter layout are the ``trl`` backend's.
"""

from __future__ import annotations

from pathlib import Path


def sft(cfg, train_path: Path, eval_path: Path | None, out_dir: Path, base_dir: Path, resume: bool = False) -> dict:
    from kit.tuning.unsloth import run_job

    return run_job({"target": "kit.train.unsloth_sft:work", "op": "sft", "cfg": cfg.model_dump(mode="json"),
                    "train_path": str(train_path), "eval_path": str(eval_path) if eval_path else None,
                    "out_dir": str(out_dir), "base_dir": str(base_dir), "resume": resume}, Path(out_dir))


def work(job: dict) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer
    from unsloth import FastLanguageModel

    from kit.models.presets import preset_for
    from kit.rundir import peak_rss_mb
    from kit.train.config import UnslothTrain
    from kit.tuning.data import load_records, mix_general, resolve_chat_template, tokenize_records
    from kit.tuning.hf import checkpoint_args, prepare_resume, quiet, save_adapter
    from kit.tuning.progress import make_callback
    from kit.tuning.unsloth_worker import load

    cfg = UnslothTrain(**job["cfg"])
    out_dir, base = Path(job["out_dir"]), Path(job["base_dir"])
    model, tok = load(str(base), job["cfg"])
    template = resolve_chat_template(tok, cfg.model, base, Path(cfg.chat_template) if cfg.chat_template else None)
    model = FastLanguageModel.get_peft_model(
        model, r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules or preset_for(cfg.model, base).target_modules,
        use_gradient_checkpointing="unsloth", random_state=cfg.seed)
    records, n_general = mix_general(load_records(Path(job["train_path"])),
                                     Path(cfg.mix_general) if cfg.mix_general else None, cfg.mix_ratio, cfg.seed)
    ds = Dataset.from_list(tokenize_records(tok, template, records, cfg.max_seq_len))
    ckpt = prepare_resume(out_dir, job.get("resume", False))
    import torch

    args = SFTConfig(**{**checkpoint_args(cfg, out_dir, "cuda"), "gradient_checkpointing": False,
                        "bf16": torch.cuda.is_bf16_supported(),
                        "fp16": not torch.cuda.is_bf16_supported()},
                     max_length=cfg.max_seq_len, packing=cfg.packing, optim="adamw_8bit")
    cb = make_callback(out_dir / "metrics.jsonl", "sft (unsloth)")
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[cb])
    quiet(trainer)
    trainer.train(resume_from_checkpoint=ckpt)
    save_adapter(trainer.model, tok, template, out_dir / "adapter")
    return {"steps": trainer.state.global_step, "records": len(records), "general_rows": n_general,
            "tokens_per_s": cb.summary["tokens_per_s"], "final_loss": cb.last.get("loss"), "resumed_from": ckpt,
            "device": "cuda", "peak_vram_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
            "peak_rss_mb": peak_rss_mb()}
