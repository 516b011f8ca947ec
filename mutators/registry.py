"""The mutator registry and the one way to apply mutators: a single validated step (`propose`),
stacked along a given plan (`stack`) or a random one (`mutate`), reporting the moves made."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

from covfuzz import serialize
from covfuzz.ir import TestCase

import mutators.base as base
from mutators.base import MutationContext, ensure_propagated, real_ok, validate
from mutators.params import (apply_setting_move, choose_setting_move, mutate_attrs, mutate_settings,
                             mutate_values)
from mutators.structural import delete_node, insert_node, replace_op, splice
from mutators.tensors import perturb_layout, perturb_shape, retype
from mutators.values import simd_counts, value_magnitudes, value_specials

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
    "value_magnitudes": value_magnitudes,
    "value_specials": value_specials,
    "simd_counts": simd_counts,
}

# Mutators that make one of several named moves, as (choose the move, apply it): the step calls
# the two halves itself so that it can report the move (a campaign rewards the chooser for it).
MOVES = {"mutate_settings": (choose_setting_move, apply_setting_move)}

# Outcome of one proposal, as `propose` reports it (the benchmark and the scheduler count these).
NOT_APPLICABLE, REJECTED, SAME, ACCEPTED = "none", "rejected", "same", "accepted"
ERROR = "error"  # the mutator itself raised (a bug: logged by the caller, never fatal)


LAST_ERRORS: list[str] = []  # the most recent mutator exceptions (for logs and tests)


@dataclass(frozen=True)
class Proposal:
    """One application of one mutator: its outcome, and when ACCEPTED the validated candidate
    (propagated, valid, different from the case) and the move made (`MOVES` mutators only)."""

    outcome: str
    case: TestCase | None = None
    move: str | None = None


@dataclass(frozen=True)
class Applied:
    """One mutation that changed the case."""

    mutator: str
    move: str | None = None  # mutate_settings: which setting it changed ("backward", ...)


@dataclass
class Stacked:
    """What a stack of mutations made."""

    case: TestCase | None  # None when no step applied
    applied: list[Applied] = field(default_factory=list)
    tried: list[tuple[str, str]] = field(default_factory=list)  # (mutator, proposal outcome)


def propose(name: str, case: TestCase, rng: random.Random, ctx: MutationContext | None = None,
            real_check: bool | None = None) -> Proposal:
    """One application of mutator `name` to `case` (the step every stack is made of).

    `real_check` overrides `mutators.base.REAL_CHECK` (the real-tensor pass of the check).
    """
    ctx = ctx or MutationContext()
    case = ensure_propagated(case)
    move = None
    try:
        if name in MOVES:
            choose, apply = MOVES[name]
            move = choose(rng, ctx)
            raw = apply(case, rng, move)
        else:
            raw = MUTATORS[name](case, rng, ctx)
    except Exception as exc:  # noqa: BLE001 - a mutator bug must not stop a fuzzing campaign
        LAST_ERRORS.append(f"{name}: {type(exc).__name__}: {exc}")
        del LAST_ERRORS[:-20]
        return Proposal(ERROR)
    if raw is None:
        return Proposal(NOT_APPLICABLE)
    checked = validate(raw, real_check)
    if checked is None:
        return Proposal(REJECTED)
    if serialize.encode(checked) == serialize.encode(case):
        return Proposal(SAME)
    return Proposal(ACCEPTED, checked, move)


def stack(case: TestCase, rng: random.Random, ctx: MutationContext | None,
          plan: Sequence[str]) -> Stacked:
    """Apply each mutator of `plan` once, in order, each step fully validated; a step that does
    not apply is skipped (and still counted in `tried`)."""
    ctx = ctx or MutationContext()
    current, applied, tried = case, [], []
    for name in plan:
        step = propose(name, current, rng, ctx)
        tried.append((name, step.outcome))
        if step.case is not None:
            current = step.case
            applied.append(Applied(name, step.move))
    return Stacked(current if applied else None, applied, tried)


STACK_WEIGHTS = (0.5, 0.25, 0.15, 0.1)  # k = 1, 2, 3, 4 (then geometric-ish)


def _stack_size(rng: random.Random, max_stack: int) -> int:
    sizes = list(range(1, max(max_stack, 1) + 1))
    weights = [STACK_WEIGHTS[k - 1] if k <= len(STACK_WEIGHTS) else STACK_WEIGHTS[-1] / 2 ** (k - 4)
               for k in sizes]
    return rng.choices(sizes, weights)[0]


def mutate(case: TestCase, rng: random.Random, ctx: MutationContext | None = None, max_stack: int = 4,
           weights: dict[str, float] | None = None, max_tries: int = 20) -> Stacked:
    """Stack 1..k randomly chosen mutators (k biased to small), drawing a new one after each
    step that does not apply, within `max_tries` proposals in all.

    `weights` (name -> weight) lets a scheduler bias the choice; by default all are equally
    likely. Intermediate steps get the meta check only; the stacked result gets the real pass
    once (when it fails it, the stack starts again from `case`). `Stacked.case` is None when
    nothing valid came out.
    """
    ctx = ctx or MutationContext()
    names = sorted(MUTATORS) if weights is None else sorted(n for n in weights if weights[n] > 0)
    w = [1.0] * len(names) if weights is None else [weights[n] for n in names]
    start = ensure_propagated(case)
    k = _stack_size(rng, max_stack)
    tried: list[tuple[str, str]] = []
    while len(tried) < max_tries:
        current, applied = start, []
        while len(applied) < k and len(tried) < max_tries:
            name = rng.choices(names, w)[0]
            step = propose(name, current, rng, ctx, real_check=False)
            tried.append((name, step.outcome))
            if step.case is not None:
                current = step.case
                applied.append(Applied(name, step.move))
        if applied and (not base.REAL_CHECK or real_ok(current)):
            return Stacked(current, applied, tried)
    return Stacked(None, [], tried)
