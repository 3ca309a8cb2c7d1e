"""mlx-lm plumbing shared by the SFT and DPO trainers on Apple silicon (or Linux CPU via
``mlx-lm[cpu]``): LoRA layers on a frozen base, ``mlx_lm.tuner.trainer.train`` with a
loss and batch iterator passed in (SFT: ``kit.train.mlx_sft``; DPO: ``kit.dpo.mlx_dpo``),
checkpoints, metrics and greedy generation.

Adapters are written twice into ``adapter/``: PEFT layout (``adapter_model.safetensors``
+ ``adapter_config.json``, so export, the HF engine and llama.cpp's LoRA converter read
it) and mlx-lm's own layout under ``adapter/mlx/`` (``mlx_lm.generate --adapter-path``).
The layout conversion (transposes, ``alpha = scale * r``) is ``kit.tuning.mlx_adapter``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from kit.errors import KitError, require
from kit.rundir import append_jsonl


def mlx_core():
    """``mlx.core``, or the one-line error naming the extra to install."""
    require("mlx_lm", "mlx", "train.backend: mlx")
    import mlx.core as mx

    return mx


def lora_keys(model, targets: list[str]) -> list[str]:
    """Module paths inside one block (``self_attn.q_proj``) for the preset's target names."""
    keys = [k for k, _ in model.layers[0].named_modules() if k.rsplit(".", 1)[-1] in set(targets)]
    if not keys:
        raise KitError(f"no LoRA target {targets} found in the model", where="train.lora.target_modules",
                       fix="name linear layers of the model, e.g. q_proj, v_proj")
    return keys


def lora_params(cfg, base_dir: Path, model) -> dict:
    from kit.models.presets import preset_for

    targets = cfg.lora.target_modules or preset_for(cfg.model, base_dir).target_modules
    return {"rank": cfg.lora.r, "scale": cfg.lora.alpha / cfg.lora.r, "dropout": cfg.lora.dropout,
            "keys": lora_keys(model, targets)}


def load_lora_model(base_dir: Path, cfg, adapter: Path | None = None):
    """Base model frozen, LoRA layers added (optionally with weights from an mlx adapter)."""
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    import mlx.core as mx

    # LoRA A matrices are randomly initialised: seed mlx so a rerun (or a resume after a
    # kill) trains the same adapter, as the trl backend does.
    mx.random.seed(cfg.seed)
    model, _ = load(str(base_dir))
    model.freeze()
    if adapter is not None:
        acfg = json.loads((adapter / "mlx" / "adapter_config.json").read_text(encoding="utf-8"))
        params, num_layers = acfg["lora_parameters"], acfg["num_layers"]
    else:
        params, num_layers = lora_params(cfg, base_dir, model), cfg.num_layers
    linear_to_lora_layers(model, num_layers, params)
    if adapter is not None:
        model.load_weights(str(adapter / "mlx" / "adapters.safetensors"), strict=False)
    return model, params, num_layers


