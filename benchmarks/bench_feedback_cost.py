"""What issue 19's feature families cost per execution: one warm worker with them, one without.

    python benchmarks/bench_feedback_cost.py [--cases N] [--seed S] [--timeout S]

Two workers (coverage on in both, each with its own fresh TORCHINDUCTOR_CACHE_DIR, warmed on one
case) run the same N generated CPU cases; one also computes the generated-code, value and
divergence families (COVFUZZ_FEATURE_FAMILIES). Prints per-case time with and without them,
the ratio, the time spent extracting features, and the family features per case.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from covfuzz.features import FAMILY_ENV, family_count  # noqa: E402
from covfuzz.generator import GenOptions, generate  # noqa: E402
from covfuzz.serialize import encode  # noqa: E402
from harness.pool import WorkerSpec, start_worker  # noqa: E402

FAMILIES = "gencode,values,divergence"


def run_all(cases, families: str | None, timeout: float):
    env = {FAMILY_ENV: families} if families else {}
    with tempfile.TemporaryDirectory(prefix="covfuzz-bench-") as cache:
        with start_worker(WorkerSpec(cache_dir=cache, coverage=True, timeout=timeout,
                                     env=env)) as worker:
            worker.run(encode(generate(10**9, GenOptions(max_nodes=3, backward_prob=0))))  # warm
            return [worker.run(data) for data in cases]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=20, help="generated cases to run (default 20)")
    ap.add_argument("--seed", type=int, default=2000, help="first generator seed")
    ap.add_argument("--timeout", type=float, default=120.0, help="per-case timeout (s)")
    args = ap.parse_args(argv)

    cases = [encode(generate(args.seed + i, GenOptions())) for i in range(args.cases)]
    plain = run_all(cases, None, args.timeout)
    fams = run_all(cases, FAMILIES, args.timeout)

    def per_case(results, key="total"):
        return sum(r.timings.get(key, 0.0) for r in results) / max(len(results), 1)

    n = len(cases)
    t_plain, t_fams = per_case(plain), per_case(fams)
    print(f"{n} distinct generated CPU cases, one warm worker per configuration (coverage on)")
    print(f"  coverage only:         {t_plain:.3f} s/case (median "
          f"{statistics.median(r.timings['total'] for r in plain):.3f}), feature extraction "
          f"{per_case(plain, 'coverage'):.3f} s/case")
    print(f"  + {FAMILIES}: {t_fams:.3f} s/case (median "
          f"{statistics.median(r.timings['total'] for r in fams):.3f}), feature extraction "
          f"{per_case(fams, 'coverage'):.3f} s/case")
    t_extract = per_case(fams, "families")  # measured inside the worker, part of `coverage`
    print(f"  ratio (with / without the families): x{t_fams / max(t_plain, 1e-9):.3f} "
          f"(compile times vary from run to run; the extraction itself is measured directly:)")
    print(f"  family extraction: {t_extract:.4f} s/case = {t_extract / max(t_fams, 1e-9):.2%} of "
          f"a case; ratio of the rest: x{(t_plain + t_extract) / max(t_plain, 1e-9):.3f} "
          f"(coverage-only time plus the extraction, over coverage-only time)")
    counts = [family_count(r.features) for r in fams]
    means = {f: statistics.mean(c[f] for c in counts) for f in counts[0]} if counts else {}
    print("  features per case: " + ", ".join(f"{f} {v:.0f}" for f, v in means.items()))
    outcomes = {}
    for r in fams:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    print(f"  outcomes (with the families): {outcomes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
