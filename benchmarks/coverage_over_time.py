#!/usr/bin/env python
"""Coverage over time and finding rate: feedback mode vs the --no-feedback baseline, or this
tree's code vs another checkout's (`--base-tree`).

Runs two campaigns at the same time on this machine, with the same budget and number of workers:
`covfuzz fuzz OUT/feedback` and `covfuzz fuzz OUT/no-feedback --no-feedback` (running them side by
side means machine noise and load hit both alike). With `--base-tree DIR` (e.g. a `git worktree`
of an older commit) both run in feedback mode instead: `OUT/new` with this tree's code and
`OUT/base` with DIR's, to show that a change keeps coverage within noise. Then prints, at checkpoints, the coverage
features (arcs of torch/_inductor + torch/_dynamo), the plainly covered lines of those packages,
executions and distinct failure signatures of each, the feedback / no-feedback ratios and the
distinct failures per hour; and writes OUT/coverage_over_time.png with both curves.

    python benchmarks/coverage_over_time.py --minutes 60 --workers 2 --out runs/cmp
    python benchmarks/coverage_over_time.py --report-only --out runs/cmp   # tables of finished runs
    git worktree add /tmp/base OLD_COMMIT
    python benchmarks/coverage_over_time.py --minutes 30 --workers 1 --base-tree /tmp/base --out runs/refactor
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from covfuzz.status import plot, read_status, stats_series  # noqa: E402

# name -> (source tree, extra flags); the first is the one the ratios put on top.
MODES = {"feedback": (ROOT, []), "no-feedback": (ROOT, ["--no-feedback"])}


def base_tree_modes(base_tree: str) -> dict:
    return {"new": (ROOT, []), "base": (os.path.abspath(base_tree), [])}


def run_pair(out: str, minutes: float, workers: int, seed: int) -> None:
    procs = []
    for mode, (tree, flags) in MODES.items():
        directory = os.path.abspath(os.path.join(out, mode))
        log = open(os.path.join(out, f"{mode}.log"), "ab")
        cmd = [sys.executable, "-m", "covfuzz", "fuzz", directory, "--workers", str(workers),
               "--hours", str(minutes / 60.0), "--seed", str(seed), *flags]
        env = dict(os.environ, PYTHONPATH=tree)  # each tree imports its own covfuzz
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tree, env=env))
    started = time.time()
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(30)
            line = []
            for mode in MODES:
                try:
                    s = read_status(os.path.join(out, mode))
                    line.append(f"{mode}: {s['execs']} execs, {s['features']} features, "
                                f"{s['lines']} lines, {s['unique_failures']} failures")
                except Exception:  # noqa: BLE001 - not started yet
                    line.append(f"{mode}: starting")
            print(f"[{(time.time() - started) / 60:5.1f} min] " + " | ".join(line), flush=True)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        raise


def at(series: list[dict], minute: float) -> dict | None:
    """The last stats record at or before `minute` (None when the run had not got there)."""
    best = None
    for record in series:
        if record["elapsed"] <= minute * 60 + 1:
            best = record
    if best is None or series[-1]["elapsed"] < minute * 60 - 60:
        return None
    return best


def report(out: str, checkpoints: list[float]) -> str:
    series = {mode: stats_series(os.path.join(out, mode)) for mode in MODES}
    rows = [("minute", "mode", "execs", "features", "lines", "failures", "features ratio",
             "lines ratio")]
    for minute in checkpoints:
        recs = {mode: at(series[mode], minute) for mode in MODES}
        if any(r is None for r in recs.values()):
            continue
        fb, nofb = (recs[mode] for mode in MODES)
        for mode, r in recs.items():
            ratio_f = ratio_l = ""
            if mode == next(iter(MODES)):
                ratio_f = f"{fb['features'] / max(nofb['features'], 1):.3f}"
                ratio_l = f"{fb['lines'] / max(nofb['lines'], 1):.3f}"
            rows.append((f"{minute:g}", mode, str(r["execs"]), str(r["features"]), str(r["lines"]),
                         str(r["unique_failures"]), ratio_f, ratio_l))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.append("")
    for mode in MODES:
        last = series[mode][-1]
        hours = last["elapsed"] / 3600.0
        lines.append(f"{mode}: {last['unique_failures']} distinct failure signatures in "
                     f"{last['elapsed'] / 60:.1f} min = {last['unique_failures'] / hours:.1f} per hour "
                     f"({last['failures_by_kind']}); {last['execs']} execs "
                     f"({last['execs'] / last['elapsed']:.3f}/s); supervisor RSS "
                     f"{last.get('supervisor_rss_mb', '?')} MiB")
    first, second = (os.path.join(out, mode) for mode in MODES)
    png = plot(first, os.path.join(out, "coverage_over_time.png"), [second])
    lines.append(f"plot: {png}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="budget of each campaign")
    p.add_argument("--workers", type=int, default=2, help="workers of each campaign")
    p.add_argument("--seed", type=int, default=0, help="campaign rng seed (both modes)")
    p.add_argument("--out", default="runs/coverage_over_time", help="directory of both campaigns")
    p.add_argument("--report-only", action="store_true", help="only print the tables of OUT")
    p.add_argument("--base-tree", metavar="DIR",
                   help="compare this tree's code with DIR's (both in feedback mode) instead of "
                        "feedback vs --no-feedback")
    p.add_argument("--checkpoints", default="5,10,15,30,45,60,90,120",
                   help="minutes at which to compare (those reached by both runs are printed)")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.base_tree:
        MODES.clear()
        MODES.update(base_tree_modes(args.base_tree))
    if not args.report_only:
        for mode in MODES:
            if os.path.exists(os.path.join(args.out, mode)):
                p.error(f"{os.path.join(args.out, mode)} exists: pick a new --out (or --report-only)")
        run_pair(args.out, args.minutes, args.workers, args.seed)
    print(report(args.out, [float(x) for x in args.checkpoints.split(",")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
