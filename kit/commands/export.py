"""``perskit export <recipe>``: merge the trained adapter, convert to GGUF, quantize,
write the Ollama Modelfile + character card, verify, and place the bundle.

    perskit export recipes/quickstart.yaml
    perskit export recipes/smoke.yaml --set export.quants='[Q8_0,Q4_K_M]'
    perskit export recipes/quickstart.yaml --run-dir runs/ada-lin-quickstart --force

Uses ``<run>/dpo/adapter`` when DPO ran, else ``<run>/sft/adapter``; the bundle lands in
``<export.out_dir>/<persona id>/`` and the stage manifest in ``<run>/export/``.
"""

from __future__ import annotations

from kit.commands._common import stage_command

command = stage_command(
    "export", "Merge, convert to GGUF, quantize, bundle and verify a trained persona.",
    force_help="Rebuild the bundle even if it is up to date.")
