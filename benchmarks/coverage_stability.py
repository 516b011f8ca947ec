"""Coverage stability (AFL's definition: the share of features that every run of a case hits).

Two fresh warm workers run the same generated cases: worker A in order, worker B in reverse
order (so each case meets a different history of earlier compiles). For each case, stability =
|A & B| / |A | B| over its arc features; prints per-case figures and the mean.

    python benchmarks/coverage_stability.py [--cases 10] [--seed 7000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from covfuzz.generator import generate  # noqa: E402
from covfuzz.features import is_line  # noqa: E402
from harness.pool import WorkerSpec, start_worker  # noqa: E402


def arcs(result) -> set[int]:
    features = np.asarray(result.features, dtype=np.uint64)
    return set(features[~is_line(features)].tolist())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7000)
    args = parser.parse_args()
    cases = [generate(args.seed + i) for i in range(args.cases)]
    cache = tempfile.mkdtemp(prefix="covfuzz-stability-")
    spec = WorkerSpec.for_campaign(cache_dir=cache)  # warm-up on, like a campaign's workers
    with start_worker(spec) as a, start_worker(spec) as b:
        first = [arcs(a.run(c)) for c in cases]
        second = list(reversed([arcs(b.run(c)) for c in reversed(cases)]))
    rows = []
    for i, (x, y) in enumerate(zip(first, second)):
        union = x | y
        stability = len(x & y) / len(union) if union else 1.0
        rows.append(stability)
        print(f"case {i:>3}: {len(x):>6} / {len(y):>6} arcs, stable {100 * stability:6.2f}%")
    both = set().union(*first) & set().union(*second)
    every = set().union(*first) | set().union(*second)
    print(f"mean per-case stability {100 * statistics.mean(rows):.2f}% "
          f"(min {100 * min(rows):.2f}%); campaign-level {100 * len(both) / len(every):.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
