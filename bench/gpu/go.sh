#!/usr/bin/env bash
# On the GPU machine, from the repo root, with bench/gpu/wheels carried (bash bench/gpu/prepare.sh here first):
#   run(command="bash bench/gpu/go.sh", carry=["bench/gpu/wheels"], timeout_s=600)
# Installs the carried wheels into /tmp/site (no network, no deps resolved: wheels.txt names
# them all), then runs the whole check; results land in $OUT (gpu_check.json, gpu_check.log).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  bench/gpu/wheels/*.whl || { echo "wheel install failed"; exit 3; }
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec python3 bench/gpu/run.py --out "${OUT:-bench/results/gpu}" "$@"
