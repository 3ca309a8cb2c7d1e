"""The SFT backend interface and a registry that imports only the chosen backend.

A backend is a module with ``sft(cfg, train_path, eval_path, out_dir, base_dir, resume=False)
-> dict``: LoRA SFT on ``{"messages": [...]}`` JSONL; it writes ``out_dir/adapter`` (PEFT
layout: ``adapter_model.safetensors``, ``adapter_config.json``, tokenizer files and the
``chat_template.jinja`` used in training) and ``out_dir/metrics.jsonl``, and returns a
dict with at least ``steps``, ``tokens_per_s`` and ``peak_rss_mb``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

BACKENDS = {
    "trl": "kit.train.trl_sft",
    "unsloth": "kit.train.unsloth_sft",
    "mlx": "kit.train.mlx_sft",
}


class SftBackend(Protocol):
    def sft(self, cfg: Any, train_path: Path, eval_path: Path | None, out_dir: Path, base_dir: Path,
            resume: bool = False) -> dict: ...


def get_backend(name: str) -> SftBackend:
    from kit.tuning import pick

    return pick(BACKENDS, name, "train.backend")  # type: ignore[return-value]
