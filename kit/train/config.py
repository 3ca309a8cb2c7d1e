"""``train`` and ``dpo`` sections: a tagged union on ``train.backend``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraConfig(_Strict):
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | None = Field(None, description="Module names; default from the model preset.")


class _TrainCommon(_Strict):
    model: str = Field(description="Base model: a local path, a hub id, an embedded alias (smollm2-135m-instruct, gemma3-270m) or a tiny test model (tiny-llama-spm, tiny-qwen2, tiny-gemma3).")
    chat_template: str | None = Field(None, description="Jinja chat template file for base models without one.")
    lora: LoraConfig = Field(default_factory=LoraConfig)
    max_steps: int = Field(60, ge=1, description="Optimizer steps.")
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(4, ge=1, description="Per-device batch size.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    max_seq_len: int = Field(1024, ge=16)
    packing: bool = Field(False, description="Pack/padding-free batching where the backend supports it.")
    group_by_length: bool = Field(True, description="Batch rows of similar length together (less padding; "
                                                    "ignored when packing). Order stays random across batches.")
    mix_general: str | None = Field(None, description="Local JSONL of general chat data to mix in (keeps general ability).")
    mix_ratio: float = Field(0.2, ge=0, le=1, description="Share of general data when mix_general is set.")
    save_every: int = Field(20, ge=1, description="Checkpoint every N steps (for --resume).")
    seed: int = 0
    gradient_checkpointing: bool | None = Field(
        None, description="Recompute activations to save memory; default: on for CUDA, off on CPU (small "
                          "models fit, and recomputation costs ~30% speed).")


class TrlTrain(_TrainCommon):
    backend: Literal["trl"] = "trl"
    load_in_4bit: bool = Field(False, description="QLoRA with bitsandbytes (CUDA only).")
    device: Literal["auto", "cpu", "cuda"] = "auto"


class UnslothTrain(_TrainCommon):
    backend: Literal["unsloth"] = "unsloth"
    load_in_4bit: bool = True


class MlxTrain(_TrainCommon):
    backend: Literal["mlx"] = "mlx"
    num_layers: int = Field(-1, description="Layers to adapt (-1 = all).")
    load_in_4bit: bool = False


TrainConfig = TrlTrain | UnslothTrain | MlxTrain


class PairSources(_Strict):
    other_persona: bool = Field(True, description="Rejected = a similar answer from another persona/stage.")
    base_model: bool = Field(True, description="Rejected = the base model's generic answer.")
    induction: bool = Field(True, description="Rejected = an SFT answer that gave in to an induction question.")
    wrong_stage: bool = Field(True, description="Rejected = an answer in another stage's voice/knowledge.")
    skip_top_k: int = Field(1, ge=0, description="PersLLM: skip the k nearest answers, take the next that differs.")


class DpoConfig(_Strict):
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
