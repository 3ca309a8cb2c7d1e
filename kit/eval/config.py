"""``eval`` section of a recipe."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kit.spec.base import Strict
from kit.teachers.config import TeacherConfig


class EvalConfig(Strict):
    enabled: bool = Field(True, description="Run the eval stage.")
    big_five: bool = Field(True, description="Administer IPIP-NEO-120 by next-token Likert probabilities.")
    ipip_items: int | None = Field(None, ge=5, le=120, description="Use a stratified subset of items (CI, quickstart).")
    big_five_measure: Literal["likert", "statement"] = Field(
        "likert", description="likert: a digit 1-5 per IPIP item by next-token probability over cyclic option "
                              "orders; statement: log-odds of agreeing vs disagreeing with each item in the first "
                              "person (kit/eval/statements.py). Keep the one that passes the known-groups check.")
    ipip_variants: int = Field(5, ge=1, le=10, description="Administrations: the five cyclic option orders "
                                                          "(then their reverses), each with a reworded instruction.")
    validity_gap: float = Field(1.0, gt=0, description="Known-groups check: domains whose two personas' targets "
                                                       "differ by at least this much must move in that direction.")
    max_questions: int = Field(20, ge=1, description="Held-out questions per judged metric (>= 40 in a study run).")
    knowledge_references: Literal["trusted", "all"] = Field(
        "trusted", description="trusted: knowledge is scored only against references we can trust, the "
                               "persona's own words (back-translated rows) and hand-written gold answers; all: "
                               "teacher-written answers too (with a strong teacher). A 135M teacher's answers are "
                               "no reference: one scored a trained model 0 for not repeating its debris.")
    paraphrases: int = Field(3, ge=2, description="Paraphrases per question for consistency.")
    gen_max_tokens: int = Field(96, ge=1, description="Max new tokens per answer.")
    judge: Literal["teacher", "heuristic"] = Field(
        "teacher", description="teacher: the model judge (judge_model, else the recipe's teacher) with the rule "
                               "layer's vetoes; heuristic: the rule layer only (no model calls).")
    judge_model: TeacherConfig | None = Field(
        None, discriminator="kind", description="A judge other than the recipe's teacher: any OpenAI-compatible "
                                                "server or local GGUF (kind: openai | llamacpp).")
    calibrate: bool = Field(True, description="Score the judge on kit/data/judge_calibration.json (accuracy, kappa).")
    calibrate_items: int | None = Field(
        None, ge=12, description="Score the model judge on this many calibration answers (stratified by task and "
                                 "label; the rule layer always gets all): one judge call each. None = all.")
    split: Literal["test", "dev"] = Field(
        "test", description="Which share of the held-out questions to use: tune recipes on dev, report on test.")
    dev_share: float = Field(0.3, ge=0, lt=1, description="Share of held-out questions assigned to dev (by hash).")
    variants: list[Literal["prompted", "base_brief", "prompted_rag", "sft", "sft_rag", "dpo", "dpo_rag", "gguf",
                           "placebo"]] = Field(
        default_factory=lambda: ["prompted", "sft", "dpo"],
        description="Model variants to compare (prompted = base model with the full persona description; "
                    "base_brief = base model with the trained variants' brief prompt; <variant>_rag = that "
                    "variant with the top eval.rag_k passages of the persona's materials for each question in "
                    "its system prompt, the item's own passage excluded: the retrieval baseline to beat; "
                    "placebo = prompted again with another seed: a control).")
    rag_k: int = Field(4, ge=1, le=16, description="Passages retrieved per question by the *_rag variants.")
    voice_items: int = Field(200, ge=0, description="Held-out own-word spans scored by likelihood (voice, stage "
                                                    "and persona by likelihood): forward passes only.")
    knowledge_items: int = Field(120, ge=0, description="Multiple-choice knowledge items built from the materials, "
                                                        "scored by likelihood (0 = off).")
    ipip_mode: Literal["auto", "logprob", "generate"] = Field(
        "auto", description="auto | logprob | generate (parse a digit; for engines without logprobs).")
    batch_size: int = Field(16, ge=1, description="Prompts per forward pass (IPIP scoring and generation).")
    distinct_questions: int = Field(8, ge=1, description="Questions asked under every stage/contrast persona for distinctiveness.")
    samples: int = Field(2, ge=2, description="Wordings per distinctiveness question (greedy answers); "
                                              "intra-persona similarity is between wordings.")
    contrast_personas: list[str] | None = Field(None, description="Persona folders for inter-persona distinctiveness (default: dpo.contrast_personas; none = a plain assistant).")
    contrast_adapters: dict[str, str] | None = Field(
        None, description="persona id -> its trained adapter folder: that persona answers with its own model.")
    gguf: str | None = Field(None, description="A GGUF (e.g. export/<persona>/*.gguf) evaluated as variant 'gguf' with llama.cpp.")
    seed: int = Field(0, description="Seed for bootstrap CIs, permutation tests and the placebo.")
