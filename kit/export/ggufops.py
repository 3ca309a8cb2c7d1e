"""GGUF files: convert (llama.cpp converter), quantize (llama.cpp's own quantizer via
llama-cpp-python), check and load.

A GGUF is checked before anything trusts it: the header is parsed here (magic,
version, tensor and metadata counts) and the file is then loaded by llama.cpp,
which verifies every tensor lies inside the file -- a truncated or corrupted GGUF
becomes a one-line KitError, never a crash later in a user's chat app.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
from pathlib import Path

from kit.errors import KitError
from kit.export.converter import run_converter

# quant name -> llama_cpp ftype constant. f16 comes straight from the converter.
QUANT_FTYPES = {
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
}
QUANTS = ("f16", *QUANT_FTYPES)
GGUF_MAGIC = b"GGUF"


def check_quants(quants: list[str]) -> list[str]:
    """Validate quant names (case-insensitive), keeping the user's order, no duplicates."""
    by_lower = {q.lower(): q for q in QUANTS}
    out: list[str] = []
    for q in quants:
        name = by_lower.get(str(q).lower())
        if name is None:
            raise KitError(f"unknown quant '{q}'", where="recipe: export.quants",
                           fix=f"use any of {list(QUANTS)}")
        if name not in out:
            out.append(name)
    if not out:
        raise KitError("no quant selected", where="recipe: export.quants", fix="e.g. export.quants=[Q4_K_M]")
    return out


def convert_hf(merged: Path, out: Path, model_name: str | None = None, metadata: dict | None = None) -> str:
    """HF checkpoint folder -> f16 GGUF with the folder's tokenizer and chat template.

    ``metadata``: ``general.*`` keys (name, licence, base models) for the GGUF; quantizing
    copies them into every quant. The converter takes most through its ``--metadata``
    override file, but reads ``general.license`` only from the model folder's README.md
    front matter, so the checkpoint is presented through a linked view carrying one."""
    import json
    import shutil
    import tempfile

    args = ["--outfile", str(out), "--outtype", "f16"]
    if model_name:
        args += ["--model-name", model_name]  # general.name, shown by LM Studio / Ollama
    scratch = Path(tempfile.mkdtemp(prefix=".convert-", dir=Path(out).parent)) if metadata else None
    try:
        if scratch is not None:
            (scratch / "metadata.json").write_text(json.dumps(metadata, ensure_ascii=False), encoding="utf-8")
            args += ["--metadata", str(scratch / "metadata.json")]
            merged = _view_with_licence(Path(merged), scratch / "model", metadata)
        log = run_converter("convert_hf_to_gguf.py", [str(merged), *args], what="HF -> GGUF conversion")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    read_header(out)
    return log


def _view_with_licence(folder: Path, view: Path, metadata: dict) -> Path:
    """``folder``'s files linked into ``view``, plus a README.md whose front matter has the licence."""
    import yaml

    view.mkdir()
    for p in folder.iterdir():
        if p.is_file() and p.name != "README.md":
            (view / p.name).symlink_to(p.resolve())
    card = {k: metadata[f"general.{k.replace('_', '.')}"] for k in ("license", "license_name", "license_link")
            if f"general.{k.replace('_', '.')}" in metadata}
    (view / "README.md").write_text("---\n" + yaml.safe_dump(card) + "---\n", encoding="utf-8")
    return view


def convert_lora(adapter: Path, base: Path, out: Path) -> str:
    """PEFT LoRA adapter -> llama.cpp LoRA GGUF (f16), for the base it was trained on."""
    log = run_converter("convert_lora_to_gguf.py", [str(adapter), "--base", str(base), "--outfile", str(out),
                                                    "--outtype", "f16"], what="LoRA -> GGUF conversion")
    read_header(out)
    return log


def quantize(src: Path, dst: Path, quant: str, n_threads: int | None = None) -> None:
    """Quantize an f16 GGUF with llama.cpp's quantizer (same code as llama-quantize)."""
    import llama_cpp

    if quant not in QUANT_FTYPES:
        raise KitError(f"unknown quant '{quant}'", where="recipe: export.quants", fix=f"use any of {list(QUANTS)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_FTYPES[quant])
    params.nthread = n_threads or min(4, os.cpu_count() or 1)
    with quiet_native():
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not dst.is_file():
        _raise_if_disk_full(dst.parent)
        raise KitError(f"llama.cpp quantization to {quant} failed (code {rc})", where=str(src),
                       fix="check that the f16 GGUF loads and that the disk has room")
    read_header(dst)


def _raise_if_disk_full(folder: Path) -> None:
    import shutil

    if shutil.disk_usage(folder).free < 16 << 20:
        raise KitError("disk full", where=str(folder), fix="free disk space and rerun")


def read_header(path: Path) -> dict:
    """Parse a GGUF header: version, tensor count, metadata count (raises KitError)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as exc:
        raise KitError(f"cannot read GGUF ({exc.strerror})", where=str(path), fix="check the path") from None
    if len(head) < 24 or head[:4] != GGUF_MAGIC:
        raise KitError("not a GGUF file (bad magic or truncated header)", where=str(path),
                       fix="re-export; the file is corrupted or truncated")
    version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
    if version not in (2, 3) or n_tensors > 1 << 24 or n_kv > 1 << 20:
        raise KitError(f"corrupted GGUF header (version {version}, {n_tensors} tensors)", where=str(path),
                       fix="re-export; the file is corrupted")
    return {"version": version, "n_tensors": n_tensors, "n_kv": n_kv}


@contextlib.contextmanager
def quiet_native():
    """Silence llama.cpp's C-level stderr chatter (it bypasses Python's sys.stderr)."""
    try:
        fd = os.dup(2)
    except OSError:  # no real stderr (embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)
        os.close(devnull)


def load_llama(path: Path, *, lora: Path | None = None, n_ctx: int = 512, logits_all: bool = False,
               n_threads: int | None = None):
    """Load a GGUF with llama-cpp-python; a corrupt/truncated file becomes a KitError."""
    import llama_cpp

    read_header(path)
    kwargs = dict(n_ctx=n_ctx, logits_all=logits_all, verbose=False, seed=0,
                  n_threads=n_threads or min(4, os.cpu_count() or 1), n_gpu_layers=0)
    if lora is not None:
        read_header(lora)
        kwargs["lora_path"] = str(lora)
    try:
        with quiet_native():
            return llama_cpp.Llama(str(path), **kwargs)
    except (ValueError, RuntimeError) as exc:
        what = f"LoRA GGUF {lora}" if lora is not None else "GGUF"
        raise KitError(f"llama.cpp could not load the {what} ({str(exc).splitlines()[0][:160]}); "
                       "it is corrupted, truncated or from an incompatible llama.cpp", where=str(path),
                       fix="re-export with `perskit export`") from None


def metadata(llm) -> dict[str, str]:
    """GGUF key/values as llama-cpp-python exposes them (strings)."""
    return dict(getattr(llm, "metadata", {}) or {})
