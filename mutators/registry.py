"""The mutator registry, single mutations (`mutate_with`) and stacked ones (`mutate`)."""

from __future__ import annotations

import random
from typing import Callable

from covfuzz import serialize
from covfuzz.ir import TestCase

import mutators.base as _base
from mutators.base import MutationContext, ensure_propagated, real_ok, validate
from mutators.params import mutate_attrs, mutate_settings, mutate_values
from mutators.structural import delete_node, insert_node, replace_op, splice
from mutators.tensors import perturb_layout, perturb_shape, retype

Mutator = Callable[[TestCase, random.Random, MutationContext], "TestCase | None"]

MUTATORS: dict[str, Mutator] = {
    "insert_node": insert_node,
    "delete_node": delete_node,
    "replace_op": replace_op,
    "retype": retype,
    "perturb_layout": perturb_layout,
    "perturb_shape": perturb_shape,
    "mutate_attrs": mutate_attrs,
    "splice": splice,
    "mutate_settings": mutate_settings,
    "mutate_values": mutate_values,
}

# Outcome of one proposal, as `propose` reports it (the benchmark and the scheduler count these).
NOT_APPLICABLE, REJECTED, SAME, ACCEPTED = "none", "rejected", "same", "accepted"
ERROR = "error"  # the mutator itself raised (a bug: logged by the caller, never fatal)


LAST_ERRORS: list[str] = []  # the most recent mutator exceptions (for logs and tests)


def propose(name: str, case: TestCase, rng: random.Random, ctx: MutationContext | None = None,
            real_check: bool | None = None) -> tuple[str, TestCase | None]:
    """One application of mutator `name`: (outcome, validated candidate or None).

    `real_check` overrides `mutators.base.REAL_CHECK` (the real-tensor pass of the check).
    """
    ctx = ctx or MutationContext()
    case = ensure_propagated(case)
    try:
        raw = MUTATORS[name](case, rng, ctx)
    except Exception as exc:  # noqa: BLE001 - a mutator bug must not stop a fuzzing campaign
        LAST_ERRORS.append(f"{name}: {type(exc).__name__}: {exc}")
        del LAST_ERRORS[:-20]
        return ERROR, None
    if raw is None:
        return NOT_APPLICABLE, None
    checked = validate(raw, real_check)
    if checked is None:
        return REJECTED, None
    if serialize.encode(checked) == serialize.encode(case):
        return SAME, None
    return ACCEPTED, checked


def mutate_with(name: str, case: TestCase, rng: random.Random, ctx: MutationContext | None = None
                ) -> TestCase | None:
    """Apply mutator `name` once; the propagated, valid, different candidate or None."""
    return propose(name, case, rng, ctx)[1]


STACK_WEIGHTS = (0.5, 0.25, 0.15, 0.1)  # k = 1, 2, 3, 4 (then geometric-ish)


def _stack_size(rng: random.Random, max_stack: int) -> int:
    sizes = list(range(1, max(max_stack, 1) + 1))
    weights = [STACK_WEIGHTS[k - 1] if k <= len(STACK_WEIGHTS) else STACK_WEIGHTS[-1] / 2 ** (k - 4)
               for k in sizes]
    return rng.choices(sizes, weights)[0]


def mutate(case: TestCase, rng: random.Random, ctx: MutationContext | None = None, max_stack: int = 4,
           weights: dict[str, float] | None = None, max_tries: int = 20
           ) -> tuple[TestCase | None, list[str]]:
    """Stack 1..k mutators (k biased to small). Every step is validated by propagation.

    Returns (candidate, names of the mutators applied, in order); (None, []) when nothing valid
    came out within `max_tries` proposals. `weights` (name -> weight) lets a scheduler bias the
    choice of mutators; by default all are equally likely.
    """
    ctx = ctx or MutationContext()
    names = sorted(MUTATORS) if weights is None else sorted(n for n in weights if weights[n] > 0)
    w = [1.0] * len(names) if weights is None else [weights[n] for n in names]
    start = ensure_propagated(case)
    k = _stack_size(rng, max_stack)
    tries = 0
    while tries < max_tries:
        # Intermediate steps get the meta check; the stacked result gets the real pass once.
        current, applied = start, []
        while len(applied) < k and tries < max_tries:
            tries += 1
            name = rng.choices(names, w)[0]
            outcome, candidate = propose(name, current, rng, ctx, real_check=False)
            if candidate is not None:
                current = candidate
                applied.append(name)
        if applied and (not _base.REAL_CHECK or real_ok(current)):
            return current, applied
    return None, []
