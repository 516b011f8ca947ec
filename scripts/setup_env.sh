#!/usr/bin/env bash
# Creates ./.venv (idempotent) with everything covfuzz needs.
# - Reuses a torch that the base interpreter already has (venv sees system site-packages).
# - Otherwise installs the pinned COVFUZZ_TORCH (default torch==2.13.0) *before* the project,
#   so pip never resolves the unpinned requirement to a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${COVFUZZ_VENV:-.venv}
TORCH_PIN=${COVFUZZ_TORCH:-torch==2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV (with access to the base interpreter's packages)" >&2
    "$PY" -m venv --system-site-packages "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    echo "[setup] no torch found: installing $TORCH_PIN" >&2
    "$VENV/bin/python" -m pip install --quiet "$TORCH_PIN"
fi
stamp="$VENV/.covfuzz-installed"
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "[setup] installing covfuzz and its dependencies into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet -e ".[test]"
    touch "$stamp"
fi
