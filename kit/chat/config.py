"""``chat`` section of a recipe: how the shipped persona samples."""

from __future__ import annotations

from pydantic import Field

from kit.spec.base import Strict


class ChatConfig(Strict):
    """Sampling for the shipped model. It travels in the bundle (manifest.json ``sampling``)
    and is what ``perskit chat``, ``perskit serve`` and the Modelfile use.

    The defaults keep a 135M persona from looping: a lower temperature, min_p to cut the
    long tail a small model wanders into, and a repeat penalty against repeated lists.
    """

    temperature: float = Field(0.6, ge=0, le=2, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling mass.")
    min_p: float = Field(0.05, ge=0, le=1, description="Drop tokens below min_p x the top token's probability.")
    top_k: int = Field(40, ge=0, description="Keep only the k most likely tokens (0 = off).")
    repeat_penalty: float = Field(1.15, gt=0, description="Penalty on tokens already generated (1.0 = off).")
    max_tokens: int = Field(200, ge=1, description="Longest reply in tokens.")
    n_ctx: int = Field(2048, ge=128, description="Context window for chat and serve.")
    seed: int = Field(-1, description="Sampling seed (-1 = random).")
    retrieve: int = Field(0, ge=0, le=16, description="Passages of the persona's own materials retrieved for each "
                                                      "user turn into the system prompt (0 = off; travels in the "
                                                      "bundle; `perskit chat/serve --retrieve K` overrides).")

    def sampling(self) -> dict:
        """The GenParams fields the bundle ships (kit/engine/base.py GenParams)."""
        return {k: getattr(self, k) for k in ("temperature", "top_p", "min_p", "top_k", "repeat_penalty",
                                              "max_tokens", "seed")}

    def modelfile_params(self) -> dict:
        """The same settings under Ollama's PARAMETER names."""
        return {"temperature": self.temperature, "top_p": self.top_p, "min_p": self.min_p, "top_k": self.top_k,
                "repeat_penalty": self.repeat_penalty, "num_predict": self.max_tokens, "num_ctx": self.n_ctx}
