"""Does the GGUF compute what the trained HF model computes?

Both models get the *same token ids* (the HF chat template applied to the persona's
system prompt and questions), and their next-token distributions are compared at
every position: top-1 agreement and mean KL(HF || GGUF) in nats. Feeding identical
ids isolates the weights/graph. Tokenization is checked separately, twice, and a mismatch
fails the export: the HF-rendered text through llama.cpp's tokenizer (tokenizers alone), and
the GGUF's own embedded template through the chat engine (what chat and serve really send).
"""

from __future__ import annotations

from pathlib import Path

from kit.errors import KitError

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


# A top-1 "flip" between two logits closer than this (in nats) is rounding, not a different
# model: f16 weights and llama.cpp's kernels move logits by ~1e-2, and a DPO-tuned model has
# many near-ties (quickstart 2026-12-02: raw agreement 0.988 from a sound conversion).
CLEAR_GAP = 0.1


def compare(ref: list, test: list) -> dict:
    """Top-1 agreement and mean KL(ref || test) over every position of every prompt.

    ``top1_clear`` is the agreement where the reference's top two logits are at least
    ``CLEAR_GAP`` apart (the export's gate); ``top1`` counts every position."""
    import numpy as np

    agree, kls, sure, clear = [], [], [], []
    for a, b in zip(ref, test):
        v = min(a.shape[1], b.shape[1])  # GGUF vocab can be padded or trimmed vs config.vocab_size
        a, b = a[:, :v].astype(np.float64), b[:, :v].astype(np.float64)
        agree.append(a.argmax(-1) == b.argmax(-1))
        la, lb = _log_softmax(a), _log_softmax(b)
        kls.append((np.exp(la) * (la - lb)).sum(-1))
        sure.append(np.exp(la.max(-1)) >= 0.5)
        top2 = np.sort(a, axis=-1)[:, -2:]
        clear.append(top2[:, 1] - top2[:, 0] >= CLEAR_GAP)
    agree_all, kl_all = np.concatenate(agree), np.concatenate(kls)
    sure_all, clear_all = np.concatenate(sure), np.concatenate(clear)
    # top1_confident: agreement where the HF model itself puts >= 50% on its top token;
    # flips elsewhere are near-ties that barely change sampled text.
    confident = float(agree_all[sure_all].mean()) if sure_all.any() else 1.0
    clear_agree = float(agree_all[clear_all].mean()) if clear_all.any() else float(agree_all.mean())
    return {"top1": round(float(agree_all.mean()), 4), "top1_clear": round(clear_agree, 4),
            "top1_confident": round(confident, 4),
            "kl": float(f"{kl_all.mean():.3g}"), "kl_max": float(f"{kl_all.max():.3g}"),
            "positions": int(agree_all.size), "clear_positions": int(clear_all.sum()),
            "confident_positions": int(sure_all.sum())}


def _log_softmax(x):
    import numpy as np

    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def tokenizer_parity(hf_ids: list[list[int]], gguf_ids: list[list[int]], piece=None) -> dict:
    """Prompts whose GGUF token ids equal the HF ids exactly; for the first that differs, the
    tokens from the first difference on (as text pieces when ``piece`` maps an id to one)."""
    same, first_diff = 0, None
    for a, b in zip(hf_ids, gguf_ids):
        a, b = list(a), list(b)
        if a == b:
            same += 1
            continue
        if first_diff is None:
            k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            show = (lambda ids: [piece(i) for i in ids]) if piece else list
            first_diff = {"position": k, "hf": show(a[k:k + 6]), "gguf": show(b[k:k + 6])}
    return {"exact": same, "prompts": len(hf_ids), **({"first_diff": first_diff} if first_diff else {})}


def hf_text_gguf_ids(llm, tokenizer, convs: list[list[dict]]) -> list[list[int]]:
    """The HF-rendered prompt text tokenized by llama.cpp (the template held fixed, so only the
    tokenizers differ). add_bos=False: the rendered text already spells the BOS if any."""
    out = []
    for msgs in convs:
        text = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        out.append(list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)))
    return out


def plain_text_ids(llm, tokenizer, texts: list[str]) -> tuple[list[list[int]], list[list[int]]]:
    """Text with no special token in front (the questions alone), HF ids and GGUF ids. A
    SentencePiece tokenizer that puts '▁' only at the start of a text cannot be matched here
    by llama.cpp (it prepends at the start and after every special token, or never), so a
    mismatch is reported, not fatal: chat prompts, the checks above, start with a marker."""
    hf = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    return hf, [list(llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)) for t in texts]


def chat_path_ids(gguf: Path, convs: list[list[dict]], n_ctx: int) -> list[list[int]]:
    """What ``perskit chat`` and ``perskit serve`` feed llama.cpp: the GGUF's *embedded* template,
    rendered by the chat engine and tokenized by the GGUF's tokenizer."""
    from kit.engine.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(gguf, n_ctx=n_ctx, seed=0)
    try:
        return [list(engine.tokenize_prompt(engine.render(msgs))) for msgs in convs]
    finally:
        engine.close()


def require_same_tokens(result: dict, *, what: str, where) -> None:
    """A GGUF that tokenizes prompts differently sees inputs the model was never trained on:
    the export fails rather than ship it."""
    if result["exact"] == result["prompts"]:
        return
    d = result["first_diff"]
    raise KitError(f"{what}: {result['prompts'] - result['exact']} of {result['prompts']} chat prompts tokenize "
                   f"differently from the trained model (token {d['position']}: HF {d['hf']} vs GGUF {d['gguf']})",
                   where=str(where), fix="do not ship this GGUF; report the tokenizer (kit/export/merge.py "
                                         "converter_view writes the converter's tokenizer metadata)")


def check_tokenizer(llm, tokenizer, convs: list[list[dict]], hf_ids: list[list[int]], where) -> tuple[dict, list]:
    """The HF-rendered prompts through the GGUF's tokenizer (a mismatch fails the export), and
    the bare questions (a mismatch is a warning, see plain_text_ids). Returns (results, warnings)."""
    piece = tokenizer.convert_ids_to_tokens
    out = {"hf_text": tokenizer_parity(hf_ids, hf_text_gguf_ids(llm, tokenizer, convs), piece)}
    require_same_tokens(out["hf_text"], what="llama.cpp's tokenizer", where=where)
    out["plain_text"] = tokenizer_parity(*plain_text_ids(llm, tokenizer, [c[-1]["content"] for c in convs]), piece)
    bad = out["plain_text"]["prompts"] - out["plain_text"]["exact"]
    warnings = [f"llama.cpp tokenizes {bad} of {out['plain_text']['prompts']} plain texts (no chat markers) "
                f"differently from the HF tokenizer: {out['plain_text']['first_diff']}"] if bad else []
    return out, warnings


def check_chat_path(gguf: Path, tokenizer, convs: list[list[dict]], hf_ids: list[list[int]], n_ctx: int) -> dict:
    """The GGUF's embedded template + tokenizer, as chat and serve use them, must give the HF ids."""
    out = tokenizer_parity(hf_ids, chat_path_ids(gguf, convs, n_ctx), tokenizer.convert_ids_to_tokens)
    require_same_tokens(out, what="the GGUF's chat template + tokenizer", where=gguf)
    return out


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
