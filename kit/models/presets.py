"""Per-family training defaults: LoRA target modules, rank/alpha, learning rate and a
fallback chat template for base checkpoints that ship none.

A preset is picked from the model's ``config.json`` ``model_type`` first (reliable for
local folders and tiny test models) and from the model name second (hub ids, aliases).
Anything unknown gets the generic preset: every HF causal LM with the usual
``*_proj`` linear names trains with it.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

LINEAR_ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Gemma has no system role: the system text becomes the first user turn, as Google's template does.
GEMMA = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
# MiniCPM-2B-sft's own format; the system prompt is prepended as plain text.
MINICPM = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<用户>' + message['content'] | trim + '<AI>' }}"
    "{% elif message['role'] == 'system' %}{{ message['content'] | trim + '\n' }}"
    "{% else %}{{ message['content'] | trim + eos_token }}{% endif %}"
    "{% endfor %}"
)


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid")
    family: str = Field(description="Preset name.")
    model_types: list[str] = Field(default_factory=list, description="config.json model_type values it covers.")
    name_hints: list[str] = Field(default_factory=list, description="Lower-case substrings of model ids it covers.")
    target_modules: list[str] = Field(default_factory=lambda: list(LINEAR_ALL), description="LoRA targets.")
    lora_r: int = Field(16, description="Default LoRA rank.")
    lora_alpha: int = Field(32, description="Default LoRA alpha.")
    learning_rate: float = Field(2e-4, description="Default SFT learning rate.")
    chat_template: str = Field(CHATML, description="Template used when the tokenizer has none (base models).")
    notes: str = Field("", description="Why the defaults are what they are.")


PRESETS: dict[str, Preset] = {p.family: p for p in [
    Preset(family="minicpm", model_types=["minicpm"], name_hints=["minicpm"], chat_template=MINICPM,
           lora_r=16, lora_alpha=32, learning_rate=1e-4,
           notes="Converted to plain Llama by kit.models.minicpm (µP folded); µP models like a lower LR."),
    Preset(family="qwen2", model_types=["qwen2", "qwen3"], name_hints=["qwen2", "qwen3"], chat_template=CHATML,
           lora_r=16, lora_alpha=32, learning_rate=2e-4, notes="Qwen2.5 0.5B-3B: ChatML."),
    Preset(family="llama3", model_types=[], name_hints=["llama-3", "llama3"], chat_template=LLAMA3,
           lora_r=16, lora_alpha=32, learning_rate=2e-4, notes="Llama 3.2 1B/3B."),
    Preset(family="gemma3", model_types=["gemma3_text", "gemma3", "gemma2", "gemma"], name_hints=["gemma"],
           chat_template=GEMMA, lora_r=8, lora_alpha=16, learning_rate=1e-4,
           notes="Gemma 3 270M/1B: small ranks suffice; large LRs destabilise the 270M."),
    Preset(family="smollm2", model_types=[], name_hints=["smollm"], chat_template=CHATML,
           lora_r=16, lora_alpha=32, learning_rate=3e-4, notes="SmolLM2 (Llama architecture, ChatML)."),
    Preset(family="llama", model_types=["llama", "mistral"], name_hints=["llama"], chat_template=CHATML,
           notes="Any Llama-architecture model (tiny test models, converted MiniCPM)."),
    Preset(family="generic", chat_template=CHATML, notes="Fallback for unknown causal LMs."),
]}


def _model_type(model_dir: Path | None) -> str | None:
    if model_dir is None:
        return None
    cfg = Path(model_dir) / "config.json"
    if not cfg.is_file():
        return None
    try:
        return json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
    except (OSError, json.JSONDecodeError):
        return None


def preset_for(model: str, model_dir: Path | None = None) -> Preset:
    """The preset for a model name (alias, hub id or path) and its materialised folder.

    Name hints are checked before ``model_type`` because several families share the
    Llama architecture (SmolLM2, Llama 3, converted MiniCPM) but not the template.
    """
    name = str(model).lower()
    for p in PRESETS.values():
        if any(h in name for h in p.name_hints):
            return p
    mt = _model_type(model_dir)
    for p in PRESETS.values():
        if mt and mt in p.model_types:
            return p
    return PRESETS["generic"]
