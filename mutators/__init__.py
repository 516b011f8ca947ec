"""covfuzz mutators: small pure functions `(case, rng, ctx) -> TestCase | None`.

`MUTATORS` maps names (used by the scheduler and in logs) to mutators; `mutate_with(name, ...)`
applies one and validates it; `mutate(...)` stacks a few. Every returned candidate passed
`covfuzz.propagate.propagate` (plus the structural invariants in `mutators.base.validate`).
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from mutators.base import MutationContext, structural_problem, validate  # noqa: E402
from mutators.registry import (ACCEPTED, ERROR, LAST_ERRORS, MUTATORS, NOT_APPLICABLE, REJECTED, SAME,  # noqa: E402
                               mutate, mutate_with, propose)

__all__ = ["MUTATORS", "MutationContext", "mutate", "mutate_with", "propose", "validate",
           "structural_problem", "ACCEPTED", "ERROR", "LAST_ERRORS", "NOT_APPLICABLE", "REJECTED", "SAME"]
