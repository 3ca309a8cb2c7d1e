"""Load a persona bundle (``export/<persona>/``) or a bare GGUF into a ``Bundle``.

A bundle folder holds ``manifest.json``, the Ollama ``Modelfile`` (its SYSTEM and
``PARAMETER stop`` lines fill in what the manifest leaves out), ``<id>-<quant>.gguf`` files and
an optional ``<id>-lora-f16.gguf``. kit/export writes ``persona {id, name}``, top-level
``stages [{id, label, system_prompt}]``, ``default_stage``, ``base_model``,
``chat_template {family, stops}`` (the jinja template itself is in the GGUF) and ``files``
keyed by file name; a ``persona.stages`` list, a ``gguf {quant: file}`` map, a jinja string in
``chat_template`` and a ``stop`` list are read too. Every key is read defensively: a missing
optional key falls back, a missing required file is one KitError line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from kit.errors import KitError

QUANT_PREFERENCE = ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "Q4_0", "f16")


@dataclass
class StageInfo:
    id: str
    label: str
    system_prompt: str


@dataclass
class Bundle:
    """Everything needed to open an engine for a persona and label it in the UI."""

    root: Path
    persona_id: str
    name: str
    stages: list[StageInfo]
    default_stage: str
    base_model: str
    gguf: Path
    quant: str
    lora: Path | None = None
    chat_template: str | None = None
    stop: list[str] = field(default_factory=list)
    quants: dict[str, Path] = field(default_factory=dict)
    # The recipe's chat sampling (manifest ``sampling``): GenParams fields plus n_ctx.
    sampling: dict = field(default_factory=dict)

    @property
    def index_dir(self) -> Path | None:
        """The bundle's passage index (``index/``), when it ships one."""
        d = self.root / "index"
        return d if (d / "passages.jsonl").is_file() else None

    def gen_params(self, **overrides):
        """GenParams from the bundle's sampling, then explicit overrides (None = keep)."""
        from kit.engine.base import GenParams

        values = {k: v for k, v in self.sampling.items() if k in GenParams.model_fields}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return GenParams(**values)

    def stage(self, stage_id: str | None) -> StageInfo:
        if stage_id is None:
            stage_id = self.default_stage
        for s in self.stages:
            if s.id == stage_id:
                return s
        raise KitError(f"unknown stage '{stage_id}'", where=f"persona {self.persona_id}",
                       fix=f"use one of {[s.id for s in self.stages]}")

    def open_engine(self, *, n_ctx: int = 2048, lora: str | Path | None = None, n_threads: int | None = None,
                    n_gpu_layers: int = 0):
        """Open the bundle's GGUF. Its GGUF is already merged, so the bundle's own LoRA file
        (for use on the *base* model by other tools) is not applied; ``lora`` applies one explicitly."""
        from kit.engine.llamacpp import LlamaCppEngine

        return LlamaCppEngine(self.gguf, lora_path=lora, n_ctx=n_ctx,
                              chat_template=self.chat_template, stop=self.stop, name=self.persona_id,
                              n_threads=n_threads, n_gpu_layers=n_gpu_layers)


_TRIPLE = re.compile(r'^(TEMPLATE|SYSTEM)\s+"""(.*?)"""', re.S | re.M)
_SINGLE = re.compile(r'^(FROM|SYSTEM|ADAPTER)\s+(.+)$', re.M)
_STOP = re.compile(r'^PARAMETER\s+stop\s+(.+)$', re.M)


def parse_modelfile(path: Path) -> dict:
    """The parts of an Ollama Modelfile the chat needs: FROM, ADAPTER, SYSTEM, TEMPLATE, stops."""
    text = path.read_text(encoding="utf-8", errors="replace")
    out: dict = {"stop": []}
    for key, val in _TRIPLE.findall(text):
        out[key.lower()] = val.strip("\n")
    rest = _TRIPLE.sub("", text)
    for key, val in _SINGLE.findall(rest):
        out.setdefault(key.lower(), val.strip().strip('"'))
    for val in _STOP.findall(text):
        val = val.strip()
        out["stop"].append(json.loads(val) if val.startswith('"') else val)
    return out


