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
    # -- added by the eval stage (kit/eval/runner.py) -----------------------------------------
    ipip_mode: str = Field("auto", description="auto | logprob | generate (parse a digit; for engines without logprobs).")
    batch_size: int = Field(16, ge=1, description="Prompts per forward pass (IPIP scoring and generation).")
    distinct_questions: int = Field(8, ge=1, description="Questions asked under every stage/contrast persona for distinctiveness.")
    samples: int = Field(2, ge=1, description="Sampled answers per (persona, stage, question) for intra-persona similarity.")
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature for distinctiveness samples (other answers are greedy).")
    contrast_personas: list[str] | None = Field(None, description="Persona folders for inter-persona distinctiveness (default: dpo.contrast_personas; none = a plain assistant).")
    gguf: str | None = Field(None, description="A GGUF (e.g. export/<persona>/*.gguf) evaluated as variant 'gguf' with llama.cpp.")
    seed: int = Field(0, description="Seed for option shuffles, sampling and bootstrap CIs.")
