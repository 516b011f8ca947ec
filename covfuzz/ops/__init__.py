"""The op catalog: every op covfuzz can put in a graph, checked against the installed torch.

`CATALOG` holds every declared op by name; `AVAILABLE` only those whose target resolves in the
installed torch (checked once, at import). Test cases may only name ops in `AVAILABLE`.

Two sources: the hand-written families below, and entries derived from PyTorch's OpInfo
database (covfuzz/ops/opinfo.py, cached per torch build). A hand-written entry wins over a
derived one for the same name or callable (it says more: higher-order ops, Python constructs,
in-place writes, model parameters). `DERIVED` says what the derivation kept and skipped.
"""

from __future__ import annotations

import torch

from covfuzz.ops import (helpers, hops, indexing, inplace, layout, matmul, nn, opinfo, pointwise,
                         pyconstructs, reductions, scalars, streams)
from covfuzz.ops.base import ArgSpec, AttrDomain, OpDef

__all__ = ["CATALOG", "AVAILABLE", "DERIVED", "ArgSpec", "AttrDomain", "OpDef", "allowed_on",
           "get_op", "unavailable_reason"]


def _declared() -> dict[str, OpDef]:
    ops: dict[str, OpDef] = {}
    for module in (pointwise, reductions, layout, matmul, nn, indexing, scalars, hops,
                   pyconstructs, inplace, streams):
        for op in module.OPS:
            if op.name in ops:
                raise AssertionError(f"op {op.name} declared twice")
            ops[op.name] = op
    return ops


def _resolve(path: str) -> bool:
    """True when `torch.x.y` (or `Tensor.x`, or a builtin) exists in the installed torch."""
    if path == "__builtins__":
        return True
    parts = path.split(".")
    if parts[0] == "torch":
        obj, parts = torch, parts[1:]
    elif parts[0] == "Tensor":
        obj, parts = torch.Tensor, parts[1:]
    else:
        return False
    for part in parts:
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return callable(obj)


def _target(op: OpDef) -> str:
    return op.target or op.name


def _available(op: OpDef) -> bool:
    return _resolve(_target(op)) and not any(h in helpers.UNAVAILABLE for h in op.helpers)


def _with_derived(hand: dict[str, OpDef]) -> tuple[dict[str, OpDef], opinfo.Derived]:
    """The hand-written ops plus the OpInfo-derived ones that no hand-written entry covers."""
    objects = set()
    for op in hand.values():
        path = _target(op)
        if path.startswith("torch.Tensor."):
            path = "Tensor." + path[len("torch.Tensor."):]
        obj = opinfo.resolve(path)
        if obj is not None:
            objects.add(id(obj))
    derived = opinfo.derived_ops(set(hand), objects)
    ops = dict(hand)
    for op in derived.ops:
        ops[op.name] = op
    return ops, derived


CATALOG, DERIVED = _with_derived(_declared())
AVAILABLE: dict[str, OpDef] = {name: op for name, op in CATALOG.items() if _available(op)}


def unavailable_reason(name: str) -> str | None:
    if name not in CATALOG:
        return f"unknown op {name!r}"
    if name not in AVAILABLE:
        return f"op {name!r} ({_target(CATALOG[name])}) is not available in torch {torch.__version__}"
    return None


def get_op(name: str) -> OpDef:
    return AVAILABLE[name]


def allowed_on(op: OpDef, device: str) -> bool:
    """Whether `op` may appear in a case on `device`: CUDA stream constructs only on cuda."""
    return op.category != "streams" or device == streams.DEVICE
