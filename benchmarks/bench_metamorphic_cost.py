"""What issue 19's metamorphic check costs: each generated case run once with one applicable
variant (cycled), on one warm campaign-like worker (coverage and every feature family on).

    python benchmarks/bench_metamorphic_cost.py [--cases N] [--seed S] [--timeout S]

Prints per variant: the variant's compile-and-compare seconds per case against the rest of the
run, and their ratio; a campaign at `--metamorphic RATE` pays about RATE x that ratio more per
passing case. Also the outcomes (a false `metamorphic` verdict on generated cases would show).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from covfuzz.features import FAMILY_ENV  # noqa: E402
from covfuzz.generator import GenOptions, generate  # noqa: E402
from covfuzz.ir import applicable_variants  # noqa: E402
from harness.pool import WorkerSpec, start_worker  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=24, help="generated cases to run (default 24)")
    ap.add_argument("--seed", type=int, default=5000, help="first generator seed (default 5000)")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per case (default 180)")
    args = ap.parse_args()
    per = defaultdict(lambda: [0, 0.0, 0.0])  # variant -> [cases, variant s, rest s]
    outcomes: Counter = Counter()
    with tempfile.TemporaryDirectory(prefix="covfuzz-mm-") as tmp:
        spec = WorkerSpec.for_campaign(cache_dir=tmp, timeout=args.timeout,
                                       env={FAMILY_ENV: "gencode,values,divergence"})
        with start_worker(spec) as worker:
            for k, seed in enumerate(range(args.seed, args.seed + args.cases)):
                case = generate(seed, GenOptions())
                names = applicable_variants(case.settings)
                variant = names[k % len(names)]
                case = case.replace(settings=dataclasses.replace(case.settings,
                                                                 metamorphic=variant))
                result = worker.run(case)
                outcomes[result.outcome] += 1
                spent = result.timings.get("metamorphic", 0.0)
                checked = result.outcome == "pass" and "metamorphic_note" not in result.details
                print(f"seed {seed} {variant:12s} {result.outcome:14s} total "
                      f"{result.timings.get('total', 0.0):6.2f}s variant {spent:6.2f}s", flush=True)
                if checked:
                    row = per[variant]
                    row[0] += 1
                    row[1] += spent
                    row[2] += result.timings.get("total", 0.0) - spent
    for variant, (n, spent, rest) in sorted(per.items()):
        print(f"{variant}: {n} checked case(s), variant {spent / n:.2f} s/case vs the rest "
              f"{rest / n:.2f} s/case: ratio {spent / rest:.2f}")
    if per:
        spent = sum(r[1] for r in per.values())
        rest = sum(r[2] for r in per.values())
        print(f"all checked cases: ratio {spent / rest:.2f} (a campaign at --metamorphic RATE "
              "pays about RATE x this per passing case)")
    print("outcomes:", dict(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
