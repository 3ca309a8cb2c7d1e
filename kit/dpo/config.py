"""The ``dpo`` section: which negatives to mine, the judge, and the DPO trainer settings
(the model, LoRA shape and backend come from ``train``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kit.spec.base import Strict


class PairSources(Strict):
    other_persona: bool = Field(True, description="Rejected = a similar answer from another persona/stage.")
    base_model: bool = Field(True, description="Rejected = the base model's generic answer.")
    induction: bool = Field(True, description="Rejected = an SFT answer that gave in to an induction question.")
    wrong_stage: bool = Field(True, description="Rejected = an answer in another stage's voice/knowledge.")
    skip_top_k: int = Field(1, ge=0, description="PersLLM: skip the k nearest answers, take the next that differs.")


class DpoConfig(Strict):
    enabled: bool = True
    sources: PairSources = Field(default_factory=PairSources)
    contrast_personas: list[str] = Field(default_factory=list, description="Other persona folders to mine rejected answers from.")
    beta: float = Field(0.1, gt=0)
    max_steps: int = Field(30, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    batch_size: int = Field(2, ge=1)
    max_pairs: int | None = Field(None, ge=1)
    gen_max_tokens: int = Field(96, ge=1, description="Tokens for base/SFT answers generated while mining.")
    judge: Literal["auto", "teacher", "heuristic"] = Field(
        "auto", description="Who decides that an SFT answer gave in to an induction question: the teacher, "
                            "the offline heuristic judge, or auto (teacher when reachable, else heuristic).")
    max_per_source: int | None = Field(None, ge=1, description="Cap on pairs mined from each negative source.")
    max_length: int = Field(1024, ge=16, description="Max tokens of prompt + answer in DPO batches (persona "
                                                     "system prompts are long; pairs that do not fit are dropped).")
    embedder: Literal["auto", "minilm", "bow"] = Field(
        "auto", description="Answer embeddings for nearest-answer mining: all-MiniLM-L6-v2 (eval extra), "
                            "a bag-of-words vector (no dependency), or auto (MiniLM when installed).")
