"""Hub ids (``owner/name``) resolved from the local Hugging Face cache.

The cache is the one ``hf download`` fills: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``,
else ``~/.cache/huggingface/hub``. Offline (``HF_HUB_OFFLINE=1``) a model that is not
cached is a one-line error saying how to fetch it; online, the files a training run
needs are downloaded into that same cache.
"""

from __future__ import annotations

import os
from pathlib import Path

from kit.errors import KitError

# What a base model needs: config, weights, tokenizer, chat template.
PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.jinja", "*.txt", "*.tiktoken"]
GATED = ("gemma", "llama")  # families whose hub repos ask users to accept a licence first


def hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "huggingface") / "hub"


def offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _fetch_hint(repo_id: str) -> str:
    hint = (f"on a connected machine run `hf download {repo_id}` and copy its Hugging Face cache here "
            f"(or set HF_HOME to it), or set train.model to a local model folder")
    if any(g in repo_id.lower() for g in GATED):
        hint += f"; {repo_id.split('/')[0]} models are gated: accept the licence on huggingface.co/{repo_id} " \
                "and `hf auth login` before downloading"
    return hint


def _complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def hub_snapshot(repo_id: str, where: str = "train.model") -> Path:
    """The local snapshot folder of ``repo_id`` (downloaded first when online and missing)."""
    from huggingface_hub import snapshot_download

    cache = hub_cache()
    try:
        folder = Path(snapshot_download(repo_id, cache_dir=str(cache), local_files_only=True))
        if _complete(folder):
            return folder
    except Exception:  # noqa: BLE001 - any "not cached" flavour (missing repo, ref or file) means: fetch
        pass
    if offline():
        raise KitError(f"hub model '{repo_id}' is not in the local Hugging Face cache ({cache}) and this machine "
                       "is offline (HF_HUB_OFFLINE)", where=where, fix=_fetch_hint(repo_id))
    try:
        folder = Path(snapshot_download(repo_id, cache_dir=str(cache), allow_patterns=PATTERNS))
    except Exception as exc:  # noqa: BLE001 - network, auth and gating errors all end the same way
        raise KitError(f"hub model '{repo_id}' could not be downloaded ({type(exc).__name__}: {str(exc)[:120]})",
                       where=where, fix=_fetch_hint(repo_id)) from None
    if not _complete(folder):
        raise KitError(f"hub model '{repo_id}' has no config.json + safetensors weights", where=where,
                       fix="use a transformers checkpoint repo, or a local folder")
    return folder
