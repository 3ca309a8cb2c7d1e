"""The unsloth worker: ``python -m kit.train.unsloth_worker job.json`` (started by
``kit.train.unsloth_backend``; never imported by the parent process).

unsloth must be imported before transformers/TRL/PEFT so its patches apply, which is
why this is a separate process and why ``import unsloth`` is the first thing ``main`` does.
The data pipeline (assistant-only masks, chat template, general-data mixing), the
progress callback and the adapter layout are the same as the ``trl`` backend's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(base_dir: str, cfg: dict, adapter: str | None = None):
    from unsloth import FastLanguageModel

    model, tok = FastLanguageModel.from_pretrained(model_name=adapter or base_dir,
                                                   max_seq_length=cfg.get("max_seq_len", 2048),
                                                   load_in_4bit=cfg.get("load_in_4bit", True), dtype=None)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def _sft(job: dict) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer
    from unsloth import FastLanguageModel

    from kit.models.presets import preset_for
    from kit.rundir import peak_rss_mb
    from kit.train.config import UnslothTrain
    from kit.train.data import load_records, mix_general, resolve_chat_template, tokenize_records
    from kit.train.progress import make_callback
    from kit.train.trl_backend import checkpoint_args, prepare_resume, quiet, save_adapter

    cfg = UnslothTrain(**job["cfg"])
    out_dir, base = Path(job["out_dir"]), Path(job["base_dir"])
    model, tok = _load(str(base), job["cfg"])
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


def _dpo(job: dict) -> dict:
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from kit.dpo.trl_dpo import _dpo_hparams, load_pairs
    from kit.rundir import peak_rss_mb
    from kit.train.config import DpoConfig, UnslothTrain
    from kit.train.progress import make_callback
    from kit.train.trl_backend import checkpoint_args, prepare_resume, quiet, save_adapter

    cfg, dcfg = UnslothTrain(**job["cfg"]), DpoConfig(**job["dpo_cfg"])
    out_dir = Path(job["out_dir"])
    model, tok = _load(job["base_dir"], job["cfg"], adapter=job["sft_adapter"])  # base + SFT adapter, trainable
    template = tok.chat_template
    ckpt = prepare_resume(out_dir, job.get("resume", False))
    args = DPOConfig(**{**checkpoint_args(_dpo_hparams(cfg, dcfg), out_dir, "cuda"),
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


def _generate(job: dict) -> dict:
    import torch
    from unsloth import FastLanguageModel

    from kit.train.data import resolve_chat_template

    model, tok = _load(job["base_dir"], {"load_in_4bit": True}, adapter=job.get("adapter"))
    FastLanguageModel.for_inference(model)
    template = resolve_chat_template(tok, job["base_dir"], Path(job["base_dir"]), None)
    replies = []
    for msgs in job["messages_batch"]:
        text = tok.apply_chat_template(msgs, chat_template=template, tokenize=False, add_generation_prompt=True)
        enc = tok(text, return_tensors="pt", add_special_tokens=False).to("cuda")
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=job["max_tokens"], do_sample=False)
        replies.append(tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return {"replies": replies}


OPS = {"sft": _sft, "dpo": _dpo, "generate": _generate}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m kit.train.unsloth_worker job.json", file=sys.stderr)
        return 2
    import unsloth  # noqa: F401  - first, so its patches apply to everything imported below

    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = OPS[job["op"]](job)
    from kit.rundir import atomic_write_json

    atomic_write_json(Path(job["result_path"]), result)
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a subprocess
    sys.exit(main())
