#!/usr/bin/env bash
# One command for a GPU machine (under 8 minutes): every trainer for a few hundred steps in
# fp32, bf16 and fp16 (+ torch.compile), loss checked, throughput and peak memory printed.
# Runs from a source checkout; pydantic is installed from ./.wheels when the machine has no
# index to fetch it from (pip download pydantic --only-binary=:all: -d .wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import pydantic" 2>/dev/null; then
    "$PY" -m pip install --quiet --no-index --find-links .wheels pydantic
fi
if ! "$PY" -c "import conllu" 2>/dev/null; then
    "$PY" -m pip install --quiet --no-index --find-links .wheels conllu
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" DL_OFFLINE=1
exec "$PY" scripts/gpu_check.py "$@"
