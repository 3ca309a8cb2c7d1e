"""DPO with TRL's DPOTrainer, starting from the SFT adapter.

The policy is the SFT adapter (trainable). Given a PEFT model and no ``ref_model``, TRL
1.16 copies the loaded adapter into a frozen adapter named ``ref`` and switches to it for
reference log-probs: no second model is kept in memory and the reference is the SFT
model, as in the DPO paper, rather than the bare base model (what "adapters disabled"
would give, which makes every pair look already won before training starts).
"""

from __future__ import annotations

from pathlib import Path

from kit.errors import KitError
from kit.rundir import peak_rss_mb, read_jsonl


def load_pairs(path: Path) -> list[dict]:
    from kit.rows import read_pairs

    return read_pairs(path)


def too_long(tok, template: str, pairs: list[dict], max_length: int) -> int:
    """How many pairs TRL would drop because the prompt alone fills ``max_length``."""
    n = 0
    for p in pairs:
        text = tok.apply_chat_template(p["prompt"], chat_template=template, tokenize=False, add_generation_prompt=True)
        n += len(tok(text, add_special_tokens=False)["input_ids"]) >= max_length
    return n


def dpo_hparams(cfg, dpo_cfg):
    """The trainer settings for DPO: steps, batch, rate and length from ``dpo``, the rest from ``train``."""
    from kit.tuning import LoopSettings

    return LoopSettings(batch_size=dpo_cfg.batch_size, learning_rate=dpo_cfg.learning_rate,
                        max_steps=dpo_cfg.max_steps, max_seq_len=dpo_cfg.max_length, grad_accum=cfg.grad_accum,
                        save_every=cfg.save_every, seed=cfg.seed, gradient_checkpointing=cfg.gradient_checkpointing)


def dpo(cfg, dpo_cfg, pairs_path: Path, out_dir: Path, base_dir: Path, sft_adapter: Path,
        resume: bool = False) -> dict:
    from datasets import Dataset
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer

    from kit.tuning.hf import (checkpoint_args, hush, load_model, load_tokenizer, no_pickle_callback, pick_device,
                               prepare_resume, quiet, save_adapter)
    from kit.tuning.progress import make_callback

    out_dir, base_dir, sft_adapter = Path(out_dir), Path(base_dir), Path(sft_adapter)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not (sft_adapter / "adapter_config.json").is_file():
        raise KitError("the SFT adapter is missing", where=sft_adapter, fix="run `perskit train <recipe>` first")
    pairs = load_pairs(Path(pairs_path))
    hush()
    device = pick_device(cfg)
    tok = load_tokenizer(sft_adapter)  # the adapter carries the chat template used in SFT
    template = tok.chat_template
    dropped = too_long(tok, template, pairs, dpo_cfg.max_length)
    if dropped == len(pairs):
        raise KitError(f"every prompt is longer than dpo.max_length={dpo_cfg.max_length} tokens", where="dpo.max_length",
                       fix="raise dpo.max_length (persona system prompts can be 600+ tokens)")
    ckpt = prepare_resume(out_dir, resume)
    base = load_model(base_dir, cfg, device)
    model = PeftModel.from_pretrained(base, str(sft_adapter), is_trainable=True)
    hp = dpo_hparams(cfg, dpo_cfg)
    args = DPOConfig(**checkpoint_args(hp, out_dir, device), beta=dpo_cfg.beta, max_length=dpo_cfg.max_length,
                     per_device_eval_batch_size=dpo_cfg.batch_size)
    ds = Dataset.from_list(pairs)
    cb = make_callback(out_dir / "metrics.jsonl", "dpo")
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=ds, processing_class=tok,
                         callbacks=[cb, no_pickle_callback(out_dir)])
    quiet(trainer)
    trainer.train(resume_from_checkpoint=ckpt)
    # Reward accuracy/margin of the trained policy over all mined pairs (chance = 0.5).
    ev = trainer.evaluate(eval_dataset=ds)
    if trainer.is_world_process_zero():
        save_adapter(trainer.model, tok, template, out_dir / "adapter", adapter_name="default")
    trainer.accelerator.wait_for_everyone()
    logged = [r for r in read_jsonl(out_dir / "metrics.jsonl") if "rewards/accuracies" in r]
    return {"steps": trainer.state.global_step, "pairs": len(pairs), "pairs_too_long": dropped, "beta": dpo_cfg.beta,
            "reward_accuracy": round(float(ev.get("eval_rewards/accuracies", 0.0)), 4),
            "reward_margin": round(float(ev.get("eval_rewards/margins", 0.0)), 4),
            "eval_loss": round(float(ev.get("eval_loss", 0.0)), 4),
            "first_loss": logged[0]["loss"] if logged else None, "final_loss": cb.last.get("loss"),
            "tokens_per_s": cb.summary["tokens_per_s"], "resumed_from": ckpt, "device": device,
            "reference": "sft-adapter", "peak_rss_mb": peak_rss_mb()}
