"""Ops on Python scalars and data-dependent ops.

`Tensor.size` and the `sym.*` arithmetic produce Python ints; under dynamic shapes they become
SymInts, so these ops exercise Dynamo's symbolic size arithmetic: every operator Python has for
ints (with a literal `k`, or between two values), comparisons (SymBools, which `sym.ifelse`
branches on), `abs`, negation, `math.floor` / `math.ceil` of a size ratio (spelled
`torch.math`: the `math` module torch imports, so a program needs no other import). Sizes feed
tensor ops as an exponent, a fill value, a repeat count, a slice bound and a reshape size; the
scalar is concrete when propagation evaluates the call, so torch decides validity, on real
tensors where a meta kernel would not check the value (an integer tensor to a negative power,
a fill value that overflows the dtype). The data-dependent ops
(nonzero, masked_select, unique, item) produce sizes or values that only exist at run time;
they are off unless the generator is asked for them, and a case that uses them is compiled
with dynamo's `capture_scalar_outputs` / `capture_dynamic_output_shape_ops` turned on.
"""

from __future__ import annotations

from covfuzz.ops.base import ArgSpec, Int, OpDef, T, broadcast_partner, pick_dim, plus

INT_ARG = ArgSpec("scalar", "any", scalar_kind="int")
BOOL_ARG = ArgSpec("scalar", "any", scalar_kind="bool")


def _k(rng, first):
    return {"k": rng.choice([1, 2, 3, 4, 7])}


def _sym(name, template, k=Int(1, 1 << 16), sample=_k, out_kind="int", target="__builtins__"):
    return OpDef(f"sym.{name}", "scalar", template, (INT_ARG,), {"k": k}, sample,
                 target=target, out_kind=out_kind)


def _sym_unary(name, template):
    return OpDef(f"sym.{name}", "scalar", template, (INT_ARG,), target="__builtins__",
                 out_kind="int")


def _sym_pair(name, template, out_kind="int"):
    """An operator between two int values (two sizes: a product of symbols, not one and k)."""
    return OpDef(f"sym.{name}.sizes", "scalar", template, (INT_ARG, INT_ARG),
                 target="__builtins__", out_kind=out_kind)


def _choose(*values):
    return lambda rng, first: {"k": rng.choice(values)}


def _divmod(rng, first):
    return {"k": rng.choice([1, 2, 3, 5, -2, -3]), "i": rng.randint(0, 1)}


COMPARISONS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}

SYM_OPS: list[OpDef] = (
    [_sym("sub", "({0} - {k})"),
     _sym("pow", "({0} ** {k})", Int(0, 3), _choose(0, 1, 2, 3)),
     _sym("lshift", "({0} << {k})", Int(0, 4), _choose(0, 1, 2, 3)),
     _sym("rshift", "({0} >> {k})", Int(0, 4), _choose(0, 1, 2, 3)),
     _sym("and", "({0} & {k})", Int(0, 1 << 16), _choose(1, 3, 7, 8, 15)),
     _sym("or", "({0} | {k})", Int(0, 1 << 16), _choose(1, 2, 4, 7)),
     _sym("xor", "({0} ^ {k})", Int(0, 1 << 16), _choose(1, 3, 5)),
     OpDef("sym.divmod", "scalar", "divmod({0}, {k})[{i}]", (INT_ARG,),
           {"k": Int(-8, 8), "i": Int(0, 1)}, _divmod, target="__builtins__", out_kind="int"),
     _sym("truediv", "({0} / {k})", out_kind="float"),
     _sym("floor_ratio", "torch.math.floor({0} / {k})", sample=_choose(2, 3, 4, 7),
          target="torch.math.floor"),
     _sym("ceil_ratio", "torch.math.ceil({0} / {k})", sample=_choose(2, 3, 4, 7),
          target="torch.math.ceil"),
     _sym_unary("abs", "abs({0})"),
     _sym_unary("neg", "(-{0})"),
     _sym_unary("invert", "(~{0})")]
    + [_sym(name, f"({{0}} {sign} {{k}})", out_kind="bool", sample=_choose(1, 2, 4, 8, 16))
       for name, sign in COMPARISONS.items()]
    + [_sym_pair(name, template) for name, template in (
        ("add", "({0} + {1})"), ("sub", "({0} - {1})"), ("mul", "({0} * {1})"),
        ("floordiv", "({0} // {1})"), ("mod", "({0} % {1})"), ("max", "max({0}, {1})"),
        ("min", "min({0}, {1})"))]
    + [_sym_pair(name, f"({{0}} {COMPARISONS[name]} {{1}})", "bool") for name in ("lt", "eq")]
    + [OpDef("sym.ifelse", "scalar", "({1} if {0} else {2})", (BOOL_ARG, INT_ARG, INT_ARG),
             target="__builtins__", out_kind="int")]
)

# Tensor ops that take a size. Real tensors propagate them where meta kernels skip the check.
SIZE_CONSUMERS: list[OpDef] = [
    OpDef("Tensor.pow.size", "scalar_consumer", "({0} ** {1})", (T("numeric+complex"), INT_ARG),
          target="torch.Tensor.__pow__", real_only=True),
    OpDef("torch.full_like.size", "scalar_consumer", "torch.full_like({0}, {1})",
          (T("all"), INT_ARG), target="torch.full_like", real_only=True),
    OpDef("torch.repeat_interleave.size", "scalar_consumer",
          "torch.repeat_interleave({0}, {1}, dim={dim})", (T("all", 1, 4), INT_ARG),
          {"dim": Int(-8, 7)}, lambda rng, s: {"dim": pick_dim(rng, s)},
          target="torch.repeat_interleave"),
    OpDef("Tensor.__getitem__.size_bound", "scalar_consumer", "{0}[:{1}]",
          (T("all", 1, 4), INT_ARG),
          target="torch.Tensor.__getitem__"),
    OpDef("Tensor.__getitem__.size_start", "scalar_consumer", "{0}[{1}:]",
          (T("all", 1, 4), INT_ARG),
          target="torch.Tensor.__getitem__"),
    OpDef("Tensor.reshape.size", "scalar_consumer", "{0}.reshape({1}, -1)",
          (T("all", 1, 4), INT_ARG),
          target="torch.Tensor.reshape"),
]


OPS: list[OpDef] = [
    OpDef("Tensor.size", "scalar", "{0}.size({dim})", (T("all", 1, 4),), {"dim": Int(-8, 7)},
          lambda rng, s: {"dim": pick_dim(rng, s)}, out_kind="int"),
    _sym("floordiv", "({0} // {k})"),
    _sym("mod", "({0} % {k})"),
    _sym("add", "({0} + {k})"),
    _sym("mul", "({0} * {k})"),
    _sym("max", "max({0}, {k})"),
    _sym("min", "min({0}, {k})"),
    *SYM_OPS,
    *SIZE_CONSUMERS,
    OpDef("torch.nonzero", "data_dependent", "torch.nonzero({0})", (T("any+complex", 1, 3),),
          data_dependent=True),
    OpDef("torch.masked_select", "data_dependent", "torch.masked_select({0}, {1})",
          (T(plus("any", "complex", "float8"), 0, 3), T("bool", shape=broadcast_partner)),
          data_dependent=True),
    OpDef("torch.unique", "data_dependent", "torch.unique({0})", (T("numeric", 1, 3),),
          data_dependent=True),
    OpDef("Tensor.item", "data_dependent", "{0}.sum().item()", (T("numeric", 0, 3),),
          data_dependent=True, out_kind="scalar"),
]
