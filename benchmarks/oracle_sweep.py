"""Run generated CPU cases through a worker; print outcome counts and every mismatch.

    python benchmarks/oracle_sweep.py [--cases 200] [--seed S] [--coverage]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from covfuzz.generator import GenOptions, generate  # noqa: E402
from covfuzz.serialize import encode  # noqa: E402
from harness.pool import WorkerSpec, start_worker  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=5000)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--coverage", action="store_true")
    args = ap.parse_args()
    counts = collections.Counter()
    notes = collections.Counter()
    t0 = time.time()
    with start_worker(WorkerSpec(coverage=args.coverage, timeout=args.timeout)) as worker:
        for i in range(args.cases):
            seed = args.seed + i
            r = worker.run(encode(generate(seed, GenOptions())))
            counts[r.outcome] += 1
            if r.details.get("note"):
                notes[r.details["note"]] += 1
            if r.outcome in ("mismatch", "grad_mismatch"):
                d = {k: r.details.get(k) for k in ("output", "kind", "dtype", "shape", "index",
                                                   "max_abs_err", "eager", "compiled",
                                                   "reference", "rtol", "atol", "k",
                                                   "rmse_compiled", "rmse_eager")}
                print(f"[{r.outcome}] seed {seed} case {r.case_id}: {json.dumps(d)}", flush=True)
            elif r.outcome not in ("pass",):
                first = r.message.splitlines()[0][:200] if r.message else ""
                print(f"[{r.outcome}] seed {seed} case {r.case_id}: {first}", flush=True)
        stats = dict(worker.stats)
    print(f"\n{args.cases} cases in {time.time() - t0:.0f} s; outcomes: {dict(counts)}")
    print(f"notes: {dict(notes)}; worker: {stats}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
