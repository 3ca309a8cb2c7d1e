"""``trl`` SFT: TRL's SFTTrainer + PEFT LoRA (QLoRA with bitsandbytes on CUDA), on the
shared loaders of ``kit.tuning.hf``."""

from __future__ import annotations

from pathlib import Path

from kit.rundir import peak_rss_mb


def sft(cfg, train_path: Path, eval_path: Path | None, out_dir: Path, base_dir: Path, resume: bool = False) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from kit.tuning.data import load_records, mix_general, resolve_chat_template, tokenize_records
    from kit.tuning.hf import (checkpoint_args, hush, load_model, load_tokenizer, lora_config, no_pickle_callback,
                               pick_device, prepare_resume, quiet, save_adapter)
    from kit.tuning.progress import make_callback

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hush()
    device = pick_device(cfg)
    tok = load_tokenizer(base_dir)
    template_file = Path(cfg.chat_template) if cfg.chat_template else None
    template = resolve_chat_template(tok, cfg.model, base_dir, template_file)
    records = load_records(Path(train_path))
    records, n_general = mix_general(records, Path(cfg.mix_general) if cfg.mix_general else None,
                                     cfg.mix_ratio, cfg.seed)
    rows = tokenize_records(tok, template, records, cfg.max_seq_len)
    train_ds = Dataset.from_list(rows)
    eval_ds = None
    if eval_path is not None and Path(eval_path).is_file():
        eval_ds = Dataset.from_list(tokenize_records(tok, template, load_records(Path(eval_path), "test.jsonl"),
                                                     cfg.max_seq_len))

    ckpt = prepare_resume(out_dir, resume)
    model = load_model(base_dir, cfg, device)
    # Length-grouped batches cut padding without packing's cost on CPU, where attention over
    # a packed row (no varlen kernel) costs more than the padding it saves.
    sampling = "group_by_length" if cfg.group_by_length and not cfg.packing else "random"
    args = SFTConfig(**checkpoint_args(cfg, out_dir, device), max_length=cfg.max_seq_len, packing=cfg.packing,
                     train_sampling_strategy=sampling,
                     packing_strategy="bfd", dataset_num_proc=None, per_device_eval_batch_size=cfg.batch_size)
    cb = make_callback(out_dir / "metrics.jsonl", "sft")
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tok, peft_config=lora_config(cfg, base_dir),
                         callbacks=[cb, no_pickle_callback(out_dir)])
    quiet(trainer)
    trainer.train(resume_from_checkpoint=ckpt)
    result = {"steps": trainer.state.global_step, "records": len(records), "general_rows": n_general,
              "train_rows": len(rows), **{f"train_{k}": v for k, v in cb.summary.items()},
              "tokens_per_s": cb.summary["tokens_per_s"], "final_loss": cb.last.get("loss"),
              "resumed_from": ckpt, "device": device, "packing": cfg.packing}
    if eval_ds is not None:
        result["eval_loss"] = round(float(trainer.evaluate()["eval_loss"]), 4)
    if trainer.is_world_process_zero():  # under accelerate/DDP only rank 0 writes the adapter
        save_adapter(trainer.model, tok, template, out_dir / "adapter")
    trainer.accelerator.wait_for_everyone()
    result["world_size"] = trainer.accelerator.num_processes
    result["peak_rss_mb"] = peak_rss_mb()
    return result
