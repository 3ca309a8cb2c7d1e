"""MiniCPM -> Llama conversion: logit parity against a reference forward written from
MiniCPM's equations (µP scale_emb, scale_depth/sqrt(L) residual branches, logits divided
by hidden_size/dim_model_base, tied embeddings), in pure torch."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

CFG = dict(model_type="minicpm", vocab_size=97, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5,
           rope_theta=10000.0, hidden_act="silu", scale_emb=12.0, scale_depth=1.4, dim_model_base=16,
           tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, torch_dtype="float32")


def _random_minicpm(tied: bool, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    c = CFG
    hd = c["hidden_size"] // c["num_attention_heads"]
    kv = c["num_key_value_heads"] * hd
    r = lambda *s: torch.randn(*s, generator=g) * 0.08  # noqa: E731
    w = {"model.embed_tokens.weight": r(c["vocab_size"], c["hidden_size"]) * 3,
         "model.norm.weight": 1 + r(c["hidden_size"])}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w.update({p + "input_layernorm.weight": 1 + r(c["hidden_size"]),
                  p + "post_attention_layernorm.weight": 1 + r(c["hidden_size"]),
                  p + "self_attn.q_proj.weight": r(c["hidden_size"], c["hidden_size"]),
                  p + "self_attn.k_proj.weight": r(kv, c["hidden_size"]),
                  p + "self_attn.v_proj.weight": r(kv, c["hidden_size"]),
                  p + "self_attn.o_proj.weight": r(c["hidden_size"], c["hidden_size"]),
                  p + "mlp.gate_proj.weight": r(c["intermediate_size"], c["hidden_size"]),
                  p + "mlp.up_proj.weight": r(c["intermediate_size"], c["hidden_size"]),
                  p + "mlp.down_proj.weight": r(c["hidden_size"], c["intermediate_size"])})
    if not tied:
        w["lm_head.weight"] = r(c["vocab_size"], c["hidden_size"]) * 3
    return w


def _rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rope(x, pos, theta):
    d = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    ang = pos[:, None].double() * inv[None]
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1).float(), torch.cat([ang.sin(), ang.sin()], -1).float()
    rot = torch.cat([-x[..., d // 2:], x[..., : d // 2]], -1)
    return x * cos + rot * sin


def minicpm_reference(w: dict, ids: torch.Tensor, c: dict = CFG) -> torch.Tensor:
    """MiniCPM forward from its equations (one sequence, causal, GQA, SiLU MLP)."""
    L, H, KV = c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"]
    hd = c["hidden_size"] // H
    T = ids.shape[0]
    pos = torch.arange(T)
    h = w["model.embed_tokens.weight"][ids] * c["scale_emb"]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for i in range(L):
        p = f"model.layers.{i}."
        x = _rms(h, w[p + "input_layernorm.weight"], c["rms_norm_eps"])
        q = (x @ w[p + "self_attn.q_proj.weight"].T).view(T, H, hd).transpose(0, 1)
        k = (x @ w[p + "self_attn.k_proj.weight"].T).view(T, KV, hd).transpose(0, 1)
        v = (x @ w[p + "self_attn.v_proj.weight"].T).view(T, KV, hd).transpose(0, 1)
        q, k = _rope(q, pos, c["rope_theta"]), _rope(k, pos, c["rope_theta"])
        k, v = k.repeat_interleave(H // KV, 0), v.repeat_interleave(H // KV, 0)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, -1) @ v
        att = att.transpose(0, 1).reshape(T, -1) @ w[p + "self_attn.o_proj.weight"].T
        h = h + att * (c["scale_depth"] / math.sqrt(L))
        x = _rms(h, w[p + "post_attention_layernorm.weight"], c["rms_norm_eps"])
        mlp = (torch.nn.functional.silu(x @ w[p + "mlp.gate_proj.weight"].T) * (x @ w[p + "mlp.up_proj.weight"].T))
        h = h + (mlp @ w[p + "mlp.down_proj.weight"].T) * (c["scale_depth"] / math.sqrt(L))
    h = _rms(h, w["model.norm.weight"], c["rms_norm_eps"])
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return (h / (c["hidden_size"] / c["dim_model_base"])) @ head.T


def _write(tmp_path, w: dict, tied: bool):
    from safetensors.torch import save_file

    src = tmp_path / "minicpm-tiny"
    src.mkdir()
    save_file({k: v.contiguous() for k, v in w.items()}, str(src / "model.safetensors"))
    (src / "config.json").write_text(json.dumps({**CFG, "tie_word_embeddings": tied}), encoding="utf-8")
    return src


@pytest.mark.parametrize("tied", [True, False])
def test_folded_llama_matches_minicpm_logits(tmp_path, tied):
    from transformers import LlamaForCausalLM

    from kit.models.minicpm import convert_minicpm, is_minicpm

    w = _random_minicpm(tied)
    src = _write(tmp_path, w, tied)
    assert is_minicpm(src)
    out = convert_minicpm(src, tmp_path / "llama")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["tie_word_embeddings"] is False
    assert not any(k in cfg for k in ("scale_emb", "scale_depth", "dim_model_base"))

    model = LlamaForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    ids = torch.tensor([5, 17, 3, 88, 42, 7, 61, 19, 2, 33, 70, 11])
    with torch.no_grad():
        got = model(ids[None]).logits[0]
    ref = minicpm_reference(w, ids)
    # Sanity: the µP factors matter, so an unfolded Llama would be far off.
    assert ref.abs().max() > 0.5
    diff = (got - ref).abs().max().item()
    assert diff < 1e-4, f"max abs logit diff {diff}"
    assert torch.equal(got.argmax(-1), ref.argmax(-1))


def test_unfolded_weights_would_not_match(tmp_path):
    """Guards the test itself: loading MiniCPM weights as Llama *without* folding differs."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from kit.models.minicpm import llama_config

    w = _random_minicpm(False)
    d = tmp_path / "raw"
    d.mkdir()
    save_file(w, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(llama_config(CFG)))
    model = LlamaForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
    ids = torch.tensor([5, 17, 3, 88])
    with torch.no_grad():
        got = model(ids[None]).logits[0]
    assert (got - minicpm_reference(w, ids)).abs().max() > 0.1
    assert isinstance(model.config, LlamaConfig)


