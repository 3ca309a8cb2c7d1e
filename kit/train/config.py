"""The ``train`` section: a tagged union on ``train.backend``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kit.spec.base import Strict


class LoraConfig(Strict):
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | None = Field(None, description="Module names; default from the model preset.")


class _TrainCommon(Strict):
    model: str = Field(description="Base model: a local path, a hub id, an embedded alias (smollm2-135m-instruct, gemma3-270m) or a tiny test model (tiny-llama-spm, tiny-qwen2, tiny-gemma3).")
    chat_template: str | None = Field(None, description="Jinja chat template file for base models without one.")
    lora: LoraConfig = Field(default_factory=LoraConfig)
    max_steps: int = Field(60, ge=1, description="Optimizer steps (ignored when epochs is set).")
    epochs: float | None = Field(None, gt=0, description="Passes over the training rows (replay rows included); "
                                                         "sets the step count from the data, so a run with more "
                                                         "rows trains as thoroughly as one with fewer.")
    gold_repeat: int = Field(1, ge=1, le=8, description="Copies of each hand-written gold row per epoch: the "
                                                      "few answers a user checks first get more passes than "
                                                      "the many own-word and teacher rows.")
    reproduce_items: int = Field(12, ge=0, description="After training, greedy answers to this many training "
                                                       "questions (gold and own-word rows first) are compared with "
                                                       "their trained answers (token F1): does it hold its rows?")
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(4, ge=1, description="Per-device batch size.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    max_seq_len: int = Field(1024, ge=16)
    packing: bool = Field(False, description="Pack/padding-free batching where the backend supports it.")
    group_by_length: bool = Field(True, description="Batch rows of similar length together (less padding; "
                                                    "ignored when packing). Order stays random across batches.")
    mix_general: str | None = Field(None, description="Local JSONL of general chat data to mix in (keeps general ability).")
    mix_ratio: float = Field(0.2, ge=0, le=1, description="Share of general data when mix_general is set.")
    replay: int = Field(0, ge=0, le=80, description="Replay rows: the base model's own greedy answers to this many "
                                                   "bundled general requests, generated before SFT and trained on "
                                                   "beside the persona rows (keeps general ability; 0 = off).")
    replay_max_tokens: int = Field(128, ge=16, description="Token limit of each replay answer (cut back to its "
                                                           "last whole sentence).")
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
