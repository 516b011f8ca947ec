"""Ops on Python scalars and data-dependent ops.

`Tensor.size` and the `sym.*` arithmetic produce Python ints; under dynamic shapes they become
SymInts, so these ops exercise Dynamo's symbolic size arithmetic. The data-dependent ops
(nonzero, masked_select, unique, item) produce sizes or values that only exist at run time;
they are off unless the generator is asked for them, and a case that uses them is compiled
with dynamo's `capture_scalar_outputs` / `capture_dynamic_output_shape_ops` turned on.
"""

from __future__ import annotations

from covfuzz.ops.base import ArgSpec, Int, OpDef, T, broadcast_partner, pick_dim

INT_ARG = ArgSpec("scalar", "any", scalar_kind="int")


def _k(rng, first):
    return {"k": rng.choice([1, 2, 3, 4, 7])}


def _sym(name, template):
    return OpDef(f"sym.{name}", "scalar", template, (INT_ARG,), {"k": Int(1, 1 << 16)}, _k,
                 target="__builtins__", out_kind="int")


OPS: list[OpDef] = [
    OpDef("Tensor.size", "scalar", "{0}.size({dim})", (T("any", 1, 4),), {"dim": Int(-8, 7)},
          lambda rng, s: {"dim": pick_dim(rng, s)}, out_kind="int"),
    _sym("floordiv", "({0} // {k})"),
    _sym("mod", "({0} % {k})"),
    _sym("add", "({0} + {k})"),
    _sym("mul", "({0} * {k})"),
    _sym("max", "max({0}, {k})"),
    _sym("min", "min({0}, {k})"),
    OpDef("torch.nonzero", "data_dependent", "torch.nonzero({0})", (T("any", 1, 3),),
          data_dependent=True),
    OpDef("torch.masked_select", "data_dependent", "torch.masked_select({0}, {1})",
          (T("any", 0, 3), T("bool", shape=broadcast_partner)), data_dependent=True),
    OpDef("torch.unique", "data_dependent", "torch.unique({0})", (T("numeric", 1, 3),),
          data_dependent=True),
    OpDef("Tensor.item", "data_dependent", "{0}.sum().item()", (T("numeric", 0, 3),),
          data_dependent=True, out_kind="scalar"),
]
