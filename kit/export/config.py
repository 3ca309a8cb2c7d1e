"""``export`` and ``chat`` sections of a recipe."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

QUANTS = ("f16", "Q8_0", "Q4_K_M", "Q4_0", "Q5_K_M", "Q6_K")


class ExportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    quants: list[str] = Field(default_factory=lambda: ["Q4_K_M"], description=f"Any of {QUANTS}.")
    out_dir: str = Field("export", description="Bundles land in <out_dir>/<persona>/.")
    lora_gguf: bool = Field(True, description="Also write the adapter as a llama.cpp LoRA GGUF.")
    card: bool = Field(True, description="Write a SillyTavern character card (JSON + PNG).")
    parity_prompts: int = Field(8, ge=1, description="Prompts for HF-vs-GGUF logit parity.")
    min_top1_f16: float = Field(0.99, ge=0, le=1, description="Fail the export below this f16 top-1 agreement.")
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


class ChatConfig(BaseModel):
    """Sampling for the shipped model. It travels in the bundle (manifest.json ``sampling``)
    and is what ``perskit chat``, ``perskit serve`` and the Modelfile use.

    The defaults keep a 135M persona from looping: a lower temperature, min_p to cut the
    long tail a small model wanders into, and a repeat penalty against repeated lists.
    """

    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(0.6, ge=0, le=2, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling mass.")
    min_p: float = Field(0.05, ge=0, le=1, description="Drop tokens below min_p x the top token's probability.")
    top_k: int = Field(40, ge=0, description="Keep only the k most likely tokens (0 = off).")
    repeat_penalty: float = Field(1.15, gt=0, description="Penalty on tokens already generated (1.0 = off).")
    max_tokens: int = Field(200, ge=1, description="Longest reply in tokens.")
    n_ctx: int = Field(2048, ge=128, description="Context window for chat and serve.")
    seed: int = Field(-1, description="Sampling seed (-1 = random).")

    def sampling(self) -> dict:
        """The GenParams fields the bundle ships (kit/engine/base.py GenParams)."""
        return {k: getattr(self, k) for k in ("temperature", "top_p", "min_p", "top_k", "repeat_penalty",
                                              "max_tokens", "seed")}

    def modelfile_params(self) -> dict:
        """The same settings under Ollama's PARAMETER names."""
        return {"temperature": self.temperature, "top_p": self.top_p, "min_p": self.min_p, "top_k": self.top_k,
                "repeat_penalty": self.repeat_penalty, "num_predict": self.max_tokens, "num_ctx": self.n_ctx}
