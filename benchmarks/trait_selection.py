"""How much does choosing the best of K generated graphs by trait yield pay? A replay, no compiles.

A no-feedback campaign executes generated graphs in seed order and logs, for each, the new
features it found and its time (DIR/scheduler.jsonl). This benchmark regenerates those graphs
from their seeds (matched by case id), then replays the log in windows of K consecutive graphs:
a `TraitYield` trained only on the graphs it "executed" so far picks one graph per window, and
learns that graph's logged gain and time. The figure is the picked graphs' new features per
second over the window average's, i.e. what feedback mode's `--gen-candidates K` would buy if a
graph's gain did not depend on what ran before it. It does (a picked graph would find somewhat
more, since fewer graphs ran before it), so read the figures as a comparison of K and of
scoring rules, not as a prediction of a campaign's coverage.

    python benchmarks/trait_selection.py --campaign runs/cmp30f/no-feedback runs/cmp30e/no-feedback

Graphs that no longer regenerate to the logged case id (the generator changed since the
campaign ran) are left out, and their count is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from covfuzz import serialize  # noqa: E402
from covfuzz.generator import GenOptions, generate  # noqa: E402
from covfuzz.traits import TraitYield  # noqa: E402

INITIAL = 12  # a campaign's initial seeds: executed unconditionally, they train the model


def load_log(directory: str, rng_seed: int) -> tuple[list, int]:
    """[(case, new features, seconds)] in execution order, and how many log rows were unmatched."""
    with open(os.path.join(directory, "scheduler.jsonl")) as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    wanted = {row["id"] for row in rows}
    cases = {}
    options = GenOptions()
    first = rng_seed * 1_000_000
    for seed in range(first, first + len(rows) + 64):  # workers finish slightly out of order
        case = generate(seed, options)
        cid = serialize.case_id(case)
        if cid in wanted:
            cases[cid] = case
    replay = [(cases[row["id"]], 0 if row["outcome"] == "invalid" else int(row["new_features"]),
               float(row.get("seconds") or 0.0)) for row in rows if row["id"] in cases]
    return replay, len(rows) - len(replay)


def replay_ratio(log: list, k: int) -> tuple[float, float]:
    """Picked graphs' new features per second / the windows' mean, and their seconds per
    execution / the windows' mean, over 4 window offsets."""
    picked_gain = picked_time = mean_gain = mean_time = 0.0
    for offset in sorted({0, k // 4, k // 2, 3 * k // 4}):
        model = TraitYield()
        start = INITIAL + offset
        for case, gain, seconds in log[:start]:
            model.record(case, gain, seconds)
        for at in range(start, len(log) - k + 1, k):
            window = log[at:at + k]
            case, gain, seconds = max(window, key=lambda row: model.score(row[0]))
            picked_gain += gain
            picked_time += seconds
            mean_gain += sum(row[1] for row in window) / k
            mean_time += sum(row[2] for row in window) / k
            model.record(case, gain, seconds)
    if not (picked_time and mean_gain and mean_time):
        return float("nan"), float("nan")
    return (picked_gain / picked_time) / (mean_gain / mean_time), picked_time / mean_time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--campaign", nargs="+", required=True, metavar="DIR",
                   help="no-feedback campaign directories (their scheduler.jsonl is replayed)")
    p.add_argument("--rng-seed", type=int, default=0, help="the campaigns' --rng-seed (default 0)")
    p.add_argument("--k", default="1,4,8,12,16", help="graphs per window (default 1,4,8,12,16)")
    args = p.parse_args(argv)
    ks = [int(v) for v in args.k.split(",")]
    logs = []
    for directory in args.campaign:
        log, unmatched = load_log(directory, args.rng_seed)
        print(f"{directory}: {len(log)} executions replayed, {unmatched} not regenerated")
        logs.append((directory, log))
    print("\npicked graphs' new features per second / window mean (1.00: no better than the first "
          "graph),\nand (in brackets) their seconds per execution / window mean")
    print(f"{'campaign':40s} " + " ".join(f"{'K=' + str(k):>12s}" for k in ks))
    for directory, log in logs:
        cells = []
        for k in ks:
            rate, slowness = replay_ratio(log, k)
            cells.append(f"{rate:5.2f} ({slowness:4.2f})")
        print(f"{directory[-40:]:40s} " + " ".join(f"{c:>12s}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
