#!/usr/bin/env python
"""Which covered lines of torch/_inductor + torch/_dynamo only some campaigns reached.

Reads the stored seeds' features of each campaign directory (the corpus keeps every feature a
kept seed covered, so their union is what the campaign covered) and prints, for two groups of
campaigns (A and B, e.g. feedback runs and no-feedback runs), the lines each group reached
alone, by file. Read-only: it works on finished and on running campaigns.

    python benchmarks/coverage_diff.py --a runs/cmp30e/feedback --b runs/cmp30e/no-feedback
    python benchmarks/coverage_diff.py --a runs/x/feedback runs/y/feedback --b runs/x/no-feedback runs/y/no-feedback
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from corpus import open_campaign_store  # noqa: E402
from covfuzz.features import LINE_BIT  # noqa: E402
from harness.coverage import GROUPS, line_id, torch_dir  # noqa: E402


def covered_lines(directory: str) -> set[int]:
    """Line feature ids of every seed stored in campaign `directory`."""
    lines: set[int] = set()
    with open_campaign_store(directory) as store:
        for _, _, features in store.iter_seeds(with_features=True):
            lines.update(int(f) for f in features if int(f) & LINE_BIT)
    return lines


def line_owners() -> dict[int, str]:
    """Line feature id -> the file it is in (every line of every measured file)."""
    base = torch_dir()
    owners = {}
    for group in ("inductor", "dynamo"):
        for folder, _, files in os.walk(os.path.join(base, GROUPS[group])):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                rel = "torch/" + os.path.relpath(path, base).replace(os.sep, "/")
                with open(path, errors="ignore") as handle:
                    count = sum(1 for _ in handle)
                for line in range(1, count + 1):
                    owners[line_id(rel, line)] = rel
    return owners


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", nargs="+", required=True, metavar="DIR", help="campaigns of group A")
    parser.add_argument("--b", nargs="+", required=True, metavar="DIR", help="campaigns of group B")
    parser.add_argument("--top", type=int, default=12, help="files to list per group (default 12)")
    args = parser.parse_args()
    groups = {}
    for label, dirs in (("A", args.a), ("B", args.b)):
        lines: set[int] = set()
        for directory in dirs:
            own = covered_lines(directory)
            print(f"{label} {directory}: {len(own)} lines")
            lines |= own
        groups[label] = lines
    a, b = groups["A"], groups["B"]
    print(f"A: {len(a)} lines, B: {len(b)} lines, both: {len(a & b)}, "
          f"only A: {len(a - b)}, only B: {len(b - a)}, A / B = {len(a) / max(len(b), 1):.3f}")
    owners = line_owners()
    for label, only in (("A", a - b), ("B", b - a)):
        by_file = collections.Counter(owners.get(x, "?") for x in only)
        print(f"only {label}, by file:")
        for path, count in by_file.most_common(args.top):
            print(f"  {count:6d}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
