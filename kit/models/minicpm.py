"""Convert a MiniCPM (1/2, e.g. MiniCPM-2B / "2.4B") checkpoint into a plain Llama one.

transformers 5.x has no ``minicpm`` model type, its remote code targets 4.x, and
unsloth does not support it. MiniCPM is a Llama with µP scaling in three places:

    h_0     = scale_emb * E[x]
    h_l+1   = h_l + (scale_depth / sqrt(L)) * Attn(RMSNorm(h_l))      (and the same for the MLP)
    logits  = W_out (RMSNorm(h_L) / (hidden_size / dim_model_base))

Every factor is a constant multiplying a linear map, so it folds into weights:
``E <- scale_emb * E``, ``o_proj, down_proj <- (scale_depth/sqrt(L)) * W`` (the residual
branch ends with these linear layers), ``W_out <- W_out / (hidden_size/dim_model_base)``.
MiniCPM ties ``W_out`` to ``E``; after folding they differ, so the Llama checkpoint is
untied (one extra vocab x hidden matrix). The result loads as ``LlamaForCausalLM``
everywhere: TRL/PEFT, unsloth, mlx-lm and llama.cpp's converter.

Tensors are streamed one shard at a time (safetensors in, safetensors out); folding is
done in fp32 and cast back to the source dtype.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from kit.errors import KitError

TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "generation_config.json", "chat_template.jinja", "added_tokens.json")
MUP_KEYS = ("scale_emb", "scale_depth", "dim_model_base")


def is_minicpm(model_dir: Path) -> bool:
    cfg = Path(model_dir) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text(encoding="utf-8")).get("model_type") == "minicpm"
    except (OSError, json.JSONDecodeError):
        return False


def llama_config(mc: dict) -> dict:
    """The LlamaForCausalLM config equivalent to a MiniCPM config (µP keys dropped)."""
    if mc.get("rope_scaling") and mc["rope_scaling"].get("type", mc["rope_scaling"].get("rope_type")) == "longrope":
        raise KitError("MiniCPM checkpoints with LongRoPE (MiniCPM3 / 4) are not plain-Llama convertible",
                       where="config.json rope_scaling", fix="use MiniCPM-2B / MiniCPM-1B")
    heads = mc["num_attention_heads"]
    out = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": mc["vocab_size"], "hidden_size": mc["hidden_size"],
        "intermediate_size": mc["intermediate_size"], "num_hidden_layers": mc["num_hidden_layers"],
        "num_attention_heads": heads, "num_key_value_heads": mc.get("num_key_value_heads") or heads,
        "max_position_embeddings": mc.get("max_position_embeddings", 4096),
        "rms_norm_eps": mc.get("rms_norm_eps", 1e-5), "hidden_act": mc.get("hidden_act", "silu"),
        "rope_theta": mc.get("rope_theta", 10000.0), "attention_bias": mc.get("attention_bias", False),
        "tie_word_embeddings": False, "bos_token_id": mc.get("bos_token_id", 1),
        "eos_token_id": mc.get("eos_token_id", 2), "pad_token_id": mc.get("pad_token_id"),
        "torch_dtype": mc.get("torch_dtype", "float32"), "initializer_range": mc.get("initializer_range", 0.02),
    }
    if mc.get("rope_scaling"):
        out["rope_scaling"] = mc["rope_scaling"]
    if mc.get("head_dim"):
        out["head_dim"] = mc["head_dim"]
    return out


def fold_factors(mc: dict) -> dict[str, float]:
    missing = [k for k in MUP_KEYS if k not in mc]
    if missing:
        raise KitError(f"config.json lacks MiniCPM µP keys {missing}", where="config.json",
                       fix="this does not look like a MiniCPM checkpoint")
    return {"embed": float(mc["scale_emb"]),
            "residual": float(mc["scale_depth"]) / math.sqrt(mc["num_hidden_layers"]),
            "logits": 1.0 / (mc["hidden_size"] / mc["dim_model_base"])}


def _fold(name: str, t, f: dict[str, float]):
    if name.endswith("embed_tokens.weight"):
        return t * f["embed"]
    if name.endswith(("self_attn.o_proj.weight", "mlp.down_proj.weight")):
        return t * f["residual"]
    if name.endswith(("self_attn.o_proj.bias", "mlp.down_proj.bias")):
        return t * f["residual"]  # the bias is on the same residual branch
    if name == "lm_head.weight":
        return t * f["logits"]
    return t


def _shards(src: Path) -> list[Path]:
    files = sorted(src.glob("*.safetensors"))
    if not files:
        raise KitError("no .safetensors weights found", where=src,
                       fix="convert the checkpoint to safetensors first (perskit never loads pickled .bin files)")
    return files


def convert_minicpm(src: Path, out: Path) -> Path:
    """Write a Llama checkpoint equivalent to the MiniCPM one in ``src`` into ``out``."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    src, out = Path(src), Path(out)
    mc = json.loads((src / "config.json").read_text(encoding="utf-8"))
    if mc.get("model_type") != "minicpm":
        raise KitError(f"model_type is {mc.get('model_type')!r}, not 'minicpm'", where=src / "config.json",
                       fix="only MiniCPM checkpoints need this conversion")
    f = fold_factors(mc)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weight_map: dict[str, str] = {}
    have_head = False
    for shard in _shards(src):
        tensors = {}
        with safe_open(str(shard), framework="pt") as fh:
            for name in fh.keys():
                t = fh.get_tensor(name)
                dtype = t.dtype
                tensors[name] = _fold(name, t.to(torch.float32), f).to(dtype).contiguous()
                if name.endswith("embed_tokens.weight") and "lm_head.weight" not in fh.keys():
                    # Tied output embedding: untie it, with the logit scale folded in.
                    tensors["lm_head.weight"] = (t.to(torch.float32) * f["logits"]).to(dtype).contiguous()
                have_head |= name == "lm_head.weight"
        if "lm_head.weight" in tensors:
            have_head = True
        save_file(tensors, str(tmp / shard.name), metadata={"format": "pt"})
        weight_map.update({k: shard.name for k in tensors})
    if not have_head:
        raise KitError("no lm_head or embed_tokens weight found", where=src, fix="check the checkpoint is complete")
    if len(_shards(src)) > 1:
        (tmp / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2), encoding="utf-8")
    (tmp / "config.json").write_text(json.dumps(llama_config(mc), indent=2), encoding="utf-8")
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, tmp / name)
    tc = tmp / "tokenizer_config.json"
    if tc.is_file():  # remote-code hooks would point at MiniCPM classes; the tokenizer is a plain Llama one
        d = json.loads(tc.read_text(encoding="utf-8"))
        d.pop("auto_map", None)
        tc.write_text(json.dumps(d, indent=2, ensure_ascii=False), encoding="utf-8")
    (tmp / "minicpm_fold.json").write_text(json.dumps({"source": str(src), "factors": f}, indent=2), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def ensure_llama(model_dir: Path, cache: Path) -> Path:
    """``model_dir`` itself, or its converted Llama twin (cached) when it is a MiniCPM.

    The twin is named after the model and a fingerprint of the source: a hub snapshot folder
    is named by its commit only, and a source changed in place must not reuse a stale fold."""
    from kit.models.base import fingerprint

    model_dir = Path(model_dir)
    if not is_minicpm(model_dir):
        return model_dir
    name = model_dir.name
    if model_dir.parent.name == "snapshots":  # <HF cache>/models--owner--name/snapshots/<commit>
        name = model_dir.parent.parent.name.removeprefix("models--")
    dest = Path(cache) / f"{name}-{fingerprint(model_dir)[:8]}-minicpm-llama"
    if (dest / "config.json").is_file() and (dest / "minicpm_fold.json").is_file():
        return dest
    from kit.rundir import build_lock

    with build_lock(dest):  # convert_minicpm writes <dest>.tmp: one process at a time
        if (dest / "config.json").is_file() and (dest / "minicpm_fold.json").is_file():
            return dest
        return convert_minicpm(Path(model_dir), dest)
