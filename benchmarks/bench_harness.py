"""Harness cost on distinct generated CPU cases, one warm worker per configuration.

    python benchmarks/bench_harness.py [--cases N] [--seed S]

Two workers (each with its own fresh TORCHINDUCTOR_CACHE_DIR, warmed on one case) run the same
N generated cases, one with coverage and one without. Prints per-case time with/without
coverage (and the ratio) and the fraction of wall time spent outside eager + compile + run +
backward + coverage (codegen, materialization, oracle bookkeeping, IPC); the issue requires that
overhead <= 10%.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from covfuzz.generator import GenOptions, generate  # noqa: E402
from covfuzz.serialize import encode  # noqa: E402
from harness.pool import WorkerSpec, start_worker  # noqa: E402


def run_all(cases, coverage: bool, timeout: float):
    with tempfile.TemporaryDirectory(prefix="covfuzz-bench-") as cache:
        with start_worker(WorkerSpec(cache_dir=cache, coverage=coverage, timeout=timeout)) as worker:
            worker.run(encode(generate(10**9, GenOptions(max_nodes=3, backward_prob=0))))  # warm
            results = [worker.run(data) for data in cases]
            return results, dict(worker.stats)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()

    cases = [encode(generate(args.seed + i, GenOptions())) for i in range(args.cases)]
    t0 = time.time()
    with_cov, stats_cov = run_all(cases, True, args.timeout)
    t1 = time.time()
    without, stats_plain = run_all(cases, False, args.timeout)
    t2 = time.time()

    def col(results, key):
        return [r.timings.get(key, 0.0) for r in results]

    tot_cov, tot_plain = sum(col(with_cov, "total")), sum(col(without, "total"))
    n = len(cases)
    print(f"{n} distinct generated CPU cases, one warm worker per configuration")
    print(f"  with coverage:    {tot_cov / n:.3f} s/case (median {statistics.median(col(with_cov, 'total')):.3f}), "
          f"wall {t1 - t0:.1f} s, worker restarts {stats_cov['restarts']}")
    print(f"  without coverage: {tot_plain / n:.3f} s/case (median {statistics.median(col(without, 'total')):.3f}), "
          f"wall {t2 - t1:.1f} s, worker restarts {stats_plain['restarts']}")
    print(f"  coverage slowdown: x{tot_cov / max(tot_plain, 1e-9):.2f} total "
          f"(compile stage x{sum(col(with_cov, 'compile')) / max(sum(col(without, 'compile')), 1e-9):.2f}; "
          f"feature extraction {sum(col(with_cov, 'coverage')) / n:.3f} s/case)")
    for label, results in (("with coverage", with_cov), ("without coverage", without)):
        fracs = [r.timings["overhead"] / r.timings["total"] for r in results if r.timings["total"]]
        agg = sum(col(results, "overhead")) / max(sum(col(results, "total")), 1e-9)
        split = {k: sum(col(results, k)) / n for k in
                 ("eager", "compile", "run", "backward", "coverage", "overhead")}
        print(f"  overhead ({label}): aggregate {agg:.1%}, per-case mean {statistics.mean(fracs):.1%}, "
              f"median {statistics.median(fracs):.1%}, max {max(fracs):.1%}  "
              f"[{' '.join(f'{k} {v:.3f}s' for k, v in split.items())}]")
    outcomes = {}
    for r in with_cov:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    print(f"  outcomes: {outcomes}; features/case mean "
          f"{statistics.mean(len(r.features) for r in with_cov):.0f}")
    agg = sum(col(with_cov, "overhead")) / max(tot_cov, 1e-9)
    print("  overhead requirement (<= 10%):", "met" if agg <= 0.10 else "NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
