"""mlx-lm LoRA adapters in PEFT layout, so export, the HF engine and llama.cpp's LoRA
converter can read an adapter trained with mlx-lm (ours or one a user brings).

mlx-lm's LoRA computes ``scale * (x @ A) @ B`` with A (in, r) and B (r, out); PEFT computes
``alpha / r * B_peft(A_peft x)`` with A_peft (r, in) and B_peft (out, r). So each matrix is
transposed and ``alpha = scale * r``. Tensor names keep the module path:
``model.layers.0.self_attn.q_proj.lora_a`` -> ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``.
"""

from __future__ import annotations

import json
from pathlib import Path

from kit.errors import KitError


def to_peft(weights: dict) -> tuple[dict, set[str]]:
    """mlx ``{name: float32 numpy (in, r) | (r, out)}`` -> PEFT ``{name: (r, in) | (out, r)}`` and
    the short module names (q_proj, ...) that carry LoRA."""
    tensors, modules = {}, set()
    for name, arr in weights.items():
        mod, leaf = name.rsplit(".", 1)
        if leaf not in ("lora_a", "lora_b"):
            raise KitError(f"unexpected tensor '{name}' in an mlx LoRA adapter", where="adapters.safetensors",
                           fix="only LoRA adapters (fine_tune_type: lora) can be exported")
        tensors[f"base_model.model.{mod}.{'lora_A' if leaf == 'lora_a' else 'lora_B'}.weight"] = arr.T.copy()
        modules.add(mod.rsplit(".", 1)[-1])
    return tensors, modules


def peft_config(params: dict, modules: set[str], base: Path) -> dict:
    """PEFT's adapter_config.json for mlx-lm ``lora_parameters`` (rank, scale, dropout)."""
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(base),
            "r": params["rank"], "lora_alpha": params["scale"] * params["rank"], "lora_dropout": params.get("dropout", 0.0),
            "target_modules": sorted(modules), "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
            "use_rslora": False, "init_lora_weights": True, "modules_to_save": None}


def convert(adapter: Path, out: Path, base: Path) -> Path:
    """Write a PEFT copy of the mlx-lm adapter folder ``adapter`` into ``out``."""
    from safetensors.numpy import save_file
    from safetensors.torch import load_file

    try:
        cfg = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
        params = cfg["lora_parameters"]
        missing = [k for k in ("rank", "scale") if k not in params]
        if missing:
            raise KeyError(f"lora_parameters lacks {', '.join(missing)}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KitError(f"not an mlx-lm LoRA adapter config ({exc})", where=str(adapter / "adapter_config.json"),
                       fix="point at the folder mlx_lm.lora wrote (adapters.safetensors + adapter_config.json)") from None
    if cfg.get("fine_tune_type", "lora") != "lora" or cfg.get("use_dora"):
        raise KitError(f"fine_tune_type '{cfg.get('fine_tune_type')}' cannot be exported as a LoRA",
                       where=str(adapter / "adapter_config.json"), fix="train with fine_tune_type: lora")
    try:  # torch reads bf16/fp16 tensors, which numpy alone cannot
        weights = {k: v.float().numpy() for k, v in load_file(str(adapter / "adapters.safetensors")).items()}
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise KitError(f"unreadable adapters.safetensors ({str(exc)[:120]})", where=str(adapter),
                       fix="re-save the adapter with mlx_lm.lora") from None
    tensors, modules = to_peft(weights)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    (out / "adapter_config.json").write_text(json.dumps(peft_config(params, modules, base), indent=2),
                                             encoding="utf-8")
    if (adapter / "chat_template.jinja").is_file():  # a template saved beside the adapter wins over the base's
        (out / "chat_template.jinja").write_bytes((adapter / "chat_template.jinja").read_bytes())
    return out
