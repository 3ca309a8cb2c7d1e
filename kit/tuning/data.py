"""Training data shared by every backend: reading SFT records, mixing general chat
data, choosing the chat template, and tokenising with a loss mask on assistant turns.

The mask is computed here instead of with TRL's ``assistant_only_loss`` because that
option needs a chat template carrying ``{% generation %}`` markers, which almost no
published template has. We render the conversation with the *same* template that is
saved beside the adapter (and later written into the GGUF) and mark, by character
offsets, exactly the characters each assistant turn adds, including its end-of-turn
token, so the model learns to stop.
"""

from __future__ import annotations

import random
from pathlib import Path

from kit.errors import KitError
from kit.rows import read_sft_rows as load_records  # noqa: F401  (SFT rows have one reader: kit/rows.py)


def mix_general(records: list[dict], general_path: Path | None, ratio: float, seed: int) -> tuple[list[dict], int]:
    """Add general chat rows so they make up ``ratio`` of the result (PersLLM keeps general
    ability this way). Returns the mixed list and how many general rows were added."""
    if general_path is None or ratio <= 0:
        return records, 0
    general = load_records(Path(general_path), what="train.mix_general")
    want = round(len(records) * ratio / max(1e-9, 1 - ratio)) if ratio < 1 else len(general)
    rng = random.Random(seed)
    # Sample without replacement while there is enough general data, then with it.
    picked = rng.sample(general, want) if want <= len(general) else [rng.choice(general) for _ in range(want)]
    mixed = [dict(r, meta={**r.get("meta", {}), "source": "general"}) for r in picked]
    out = records + mixed
    rng.shuffle(out)
    return out, len(mixed)


def resolve_chat_template(tokenizer, model: str, model_dir: Path, template_file: Path | None) -> str:
    """The template to train with: an explicit file, else the tokenizer's own, else the
    model family's fallback (base models often ship none)."""
    if template_file is not None:
        if not Path(template_file).is_file():
            raise KitError("chat template file not found", where=f"train.chat_template={template_file}",
                           fix="give a path to a .jinja file, or remove the field to use the model's template")
        return Path(template_file).read_text(encoding="utf-8")
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, str) and own.strip():
        return own
    if isinstance(own, dict) and own.get("default"):
        return own["default"]
    from kit.models.presets import preset_for

    return preset_for(model, model_dir).chat_template


def _render(tokenizer, template: str, messages: list[dict], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def assistant_spans(tokenizer, template: str, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """Render ``messages`` and return the text plus the character spans of assistant turns.

    Each span runs from the end of the generation prompt before the turn to the end of
    the rendering that includes it, so it covers the answer and its end-of-turn marker.
    """
    text = _render(tokenizer, template, messages, False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tokenizer, template, messages[:i], True) if i else ""
        upto = _render(tokenizer, template, messages[: i + 1], False)
        if not text.startswith(upto) or not upto.startswith(before):
            # Templates that rewrite earlier turns (e.g. drop reasoning) break the prefix
            # property; fall back to locating the answer text itself.
            start = text.find(m["content"].strip(), spans[-1][1] if spans else 0)
            if start < 0:
                raise KitError("cannot locate an assistant turn in the rendered chat template",
                               where="train.chat_template", fix="use a template that renders turns in order")
            spans.append((start, start + len(m["content"].strip())))
            continue
        spans.append((len(before), len(upto)))
    return text, spans


def tokenize_with_mask(tokenizer, template: str, messages: list[dict], max_len: int | None = None,
                       last_only: bool = False) -> dict:
    """``input_ids`` and ``assistant_masks`` (1 = token is trained on) for one conversation;
    ``last_only`` keeps just the final assistant turn (a DPO completion)."""
    text, spans = assistant_spans(tokenizer, template, messages)
    if last_only:
        spans = spans[-1:]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    mask = []
    for (a, b) in offsets:
        # A token belongs to a turn when it ends inside the span: merged tokens that
        # straddle the boundary (e.g. "\n" + first word) are then trained on, not lost.
        mask.append(int(any(s < b <= e or (a == b and s <= a < e) for s, e in spans)))
    if max_len is not None:
        ids, mask = ids[:max_len], mask[:max_len]
    return {"input_ids": list(ids), "assistant_masks": mask}


def tokenize_records(tokenizer, template: str, records: list[dict], max_len: int) -> list[dict]:
    """Tokenise all records; rows whose answer is cut off entirely by ``max_len`` are dropped."""
    out = []
    for r in records:
        row = tokenize_with_mask(tokenizer, template, r["messages"], max_len)
        if any(row["assistant_masks"]):
            out.append(row)
    if not out:
        raise KitError("no training row keeps any answer tokens within max_seq_len",
                       where="train.max_seq_len", fix="raise train.max_seq_len")
    return out
