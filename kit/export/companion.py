"""The bundle files a companion app reads: an Ollama Modelfile and a character card (JSON +
PNG with V2 and V3 chunks) per life stage, the model card ``README.md`` and the base model's
licence notice. ``Modelfile`` and ``<id>.card.*`` without a stage suffix are the last stage
(what older bundles had), so tools that look for those names keep working.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from kit.export import card as cards
from kit.export import modelcard, ollama


def stage_files(persona, *, style: dict, primary: str, go_template: str | None, stops: list[str],
                params: dict, family: str | None, card: bool, passages: list[dict] | None = None) -> dict[str, bytes]:
    """File name -> bytes for every stage's Modelfile and card (and the unsuffixed defaults)."""
    spec = persona.spec
    out: dict[str, bytes] = {}
    last = spec.stages[-1].id
    for st in spec.stages:
        comment = (f"perskit persona {spec.name} ({spec.id}), life stage {st.id}: {st.label} ({st.period}).\n"
                   f"Chat template family: {family or 'unknown (Ollama reads the GGUF template)'}.\n"
                   f"ollama create {spec.id}-{st.id} -f Modelfile.{st.id}")
        text = ollama.modelfile(primary, system=spec.system_prompt(st.id, **style), template=go_template,
                                stops=stops, params=params, comment=comment).encode("utf-8")
        out[f"Modelfile.{st.id}"] = text
        if st.id == last:
            out["Modelfile"] = text
        if card:
            for fname, data in _card_files(persona, st.id, style=style, primary=primary, passages=passages).items():
                out[fname] = data
                if st.id == last:
                    out[fname.replace(f".{st.id}.card.", ".card.")] = data
    return out


def _card_files(persona, stage_id: str, *, style: dict, primary: str, passages: list[dict] | None) -> dict[str, bytes]:
    spec = persona.spec
    v2 = cards.build_card_v2(persona, stage_id=stage_id, model_file=primary, style=style, passages=passages)
    v3 = cards.build_card_v3(v2)
    cards.validate_card(v2)
    cards.validate_card(v3)
    stem = f"{spec.id}.{stage_id}.card"
    return {f"{stem}.json": (json.dumps(v2, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
            f"{stem}.v3.json": (json.dumps(v3, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
            f"{stem}.png": cards.card_png(persona.root, f"{spec.id}:{stage_id}", {"chara": v2, "ccv3": v3})}


def licence_files(info: modelcard.BaseModelInfo) -> dict[str, bytes]:
    """``LICENSE-base-model.md`` (reference and required notice) and the base folder's own files."""
    out = {"LICENSE-base-model.md": modelcard.licence_notice(info).encode("utf-8")}
    for fname, text in info.licence_files.items():
        out[f"base-model-{fname}"] = text.encode("utf-8")
    return out


def write_readme(write: Callable[[Path, bytes], None], staging: Path, *, persona, info, recipe: dict,
                 sampling: dict, parity: dict, eval_report: Path | None, primary: str) -> None:
    """The model card, listing the files already in ``staging`` (call it last, before the manifest)."""
    stages = [{"id": s.id, "label": s.label, "period": s.period} for s in persona.spec.stages]
    files = sorted(p.name for p in staging.iterdir() if p.is_file()) + ["README.md", "manifest.json"]
    text = modelcard.model_card(persona=persona, info=info, recipe=recipe, stages=stages, files=files,
                                sampling=sampling, parity=parity, eval_report=eval_report, primary=primary)
    write(staging / "README.md", text.encode("utf-8"))
