"""``perskit construct <recipe>``: build personified training data (PersLLM-style).

    perskit construct recipes/smoke.yaml
    perskit construct recipes/quickstart.yaml --set construct.max_passages=10 --set teacher.sampling.max_tokens=200
    perskit construct recipes/quickstart.yaml --force      # rebuild the dataset from the call cache

Interrupt it any time: rerunning the same command resumes without repeating calls.
"""

from __future__ import annotations

from kit.commands._common import stage_command

command = stage_command(
    "construct", "Build personified SFT data from a persona's materials.",
    force_help="Rebuild records and the dataset even if up to date (uses the cache).")
