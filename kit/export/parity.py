"""Does the GGUF compute what the trained HF model computes?

Both models get the *same token ids* (the HF chat template applied to the persona's
system prompt and questions), and their next-token distributions are compared at
every position: top-1 agreement and mean KL(HF || GGUF) in nats. Feeding identical
ids isolates the weights/graph; tokenizer agreement is measured separately by
tokenizing the rendered prompt with llama.cpp and comparing the ids.
"""

from __future__ import annotations

from pathlib import Path

GENERIC_QUESTIONS = (
    "Who are you?",
    "What did you do today?",
    "What matters most to you in your work?",
    "Tell me about a mistake you learned from.",
    "What do you think the future will look like?",
    "How would your friends describe you?",
    "What are you reading at the moment?",
    "What would you change about the world?",
)


def parity_conversations(persona, n: int, style: dict | None = None) -> list[list[dict]]:
    """A fixed prompt set: gold questions first, then generic ones, across the persona's stages."""
    spec = persona.spec
    questions = [(g.q, g.stage) for g in spec.gold] + [(q, None) for q in GENERIC_QUESTIONS]
    convs = []
    for i, (q, stage) in enumerate(questions[:n]):
        st = stage or spec.stages[i % len(spec.stages)].id
        convs.append([{"role": "system", "content": spec.system_prompt(st, **(style or {}))}, {"role": "user", "content": q}])
    # Same system prompt next to each other, so the GGUF side can reuse the shared prefix.
    return sorted(convs, key=lambda c: c[0]["content"])


def hf_token_ids(tokenizer, convs: list[list[dict]]) -> list[list[int]]:
    out = []
    for msgs in convs:
        ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        out.append([int(t) for t in ids])
    return out


def hf_logits(merged: Path, ids_list: list[list[int]]):
    """Next-token logits of the merged HF model in fp32, one [T, V] array per prompt."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for ids in ids_list:
            out.append(model(torch.tensor([ids])).logits[0].float().numpy())  # fp32: ~0.2 MB per position
    del model
    return out


def gguf_logits(llm, ids_list: list[list[int]]):
    """Next-token logits of a llama.cpp model (loaded with logits_all=True), one prompt at a
    time: a generator, so only one prompt's [T, V] array is alive at once."""
    import numpy as np

    # Prompts share the persona's long system prompt: keep the shared prefix in the KV
    # cache and evaluate only the rest (a causal model's prefix logits cannot change).
    reuse = not (getattr(llm, "_is_recurrent", False) or getattr(llm, "_is_hybrid", False))
    prev: list[int] = []
    for ids in ids_list:
        k = 0
        if reuse:
            while k < min(len(prev), len(ids) - 1) and prev[k] == ids[k]:
                k += 1
        if k == 0:
            llm.reset()
        else:
            llm.n_tokens = k  # eval() drops the KV cache past n_tokens and continues from there
        llm.eval(ids[k:])
        yield np.array(llm.scores[: len(ids)], dtype=np.float32)
        prev = list(ids)


def compare(ref: list, test: list) -> dict:
    """Top-1 agreement and mean KL(ref || test) over every position of every prompt."""
    import numpy as np

    agree, kls, sure = [], [], []
    for a, b in zip(ref, test):
        v = min(a.shape[1], b.shape[1])  # GGUF vocab can be padded or trimmed vs config.vocab_size
        a, b = a[:, :v].astype(np.float64), b[:, :v].astype(np.float64)
        agree.append(a.argmax(-1) == b.argmax(-1))
        la, lb = _log_softmax(a), _log_softmax(b)
        kls.append((np.exp(la) * (la - lb)).sum(-1))
        sure.append(np.exp(la.max(-1)) >= 0.5)
    agree_all, kl_all, sure_all = np.concatenate(agree), np.concatenate(kls), np.concatenate(sure)
    # top1_confident: agreement where the HF model itself puts >= 50% on its top token;
    # flips elsewhere are near-ties that barely change sampled text.
    confident = float(agree_all[sure_all].mean()) if sure_all.any() else 1.0
    return {"top1": round(float(agree_all.mean()), 4), "top1_confident": round(confident, 4),
            "kl": float(f"{kl_all.mean():.3g}"), "kl_max": float(f"{kl_all.max():.3g}"),
            "positions": int(agree_all.size), "confident_positions": int(sure_all.sum())}


def _log_softmax(x):
    import numpy as np

    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def tokenizer_parity(llm, tokenizer, convs: list[list[dict]], hf_ids: list[list[int]]) -> dict:
    """Share of prompts that llama.cpp tokenizes to exactly the HF ids (as its chat path does)."""
    same = 0
    first_diff = None
    for msgs, ids in zip(convs, hf_ids):
        text = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        # llama-cpp-python's jinja chat path: add_bos=False, special=True (the template has the BOS if any).
        got = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if list(got) == list(ids):
            same += 1
        elif first_diff is None:
            first_diff = {"hf": ids[:12], "gguf": list(got)[:12]}
    return {"exact": same, "prompts": len(convs), **({"first_diff": first_diff} if first_diff else {})}


def chat_samples(llm, convs: list[list[dict]], max_tokens: int = 48) -> list[dict]:
    """Greedy replies through llama-cpp-python's chat path (uses the GGUF's own template)."""
    out = []
    for msgs in convs:
        # No reset: llama-cpp-python reuses the KV cache of the shared system-prompt prefix.
        # Greedy for reproducibility; a mild repeat penalty because tiny models loop when greedy.
        res = llm.create_chat_completion(msgs, max_tokens=max_tokens, temperature=0.0, seed=0, repeat_penalty=1.1)
        choice = res["choices"][0]
        out.append({"q": msgs[-1]["content"], "a": choice["message"]["content"] or "",
                    "finish": choice.get("finish_reason")})
    return out
