"""The DPO backend interface and a registry that imports only the chosen backend.

A backend is a module with ``dpo(cfg, dpo_cfg, pairs_path, out_dir, base_dir, sft_adapter,
resume=False) -> dict``: DPO starting from the SFT adapter (the reference model too),
writing ``out_dir/adapter`` in the same layout as SFT, and returning a dict with at least
``steps``, ``tokens_per_s`` and ``peak_rss_mb``. The backend is ``train.backend``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

BACKENDS = {
    "trl": "kit.dpo.trl_dpo",
    "unsloth": "kit.dpo.unsloth_dpo",
    "mlx": "kit.dpo.mlx_dpo",
}


class DpoBackend(Protocol):
    def dpo(self, cfg: Any, dpo_cfg: Any, pairs_path: Path, out_dir: Path, base_dir: Path, sft_adapter: Path,
            resume: bool = False) -> dict: ...


def get_backend(name: str) -> DpoBackend:
    from kit.tuning import pick

    return pick(BACKENDS, name, "train.backend")  # type: ignore[return-value]
