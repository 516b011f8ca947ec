"""covfuzz mutators: small pure functions `(case, rng, ctx) -> TestCase | None` (graph, layout,
attribute and settings mutators, and `mutators.values`: value tables, special values, scalar
operands and element counts around SIMD widths).

`MUTATORS` maps names (used by the scheduler and in logs) to mutators. `propose(name, ...)` is
one validated application; `stack(case, rng, ctx, plan)` applies a given list of mutators and
`mutate(...)` a random one; both return a `Stacked` (the case, the `Applied` mutations with the
settings move each made, and every proposal's outcome). Every returned candidate passed
`covfuzz.propagate.propagate` (plus the structural invariants in `mutators.base.validate`).
"""

from mutators.base import MutationContext, structural_problem, validate
from mutators.params import setting_moves
from mutators.registry import (ACCEPTED, ERROR, LAST_ERRORS, MUTATORS, NOT_APPLICABLE, REJECTED, SAME,
                               Applied, Proposal, Stacked, mutate, propose, stack)

__all__ = ["MUTATORS", "MutationContext", "Applied", "Proposal", "Stacked", "mutate", "propose",
           "stack", "setting_moves", "validate", "structural_problem", "ACCEPTED", "ERROR",
           "LAST_ERRORS", "NOT_APPLICABLE", "REJECTED", "SAME"]
