"""Triage report of a campaign: raw failures vs buckets, reduction of every bucket, replay check.

    python benchmarks/triage_report.py DIR [--timeout S] [--max-steps N] [--budget S] [--no-store]

Prints raw failures vs distinct buckets (by kind), reduces the first example of every bucket
(one warm worker reused), prints median node count before -> after and median reduction time,
and confirms each reduced case replays with the same signature in a fresh worker. Reduced cases
are stored as DIR/reduced/<sig_id>.cfz unless --no-store (the campaign must not be writing
there; the store itself is only read).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from corpus import open_campaign_store  # noqa: E402
from covfuzz.errors import CovfuzzError  # noqa: E402
from covfuzz.triage import failures as F  # noqa: E402
from covfuzz.triage.reduce import Reducer  # noqa: E402
from covfuzz.triage.resolve import bucket_case, find_bucket  # noqa: E402
from covfuzz.triage.signature import signature_of  # noqa: E402
from harness.pool import WorkerSpec, start_worker  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--budget", type=float, default=600.0, help="per-bucket reduction budget (s)")
    ap.add_argument("--no-store", action="store_true")
    args = ap.parse_args(argv)

    with open_campaign_store(args.dir) as store:
        rows = F.sort_rows(F.buckets(store, args.dir), "count")
        targets = []
        for row in rows:
            rec = store.get_failure(row["signature_id"]) or find_bucket(store, row["signature_id"])
            try:
                targets.append((row, bucket_case(store, rec, args.dir)))
            except CovfuzzError as exc:
                print(f"skip {row['signature_id']}: {exc}")
    raw = sum(r["count"] for r in rows)
    kinds: dict[str, list[int]] = {}
    for r in rows:
        kinds.setdefault(r["kind"], [0, 0])
        kinds[r["kind"]][0] += r["count"]
        kinds[r["kind"]][1] += 1
    print(f"{args.dir}: {raw} raw failures -> {len(rows)} buckets")
    for kind, (n, b) in sorted(kinds.items()):
        print(f"  {kind:<14} {n:>6} raw  {b:>4} buckets")
    if not targets:
        return 0

    before, after, seconds, results = [], [], [], []
    worker = start_worker(WorkerSpec.for_reducer(timeout=args.timeout))
    try:
        for row, target in targets:
            reducer = Reducer(worker, args.timeout, args.max_steps, args.budget)
            try:
                res = reducer.reduce(target.case, target.signature)
            except CovfuzzError as exc:
                print(f"  {row['signature_id']} {row['kind']:<14} not reduced: {exc}")
                continue
            before.append(res.nodes_before)
            after.append(res.nodes_after)
            seconds.append(res.seconds)
            results.append((row, target, res))
            print(f"  {row['signature_id']} {row['kind']:<14} {res.nodes_before:>3} -> {res.nodes_after:>3} "
                  f"nodes  {res.seconds:6.1f}s  {res.runs:>3} runs  ({res.stopped})", flush=True)
            if not args.no_store:
                F.write_reduced(args.dir, row["signature_id"], res.case,
                                dict(res.to_dict(), signature_id=row["signature_id"],
                                     example_id=target.example_id))
    finally:
        worker.close()
    if not results:
        return 0
    print(f"reduced {len(results)} of {len(targets)} buckets: median nodes "
          f"{statistics.median(before)} -> {statistics.median(after)}, median time "
          f"{statistics.median(seconds):.1f}s (total {sum(seconds):.0f}s)")

    same = 0
    # a fresh worker for the confirmation
    worker = start_worker(WorkerSpec.for_reducer(timeout=args.timeout))
    try:
        for row, target, res in results:
            result = worker.run(res.case, timeout=args.timeout, coverage=False)
            sig = signature_of(res.case, result)[0]
            ok = sig == res.signature
            same += ok
            if not ok:
                print(f"  {row['signature_id']}: reduced case replays as {sig[:120]} "
                      f"(expected {res.signature[:120]})")
    finally:
        worker.close()
    print(f"replay of reduced cases: {same}/{len(results)} with the same signature")
    return 0 if same == len(results) else 1


if __name__ == "__main__":
    t0 = time.time()
    rc = main()
    print(f"({time.time() - t0:.0f}s)")
    sys.exit(rc)
