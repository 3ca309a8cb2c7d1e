"""``mlx`` SFT: mlx-lm LoRA with our own loss and batch iterator.

The batches carry the assistant-only mask from ``kit.tuning.data`` (mlx-lm's built-in
datasets can only mask one prompt prefix, not every non-assistant turn), so both
backends train on exactly the same tokens. The loop, LoRA layers and adapter layout are
``kit.tuning.mlx``, shared with DPO (``kit.dpo.mlx_dpo``).
"""

from __future__ import annotations

from pathlib import Path

from kit.errors import KitError
from kit.rundir import peak_rss_mb


def iterate_masked(dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None, **_):
    """Batches of (ids, mask) padded to the batch max; ``mask`` marks trained tokens."""
    import mlx.core as mx
    import numpy as np

    from kit.tuning.mlx import padded_width

    if len(dataset) < batch_size:
        raise KitError(f"only {len(dataset)} rows for batch_size {batch_size}", where="train.batch_size",
                       fix="lower train.batch_size or add data")
    rng = np.random.default_rng(seed or 0)
    while True:
        order = rng.permutation(len(dataset))
        for i in range(0, len(order) - batch_size + 1, batch_size):
            rows = [dataset[j] for j in order[i:i + batch_size]]
            width = padded_width(max(len(r["input_ids"]) for r in rows), max_seq_length)
            ids = np.zeros((batch_size, width), np.int32)
            mask = np.zeros((batch_size, width), np.float32)
            for k, r in enumerate(rows):
                n = min(len(r["input_ids"]), width)
                ids[k, :n] = r["input_ids"][:n]
                mask[k, :n] = r["assistant_masks"][:n]
            yield mx.array(ids), mx.array(mask)
        if not loop:
            break


def masked_loss(model, ids, mask):
    """Mean cross-entropy over assistant tokens (targets are shifted by one)."""
    import mlx.core as mx
    import mlx.nn as nn

    logits = model(ids[:, :-1])
    m = mask[:, 1:]
    ce = nn.losses.cross_entropy(logits.astype(mx.float32), ids[:, 1:]) * m
    ntoks = m.sum()
    return ce.sum() / mx.maximum(ntoks, 1), ntoks


def sft(cfg, train_path: Path, eval_path: Path | None, out_dir: Path, base_dir: Path, resume: bool = False) -> dict:
    from kit.tuning.data import load_records, mix_general, resolve_chat_template, tokenize_records
    from kit.tuning.hf import load_tokenizer
    from kit.tuning.mlx import load_lora_model, mlx_core, run_loop, save_adapter

    mlx_core()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(base_dir)
    template = resolve_chat_template(tok, cfg.model, base_dir, Path(cfg.chat_template) if cfg.chat_template else None)
    records, n_general = mix_general(load_records(Path(train_path)), Path(cfg.mix_general) if cfg.mix_general else None,
                                     cfg.mix_ratio, cfg.seed)
    rows = tokenize_records(tok, template, records, cfg.max_seq_len)
    model, params, num_layers = load_lora_model(Path(base_dir), cfg)
    result = run_loop(model, rows, cfg, out_dir, masked_loss, iterate_masked, cfg.max_steps, cfg.learning_rate, resume)
    save_adapter(model, tok, template, out_dir / "adapter", params, num_layers, Path(base_dir))
    return {**result, "records": len(records), "general_rows": n_general, "train_rows": len(rows), "device": "mlx",
            "packing": False, "peak_rss_mb": peak_rss_mb()}
