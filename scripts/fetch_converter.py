"""Install llama.cpp's HF->GGUF converters matched to the installed llama-cpp-python.

Run by scripts/install.sh. Takes the llama-cpp-python sdist of the *installed*
version (reusing a cached copy, else ``pip download --no-binary :all: --no-deps``)
and extracts only ``convert_hf_to_gguf.py``, ``convert_lora_to_gguf.py``, the
``conversion`` package and ``gguf-py`` into ``$PERSKIT_HOME/llama.cpp-<version>/``
(default ``~/.cache/perskit``; ``PERSKIT_CONVERTER_DIR`` overrides).

    python scripts/fetch_converter.py            # install (no-op when present)
    python scripts/fetch_converter.py --force    # reinstall
    python scripts/fetch_converter.py --sdist path/to/llama_cpp_python-X.tar.gz
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kit.errors import KitError  # noqa: E402
from kit.export.converter import MARKER, default_converter_dir, install_from_sdist, llama_cpp_version  # noqa: E402


def sdist_cache() -> Path:
    from kit.home import cache_home  # one PERSKIT_HOME resolution for the whole kit

    return cache_home() / "sdist"


def find_or_download_sdist(version: str) -> Path:
    name = f"llama_cpp_python-{version}.tar.gz"
    cache = sdist_cache()
    if (cache / name).is_file():
        return cache / name
    cache.mkdir(parents=True, exist_ok=True)
    # Build isolation stays on: pip must import the sdist's build backend
    # (scikit-build-core) to read its metadata, and the venv does not have it.
    # The file itself usually comes from pip's HTTP cache, filled when pip
    # fetched the same sdist to build llama-cpp-python a step earlier.
    cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
           "-d", str(cache), f"llama-cpp-python=={version}"]
    print("perskit: downloading the llama-cpp-python sdist for its converters:", " ".join(cmd[3:]))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not (cache / name).is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise KitError(f"could not download llama-cpp-python=={version} sdist ({tail[0]})", where="pip download",
                       fix=f"download {name} yourself and pass --sdist PATH")
    return cache / name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sdist", type=Path, help="llama-cpp-python sdist (.tar.gz) to extract from")
    ap.add_argument("--dest", type=Path, help="install folder (default: $PERSKIT_HOME/llama.cpp-<version>)")
    ap.add_argument("--force", action="store_true", help="reinstall even if present")
    args = ap.parse_args(argv)
    try:
        version = llama_cpp_version()
        dest = args.dest or default_converter_dir(version)
        if (dest / MARKER).is_file() and not args.force:
            print(f"perskit: converter for llama-cpp-python {version} already at {dest}")
            return 0
        sdist = args.sdist or find_or_download_sdist(version)
        if f"-{version}." not in sdist.name:
            raise KitError(f"sdist {sdist.name} does not match the installed llama-cpp-python {version}",
                           where=str(sdist), fix=f"use llama_cpp_python-{version}.tar.gz")
        install_from_sdist(sdist, dest)
        print(f"perskit: llama.cpp converter {version} installed at {dest}")
        return 0
    except KitError as exc:
        print(f"perskit: error: {exc.one_line()}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
