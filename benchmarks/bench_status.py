"""How long `covfuzz status DIR` takes: on a campaign directory given on the command line (a
running one is fine: status only reads `fuzzer_stats.json`), and on a store of 100k seeds built
here with the corpus store API (plus failure buckets with triage records), whose status file the
campaign's own monitor writes (`Campaign.tick`, no worker started).

    python benchmarks/bench_status.py [--seeds 100000] [--buckets 300] [--runs 5] [DIR...]

Prints the median and worst wall time of `covfuzz status` as a fresh process (what a user
waits for), and whether that process imported torch (it must not).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import corpus  # noqa: E402
from covfuzz import serialize  # noqa: E402
from covfuzz.generator import GenOptions, generate  # noqa: E402
from covfuzz.triage.signature import signature_id  # noqa: E402


def build_store(directory: str, n_seeds: int, n_buckets: int) -> None:
    """`n_seeds` seeds (50 shapes of graph, each under many input seeds) with 60 features
    each, and `n_buckets` failure buckets, half of them triaged."""
    rng = np.random.default_rng(0)
    shapes = [generate(k, GenOptions(max_nodes=6)) for k in range(50)]
    with corpus.open_campaign_store(directory, readonly=False, create=True) as store:
        batch = []
        for i in range(n_seeds):
            case = shapes[i % len(shapes)].replace(seed=i)
            feats = rng.integers(0, 2_000_000, size=60).astype(np.uint64)
            batch.append((serialize.case_id(case), serialize.encode(case),
                          {"nodes": len(case.graph.nodes), "outcome": "pass"}, feats))
            if len(batch) == 5000:
                store.add_seeds(batch)
                batch = []
        if batch:
            store.add_seeds(batch)
        for b in range(n_buckets):
            case = shapes[b % len(shapes)].replace(seed=10**7 + b)
            sig = f"mismatch|torch.op{b}<-torch.acosh"
            sid = signature_id(sig)
            store.record_failure(sid, "mismatch", f"output 0 nonfinite mismatch: eager nan vs "
                                 f"compiled 0.0 ({b})", "", serialize.case_id(case),
                                 serialize.encode(case), {"outcome": "mismatch"},
                                 extra={"signature": sig})
            if b % 2:
                store.update_failure_extra(sid, {"triage": {
                    "state": "confirmed", "root": sig, "root_id": sid, "culprit_op": f"torch.op{b}",
                    "reduced_nodes": 2, "triaged_at": time.time()}})


def write_status(directory: str) -> None:
    """The campaign's own monitor writes fuzzer_stats.json (imports torch; no worker)."""
    from covfuzz.campaign import Campaign, CampaignOptions
    campaign = Campaign(directory, CampaignOptions(workers=2, hours=2.0, quiet=True))
    try:
        campaign.tick(running=False)
    finally:
        campaign.close()


def time_status(directory: str, runs: int) -> tuple[list[float], bool]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    probe = ("import sys; sys.argv = ['covfuzz', 'status', sys.argv[1]]\n"
             "from covfuzz.cli import main\nrc = main()\n"
             "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'NO_TORCH', file=sys.stderr)")
    seconds, torch_seen = [], False
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", probe, directory], env=env,
                              capture_output=True, text=True, timeout=60)
        seconds.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise SystemExit(f"covfuzz status {directory} failed: {proc.stderr[-500:]}")
        torch_seen |= "TORCH_IMPORTED" in proc.stderr
    return seconds, torch_seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", metavar="DIR", help="campaign directories to time too")
    parser.add_argument("--seeds", type=int, default=100_000, help="seeds of the built store")
    parser.add_argument("--buckets", type=int, default=300, help="failure buckets of the built store")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per directory")
    parser.add_argument("--keep", metavar="DIR", help="build the store here (kept) instead of a temp dir")
    args = parser.parse_args()
    built = args.keep or tempfile.mkdtemp(prefix="covfuzz-bench-status-")
    if not os.path.exists(os.path.join(built, "fuzzer_stats.json")):
        t = time.perf_counter()
        build_store(built, args.seeds, args.buckets)
        write_status(built)
        print(f"built {built}: {args.seeds} seeds, {args.buckets} buckets "
              f"({time.perf_counter() - t:.0f} s)")
    for directory in [built, *args.dirs]:
        seconds, torch_seen = time_status(directory, args.runs)
        print(f"covfuzz status {directory}: median {statistics.median(seconds):.3f} s, "
              f"worst {max(seconds):.3f} s over {args.runs} runs; "
              f"{'imported torch (bug)' if torch_seen else 'no torch import'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
