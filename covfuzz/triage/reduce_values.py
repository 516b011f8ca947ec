"""The `values` reduction pass: small inputs become explicit literals, then few special values.

A seeded input hides its values behind `fill` and the seed; a reader of a repro cannot see the
NaN that triggers the bug. This pass, shaped like the passes of covfuzz/triage/reduce.py (it
yields candidate cases; the reducer keeps the first that still fails with the target signature
and restarts the pass), does two things for each tensor input whose storage holds at most
MAX_LITERAL_VALUES elements:

1. A seeded input becomes a literal input holding exactly the values the seed draws today
   (built on the CPU by `codegen.build_input`, the function the program's own `make_inputs`
   mirrors), so the candidate behaves identically and the reducer accepts it.
2. A literal input is simplified toward few special values: its *ordinary* values go to 0, then
   to 1 (all at once, then halves, quarters ... single values: ddmin-style chunks), keeping the
   *special* ones (nan, +-inf, -0.0, huge, subnormal, integer limits); then each special value
   is replaced by an ordinary one (0, then 1), one at a time, so only the specials the failure
   needs remain.
Candidates come in a fixed order (inputs in order; conversions before simplifications), so a
reduction is deterministic.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator

import torch

from covfuzz import codegen
from covfuzz.ir import (COMPLEX_PARTS, INT_RANGES, MAX_LITERAL_VALUES, TensorSpec, TestCase,
                        dtype_class, literal_values_problem, storage_numel)


def literal_values(case: TestCase, input_index: int) -> tuple | None:
    """The storage elements input `input_index` holds when the program builds it, as exact
    Python literals; None for scalars, literal inputs, empty or too-large storage."""
    inp = case.graph.inputs[input_index]
    spec = inp.spec
    if not isinstance(spec, TensorSpec) or inp.values is not None:
        return None
    n = storage_numel(spec.shape, spec.stride, spec.offset)
    if n == 0 or n > MAX_LITERAL_VALUES:
        return None
    tensor = codegen.build_input(case, input_index, "cpu").detach()
    flat = tensor.as_strided((n,), (1,), 0)  # the whole storage, from element 0
    values = tuple(flat.tolist())  # float16/bfloat16/float32 -> Python float is exact
    problem = literal_values_problem(spec, values)
    if problem:  # cannot happen for values torch holds in `dtype`; never yield a bad case
        raise AssertionError(f"input x{input_index}: drawn values are not valid literals: {problem}")
    return values


def _with_values(case: TestCase, input_index: int, values: tuple) -> TestCase:
    inputs = list(case.graph.inputs)
    inputs[input_index] = dataclasses.replace(inputs[input_index], values=values)
    return case.replace(graph=dataclasses.replace(case.graph, inputs=tuple(inputs)))


def literal_candidate(case: TestCase, input_index: int) -> TestCase | None:
    """`case` with input `input_index` turned into the literal values the seed draws today
    (the same test, now readable), or None when that input cannot become literal."""
    values = literal_values(case, input_index)
    return None if values is None else _with_values(case, input_index, values)


def round_values(values, dtype: str) -> tuple:
    """Python values rounded to `dtype` as torch rounds them (for people and tests writing
    literal inputs by hand: 0.1 is not a float32 value, literal inputs hold exact ones)."""
    kind = dtype_class(dtype)
    if kind == "float":
        return tuple(float(v) for v in torch.tensor([float(v) for v in values],
                                                     dtype=getattr(torch, dtype)).tolist())
    if kind == "complex":
        return tuple(complex(v) for v in torch.tensor([complex(v) for v in values],
                                                      dtype=getattr(torch, dtype)).tolist())
    if kind == "int":
        return tuple(int(v) for v in values)
    return tuple(bool(v) for v in values)


# ----------------------------------------------------------------------------- value classes


def is_special(value, dtype: str) -> bool:
    """Whether `value` is one of the values compilers get wrong: nan, +-inf, -0.0, huge
    (squaring it overflows the dtype), subnormal (below the smallest normal), or an integer
    limit (min, max and their neighbours). Everything else is *ordinary*."""
    kind = dtype_class(dtype)
    if kind == "bool":
        return False
    if kind == "complex":  # either part special
        return is_special(value.real, COMPLEX_PARTS[dtype]) or is_special(value.imag, COMPLEX_PARTS[dtype])
    if kind == "int":
        lo, hi = INT_RANGES[dtype]
        return value in (lo, lo + 1, hi - 1, hi) and not (lo == 0 and value in (0, 1))  # unsigned
    if not math.isfinite(value) or (value == 0 and math.copysign(1.0, value) < 0):
        return True
    info = torch.finfo(getattr(torch, dtype))
    return abs(value) >= math.sqrt(info.max) or 0 < abs(value) < info.tiny


def special_mask(t: torch.Tensor) -> torch.Tensor:
    """Where tensor `t` holds a special value (`is_special`, elementwise)."""
    if t.is_complex():  # either part special
        return special_mask(torch.view_as_real(t.resolve_conj().resolve_neg())).any(-1)
    if t.dtype == torch.bool:
        return torch.zeros(t.shape, dtype=torch.bool)
    if t.is_floating_point():
        info = torch.finfo(t.dtype)
        v = t.detach().double()
        a = v.abs()
        return ~v.isfinite() | ((v == 0) & v.signbit()) | (a >= math.sqrt(info.max)) | \
            ((a > 0) & (a < info.tiny))
    lo, hi = INT_RANGES[str(t.dtype).removeprefix("torch.")]
    mask = (t == lo) | (t == lo + 1) | (t == hi - 1) | (t == hi)
    return mask & (t != 0) & (t != 1) if lo == 0 else mask  # unsigned: 0 and 1 are ordinary


def _ordinary(kind: str, k: int):
    """The k-th simplest ordinary value (0, then 1) of a dtype class."""
    return {"float": float(k), "complex": complex(k), "int": k, "bool": bool(k)}[kind]


def _same(a, b) -> bool:
    """Exact identity of two literals (nan equals nan, -0.0 differs from 0.0, 1 from True)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) is complex:
        return _same(a.real, b.real) and _same(a.imag, b.imag)
    return a == b


