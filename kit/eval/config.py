"""``eval`` section of a recipe."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    big_five: bool = Field(True, description="Administer IPIP-NEO-120 by next-token Likert probabilities.")
    ipip_items: int | None = Field(None, ge=5, le=120, description="Use a stratified subset of items (CI).")
    ipip_variants: int = Field(2, ge=1, description="Shuffled-option / paraphrased-instruction repeats.")
    max_questions: int = Field(20, ge=1, description="Held-out questions per metric.")
    paraphrases: int = Field(3, ge=2, description="Paraphrases per question for consistency.")
    gen_max_tokens: int = Field(96, ge=1)
    judge: str = Field("teacher", description="teacher | heuristic (no model calls).")
    variants: list[str] = Field(default_factory=lambda: ["prompted", "sft", "dpo"],
                                description="Model variants to compare.")
