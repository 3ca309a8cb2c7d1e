"""The base model of a run, resolved once.

The ``sft`` stage resolves ``train.model`` (a folder, a GGUF, an embedded alias, a tiny
test model or a hub id from the local Hugging Face cache; MiniCPM folded into Llama on
the way) and records the local folder and a fingerprint of it in its manifest. DPO,
eval and export read that record instead of resolving again, so every stage works on
the very folder the adapter was trained on, and they refuse when it changed on disk.

The fingerprint covers config.json and the tokenizer files in full, and each weight
file's size plus its first and last 4 MiB (the safetensors header, with every tensor's
name, shape and offset, is in the first block): cheap on a multi-GB checkpoint, and a
retrained, requantized or swapped model changes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

from kit.errors import KitError

FULL = ("config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
        "chat_template.jinja")
WEIGHTS = (".safetensors", ".bin")
BLOCK = 4 << 20


@dataclass(frozen=True)
class BaseModelRecord:
    """What the sft manifest keeps about the base: the recipe's name, the folder, its fingerprint."""

    name: str
    path: str
    fingerprint: str

    @property
    def folder(self) -> Path:
        return Path(self.path)

    def as_dict(self) -> dict:
        return asdict(self)


def fingerprint(folder: Path) -> str:
    """A short hash of the model folder's config, tokenizer and weights (see module docstring)."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).iterdir(), key=lambda q: q.name):
        if p.name in FULL:
            h.update(p.name.encode() + b"\0" + p.read_bytes())
        elif p.suffix in WEIGHTS:
            size = p.stat().st_size
            h.update(f"{p.name}\0{size}\0".encode())
            with open(p, "rb") as fh:
                h.update(fh.read(BLOCK))
                if size > BLOCK:
                    fh.seek(max(BLOCK, size - BLOCK))
                    h.update(fh.read(BLOCK))
    return h.hexdigest()[:16]


def resolve_base(loaded) -> BaseModelRecord:
    """Resolve the recipe's ``train.model`` to a local HF folder (MiniCPM converted to Llama)."""
    from kit.models.minicpm import ensure_llama
    from kit.models.resolve import home, materialize

    name = loaded.spec.train.model
    local = loaded.resolve_path(name)
    base = Path(materialize(str(local) if local.is_dir() else name))
    base = Path(ensure_llama(base, home() / "models"))
    return BaseModelRecord(name=name, path=str(base), fingerprint=fingerprint(base))


def recorded_base(loaded, run, what: str) -> BaseModelRecord:
    """The base the SFT adapter was trained on, checked against the recipe and the disk.

    ``what`` names the asking stage in the errors (``dpo``, ``eval``, ``export``)."""
    manifest = run.path / "sft" / "manifest.json"
    rec = run.stage("sft").manifest().get("base")
    if not isinstance(rec, dict) or not {"name", "path", "fingerprint"} <= rec.keys():
        raise KitError(f"{what} needs the base model recorded by training, and there is none", where=manifest,
                       fix="run `perskit train <recipe>` first (or `--force` to retrain an older run)")
    base = BaseModelRecord(name=rec["name"], path=rec["path"], fingerprint=rec["fingerprint"])
    if base.name != loaded.spec.train.model:
        raise KitError(f"train.model is '{loaded.spec.train.model}' but the adapter was trained on '{base.name}'",
                       where="train.model", fix="set it back, or retrain: `perskit train <recipe> --force`")
    if not (base.folder / "config.json").is_file():
        raise KitError("the base model the adapter was trained on is gone", where=base.path,
                       fix="restore that folder, or retrain: `perskit train <recipe> --force`")
    if fingerprint(base.folder) != base.fingerprint:
        raise KitError("the base model on disk changed since training (config, tokenizer or weights differ)",
                       where=base.path, fix="restore the original files, or retrain: `perskit train <recipe> --force`")
    return base


def base_for_run(loaded, run, what: str) -> BaseModelRecord:
    """The recorded base when the run was trained by ``perskit train``, else the recipe's
    model resolved now (a prompted-only eval, or an adapter brought from elsewhere)."""
    if run.stage("sft").manifest().get("base"):
        return recorded_base(loaded, run, what)
    return resolve_base(loaded)
