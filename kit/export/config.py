"""``export`` section of a recipe."""

from __future__ import annotations

from pydantic import Field, field_validator

from kit.spec.base import Strict

QUANTS = ("f16", "Q8_0", "Q4_K_M", "Q4_0", "Q5_K_M", "Q6_K")


class ExportConfig(Strict):
    enabled: bool = True
    quants: list[str] = Field(default_factory=lambda: ["Q4_K_M"], description=f"Any of {QUANTS}.")
    out_dir: str = Field("export", description="Bundles land in <out_dir>/<persona>/.")
    lora_gguf: bool = Field(True, description="Also write the adapter as a llama.cpp LoRA GGUF.")
    card: bool = Field(True, description="Write a SillyTavern character card (JSON + PNG), each stage's with a "
                                         "lorebook (character_book) of its own and earlier materials.")
    index: bool = Field(True, description="Ship the persona's passages as a retrieval index (index/passages.jsonl, "
                                          "+ MiniLM vectors as .npy) for `perskit chat/serve --retrieve K`.")
    parity_prompts: int = Field(8, ge=1, description="Prompts for HF-vs-GGUF logit parity.")
    min_top1_f16: float = Field(0.99, ge=0, le=1, description="Fail the export below this f16 top-1 agreement, counted where "
                                                            "the HF model's top two logits are >= 0.1 apart (closer ones are "
                                                            "rounding ties).")
    verify_questions: int = Field(3, ge=0, description="Gold/generic questions answered by the shipped GGUF as a smoke test (replies land in manifest.json).")

    @field_validator("quants")
    @classmethod
    def _known_quants(cls, v: list[str]) -> list[str]:
        # checked when the recipe loads, so `perskit run` never trains only to fail at export
        known = {q.lower() for q in QUANTS}
        bad = [q for q in v if str(q).lower() not in known]
        if bad:
            raise ValueError(f"unknown quant '{bad[0]}' (use any of {list(QUANTS)})")
        if not v:
            raise ValueError(f"no quant selected (use any of {list(QUANTS)})")
        return v
