"""The ``dpo`` section: which negatives to mine, the judge, the held-out share, and the DPO
trainer settings (the model, LoRA shape and backend come from ``train``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kit.spec.base import Strict

Negative = Literal["base_brief", "sft_other_stage", "sft_contrast", "induction", "knows_later",
                   "base_model", "other_persona", "wrong_stage"]
# Same-prompt (on-policy) negatives: every rejected answer is a reply to the chosen one's own prompt.
SAME_PROMPT: tuple[str, ...] = ("base_brief", "sft_other_stage", "sft_contrast", "induction", "knows_later")


class DpoConfig(Strict):
    enabled: bool = Field(True, description="Run the dpo stage (false: the SFT adapter is the final model).")
    negatives: list[Negative] = Field(
        default_factory=lambda: list(SAME_PROMPT),
        description="Where rejected answers come from. Same prompt: base_brief (the base model under the brief "
                    "persona prompt), sft_other_stage (the SFT model told it is another life stage), sft_contrast "
                    "(the SFT model told it is a contrast persona), induction (SFT answers to anti-induction "
                    "questions that the judge fails), knows_later (the SFT model told it is the last stage, "
                    "answering an earlier stage's anachronism probe, when the judge fails it). PersLLM's "
                    "similarity-mined options: other_persona (another persona's nearest differing answer), "
                    "wrong_stage (another stage's answer to the same or nearest question), base_model (the base "
                    "model with no system prompt).")
    skip_top_k: int = Field(1, ge=0, description="other_persona (PersLLM): skip the k nearest answers, take the next "
                                                 "that differs.")
    contrast_personas: list[str] = Field(default_factory=list, description="Other persona folders: their voice for "
                                         "sft_contrast prompts and their answers for other_persona.")
    heldout_share: float = Field(0.2, ge=0, lt=1, description="Share of prompts whose pairs are held out of DPO "
                                 "training; reward accuracy and margins are reported on them (0 = none).")
    rounds: int = Field(1, ge=1, le=5, description="Iterative DPO: after each round, re-mine the on-policy negatives "
                        "with the current policy and train again from it (the reference is the previous round).")
    general_check: bool = Field(True, description="Report perplexity of the base, SFT and DPO models on held-out "
                                "general text (kit/data/general_heldout.txt): a general-ability check before/after.")
    beta: float = Field(0.1, gt=0, description="DPO temperature: how far the policy may move from the reference.")
    max_steps: int = Field(30, ge=1, description="Optimizer steps per DPO round.")
    learning_rate: float = Field(5e-5, gt=0, description="DPO learning rate.")
    batch_size: int = Field(2, ge=1, description="Pairs per DPO batch.")
    max_pairs: int | None = Field(None, ge=1, description="Cap on mined pairs (before the held-out split).")
    gen_max_tokens: int = Field(96, ge=1, description="Tokens for base/SFT answers generated while mining.")
    judge: Literal["auto", "teacher", "heuristic"] = Field(
        "auto", description="Who decides that an SFT answer gave in to an induction question or knows what the "
                            "stage cannot: the teacher, the offline heuristic judge, or auto (teacher when "
                            "reachable, else heuristic).")
    max_per_source: int | None = Field(None, ge=1, description="Cap on prompts mined by each negative source.")
    max_length: int = Field(1024, ge=16, description="Max tokens of prompt + answer in DPO batches (persona "
                                                     "system prompts are long; pairs that do not fit are dropped).")
    embedder: Literal["auto", "minilm", "bow"] = Field(
        "auto", description="Answer embeddings for nearest-answer mining: all-MiniLM-L6-v2 (eval extra), "
                            "a bag-of-words vector (no dependency), or auto (MiniLM when installed).")
