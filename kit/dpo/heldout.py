"""Reward accuracy and margins of the DPO policy on held-out pairs (questions DPO never trained on).

DPO's implicit reward of an answer y is ``beta * (log p_policy(y|x) - log p_ref(y|x))``; a pair
is won when the chosen answer's reward beats the rejected one's (chance = 0.5, and 0 for the
untrained policy, whose rewards are all zero). The trainer's own reward accuracy is measured
on the pairs it trained on, which says little; this one is measured on pairs held out by
question. Every backend writes adapters in PEFT layout, so one HF/PEFT scorer serves all.
"""

from __future__ import annotations

from pathlib import Path


def answer_logprobs(model, tok, template: str, convs: list[list[dict]], max_length: int) -> list[float]:
    """Summed log-probability of each conversation's last assistant turn (the DPO completion)."""
    import torch

    from kit.tuning.data import tokenize_with_mask

    device = next(model.parameters()).device
    out = []
    for msgs in convs:
        row = tokenize_with_mask(tok, template, msgs, max_length, last_only=True)
        ids = torch.tensor([row["input_ids"]], device=device)
        mask = torch.tensor(row["assistant_masks"][1:], device=device, dtype=torch.bool)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].float()
        lp = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]
        out.append(float(lp[mask].sum()))
    return out


def _summary(rows: list[tuple[float, float]]) -> dict:
    if not rows:
        return {"n": 0}
    return {"n": len(rows), "reward_accuracy": round(sum(c > r for c, r in rows) / len(rows), 4),
            "reward_margin": round(sum(c - r for c, r in rows) / len(rows), 4)}


def heldout_rewards(base_dir: Path, ref_adapter: Path, policy_adapter: Path, pairs: list[dict], beta: float,
                    max_length: int) -> dict:
    """Overall and per-source reward accuracy/margin of ``policy_adapter`` against ``ref_adapter``."""
    from kit.tuning.data import resolve_chat_template
    from kit.tuning.hf import load_for_inference

    if not pairs:
        return {"n": 0, "note": "no held-out pairs (dpo.heldout_share: 0, or too few questions)"}
    model, tok = load_for_inference(Path(base_dir), Path(ref_adapter))
    model.load_adapter(str(policy_adapter), adapter_name="policy")
    template = resolve_chat_template(tok, str(base_dir), Path(base_dir), None)
    chosen = [p["prompt"] + p["chosen"] for p in pairs]
    rejected = [p["prompt"] + p["rejected"] for p in pairs]
    lp = {}
    for name in ("default", "policy"):  # "default" is the reference adapter PeftModel loaded first
        model.set_adapter(name)
        lp[name] = (answer_logprobs(model, tok, template, chosen, max_length),
                    answer_logprobs(model, tok, template, rejected, max_length))
    rows, by_source = [], {}
    for i, p in enumerate(pairs):
        rc = beta * (lp["policy"][0][i] - lp["default"][0][i])
        rr = beta * (lp["policy"][1][i] - lp["default"][1][i])
        rows.append((rc, rr))
        by_source.setdefault(p.get("meta", {}).get("source", "?"), []).append((rc, rr))
    ref_prefers = sum(c > r for c, r in zip(*lp["default"])) / len(pairs)
    return {**_summary(rows), "by_source": {s: _summary(v) for s, v in sorted(by_source.items())},
            "reference_prefers_chosen": round(ref_prefers, 4)}


def general_texts() -> list[str]:
    """Held-out general prose (kit/data/general_heldout.txt: everyday topics, written for this check,
    never trained on), one paragraph per text."""
    from importlib.resources import files

    raw = files("kit").joinpath("data/general_heldout.txt").read_text(encoding="utf-8")
    return [p.strip() for p in raw.split("\n\n") if p.strip()]


def general_perplexity(base_dir: Path, adapters: dict[str, Path | None], max_length: int = 512) -> dict:
    """Perplexity of each model (base, or base + adapter) on the held-out general text: a
    general-ability check for before and after DPO (lower is better; a persona model may rise
    a little, a large rise means tuning ate general language)."""
    import math

    import torch

    from kit.tuning.hf import load_for_inference

    texts = general_texts()
    out = {}
    for name, adapter in adapters.items():
        model, tok = load_for_inference(Path(base_dir), Path(adapter) if adapter else None)
        nll, n = 0.0, 0
        for t in texts:
            ids = tok(t, return_tensors="pt", add_special_tokens=False)["input_ids"][:, :max_length]
            with torch.no_grad():
                loss = model(input_ids=ids, labels=ids).loss
            nll += float(loss) * (ids.shape[1] - 1)
            n += ids.shape[1] - 1
        out[name] = round(math.exp(nll / max(n, 1)), 3)
        del model
    return {"texts": len(texts), "tokens": n, "perplexity": out}
