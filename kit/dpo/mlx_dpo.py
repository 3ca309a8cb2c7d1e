"""DPO for mlx-lm, which ships none: a DPO loss and a pair batch iterator for
``mlx_lm.tuner.trainer.train``.

Loss (Rafailov et al. 2023), with sequence log-probs summed over the completion tokens:

    z = beta * ((log pi(y_c|x) - log ref(y_c|x)) - (log pi(y_r|x) - log ref(y_r|x)))
    L = -log sigmoid(z) = softplus(-z)

The reference is the SFT model (the policy's starting point); its log-probs are computed
once before training and carried in the batches, so only one model is in memory.
Reward accuracy (share of pairs with beta*(pi-ref) higher for chosen) and mean margin
are measured over all pairs after training, like the trl backend's final evaluation.
"""

from __future__ import annotations

from pathlib import Path

from kit.rundir import append_jsonl, peak_rss_mb


def pair_rows(tok, template: str, pairs: list[dict], max_len: int) -> list[dict]:
    from kit.tuning.data import tokenize_with_mask

    rows = []
    for p in pairs:
        c = tokenize_with_mask(tok, template, p["prompt"] + p["chosen"], max_len, last_only=True)
        r = tokenize_with_mask(tok, template, p["prompt"] + p["rejected"], max_len, last_only=True)
        if any(c["assistant_masks"]) and any(r["assistant_masks"]):
            rows.append({"chosen": c, "rejected": r, "ref": (0.0, 0.0)})
    return rows


def _pad(seqs: list[dict], width: int):
    import mlx.core as mx
    import numpy as np

    ids = np.zeros((len(seqs), width), np.int32)
    mask = np.zeros((len(seqs), width), np.float32)
    for k, s in enumerate(seqs):
        n = min(len(s["input_ids"]), width)
        ids[k, :n], mask[k, :n] = s["input_ids"][:n], s["assistant_masks"][:n]
    return mx.array(ids), mx.array(mask)


def _batch(rows: list[dict], max_len: int):
    import mlx.core as mx

    from kit.tuning.mlx import padded_width

    seqs = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    width = padded_width(max(len(s["input_ids"]) for s in seqs), max_len)
    ids, mask = _pad(seqs, width)
    ref = mx.array([r["ref"][0] for r in rows] + [r["ref"][1] for r in rows])
    return ids, mask, ref


def iterate_pairs(dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None, **_):
    """Batches of (ids, mask, ref_logps): chosen rows first, then the matching rejected ones."""
    import numpy as np

    rng = np.random.default_rng(seed or 0)
    bs = min(batch_size, len(dataset))
    while True:
        order = rng.permutation(len(dataset))
        for i in range(0, len(order) - bs + 1, bs):
            yield _batch([dataset[j] for j in order[i:i + bs]], max_seq_length)
        if not loop:
            break


def sequence_logps(model, ids, mask):
    """Sum of log p(token) over the masked (completion) tokens of each row."""
    import mlx.core as mx

    logits = model(ids[:, :-1]).astype(mx.float32)
    logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    tok_logp = mx.take_along_axis(logp, ids[:, 1:, None], axis=-1).squeeze(-1)
    return (tok_logp * mask[:, 1:]).sum(axis=-1)


def dpo_from_logps(logps, ref, beta: float):
    """Mean DPO loss from sequence log-probs laid out [chosen..., rejected...]."""
    import mlx.core as mx

    b = logps.shape[0] // 2
    z = beta * ((logps[:b] - ref[:b]) - (logps[b:] - ref[b:]))
    return mx.logaddexp(mx.zeros_like(z), -z).mean()  # softplus(-z) = -log sigmoid(z)


def make_dpo_loss(beta: float):
    def dpo_loss(model, ids, mask, ref):
        return dpo_from_logps(sequence_logps(model, ids, mask), ref, beta), mask[:, 1:].sum()

    return dpo_loss


def score(model, rows: list[dict], beta: float, max_len: int, bs: int = 4) -> list[tuple[float, float]]:
    """(logp chosen, logp rejected) per pair under ``model``."""
    out = []
    for i in range(0, len(rows), bs):
        ids, mask, _ = _batch(rows[i:i + bs], max_len)
        lp = sequence_logps(model, ids, mask).tolist()
        n = len(rows[i:i + bs])
        out += list(zip(lp[:n], lp[n:]))
    return out


def dpo(cfg, dpo_cfg, pairs_path: Path, out_dir: Path, base_dir: Path, sft_adapter: Path,
        resume: bool = False) -> dict:
    from kit.dpo.trl_dpo import dpo_hparams, load_pairs
    from kit.tuning.hf import load_tokenizer
    from kit.tuning.mlx import load_lora_model, mlx_core, run_loop, save_adapter

    mlx_core()
    out_dir, base_dir, sft_adapter = Path(out_dir), Path(base_dir), Path(sft_adapter)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(sft_adapter)
    template = tok.chat_template
    rows = pair_rows(tok, template, load_pairs(Path(pairs_path)), dpo_cfg.max_length)
    model, params, num_layers = load_lora_model(base_dir, cfg, adapter=sft_adapter)
    model.eval()
    for r, (c, j) in zip(rows, score(model, rows, dpo_cfg.beta, dpo_cfg.max_length)):
        r["ref"] = (c, j)  # the SFT model is the reference
    model.train()
    hp = dpo_hparams(cfg, dpo_cfg)
    result = run_loop(model, rows, hp, out_dir, make_dpo_loss(dpo_cfg.beta), iterate_pairs, dpo_cfg.max_steps,
                      dpo_cfg.learning_rate, resume)
    model.eval()
    after = score(model, rows, dpo_cfg.beta, dpo_cfg.max_length)
    margins = [dpo_cfg.beta * ((c - r["ref"][0]) - (j - r["ref"][1])) for r, (c, j) in zip(rows, after)]
    acc = sum(m > 0 for m in margins) / len(margins)
    margin = sum(margins) / len(margins)
    append_jsonl(out_dir / "metrics.jsonl", [{"step": dpo_cfg.max_steps, "eval": True, "rewards/accuracies": acc,
                                              "rewards/margins": margin}])
    save_adapter(model, tok, template, out_dir / "adapter", params, num_layers, base_dir)
    return {**result, "pairs": len(rows), "beta": dpo_cfg.beta, "reward_accuracy": round(acc, 4),
            "reward_margin": round(margin, 4), "reference": "sft-adapter", "device": "mlx",
            "peak_rss_mb": peak_rss_mb()}
