"""Find the trained adapter of a run and merge it into the base weights.

The merged folder is a plain HF checkpoint (safetensors, base dtype) with the
tokenizer and *the adapter's* chat template -- the exact template the persona was
trained with, so the GGUF prompts the model the way training did.

``converter_view`` adds what transformers 5 no longer writes but llama.cpp's
converter reads from ``tokenizer_config.json``: ``added_tokens_decoder`` (otherwise
SentencePiece chat markers such as ``<|im_start|>`` become plain text in the GGUF),
``add_bos_token``/``add_eos_token`` (otherwise llama.cpp prepends a BOS the model
never saw) and ``add_prefix_space`` for non-legacy SentencePiece tokenizers.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from kit.errors import KitError

TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json")


def find_adapter(run_path: Path) -> tuple[str, Path]:
    """The adapter to export: ``<run>/dpo/adapter`` when DPO ran, else ``<run>/sft/adapter``."""
    run_path = Path(run_path)
    for stage in ("dpo", "sft"):
        folder = run_path / stage / "adapter"
        if folder.is_dir() and adapter_format(folder) is not None:
            return stage, folder
    raise KitError("no trained adapter in this run (looked for dpo/adapter and sft/adapter)", where=str(run_path),
                   fix="run `perskit train <recipe>` first, or pass the right --run-dir")


def adapter_format(folder: Path) -> str | None:
    """'peft' (adapter_model.safetensors), 'mlx' (adapters.safetensors) or None."""
    if not (folder / "adapter_config.json").is_file():
        return None
    if (folder / "adapter_model.safetensors").is_file():
        return "peft"
    if (folder / "adapters.safetensors").is_file():
        return "mlx"
    return None


def adapter_chat_template(adapter: Path, base: Path) -> str:
    """The chat template the adapter was trained with (adapter folder first, then base)."""
    for folder in (adapter, base):
        jinja = folder / "chat_template.jinja"
        if jinja.is_file():
            return jinja.read_text(encoding="utf-8")
        cfg = folder / "tokenizer_config.json"
        if cfg.is_file():
            tpl = json.loads(cfg.read_text(encoding="utf-8")).get("chat_template")
            if isinstance(tpl, str) and tpl.strip():
                return tpl
    raise KitError("no chat template in the adapter or base model folder", where=str(adapter),
                   fix="set train.chat_template in the recipe and retrain, or add chat_template.jinja")


def merge_adapter(base: Path, adapter: Path, out: Path) -> dict:
    """Merge a PEFT LoRA into ``base`` and save the merged checkpoint into ``out``."""
    fmt = adapter_format(adapter)
    if fmt == "mlx":
        return merge_mlx_adapter(base, adapter, out)
    if fmt != "peft":
        raise KitError("not a PEFT adapter (adapter_config.json + adapter_model.safetensors missing)",
                       where=str(adapter), fix="point at the adapter folder written by `perskit train`")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    try:
        cfg = json.loads((base / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise KitError(f"unreadable config.json ({exc})", where=str(base), fix="rebuild the base model folder") from None
    dtype = getattr(torch, str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32"), torch.float32)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(base))
    qcfg = getattr(config, "quantization_config", None)
    if isinstance(qcfg, dict) and qcfg.get("quant_method") == "gguf":
        # A checkpoint rebuilt from a GGUF keeps this tag though its safetensors are plain
        # floats; left in, transformers refuses to save the merged model.
        del config.quantization_config
    elif qcfg is not None:
        raise KitError(f"the base model is quantized ({qcfg.get('quant_method') if isinstance(qcfg, dict) else qcfg}); "
                       "a LoRA cannot be merged into quantized weights", where=str(base / "config.json"),
                       fix="export from the unquantized base checkpoint (QLoRA trains on it too)")
    model = AutoModelForCausalLM.from_pretrained(str(base), config=config, dtype=dtype)
    try:
        model = PeftModel.from_pretrained(model, str(adapter))
    except (ValueError, KeyError, RuntimeError) as exc:
        raise KitError(f"adapter does not fit the base model ({str(exc).splitlines()[0][:200]})", where=str(adapter),
                       fix="export with the same train.model the adapter was trained on") from None
    merged = model.merge_and_unload()
    merged.save_pretrained(str(out), safe_serialization=True)
    write_tokenizer(base, adapter, out)
    return {"format": "peft", "dtype": str(dtype).removeprefix("torch."), "base": str(base)}


def merge_mlx_adapter(base: Path, adapter: Path, out: Path) -> dict:
    """An mlx-lm adapter folder (adapters.safetensors): convert it to PEFT layout beside
    ``out``, then merge that like any PEFT adapter."""
    from kit.tuning import mlx_adapter

    peft_dir = out.with_name(out.name + ".peft-from-mlx")
    shutil.rmtree(peft_dir, ignore_errors=True)
    mlx_adapter.convert(adapter, peft_dir, base)
    try:
        info = merge_adapter(base, peft_dir, out)
    finally:
        shutil.rmtree(peft_dir, ignore_errors=True)
    return {**info, "format": "mlx"}


def write_tokenizer(base: Path, adapter: Path, out: Path) -> None:
    """Copy tokenizer files (adapter's over base's) and pin the template + special tokens."""
    for name in TOKENIZER_FILES:
        src = adapter / name if (adapter / name).is_file() else base / name
        if src.is_file():
            shutil.copyfile(src, out / name)
    template = adapter_chat_template(adapter, base)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    # One source for the template: the converter prefers tokenizer_config's copy over the .jinja file.
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "chat_template.jinja").write_text(template, encoding="utf-8")
    (out / "chat_template.json").unlink(missing_ok=True)


def converter_view(merged: Path, view: Path) -> Path:
    """A copy of a checkpoint (weights linked, not copied) whose tokenizer_config.json
    spells out what llama.cpp's converter needs to reproduce the HF tokenization, and
    whose config.json drops the stale GGUF quantization tag of a GGUF-rebuilt base.

    Kept apart from ``merged`` because these keys would change how *transformers*
    tokenizes (add_prefix_space), and ``merged`` is the reference for parity.
    """
    view.mkdir(parents=True, exist_ok=True)
    for p in merged.iterdir():
        if p.is_file() and p.name not in ("tokenizer_config.json", "config.json"):
            try:
                os.link(p, view / p.name)
            except OSError:  # another filesystem or no hard links: copy instead
                shutil.copyfile(p, view / p.name)
    model_cfg = json.loads((merged / "config.json").read_text(encoding="utf-8"))
    qcfg = model_cfg.get("quantization_config")
    if isinstance(qcfg, dict) and qcfg.get("quant_method") == "gguf":
        del model_cfg["quantization_config"]  # stale tag of a GGUF-rebuilt checkpoint (plain float weights)
    (view / "config.json").write_text(json.dumps(model_cfg, indent=2) + "\n", encoding="utf-8")
    cfg_path = merged / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    tj = merged / "tokenizer.json"
    if tj.is_file():
        data = json.loads(tj.read_text(encoding="utf-8"))
        if "added_tokens_decoder" not in cfg:
            cfg["added_tokens_decoder"] = {
                str(t["id"]): {k: t[k] for k in ("content", "lstrip", "rstrip", "normalized", "single_word", "special")
                               if k in t} for t in data.get("added_tokens", [])}
        if cfg.get("add_prefix_space") is None:
            prefix = _metaspace_prefix(data)
            if prefix is not None:
                cfg["add_prefix_space"] = prefix
    cfg.update(_added_specials(merged))
    (view / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n",
                                                encoding="utf-8")
    return view


def _metaspace_prefix(tokenizer_json: dict) -> bool | None:
    """False for a non-legacy SentencePiece tokenizer (Metaspace prepend_scheme 'first').

    Such a tokenizer puts '▁' only at the very start of a text, never after a special
    token; llama.cpp's SPM tokenizer adds it after every special token unless the
    GGUF says add_space_prefix=false. Chat prompts always start with a special token,
    so False reproduces the HF ids exactly (measured by the export's tokenizer check).
    """
    for part in (tokenizer_json.get("pre_tokenizer"), tokenizer_json.get("normalizer")):
        items = (part or {}).get("pretokenizers") or (part or {}).get("normalizers") or [part or {}]
        for item in items:
            if item.get("type") == "Metaspace" and item.get("prepend_scheme") == "first":
                return False
    return None


def _added_specials(folder: Path) -> dict:
    """What the HF tokenizer really does at the start/end of a text (BOS/EOS added or not)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    ids = tok("hello", add_special_tokens=True)["input_ids"]
    flags = {"add_bos_token": bool(tok.bos_token_id is not None and ids and ids[0] == tok.bos_token_id),
             "add_eos_token": bool(tok.eos_token_id is not None and ids and ids[-1] == tok.eos_token_id)}
    return flags
