"""The stage registry: what ``perskit <verb>`` and ``perskit run`` walk.

Every stage is a folder with ``config.py`` (its recipe section) and ``stage.py``
exposing ``run(ctx) -> Manifest`` (``ctx``: ``kit.context.StageContext``) and
``report(ctx, manifest) -> list[str]`` (the lines its verb prints). This module knows each stage only by module path and
imports the chosen one lazily, so it pulls in no stage code (and no torch) by itself.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class PipelineStep:
    """One pipeline step (a stage of the run, not a persona's life stage)."""

    name: str           # run-directory folder and --from/--only name
    verb: str           # CLI verb
    module: str         # module with run(ctx) and report(ctx, manifest)
    section: str | None = None   # recipe section whose ``enabled`` flag can switch it off
    resumable: bool = False      # takes --resume (continue from the newest checkpoint)
    weight: float = 0.2          # share of wall time at quickstart scale (ETA before a first run)

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


STAGES: tuple[PipelineStep, ...] = (
    PipelineStep("construct", "construct", "kit.construct.stage", weight=0.35),
    PipelineStep("sft", "train", "kit.train.stage", resumable=True, weight=0.25),
    PipelineStep("dpo", "dpo", "kit.dpo.stage", section="dpo", resumable=True, weight=0.2),
    PipelineStep("eval", "eval", "kit.eval.stage", section="eval", weight=0.12),
    PipelineStep("export", "export", "kit.export.stage", section="export", weight=0.08),
)


def by_name(name: str) -> PipelineStep:
    return next(s for s in STAGES if s.name == name)


def names() -> list[str]:
    return [s.name for s in STAGES]
