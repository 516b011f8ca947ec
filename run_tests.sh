#!/usr/bin/env bash
# Sets up ./.venv on first use (reusing an installed torch, else torch==2.13.0), then runs the tests.
# Extra arguments go to pytest, e.g. ./run_tests.sh -k serialize (COVFUZZ_TEST_JOBS=0: serially, in one process)
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup_env.sh
# One test file per core (module-scoped warm workers stay shared within a file); the slowest
# tests are listed at the end so a slow-down is visible.
exec .venv/bin/python -m pytest -q -n "${COVFUZZ_TEST_JOBS:-auto}" --dist loadfile --durations=15 "$@"
