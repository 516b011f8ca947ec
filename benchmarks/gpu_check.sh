#!/usr/bin/env bash
# One-shot device check of covfuzz's GPU half (issue 22), under 8 minutes on a fresh GPU box:
#
#   1. setup: ./scripts/setup_env.sh, made to work offline first when the box has no package
#      index (the device machines of this workplace: their python3 holds a CUDA torch, and the
#      two packages it lacks, lmdb and google-re2, travel as cp312 wheels in ./.whl);
#   2. the CUDA tests: pytest -m cuda tests/test_gpu.py (placement, the GPU oracle, CUDA graphs,
#      streams, a real device-side assert, a real OOM), at most GPU_CHECK_TEST_S seconds;
#   3. a GPU_CHECK_MINUTES-minute campaign (default 5) with --device cuda and the default
#      worker count (harness.pool.default_workers_here: per GPU, its memory at 8 GiB a worker
#      and the host's cores);
#   4. prints cases per hour per worker, the outcomes, the failure buckets (`covfuzz crashes`),
#      and copies everything under $OUT when it is set (at most 8 files).
#
#   benchmarks/gpu_check.sh                  # results in /tmp/covfuzz-gpu-check/out
#   OUT=/some/dir benchmarks/gpu_check.sh
#
# Wheels for an offline Python 3.12 box (run once where pip reaches the index; .whl/ travels
# with the working tree as an untracked folder):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl lmdb==3.0.0 google-re2==1.1.20251105
# Exit status: 0 when the CUDA tests passed and the campaign ran; 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${GPU_CHECK_DIR:-/tmp/covfuzz-gpu-check}
OUT=${OUT:-$WORK/out}
MINUTES=${GPU_CHECK_MINUTES:-5}
TEST_S=${GPU_CHECK_TEST_S:-150}
CAMPAIGN=$WORK/campaign
mkdir -p "$WORK" "$OUT"
rm -rf "$CAMPAIGN"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
T0=$SECONDS
step() { echo; echo "== [$((SECONDS - T0)) s] $*"; }
status=0

# ----------------------------------------------------------------------------- 1. setup
step "setup"
PY=.venv/bin/python
if [ ! -x "$PY" ] && python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    # python3 already holds a CUDA torch (the device machines of this workplace, offline, whose
    # python3 lives in a virtual environment that a new venv's --system-site-packages would not
    # see): a venv that sees python3's packages through a .pth file, the wheels of .whl/ for
    # what python3 lacks, and covfuzz from this checkout (a .pth file: nothing to build).
    echo "setup over python3's CUDA torch"
    python3 -m venv --without-pip .venv
    site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    python3 -c "import sys; print('\n'.join(p for p in sys.path if p.endswith('-packages')))" \
        >"$site/base_python.pth"
    echo "$ROOT" >"$site/covfuzz_checkout.pth"
    if ! .venv/bin/python -c "import lmdb, re2" 2>/dev/null; then
        if ls .whl/*.whl >/dev/null 2>&1; then
            python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
        else
            python3 -m pip install -q --target "$site" lmdb google-re2
        fi
    fi
    touch .venv/.covfuzz-installed  # tells setup_env.sh that covfuzz is installed
fi
./scripts/setup_env.sh || { echo "setup failed"; exit 1; }
$PY - <<'EOF' || { echo "setup: covfuzz or its packages do not import"; exit 1; }
import torch, lmdb, re2, coverage  # noqa: F401
import covfuzz.cli, harness.pool
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"GPUs {torch.cuda.device_count()}: {[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}")
assert torch.cuda.is_available(), "torch sees no GPU"
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "cores: $(nproc)"

# ----------------------------------------------------------------------------- 2. CUDA tests
step "CUDA tests (pytest -m cuda, at most ${TEST_S} s)"
timeout -k 10 "$TEST_S" $PY -m pytest -q -m cuda tests/test_gpu.py -p no:cacheprovider -rs \
    2>&1 | tee "$OUT/pytest_cuda.log"
rc=${PIPESTATUS[0]}
echo "pytest exit status: $rc"
[ "$rc" = 0 ] || status=1

# ----------------------------------------------------------------------------- 3. campaign
WORKERS=$($PY -c "from harness.pool import default_workers_here; print(default_workers_here('cuda'))")
step "campaign: $MINUTES min on cuda, $WORKERS workers, in $CAMPAIGN"
HOURS=$($PY -c "print($MINUTES / 60)")
timeout -k 20 $((MINUTES * 60 + 150)) $PY -m covfuzz fuzz "$CAMPAIGN" --device cuda \
    --workers "$WORKERS" --hours "$HOURS" --timeout 60 --drain-limit 20 --status-interval 30
rc=$?
echo "covfuzz fuzz exit status: $rc"
[ "$rc" = 0 ] || status=1

# ----------------------------------------------------------------------------- 4. report
step "results"
$PY - "$CAMPAIGN" "$OUT/summary.json" <<'EOF'
import json, sys
stats = json.load(open(f"{sys.argv[1]}/fuzzer_stats.json"))
workers, hours = max(int(stats.get("workers") or 1), 1), max(float(stats["elapsed"]), 1e-9) / 3600
execs = int(stats["execs"])
summary = {"device": stats.get("device"), "workers": workers, "elapsed_s": stats["elapsed"],
           "execs": execs, "cases_per_hour_per_worker": round(execs / hours / workers, 1),
           "outcomes": stats.get("outcomes"), "worker_restarts": stats.get("worker_restarts"),
           "unique_failures": stats.get("unique_failures"),
           "failures_by_kind": stats.get("failures_by_kind"), "features": stats.get("features")}
json.dump(summary, open(sys.argv[2], "w"), indent=1)
print(json.dumps(summary, indent=1))
print(f"cases per hour per worker on the GPU: {summary['cases_per_hour_per_worker']}")
EOF
[ $? = 0 ] || status=1
$PY -m covfuzz crashes "$CAMPAIGN" --all 2>&1 | tee "$OUT/crashes.txt"
$PY -m covfuzz status "$CAMPAIGN" >"$OUT/status.txt" 2>&1 || true
cp "$CAMPAIGN/fuzzer_stats.json" "$OUT/" 2>/dev/null || true
tail -n 400 "$CAMPAIGN/campaign.log" >"$OUT/campaign_log_tail.txt" 2>/dev/null || true
tar -czf "$OUT/campaign_files.tar.gz" -C "$CAMPAIGN" scheduler.jsonl reduced 2>/dev/null || true
step "done: exit status $status; files in $OUT"
exit "$status"
