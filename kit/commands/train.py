"""``perskit train <recipe>``: personified SFT (LoRA/QLoRA) on the constructed data.

    perskit train recipes/smoke.yaml
    perskit train recipes/quickstart.yaml --set train.max_steps=200 --set train.packing=true
    perskit train recipes/quickstart.yaml --resume      # continue from the newest checkpoint
    perskit train recipes/quickstart.yaml --set train.backend=mlx

Reads <run>/construct/train.jsonl (and test.jsonl for an eval loss); writes <run>/sft/adapter
(PEFT adapter + tokenizer + the chat template used), metrics.jsonl and manifest.json.
Multi-GPU: `accelerate launch --num_processes N -m kit train <recipe>` (see docs/training.md).
"""

from __future__ import annotations

from kit.commands._common import stage_command

command = stage_command(
    "sft", "Train a persona LoRA adapter (SFT) with the recipe's backend (trl, unsloth or mlx).",
    force_help="Retrain even if the adapter is up to date.",
    resume_help="Continue an interrupted run from its newest checkpoint.")
