#!/usr/bin/env bash
# Sets up ./.venv on first use (reusing an installed torch, else torch==2.13.0), then runs the tests.
# Extra arguments go to pytest, e.g. ./run_tests.sh -k serialize
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup_env.sh
exec .venv/bin/python -m pytest -q "$@"
