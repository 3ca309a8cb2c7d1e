"""``unsloth`` DPO (CUDA): ``dpo`` runs in this process and hands the job to a fresh
worker process (``kit.tuning.unsloth``), where ``work`` runs after ``import unsloth``:
TRL's DPOTrainer on the unsloth-loaded base + SFT adapter.
"""

from __future__ import annotations

from pathlib import Path


def dpo(cfg, dpo_cfg, pairs_path: Path, out_dir: Path, base_dir: Path, sft_adapter: Path,
        resume: bool = False) -> dict:
    from dataclasses import asdict

    from kit.dpo.trl_dpo import dpo_hparams
    from kit.tuning.unsloth import run_job

    return run_job({"target": "kit.dpo.unsloth_dpo:work", "op": "dpo", "cfg": cfg.model_dump(mode="json"),
                    "hparams": asdict(dpo_hparams(cfg, dpo_cfg)), "dpo_cfg": dpo_cfg.model_dump(mode="json"),
                    "pairs_path": str(pairs_path),
                    "out_dir": str(out_dir), "base_dir": str(base_dir), "sft_adapter": str(sft_adapter),
                    "resume": resume}, Path(out_dir))


def work(job: dict) -> dict:
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from kit.dpo.config import DpoConfig
    from kit.dpo.trl_dpo import load_pairs
    from kit.rundir import peak_rss_mb
    from kit.tuning import LoopSettings
    from kit.tuning.hf import checkpoint_args, prepare_resume, quiet, save_adapter
    from kit.tuning.progress import make_callback
    from kit.tuning.unsloth_worker import load

    dcfg, hp = DpoConfig(**job["dpo_cfg"]), LoopSettings(**job["hparams"])
    out_dir = Path(job["out_dir"])
    model, tok = load(job["base_dir"], job["cfg"], adapter=job["sft_adapter"])  # base + SFT adapter, trainable
    template = tok.chat_template
    ckpt = prepare_resume(out_dir, job.get("resume", False))
    args = DPOConfig(**{**checkpoint_args(hp, out_dir, "cuda"),
                        "bf16": torch.cuda.is_bf16_supported(), "fp16": not torch.cuda.is_bf16_supported()},
                     beta=dcfg.beta, max_length=dcfg.max_length, optim="adamw_8bit")
    ds = Dataset.from_list(load_pairs(Path(job["pairs_path"])))
    cb = make_callback(out_dir / "metrics.jsonl", "dpo (unsloth)")
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=ds, processing_class=tok, callbacks=[cb])
    quiet(trainer)
    trainer.train(resume_from_checkpoint=ckpt)
    ev = trainer.evaluate(eval_dataset=ds)
    save_adapter(trainer.model, tok, template, out_dir / "adapter")
    return {"steps": trainer.state.global_step, "pairs": len(ds),
            "reward_accuracy": round(float(ev.get("eval_rewards/accuracies", 0.0)), 4),
            "reward_margin": round(float(ev.get("eval_rewards/margins", 0.0)), 4),
            "final_loss": cb.last.get("loss"), "tokens_per_s": cb.summary["tokens_per_s"], "device": "cuda",
            "peak_vram_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1), "peak_rss_mb": peak_rss_mb()}