def _read_manifest(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # bundles are shared: untrusted
        raise KitError(f"manifest is not valid JSON ({exc})", where=path,
                       fix="re-export the bundle with `perskit export`") from None
    if not isinstance(data, dict):
        raise KitError("manifest must be a JSON object", where=path, fix="re-export the bundle")
    return data


def _pick_quant(ggufs: dict[str, Path], quant: str | None, where: Path) -> tuple[str, Path]:
    if not ggufs:
        raise KitError("bundle lists no GGUF model file", where=where, fix="re-export the bundle with `perskit export`")
    if quant is not None:
        if quant not in ggufs:
            raise KitError(f"no '{quant}' GGUF in the bundle", where=where, fix=f"use --quant one of {sorted(ggufs)}")
        return quant, ggufs[quant]
    for q in QUANT_PREFERENCE:
        if q in ggufs:
            return q, ggufs[q]
    q = sorted(ggufs)[0]
    return q, ggufs[q]


def load_bundle(path: str | Path, *, quant: str | None = None, system: str | None = None,
                template: str | None = None) -> Bundle:
    """A bundle folder (needs manifest.json) or a bare ``.gguf`` (``system``/``template`` apply)."""
    from kit.engine.llamacpp import check_gguf

    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".gguf":
        check_gguf(p)
        stage = StageInfo("default", "default", system or "")
        name = re.sub(r"-(f16|q\d.*)$", "", p.stem, flags=re.I)
        return Bundle(root=p.parent, persona_id=name.lower(), name=name, stages=[stage], default_stage="default",
                      base_model=p.name, gguf=p, quant=_quant_from_name(p.stem), chat_template=template,
                      quants={_quant_from_name(p.stem): p})
    if not p.exists():
        raise KitError("bundle or GGUF not found", where=p, fix="pass an export/<persona>/ folder or a .gguf file")
    if not p.is_dir():
        raise KitError("not a bundle folder or .gguf file", where=p, fix="pass an export/<persona>/ folder or a .gguf file")
    mpath = p / "manifest.json"
    if not mpath.is_file():
        raise KitError("bundle has no manifest.json", where=p, fix="re-export with `perskit export` or pass the .gguf with --system")
    man = _read_manifest(mpath)
    modelfile = parse_modelfile(p / "Modelfile") if (p / "Modelfile").is_file() else {"stop": []}
    persona = man.get("persona") if isinstance(man.get("persona"), dict) else {}
    pid = str(persona.get("id") or man.get("name") or p.name)
    name = str(persona.get("name") or pid)
    # kit/export writes stages at the top level; older/hand-made bundles nest them in persona.
    raw_stages = persona.get("stages") or man.get("stages") or []
    stages = []
    for i, s in enumerate(raw_stages if isinstance(raw_stages, list) else []):
        if not isinstance(s, dict) or not s.get("id"):
            raise KitError(f"stages[{i}] has no id", where=mpath, fix="re-export the bundle")
        stages.append(StageInfo(str(s["id"]), str(s.get("label") or s["id"]), str(s.get("system_prompt") or "")))
    if not stages:
        stages = [StageInfo("default", "default", system or modelfile.get("system", ""))]
    elif system is not None:
        for s in stages:
            s.system_prompt = system
    default_stage = str(man.get("default_stage") or stages[-1].id)
    if default_stage not in {s.id for s in stages}:
        default_stage = stages[-1].id
    files = man.get("files") if isinstance(man.get("files"), dict) else {}
    ggufs = {str(q): p / str(f) for q, f in (man.get("gguf") or {}).items()} if isinstance(man.get("gguf"), dict) else {}
    if not ggufs:  # kit/export lists files by name: <id>-<quant>.gguf and <id>-lora-f16.gguf
        names = [n for n in files if str(n).endswith(".gguf")] or [f.name for f in sorted(p.glob("*.gguf"))]
        ggufs = {_quant_from_name(Path(n).stem): p / n for n in sorted(names) if not _is_lora(n)}
    q, gguf = _pick_quant(ggufs, quant, mpath)
    check_gguf(gguf, f"GGUF for quant {q}")
    lora = next((p / n for n in sorted(files) if _is_lora(str(n)) and (p / n).is_file()), None)
    # chat_template: a jinja string (overrides the GGUF's) or kit/export's {"family", "stops"}
    # (the jinja template is then the one inside the GGUF's metadata).
    tpl_field = man.get("chat_template")
    tpl_stops = tpl_field.get("stops") if isinstance(tpl_field, dict) else None
    stop = [str(s) for s in (man.get("stop") or tpl_stops or modelfile["stop"])]
    chat_template = template or (tpl_field if isinstance(tpl_field, str) and tpl_field.strip() else None)
    sampling = _read_sampling(man.get("sampling"), mpath)
    return Bundle(root=p, persona_id=pid, name=name, stages=stages, default_stage=default_stage,
                  base_model=str(man.get("base_model") or modelfile.get("from") or ""), gguf=gguf, quant=q,
                  lora=lora, chat_template=chat_template, stop=stop, quants=ggufs, sampling=sampling)


def _read_sampling(raw, where: Path) -> dict:
    """Validate the manifest's sampling block: a shared bundle is untrusted input."""
    from pydantic import ValidationError

    from kit.engine.base import GenParams

    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise KitError("'sampling' must be an object", where=where, fix="re-export the bundle")
    gen = {k: v for k, v in raw.items() if k in GenParams.model_fields}
    try:
        GenParams(**gen)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise KitError(f"sampling.{err['loc'][0]}: {err['msg']}", where=where,
                       fix="fix or delete that key in manifest.json") from None
    n_ctx = raw.get("n_ctx")
    out = dict(gen)
    if isinstance(n_ctx, int) and not isinstance(n_ctx, bool) and 128 <= n_ctx <= 1 << 20:
        out["n_ctx"] = n_ctx
    k = raw.get("retrieve")
    if isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= 16:
        out["retrieve"] = k
    return out


def _is_lora(name: str) -> bool:
    return "-lora" in Path(name).stem.lower()


def _quant_from_name(stem: str) -> str:
    m = re.search(r"-(f16|f32|bf16|q\d[\w]*)$", stem, flags=re.I)
    if m:
        return m.group(1)
    m = re.search(r"\.(q\d[\w]*|f16)$", stem, flags=re.I)
    return m.group(1) if m else "gguf"
