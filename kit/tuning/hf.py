"""HF/PEFT plumbing shared by the SFT and DPO trainers (``kit.train.trl_sft``,
``kit.dpo.trl_dpo``, and both unsloth workers): loading the base model and tokenizer,
LoRA settings, TrainingArguments, checkpoints/resume, saving adapters, greedy generation.

CPU runs use fp32 (``use_cpu=True, bf16=False``): bf16 matmuls on most CPUs are slower
than fp32 and lose precision in the LoRA update.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from kit.errors import KitError


def hush() -> None:
    """Our rich bar is the progress display; silence datasets' per-map bars."""
    import datasets

    datasets.disable_progress_bars()


def pick_device(cfg) -> str:
    import torch

    want = cfg.device
    if want == "cuda" and not torch.cuda.is_available():
        raise KitError("train.device is cuda but no CUDA GPU is visible", where="train.device",
                       fix="set train.device: auto (or cpu)")
    return "cuda" if want in ("auto", "cuda") and torch.cuda.is_available() else "cpu"


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token  # padding is masked out of the loss, so reusing EOS is harmless
    return tok


def model_config(base_dir: Path):
    """The model config, minus a stale ``quantization_config`` naming GGUF: a checkpoint
    dequantized from a GGUF and saved as safetensors is plain fp32, but transformers
    copies the GGUF marker into config.json and then refuses to train it."""
    from transformers import AutoConfig

    conf = AutoConfig.from_pretrained(str(base_dir))
    q = getattr(conf, "quantization_config", None)
    method = q.get("quant_method") if isinstance(q, dict) else getattr(q, "quant_method", None)
    if str(getattr(method, "value", method)).lower() == "gguf" and any(Path(base_dir).glob("*.safetensors")):
        del conf.quantization_config
    return conf


def load_model(base_dir: Path, cfg, device: str):
    """The base model on ``device``; 4-bit NF4 when QLoRA is asked for on CUDA."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict = {}
    if cfg.load_in_4bit:
        if device != "cuda":
            raise KitError("load_in_4bit (QLoRA) needs a CUDA GPU", where="train.load_in_4bit",
                           fix="set train.load_in_4bit: false on CPU")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": 0}
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), config=model_config(base_dir), dtype=dtype, **kwargs)
    if kwargs.get("quantization_config") is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    elif device == "cuda":
        model.to("cuda")
    return model


def lora_config(cfg, base_dir: Path):
    from peft import LoraConfig

    from kit.models.presets import preset_for

    preset = preset_for(cfg.model, base_dir)
    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules or preset.target_modules, task_type="CAUSAL_LM")


def save_adapter(model, tokenizer, template: str, adapter_dir: Path, adapter_name: str = "default") -> None:
    """PEFT adapter + tokenizer whose chat template is the one used in training, written
    to a temp folder and swapped in, so a crash never leaves a half-written adapter."""
    tmp = adapter_dir.with_name(adapter_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), selected_adapters=[adapter_name], safe_serialization=True)
    if adapter_name != "default":  # PEFT nests non-default adapters in a subfolder
        for f in (tmp / adapter_name).iterdir():
            f.rename(tmp / f.name)
        (tmp / adapter_name).rmdir()
    tokenizer.chat_template = template
    tokenizer.save_pretrained(str(tmp))
    if not (tmp / "chat_template.jinja").exists():  # older tokenizers embed it in the config only
        (tmp / "chat_template.jinja").write_text(template, encoding="utf-8")
    shutil.rmtree(adapter_dir, ignore_errors=True)
    tmp.rename(adapter_dir)


def checkpoint_args(cfg, out_dir: Path, device: str) -> dict:
    """TrainingArguments shared by SFT and DPO (``cfg``: a train config or ``LoopSettings``)."""
    import torch

    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    gc = cfg.gradient_checkpointing
    return dict(gradient_checkpointing=(device == "cuda") if gc is None else gc,
        output_dir=str(out_dir / "checkpoints"), per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
        max_steps=cfg.max_steps, logging_steps=1, save_strategy="steps", save_steps=cfg.save_every,
        save_total_limit=2, use_cpu=device == "cpu", bf16=bf16, fp16=False, report_to="none", disable_tqdm=True,
        include_num_input_tokens_seen="non_padding", seed=cfg.seed, lr_scheduler_type="cosine",
        warmup_steps=max(1, cfg.max_steps // 20), dataloader_num_workers=0, remove_unused_columns=True)


def quiet(trainer) -> None:
    """Our rich callback replaces HF's printer (which dumps every log dict to stdout)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def latest_checkpoint(out_dir: Path) -> str | None:
    ckpts = sorted((out_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(ckpts[-1]) if ckpts else None


def prepare_resume(out_dir: Path, resume: bool) -> str | None:
    """With ``--resume`` continue from the newest checkpoint; otherwise start clean."""
    if resume:
        return latest_checkpoint(out_dir)
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    (out_dir / "metrics.jsonl").unlink(missing_ok=True)
    return None


def strip_pickles(out_dir: Path) -> None:
    """HF checkpoints include a pickled ``training_args.bin`` that resume never reads;
    drop it so run folders hold no pickle."""
    for p in (out_dir / "checkpoints").glob("checkpoint-*/training_args.bin"):
        p.unlink(missing_ok=True)


def no_pickle_callback(out_dir: Path):
    """A trainer callback that runs :func:`strip_pickles` after every checkpoint save."""
    from transformers import TrainerCallback

    class NoPickle(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            strip_pickles(out_dir)

    return NoPickle()


def load_for_inference(base_dir: Path, adapter: Path | None, device: str = "cpu"):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir), config=model_config(base_dir), dtype=torch.float32)
    tok_dir = base_dir
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
        tok_dir = adapter  # the adapter carries the template it was trained with
    model.to(device).eval()
    return model, load_tokenizer(tok_dir)


def generate(base_dir: Path, adapter: Path | None, messages_batch: list[list[dict]], max_tokens: int,
             batch_size: int = 8, progress=None) -> list[str]:
    """Greedy replies for each conversation (deterministic, so mining is reproducible);
    ``progress(n)`` is told after each batch."""
    import torch

    from kit.tuning.data import resolve_chat_template

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tok = load_for_inference(Path(base_dir), Path(adapter) if adapter else None, device)
    template = resolve_chat_template(tok, str(base_dir), Path(base_dir), None)
    tok.padding_side = "left"
    outs: list[str] = []
    for i in range(0, len(messages_batch), batch_size):
        chunk = messages_batch[i:i + batch_size]
        texts = [tok.apply_chat_template(m, chat_template=template, tokenize=False, add_generation_prompt=True)
                 for m in chunk]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        for row in gen[:, enc["input_ids"].shape[1]:]:
            outs.append(tok.decode(row, skip_special_tokens=True).strip())
        if progress:
            progress(len(chunk))
    return outs
