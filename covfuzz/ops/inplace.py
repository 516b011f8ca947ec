"""In-place ops. They mutate the value they are applied to (a graph input, an intermediate, or a
view of either), so later nodes see the mutation: functionalization, input-mutation epilogues,
Inductor's reinplacing and Dynamo's side-effect tracking all have to agree with eager.
Shape-changing in-place ops are left out: a node's spec must stay the spec of its value.
"""

from __future__ import annotations

from covfuzz.ops.base import ArgSpec, Float, Name, OpDef, T, broadcast_partner
from covfuzz.ops.hops import METHODS, sample_method  # every one has a `Tensor.<name>_`


def _clamp(rng, first):
    lo = rng.choice([-1.0, -0.5, 0.0])
    return {"min": lo, "max": lo + rng.choice([0.5, 1.0, 2.0])}


def _value(rng, first):
    return {"value": rng.choice([0.0, 1.0, -2.0, 0.5])}


SECOND = ArgSpec("tensor_or_scalar", "numeric+complex", 0, 4, shape=broadcast_partner,
                 same_dtype=True)

OPS: list[OpDef] = [
    OpDef("Tensor.add_", "inplace", "{0}.add_({1})", (T("numeric+complex", 0, 4), SECOND)),
    OpDef("Tensor.mul_", "inplace", "{0}.mul_({1})", (T("numeric+complex", 0, 4), SECOND)),
    OpDef("Tensor.sub_", "inplace", "{0}.sub_({1})", (T("signed+complex", 0, 4), SECOND)),
    OpDef("Tensor.div_", "inplace", "{0}.div_({1})",
          (T("float+complex", 0, 4), ArgSpec("tensor", "float+complex", 0, 4,
                                             shape=broadcast_partner, same_dtype=True,
                                             fill="nonzero"))),
    OpDef("Tensor.unary_", "inplace", "{0}.{f}_()", (T("float", 0, 4),), {"f": Name(*METHODS)},
          sample_method, target="Tensor.sin_"),
    OpDef("Tensor.clamp_", "inplace", "{0}.clamp_({min}, {max})", (T("float", 0, 4),),
          {"min": Float(), "max": Float()}, _clamp),
    OpDef("Tensor.zero_", "inplace", "{0}.zero_()", (T("numeric+complex", 0, 4),)),
    OpDef("Tensor.fill_", "inplace", "{0}.fill_({value})", (T("float+complex", 0, 4),),
          {"value": Float()}, _value),
    OpDef("Tensor.copy_", "inplace", "{0}.copy_({1})",
          (T("numeric+complex", 0, 4), T("numeric+complex", 0, 4, shape=broadcast_partner))),
    OpDef("Tensor.masked_fill_", "inplace", "{0}.masked_fill_({1}, {value})",
          (T("float+complex", 0, 4), T("bool", 0, 4, shape=broadcast_partner)), {"value": Float()},
          _value),
]
