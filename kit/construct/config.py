"""``construct`` section of a recipe."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kit.spec.base import Strict


class PatternCounts(Strict):
    ordinary: int = Field(2, ge=0, description="Factual questions per objective passage.")
    opinion: int = Field(2, ge=0, description="Opinion prompts per subjective passage; the stance (agree, "
                                              "disagree, strong conflict) rotates across the whole run.")
    backtranslation: int = Field(1, ge=0, description="With construct.own_words: 0 only: spans of the persona's own "
                                                      "words per selected subjective passage, used as answers, the "
                                                      "teacher writing only the question (instruction "
                                                      "back-translation).")
    anti_induction: int = Field(2, ge=0, description="Inductive attacks per passage (false premise, pressure, identity, anachronism, leading).")
    trait: int = Field(12, ge=0, description="Trait-revealing scenarios per stage for trait-only personas.")
    trait_with_sources: int = Field(2, ge=0, description="Trait-revealing scenarios per stage for material-based "
                                                         "personas that have a big_five target.")


class ConstructConfig(Strict):
    passage_words: int = Field(180, ge=30, description="Target passage length in words when splitting sources.")
    max_passages: int | None = Field(None, ge=1, description="Cap on the passages that teacher-written patterns "
                                                             "(ordinary, opinion, anti-induction) are planned on; "
                                                             "own-word rows come from every passage (own_words).")
    own_words: int | Literal["all"] = Field(
        "all", description="Own-word rows (instruction back-translation over every subjective source): every "
                           "usable first-person span ('all'), at most N spread over the whole life, or 0 for the "
                           "old per-passage patterns.backtranslation spans on the max_passages passages only.")
    own_word_questions: Literal["teacher", "names"] = Field(
        "teacher", description="Who asks an own-word row's question: the teacher (one call per span; a question "
                               "cut from the span's own names and years stands in where it fails a gate), or "
                               "'names' (that cheap question for every span, no teacher call: a whole life's "
                               "writing in minutes on a CPU; counted as template questions).")
    heldout_passages: float = Field(
        0.15, ge=0, lt=1, description="Share of subjective passages held out whole, per stage, for the voice "
                                      "and likelihood metrics (with own_words on): none of their text reaches "
                                      "SFT, DPO or the teacher (checked on the written rows).")
    patterns: PatternCounts = Field(default_factory=PatternCounts)
    knowledge_words: int = Field(1500, ge=0, description="Words of objective knowledge retrieved per question (PersLLM: ~1500).")
    style_words: int = Field(500, ge=0, description="Words of the persona's own writing retrieved per question (PersLLM: ~500).")
    retriever: Literal["auto", "embed", "bm25"] = Field(
        "auto", description="Passage retrieval: embed (MiniLM; needs the eval extra), bm25, or auto "
                            "(embed when installed).")
    few_shot: int = Field(2, ge=0, description="Gold examples shown to the teacher as demonstrations.")
    cot: bool = Field(True, description="Ask for an analysis before the in-voice answer (chain-of-thought).")
    train_on_cot: bool = Field(False, description="Put the analysis into the training target too.")
    stage_token: bool = Field(False, description="Prefix the system prompt with PersLLM-style <TIME-i> stage tokens.")
    system_prompt: Literal["full", "brief"] = Field(
        "full", description="System prompt in the training data and therefore in DPO, eval and the exported "
                            "bundle: the full persona description, or brief (name, stage, stay in character; "
                            "~40 tokens instead of ~500: faster training and chat). The teacher always sees "
                            "the full persona; the prompted baseline in eval always gets the full prompt.")
    dedup_threshold: float = Field(0.95, gt=0, le=1, description="Drop near-duplicates at this cosine similarity.")
    min_answer_words: int = Field(5, ge=1)
    max_answer_words: int = Field(300, ge=10)
    best_of: int = Field(2, ge=1, le=8, description="Up to this many teacher answers per question: another is "
                                                    "sampled (with other demonstrations) only while every one so "
                                                    "far failed a gate, so it costs calls only where it pays.")
    # 0.15: every hand-written gold answer of the bundled personas passes (58 q/a pairs: min 0.15,
    # median 0.43); 0.2 would drop 2 of them, so it would reject real answers, not just debris.
    min_relevance: float = Field(0.15, ge=0, le=1, description="Drop answers whose MiniLM similarity to their "
                                                               "question is below this (0 = off).")
    max_unsupported: float = Field(0.5, ge=0, le=1, description="Drop factual answers when more than this share of "
                                                                "their numbers and names is in none of the "
                                                                "retrieved passages.")
    # Measured on the 2026-12-02 cpu-study: 44 of 49 (ada-lin) and 16 of 18 (tomas-reyes) kept
    # SmolLM2-135M answers named no year or name from the materials (free invention); 26 of 36 and
    # 31 of 32 hand-written gold answers do (opinions often name nothing).
    grounded: bool = Field(False, description="Drop teacher answers that name nothing from the persona's materials "
                                              "(a year or name from the sources, identity or stages, not the "
                                              "persona's own name, that the question does not already contain). For weak "
                                              "teachers: it also drops some sound opinion answers.")
    max_reject_rate: float = Field(0.85, gt=0, le=1, description="Stop the run when more than this share of the "
                                                                 "teacher's records is dropped by the gates.")
    max_fallback_rate: float = Field(0.6, gt=0, le=1, description="Stop the run when more than this share of "
                                                                  "questions had to be template fallbacks.")
    judge: bool = Field(False, description="Ask the teacher to judge consistency and drop failures.")
    test_fraction: float = Field(0.15, ge=0, lt=1, description="Held-out share, stratified by pattern and stage.")
    include_gold: bool = Field(True, description="Add gold examples not held out to the training data.")
    seed: int = 0

    def prompt_style(self) -> dict:
        """Keyword arguments for ``Persona.system_prompt`` matching the training data."""
        return {"stage_token": self.stage_token, "brief": self.system_prompt == "brief"}
