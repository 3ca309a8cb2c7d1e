#!/usr/bin/env bash
# Run HERE (a connected CPU machine), not on the GPU box: downloads the wheels the GPU check
# carries into bench/gpu/wheels/ (git-ignored), slims the two that are too big as published,
# and reports the total against the 64 MiB carry limit (working tree included).
#   bash bench/gpu/prepare.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$here/wheels"
py="${PYTHON:-python3}"
rm -rf "$out"
mkdir -p "$out"
# The GPU image is CPython 3.12 on x86-64 manylinux; --no-deps: wheels.txt names every need.
# PIP_CONSTRAINT= : a machine-wide constraints file must not veto these pins.
PIP_CONSTRAINT= "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 --platform any -d "$out" -r "$here/wheels.txt" 2> >(grep -v "is ignored" >&2)
echo "published sizes:"
"$py" "$here/slim_wheels.py" "$out" --no-slim || true
tree_kib=$(cd "$root" && git ls-files -co --exclude-standard -z | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1)
echo "after slimming:"
"$py" "$here/slim_wheels.py" "$out" --tree-mib "$(awk -v k="$tree_kib" 'BEGIN{printf "%.1f", k/1024}')"