def save_adapter(model, tokenizer, template: str, adapter_dir: Path, params: dict, num_layers: int,
                 base_dir: Path) -> None:
    """Write the PEFT and mlx layouts plus the tokenizer and training chat template."""
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten
    from safetensors.numpy import save_file

    from kit.tuning.mlx_adapter import peft_config, to_peft

    tmp = adapter_dir.with_name(adapter_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "mlx").mkdir(parents=True)
    weights = dict(tree_flatten(model.trainable_parameters()))
    mx.save_safetensors(str(tmp / "mlx" / "adapters.safetensors"), weights)
    (tmp / "mlx" / "adapter_config.json").write_text(json.dumps(
        {"fine_tune_type": "lora", "num_layers": num_layers, "lora_parameters": params}, indent=2), encoding="utf-8")
    peft, modules = to_peft({k: np.array(w.astype(mx.float32)) for k, w in weights.items()})
    save_file(peft, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
    (tmp / "adapter_config.json").write_text(json.dumps(peft_config(params, modules, base_dir), indent=2),
                                             encoding="utf-8")
    tokenizer.chat_template = template
    tokenizer.save_pretrained(str(tmp))
    if not (tmp / "chat_template.jinja").exists():
        (tmp / "chat_template.jinja").write_text(template, encoding="utf-8")
    shutil.rmtree(adapter_dir, ignore_errors=True)
    tmp.rename(adapter_dir)


def padded_width(longest: int, cap: int, step: int = 32) -> int:
    """Round batch widths up to a multiple of ``step``: mlx-lm compiles the step function
    per input shape, so a few widths keep it from recompiling on nearly every batch."""
    return min(step * -(-longest // step), cap)


class MetricsCallback:
    """mlx-lm reports every ``steps_per_report`` steps; we append those to metrics.jsonl."""

    def __init__(self, path: Path, step0: int = 0):
        self.path, self.step0, self.last, self.tps = path, step0, {}, []

    def on_train_loss_report(self, info: dict):
        row = {"step": self.step0 + info["iteration"], "time": round(time.time(), 3), "loss": info["train_loss"],
               "learning_rate": info["learning_rate"], "tokens_per_s": round(info["tokens_per_second"], 1)}
        self.last = row
        self.tps.append(info["tokens_per_second"])
        append_jsonl(self.path, [row])

    def on_val_loss_report(self, info: dict):
        pass


def _checkpoint(out_dir: Path, resume: bool) -> tuple[Path | None, int]:
    """Newest checkpoint and its global step. Each (re)started run saves into its own
    ``checkpoints/from-<step>/`` because mlx-lm numbers checkpoints from 1 on every call."""
    ck = out_dir / "checkpoints"
    if not resume:
        shutil.rmtree(ck, ignore_errors=True)
        (out_dir / "metrics.jsonl").unlink(missing_ok=True)
        return None, 0
    found = [(int(p.parent.name[5:]) + int(p.name.split("_")[0]), p)
             for p in ck.glob("from-*/*_adapters.safetensors")]
    return (max(found)[1], max(found)[0]) if found else (None, 0)


def run_loop(model, dataset, cfg, out_dir: Path, loss, iterate, steps: int, lr: float, resume: bool) -> dict:
    """mlx-lm's trainer with our loss/iterator, periodic checkpoints and metrics."""
    import mlx.optimizers as optim
    from mlx_lm.tuner.trainer import TrainingArgs, train

    ckpt, done = _checkpoint(out_dir, resume)
    if ckpt is not None:
        # Like mlx-lm's --resume-adapter-file: weights come back, the optimizer restarts.
        model.load_weights(str(ckpt), strict=False)
    left = max(steps - done, 0)
    seg = out_dir / "checkpoints" / f"from-{done:07d}"
    seg.mkdir(parents=True, exist_ok=True)
    cb = MetricsCallback(out_dir / "metrics.jsonl", step0=done)
    t0 = time.perf_counter()
    if left:
        sched = optim.cosine_decay(lr, left, end=lr * 0.05)
        args = TrainingArgs(batch_size=cfg.batch_size, iters=left, steps_per_report=1,
                            steps_per_save=cfg.save_every, max_seq_length=cfg.max_seq_len,
                            adapter_file=str(seg / "adapters.safetensors"),
                            grad_accumulation_steps=cfg.grad_accum, val_batches=0)
        train(model, optim.Adam(learning_rate=sched), dataset, None, args=args, loss=loss,
              iterate_batches=iterate, training_callback=cb)
    seconds = time.perf_counter() - t0
    return {"steps": steps, "resumed_from": str(ckpt) if ckpt else None, "final_loss": cb.last.get("loss"),
            "tokens_per_s": round(sum(cb.tps) / len(cb.tps), 1) if cb.tps else 0.0, "train_seconds": round(seconds, 2)}


def generate(base_dir: Path, adapter: Path | None, messages_batch: list[list[dict]], max_tokens: int,
             progress=None) -> list[str]:
    mlx_core()
    from mlx_lm import generate as mlx_generate
    from mlx_lm import load

    from kit.tuning.data import resolve_chat_template
    from kit.tuning.hf import load_tokenizer

    model, wrapper = load(str(base_dir), adapter_path=str(Path(adapter) / "mlx") if adapter else None)
    tok = load_tokenizer(Path(adapter) if adapter else Path(base_dir))
    template = resolve_chat_template(tok, str(base_dir), Path(base_dir), None)
    out = []
    for msgs in messages_batch:
        prompt = tok.apply_chat_template(msgs, chat_template=template, tokenize=False, add_generation_prompt=True)
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        out.append(mlx_generate(model, wrapper, ids, max_tokens=max_tokens, verbose=False).strip())
        if progress:
            progress(1)
    return out
