"""llama.cpp's HF->GGUF converters, taken from the llama-cpp-python sdist at install time.

Why the sdist: the converters must match the llama.cpp that llama-cpp-python was
built from (a newer ``gguf`` writes keys an older runtime rejects, and the PyPI
``gguf`` package is older than the converter and fails with ``AttributeError``).
The sdist of the pinned llama-cpp-python vendors exactly the right
``convert_hf_to_gguf.py``, ``convert_lora_to_gguf.py``, their ``conversion``
package and ``gguf-py``. ``scripts/fetch_converter.py`` extracts only those into
``$PERSKIT_HOME/llama.cpp-<version>/`` (default ``~/.cache/perskit``), so export
works offline and never builds anything at run time.

The converters run as subprocesses with ``PYTHONPATH`` pointing at that copy's own
``gguf-py``, so an installed ``gguf`` package can never shadow it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from kit.errors import KitError
from kit.rundir import replace_dir

FETCH_FIX = "run `python scripts/fetch_converter.py` (or scripts/install.sh), or set PERSKIT_CONVERTER_DIR"
# Paths inside <sdist>/vendor/llama.cpp/ that the two converters need (checked by
# reading their imports: torch, numpy, safetensors, transformers, sentencepiece,
# yaml, and the local `conversion` and `gguf` packages).
NEEDED = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/gguf/",
          "LICENSE")
MARKER = ".complete"


def llama_cpp_version() -> str:
    """Version of the installed llama-cpp-python (read from metadata: no native import)."""
    from importlib import metadata

    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        raise KitError("llama-cpp-python is not installed", where="export",
                       fix="pip install 'perskit[llamacpp]' (or run scripts/install.sh)") from None


def _homes() -> list[Path]:
    from kit.home import cache_homes

    return cache_homes()


def default_converter_dir(version: str | None = None) -> Path:
    """Where scripts/fetch_converter.py installs the converter for this llama-cpp-python."""
    if os.environ.get("PERSKIT_CONVERTER_DIR"):
        return Path(os.environ["PERSKIT_CONVERTER_DIR"]).expanduser()
    return _homes()[0] / f"llama.cpp-{version or llama_cpp_version()}"


def converter_dir() -> Path:
    """The installed converter folder, or a one-line KitError saying how to install it.

    Looked up in PERSKIT_CONVERTER_DIR, then $PERSKIT_HOME, then ~/.cache/perskit (the
    install script's default, used even when PERSKIT_HOME points elsewhere for user data).
    """
    version = llama_cpp_version()
    if os.environ.get("PERSKIT_CONVERTER_DIR"):
        candidates = [Path(os.environ["PERSKIT_CONVERTER_DIR"]).expanduser()]
    else:
        candidates = [h / f"llama.cpp-{version}" for h in _homes()]
    for c in candidates:
        if (c / MARKER).is_file() and (c / "convert_hf_to_gguf.py").is_file():
            return c
    raise KitError(f"llama.cpp converter for llama-cpp-python {version} is not installed",
                   where=str(candidates[0]), fix=FETCH_FIX)


def install_from_sdist(sdist: Path, dest: Path) -> Path:
    """Extract only the converter files from a llama-cpp-python sdist into ``dest``.

    Extraction goes to a temp folder beside ``dest`` and is renamed into place, so an
    interrupted install never leaves a converter that looks complete.
    """
    sdist, dest = Path(sdist), Path(dest)
    if not sdist.is_file():
        raise KitError("sdist not found", where=str(sdist), fix=FETCH_FIX)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            members = []
            for m in tar.getmembers():
                parts = m.name.split("/")
                if len(parts) < 4 or parts[1:3] != ["vendor", "llama.cpp"]:
                    continue
                rel = "/".join(parts[3:])
                if not (m.isfile() and any(rel == n or (n.endswith("/") and rel.startswith(n)) for n in NEEDED)):
                    continue
                if "/tests/" in rel or rel.startswith("gguf-py/gguf/scripts/"):
                    continue  # not imported by the converters
                m = m.replace(name=rel)
                members.append(m)
            if not any(m.name == "convert_hf_to_gguf.py" for m in members):
                raise KitError("this sdist has no vendor/llama.cpp/convert_hf_to_gguf.py", where=str(sdist),
                               fix="download the llama-cpp-python sdist matching the installed version")
            # filter="data" refuses absolute paths, '..' and links: the archive cannot write outside tmp.
            try:
                tar.extractall(tmp, members=members, filter="data")
            except tarfile.FilterError as exc:
                raise KitError(f"unsafe path in the sdist ({exc})", where=str(sdist),
                               fix="download the official sdist again") from None
        (tmp / MARKER).write_text(sdist.name + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the converter is shared, read-only data
        replace_dir(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def run_converter(script: str, args: list[str], *, what: str, timeout: float = 3600) -> str:
    """Run one converter script; map its failures to one-line KitErrors. Returns its log."""
    cdir = converter_dir()
    env = dict(os.environ)
    # The sdist's own gguf-py first: the PyPI `gguf` (if installed) is older and breaks it.
    env["PYTHONPATH"] = os.pathsep.join([str(cdir / "gguf-py"), str(cdir)]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("HF_HUB_OFFLINE", "1")
    cmd = [sys.executable, str(cdir / script), *args]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise KitError(f"{what} timed out after {timeout:.0f}s", where=script,
                       fix="check the model size and free memory") from None
    log = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode == 0:
        return log
    raise KitError(_explain(log, what), where=script, fix=_fix_for(log))


def _last_error_line(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "error" in ln or "not supported" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else "no output"


def _explain(log: str, what: str) -> str:
    if "No space left on device" in log:
        return f"{what} failed: disk full"
    if "is not supported" in log or "not supported" in log.lower() and "architecture" in log.lower():
        return f"{what} failed: the model architecture is not supported by llama.cpp's converter " \
               f"({_last_error_line(log)})"
    return f"{what} failed: {_last_error_line(log)}"


def _fix_for(log: str) -> str:
    if "No space left on device" in log:
        return "free disk space (a GGUF needs about 2x the model's size) and rerun"
    if "not supported" in log:
        return "use a base model family llama.cpp supports (Llama, Qwen2, Gemma 3, SmolLM2, ...)"
    return "check that the checkpoint is a complete, unquantized HF model of a supported family"
