"""The training backend interface and a registry that imports only the chosen backend.

A backend is a module with three functions:

- ``sft(cfg, train_path, eval_path, out_dir, base_dir, resume=False) -> dict``: LoRA SFT
  on ``{"messages": [...]}`` JSONL; writes ``out_dir/adapter`` (PEFT layout:
  ``adapter_model.safetensors``, ``adapter_config.json``, tokenizer files and the
  ``chat_template.jinja`` used in training) and ``out_dir/metrics.jsonl``.
- ``dpo(cfg, dpo_cfg, pairs_path, out_dir, base_dir, sft_adapter, resume=False) -> dict``:
  DPO starting from the SFT adapter, writing ``out_dir/adapter`` the same way.
- ``generate(base_dir, adapter, messages_batch, max_tokens) -> list[str]``: greedy replies
  (used by the pair miner for base-model and SFT answers).

Returned dicts carry at least ``steps``, ``tokens_per_s`` and ``peak_rss_mb``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

from kit.errors import KitError

BACKENDS = {
    "trl": "kit.train.trl_backend",
    "unsloth": "kit.train.unsloth_backend",
    "mlx": "kit.train.mlx_backend",
}


class Backend(Protocol):
    def sft(self, cfg: Any, train_path: Path, eval_path: Path | None, out_dir: Path, base_dir: Path,
            resume: bool = False) -> dict: ...

    def dpo(self, cfg: Any, dpo_cfg: Any, pairs_path: Path, out_dir: Path, base_dir: Path, sft_adapter: Path,
            resume: bool = False) -> dict: ...

    def generate(self, base_dir: Path, adapter: Path | None, messages_batch: list[list[dict]],
                 max_tokens: int) -> list[str]: ...


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise KitError(f"unknown training backend '{name}'", where="train.backend",
                       fix=f"use one of {sorted(BACKENDS)}")
    return importlib.import_module(BACKENDS[name])  # type: ignore[return-value]
