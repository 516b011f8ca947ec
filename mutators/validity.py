"""Mutant validity: do accepted candidates run eagerly? (shared by the test and the benchmark)."""

from __future__ import annotations

import collections
import random
import time
import warnings

from covfuzz import codegen
from covfuzz.ir import TestCase

from mutators.base import MutationContext
from mutators.registry import ACCEPTED, ERROR, MUTATORS, NOT_APPLICABLE, REJECTED, SAME, propose


def run_eagerly(case: TestCase) -> str | None:
    """None when the case's program runs eagerly on the CPU (with backward if asked), else why not."""
    import torch

    from covfuzz.propagate import backward_loss
    namespace: dict = {}
    try:
        exec(compile(codegen.program(case), "<mutant>", "exec"), namespace)  # noqa: S102
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.no_grad() if not case.settings.backward else _null():
                outputs = namespace["fn"](*namespace["make_inputs"]("cpu"))
            if case.settings.backward:
                loss = backward_loss(outputs)
                if loss is not None:
                    loss.backward()
    except Exception as exc:  # noqa: BLE001 - the failure is the measurement
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:100] if str(exc).strip() else ''}"
    return None


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


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
            outcome, cand = propose(name, case, rng, ctx)
            row["proposals"] += 1
            row[outcome] += 1
            if cand is not None:
                why = run_eagerly(cand)
                if why is None:
                    row["ran"] += 1
                else:
                    row["failures"][why] += 1
        row["seconds"] = time.perf_counter() - start
        table[name] = row
    return table