def _chunks(positions: list[int]) -> Iterator[list[int]]:
    """All, then halves, quarters, ... single positions (ddmin's subsets, in order)."""
    size = len(positions)
    while size >= 1:
        for i in range(0, len(positions), size):
            yield positions[i:i + size]
        size //= 2


def _simplifications(spec: TensorSpec, values: tuple) -> Iterator[tuple]:
    kind = dtype_class(spec.dtype)
    zero, one = _ordinary(kind, 0), _ordinary(kind, 1)
    ordinary = [i for i, v in enumerate(values) if not is_special(v, spec.dtype)]
    # 1. ordinary values -> 0 (those not 0 already), then -> 1 (those neither 0 nor 1)
    for target, done in ((zero, (zero,)), (one, (zero, one))):
        todo = [i for i in ordinary if not any(_same(values[i], d) for d in done)]
        for chunk in _chunks(todo):
            new = list(values)
            for i in chunk:
                new[i] = target
            yield tuple(new)
    # 2. the values that are not 0 moved to the front, in order: the inputs pass keeps the
    # first elements when it shrinks a shape, so an elementwise culprit keeps its NaN
    front = [v for v in values if not _same(v, zero)]
    if front and len(front) < len(values):
        moved = tuple(front + [zero] * (len(values) - len(front)))
        if not all(_same(a, b) for a, b in zip(moved, values)):
            yield moved
    # 3. each special value -> an ordinary one, one at a time
    for i, v in enumerate(values):
        if is_special(v, spec.dtype):
            for target in (zero, one):
                new = list(values)
                new[i] = target
                yield tuple(new)


def pass_values(case: TestCase) -> Iterator[TestCase]:
    """Candidates: seeded inputs made literal (one at a time), then literal inputs simplified."""
    inputs = case.graph.inputs
    for i in range(len(inputs)):
        candidate = literal_candidate(case, i)
        if candidate is not None:
            yield candidate
    for i, inp in enumerate(inputs):
        if not isinstance(inp.spec, TensorSpec) or inp.values is None:
            continue
        for values in _simplifications(inp.spec, inp.values):
            yield _with_values(case, i, values)  # 0 and 1 are exact in every dtype: still valid
