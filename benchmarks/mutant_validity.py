"""Mutant validity by mutator: how many proposals pass the validity check, and run eagerly.

    python benchmarks/mutant_validity.py [--cases N] [--per-mutator M] [--seed S]

For every mutator, proposals are made on generated cases (generate(seed) for seed < N) until M
candidates passed the check (or 20*M proposals). Columns: proposals; none (not applicable);
rejected (by propagation / invariants); same (no change); accepted; ran eagerly (% of accepted).
`measure` and `run_eagerly` are also used by tests/test_mutators.py.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mutators.base  # noqa: E402
from covfuzz import codegen  # noqa: E402
from covfuzz.generator import generate  # noqa: E402
from covfuzz.ir import TestCase  # noqa: E402
from covfuzz.propagate import backward_loss  # noqa: E402
from mutators import (ACCEPTED, ERROR, LAST_ERRORS, MUTATORS, NOT_APPLICABLE, REJECTED, SAME,  # noqa: E402
                      MutationContext, propose)


def run_eagerly(case: TestCase) -> str | None:
    """None when the case's program runs eagerly on the CPU (with backward if asked), else why not."""
    namespace: dict = {}
    try:
        exec(compile(codegen.program(case), "<mutant>", "exec"), namespace)  # noqa: S102
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.nullcontext() if case.settings.backward else torch.no_grad():
                outputs = namespace["fn"](*namespace["make_inputs"]("cpu"))
            if case.settings.backward:
                loss = backward_loss(outputs)
                if loss is not None:
                    loss.backward()
    except Exception as exc:  # noqa: BLE001 - the failure is the measurement
        text = str(exc).strip()
        return f"{type(exc).__name__}: {text.splitlines()[0][:100] if text else ''}"
    return None


def measure(cases: list[TestCase], per_mutator: int, seed: int = 0, ctx: MutationContext | None = None,
            names=None) -> dict:
    """Per mutator: proposals, none, rejected, same, accepted, ran, failures (Counter), seconds."""
    ctx = ctx or MutationContext(corpus=cases)
    table = {}
    for name in names or MUTATORS:
        rng = random.Random(f"{seed}:{name}")
        row = {"proposals": 0, ERROR: 0, NOT_APPLICABLE: 0, REJECTED: 0, SAME: 0, ACCEPTED: 0, "ran": 0,
               "failures": collections.Counter(), "seconds": 0.0}
        start = time.perf_counter()
        i = 0
        while row[ACCEPTED] < per_mutator and row["proposals"] < per_mutator * 20:
            case = cases[i % len(cases)]
            i += 1
            step = propose(name, case, rng, ctx)
            row["proposals"] += 1
            row[step.outcome] += 1
            if step.case is not None:
                why = run_eagerly(step.case)
                if why is None:
                    row["ran"] += 1
                else:
                    row["failures"][why] += 1
        row["seconds"] = time.perf_counter() - start
        table[name] = row
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500, help="generated cases (seeds 0..N-1)")
    parser.add_argument("--per-mutator", type=int, default=None,
                        help="accepted candidates per mutator (default: --cases)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--failures", type=int, default=3, help="eager failure reasons shown per mutator")
    parser.add_argument("--meta-only", action="store_true",
                        help="validity check without the real-tensor pass (meta propagation only)")
    args = parser.parse_args(argv)
    if args.meta_only:
        mutators.base.REAL_CHECK = False
    start = time.perf_counter()
    cases = [generate(s) for s in range(args.cases)]
    per = args.per_mutator or args.cases
    table = measure(cases, per, args.seed, MutationContext(corpus=cases))
    head = f"{'mutator':16} {'proposals':>9} {'none':>6} {'rejected':>8} {'same':>5} {'accepted':>8} {'ran':>6} {'ran %':>7} {'ms/prop':>8} {'errors':>6}"
    print(head)
    print("-" * len(head))
    tot = {"proposals": 0, "none": 0, "rejected": 0, "same": 0, "accepted": 0, "ran": 0}
    for name, row in table.items():
        for k in tot:
            tot[k] += row[k]
        pct = 100.0 * row["ran"] / row["accepted"] if row["accepted"] else float("nan")
        ms = 1000.0 * row["seconds"] / max(row["proposals"], 1)
        print(f"{name:16} {row['proposals']:9d} {row['none']:6d} {row['rejected']:8d} {row['same']:5d} "
              f"{row['accepted']:8d} {row['ran']:6d} {pct:6.1f}% {ms:8.1f} {row['error']:6d}")
    pct = 100.0 * tot["ran"] / tot["accepted"] if tot["accepted"] else float("nan")
    print("-" * len(head))
    print(f"{'overall':16} {tot['proposals']:9d} {tot['none']:6d} {tot['rejected']:8d} {tot['same']:5d} "
          f"{tot['accepted']:8d} {tot['ran']:6d} {pct:6.1f}%")
    acc = 100.0 * tot["accepted"] / max(tot["proposals"], 1)
    print(f"acceptance (accepted / proposals): {acc:.1f}%   mutant validity (ran / accepted): {pct:.1f}%"
          f"   [{time.perf_counter() - start:.1f}s]")
    for line in LAST_ERRORS[-5:]:
        print("  mutator error:", line[:200])
    if args.failures:
        for name, row in table.items():
            for why, n in row["failures"].most_common(args.failures):
                print(f"  {name}: {n} x {why}")
    worst = min((100.0 * r["ran"] / r["accepted"] for r in table.values() if r["accepted"]), default=0)
    return 0 if pct >= 90.0 and worst >= 90.0 else 1


if __name__ == "__main__":
    sys.exit(main())
