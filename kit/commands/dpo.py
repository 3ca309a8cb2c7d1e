"""``perskit dpo <recipe>``: mine preference pairs automatically, then run DPO from the SFT adapter.

    perskit dpo recipes/smoke.yaml
    perskit dpo recipes/quickstart.yaml --set dpo.contrast_personas='[personas/tomas-reyes]'
    perskit dpo recipes/quickstart.yaml --set dpo.judge=heuristic --set dpo.max_pairs=200
    perskit dpo recipes/quickstart.yaml --resume

Writes <run>/dpo/pairs.jsonl (TRL conversational preference rows with meta.source),
<run>/dpo/adapter, metrics.jsonl (loss, reward accuracy, margins) and manifest.json.
"""

from __future__ import annotations

from kit.commands._common import stage_command

command = stage_command(
    "dpo", "Mine preference pairs (other persona, base model, induction, wrong stage) and train DPO.",
    force_help="Retrain even if the DPO adapter is up to date (pairs are reused).",
    resume_help="Continue an interrupted DPO run from its newest checkpoint.")
