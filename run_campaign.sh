#!/usr/bin/env bash
# covfuzz overnight wrapper: sets up on first run, picks defaults, runs (or resumes) a campaign.
#
#   ./run_campaign.sh                 # 15-minute campaign in ./campaigns/default (foreground)
#   ./run_campaign.sh --detach        # same, under nohup; follow it with `tail -f DIR/campaign.log`
#   COVFUZZ_HOURS=8 ./run_campaign.sh --detach     # overnight
#   ./run_campaign.sh --no-feedback   # extra arguments go to `covfuzz fuzz`
#
# Environment: COVFUZZ_DIR (campaign dir), COVFUZZ_HOURS (default 0.25), COVFUZZ_WORKERS,
# COVFUZZ_DEVICE (cpu|cuda; default cuda when torch sees a GPU, else cpu),
# COVFUZZ_WORKERS_PER_GPU (cuda: workers on each visible GPU, each pinned to its GPU; default
# from the GPU's memory and the host's cores, as `covfuzz fuzz` chooses: harness.pool),
# COVFUZZ_RAY (run the workers on a Ray cluster: auto or HEAD:PORT; COVFUZZ_WORKERS_PER_NODE
# workers on each node, default its CPU count; needs pip install -e ".[ray]").
# Re-running with the same COVFUZZ_DIR resumes the campaign where it stopped.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup_env.sh

DETACH=0
if [ "${1:-}" = "--detach" ]; then DETACH=1; shift; fi
DIR=${COVFUZZ_DIR:-campaigns/default}
HOURS=${COVFUZZ_HOURS:-0.25}
PY=.venv/bin/python
if [ -z "${COVFUZZ_DEVICE:-}" ]; then
    COVFUZZ_DEVICE=$($PY -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
fi
if [ -n "${COVFUZZ_RAY:-}" ]; then
    # Each node's workers: --workers-per-node (default its CPU count) or --workers-per-gpu.
    WORKER_ARGS=(--ray "$COVFUZZ_RAY")
    [ -n "${COVFUZZ_WORKERS_PER_NODE:-}" ] && WORKER_ARGS+=(--workers-per-node "$COVFUZZ_WORKERS_PER_NODE")
    [ -n "${COVFUZZ_WORKERS_PER_GPU:-}" ] && WORKER_ARGS+=(--workers-per-gpu "$COVFUZZ_WORKERS_PER_GPU")
    COVFUZZ_WORKERS=cluster
else
    if [ -z "${COVFUZZ_WORKERS:-}" ]; then
        COVFUZZ_WORKERS=$($PY -c "import sys; from harness.pool import default_workers_here; \
print(default_workers_here(sys.argv[1], int(sys.argv[2]) or None))" \
            "$COVFUZZ_DEVICE" "${COVFUZZ_WORKERS_PER_GPU:-0}")
    fi
    WORKER_ARGS=(--workers "$COVFUZZ_WORKERS")
fi
mkdir -p "$DIR"
LOG="$DIR/campaign.log"
CMD=("$PY" -m covfuzz fuzz "$DIR" --hours "$HOURS" "${WORKER_ARGS[@]}" --device "$COVFUZZ_DEVICE" "$@")
echo "covfuzz: campaign $DIR ($COVFUZZ_DEVICE, $COVFUZZ_WORKERS workers, $HOURS h); log: $LOG" >&2
if [ "$DETACH" = 1 ]; then
    nohup "${CMD[@]}" >>"$LOG" 2>&1 &
    echo "covfuzz: running in the background as pid $! (stop: kill -INT $!; status: .venv/bin/covfuzz status $DIR)" >&2
    exit 0
fi
"${CMD[@]}" 2>&1 | tee -a "$LOG"
status=${PIPESTATUS[0]}
echo "covfuzz: results in $DIR: .venv/bin/covfuzz status $DIR | covfuzz plot $DIR | see $LOG" >&2
exit "$status"
