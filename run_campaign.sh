#!/usr/bin/env bash
# covfuzz overnight wrapper: sets up on first run, picks defaults, runs (or resumes) a campaign.
#
#   ./run_campaign.sh                 # 15-minute campaign in ./campaigns/default (foreground)
#   ./run_campaign.sh --detach        # same, under nohup; follow it with `tail -f DIR/campaign.log`
#   COVFUZZ_HOURS=8 ./run_campaign.sh --detach     # overnight
#   ./run_campaign.sh --no-feedback   # extra arguments go to `covfuzz fuzz`
#
# Environment: COVFUZZ_DIR (campaign dir), COVFUZZ_HOURS (default 0.25), COVFUZZ_WORKERS,
# COVFUZZ_DEVICE (cpu|cuda; default cuda when torch sees a GPU, else cpu).
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
if [ -z "${COVFUZZ_WORKERS:-}" ]; then
    if [ "$COVFUZZ_DEVICE" = cuda ]; then
        COVFUZZ_WORKERS=$($PY -c "import torch; print(2 * torch.cuda.device_count())")
    else
        COVFUZZ_WORKERS=$(nproc)
    fi
fi
mkdir -p "$DIR"
LOG="$DIR/campaign.log"
CMD=("$PY" -m covfuzz fuzz "$DIR" --hours "$HOURS" --workers "$COVFUZZ_WORKERS" --device "$COVFUZZ_DEVICE" "$@")
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
