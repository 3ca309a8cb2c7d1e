"""The tuning layer: what SFT (``kit/train``) and DPO (``kit/dpo``) share, knowing neither.

- ``data``: SFT rows -> token ids with an assistant-only loss mask; the chat template.
- ``hf``: HF/PEFT loading, TrainingArguments, checkpoints, adapter saving, generation.
- ``mlx``: the mlx-lm loop (loss and batches passed in), LoRA layers, adapters, generation.
- ``unsloth`` / ``unsloth_worker``: run a job in a fresh process after ``import unsloth``.
- ``progress``: one rich bar + metrics.jsonl callback for HF trainers.

SFT and DPO are siblings on this layer, as in mlx-lm (``train`` and ``train_dpo`` side by
side over one trainer): neither stage imports the other.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from kit.errors import KitError

@dataclass
class LoopSettings:
    """What a training loop needs. SFT passes its ``train`` config (it has these fields);
    DPO builds one from ``dpo`` (steps, batch, rate, length) and ``train`` (the rest)."""

    batch_size: int
    learning_rate: float
    max_steps: int
    max_seq_len: int
    grad_accum: int = 1
    save_every: int = 20
    seed: int = 0
    gradient_checkpointing: bool | None = None


# Greedy generation per training backend (used by DPO mining for base/SFT answers).
GENERATORS = {"trl": "kit.tuning.hf", "unsloth": "kit.tuning.unsloth", "mlx": "kit.tuning.mlx"}


def pick(table: dict[str, str], name: str, where: str) -> ModuleType:
    """Import only the chosen backend's module from a ``{name: module path}`` table."""
    if name not in table:
        raise KitError(f"unknown training backend '{name}'", where=where, fix=f"use one of {sorted(table)}")
    return importlib.import_module(table[name])


def generate(backend: str, base_dir: Path, adapter: Path | None, messages_batch: list[list[dict]],
             max_tokens: int) -> list[str]:
    """Greedy replies from the base model (``adapter=None``) or base + adapter, on ``backend``.
    Off a terminal a line every 30 s says how many are done (``kit.progress``)."""
    import inspect

    from kit.progress import counter

    module = pick(GENERATORS, backend, "train.backend")
    what = f"generate ({'base model' if adapter is None else Path(adapter).parent.name + ' adapter'})"
    with counter(what, len(messages_batch), unit="replies") as tick:
        if "progress" in inspect.signature(module.generate).parameters:
            return module.generate(base_dir, adapter, messages_batch, max_tokens, progress=tick)
        return module.generate(base_dir, adapter, messages_batch, max_tokens)  # a worker process: no counter


def is_main_process() -> bool:
    """Rank 0 under ``accelerate launch``/torchrun (or a plain single process)."""
    return int(os.environ.get("RANK", "0")) == 0
