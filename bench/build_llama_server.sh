#!/usr/bin/env bash
# Build llama.cpp's llama-server and llama-batched-bench from the llama-cpp-python sdist that
# matches the installed wheel (the same vendored llama.cpp; no other download). Only the
# construct throughput bench uses them: llama-server schedules several slots with continuous
# batching, which llama-cpp-python's own server (one lock) cannot.
#   bash bench/build_llama_server.sh        # prints $PERSKIT_HOME/llama-server-<version>/build/bin
# ~6-8 min on 2 cores. The web UI is left out (it would need npm or a download).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
VERSION=$($PY -c "from kit.export.converter import llama_cpp_version; print(llama_cpp_version())")
HOME_DIR=${PERSKIT_HOME:-$HOME/.cache/perskit}
DEST="$HOME_DIR/llama-server-$VERSION"
BIN="$DEST/build/bin"  # the binaries find their shared ggml/llama libraries here (RPATH)
if [ -x "$BIN/llama-server" ] && [ -x "$BIN/llama-batched-bench" ]; then
  echo "$BIN"; exit 0
fi
SDIST=$($PY -c "import sys; sys.path.insert(0, 'scripts'); from fetch_converter import find_or_download_sdist; print(find_or_download_sdist('$VERSION'))")
mkdir -p "$HOME_DIR"
SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
tar xzf "$SDIST" -C "$SRC" "llama_cpp_python-$VERSION/vendor/llama.cpp"
rm -rf "$DEST/build"  # a half-built tree points at a deleted source folder: configure afresh
cmake -S "$SRC/llama_cpp_python-$VERSION/vendor/llama.cpp" -B "$DEST/build" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF >"$DEST.cmake.log" 2>&1 || { echo "cmake configure failed: see $DEST.cmake.log" >&2; exit 1; }
cmake --build "$DEST/build" -j"$(nproc)" --target llama-server llama-batched-bench >"$DEST.build.log" 2>&1 || { echo "build failed: see $DEST.build.log" >&2; exit 1; }
echo "$BIN"