def test_not_minicpm_is_a_kit_error(tmp_path):
    from kit.errors import KitError
    from kit.models.minicpm import convert_minicpm, ensure_llama

    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert ensure_llama(d, tmp_path / "cache") == d
    with pytest.raises(KitError, match="not 'minicpm'"):
        convert_minicpm(d, tmp_path / "out")


def test_fold_cache_is_keyed_by_model_and_content(tmp_path):
    """A hub snapshot folder is named by its commit: the cached Llama twin is named after the
    repo and the source's fingerprint, and a source changed in place gets a new twin."""
    from safetensors.torch import load_file

    from kit.models.minicpm import ensure_llama

    snap = tmp_path / "hub" / "models--openbmb--MiniCPM-2B-sft-bf16" / "snapshots" / "0123abc"
    snap.parent.mkdir(parents=True)
    _write(tmp_path, _random_minicpm(True), True).rename(snap)
    cache = tmp_path / "cache"
    first = ensure_llama(snap, cache)
    assert first.name.startswith("openbmb--MiniCPM-2B-sft-bf16-") and first.name.endswith("-minicpm-llama")
    assert ensure_llama(snap, cache) == first
    (snap / "config.json").write_text(json.dumps({**CFG, "scale_emb": 6.0}), encoding="utf-8")
    second = ensure_llama(snap, cache)
    assert second != first
    emb = lambda d: load_file(str(d / "model.safetensors"))["model.embed_tokens.weight"]  # noqa: E731
    assert torch.allclose(emb(first), 2 * emb(second))  # scale_emb 12 vs 6 folded in
