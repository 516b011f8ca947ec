"""Pointwise ops: unary, binary, ternary math, comparisons, bitwise, casts."""

from __future__ import annotations

from covfuzz.ops.base import (ArgSpec, Dtype, Enum, Float, Int, OpDef, T,
                              broadcast_partner, dtype_class_for, plus, with_complex)
from covfuzz.ir import DTYPES

UNARY_FLOAT = [
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "sin", "cos", "tan",
    "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "sigmoid", "erf",
    "erfc", "erfinv", "frac", "reciprocal", "lgamma", "digamma", "sinc", "deg2rad", "i0",
]
UNARY_NUMERIC = ["abs", "neg", "sign", "square", "ceil", "floor", "round", "trunc"]
UNARY_PREDICATE = ["isnan", "isinf", "isfinite", "signbit", "isneginf", "isposinf"]

BINARY_NUMERIC = ["mul", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge"]
BINARY_FLOAT = ["atan2", "fmax", "fmin", "hypot", "copysign", "logaddexp", "xlogy", "true_divide",
                "pow"]
BINARY_LOGICAL = ["logical_and", "logical_or", "logical_xor"]
BINARY_BITWISE = ["bitwise_and", "bitwise_or", "bitwise_xor"]
# The ones that take complex tensors too (eager and torch.compile on the CPU, checked per op).
COMPLEX_OK = {
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "sin", "cos", "tan",
    "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "sigmoid", "sinc",
    "reciprocal", "abs", "neg", "square", "isnan", "isinf", "isfinite", "mul", "eq", "ne",
    "logaddexp", "true_divide", "pow", "logical_and", "logical_or", "logical_xor"}


# ... wide unsigned (uint16/32/64) and float8 (checked likewise; few kernels exist for them).
UINT_OK = {"mul", "eq", "ne", "bitwise_and", "bitwise_or", "bitwise_xor"}
FLOAT8_OK = {"eq", "ne", "abs"}  # float8 mul has no kernel for a Python scalar operand


def _classes(name: str, dtypes: str) -> str:
    groups = [g for g, ok in (("complex", COMPLEX_OK), ("uint", UINT_OK), ("float8", FLOAT8_OK))
              if name in ok]
    return plus(dtypes, *groups) if groups else dtypes


def _unary(name: str, dtypes: str) -> OpDef:
    dtypes = _classes(name, dtypes)
    return OpDef(f"torch.{name}", "pointwise_unary", f"torch.{name}({{0}})",
                 (T(dtypes, 0, 4),))


def _binary(name: str, dtypes: str, second: str = "tensor_or_scalar") -> OpDef:
    dtypes = _classes(name, dtypes)
    return OpDef(f"torch.{name}", "pointwise_binary", f"torch.{name}({{0}}, {{1}})",
                 (T(dtypes, 0, 4),
                  ArgSpec(second, dtypes, 0, 4, shape=broadcast_partner, same_dtype=True)))


def _sample_alpha(rng, first):
    return {"alpha": rng.choice([1, 2, -1, 3])}


def _sample_clamp(rng, first):
    lo = rng.choice([-1.0, -0.5, 0.0, -3.0])
    return {"min": lo, "max": lo + rng.choice([0.5, 1.0, 2.0, 6.0])}


def _sample_to(rng, first):
    return {"dtype": rng.choice(DTYPES)}


def _sample_rounding(rng, first):
    return {"rounding_mode": rng.choice(["trunc", "floor"])}


def _sample_nan_to_num(rng, first):
    return {"nan": rng.choice([0.0, 1.0]), "posinf": rng.choice([1e4, 100.0]),
            "neginf": rng.choice([-1e4, -100.0])}


def _sample_value(rng, first):
    return {"value": rng.choice([0.5, 1.0, 2.0, -1.0])}


def _sample_weight(rng, first):
    return {"weight": rng.choice([0.25, 0.5, 0.9])}


def _sample_shift(rng, first):
    return {"bits": rng.randint(0, 7)}


def _sample_round_decimals(rng, first):
    return {"decimals": rng.choice([0, 1, 2, -1])}


def _sample_polygamma(rng, first):
    return {"n": rng.randint(0, 2)}


_same = dict(same_dtype=True)
_FC, _NC = with_complex("float"), with_complex("numeric")
_F32_64 = dtype_class_for(("float32", "float64"))

OPS: list[OpDef] = (
    [_unary(n, "float") for n in UNARY_FLOAT]
    + [_unary(n, "numeric") for n in UNARY_NUMERIC]
    + [_unary(n, "numeric") for n in UNARY_PREDICATE]
    + [_unary("logical_not", "any+complex"), _unary("bitwise_not", "intbool")]
    + [_binary(n, "numeric") for n in BINARY_NUMERIC]
    + [_binary(n, "float") for n in BINARY_FLOAT]
    + [_binary(n, "any") for n in BINARY_LOGICAL]
    + [_binary(n, "intbool", "tensor") for n in BINARY_BITWISE]
    + [
        OpDef("torch.add", "pointwise_binary", "torch.add({0}, {1}, alpha={alpha})",
              (T(_NC), ArgSpec("tensor_or_scalar", _NC, shape=broadcast_partner, **_same)),
              {"alpha": Int(-4, 4)}, _sample_alpha),
        OpDef("torch.sub", "pointwise_binary", "torch.sub({0}, {1}, alpha={alpha})",
              (T(_NC), ArgSpec("tensor_or_scalar", _NC, shape=broadcast_partner, **_same)),
              {"alpha": Int(-4, 4)}, _sample_alpha),
        OpDef("torch.div", "pointwise_binary", "torch.div({0}, {1})",
              (T(_FC), ArgSpec("tensor_or_scalar", _FC, shape=broadcast_partner, **_same))),
        # Integer division by zero raises in eager: the divisor is a fresh, non-zero input.
        OpDef("torch.div.rounding", "pointwise_binary",
              "torch.div({0}, {1}, rounding_mode={rounding_mode})",
              (T("numeric"), T("numeric", shape=broadcast_partner, fresh=True, fill="nonzero", **_same)),
              {"rounding_mode": Enum("trunc", "floor")}, _sample_rounding, target="torch.div"),
        OpDef("torch.floor_divide", "pointwise_binary", "torch.floor_divide({0}, {1})",
              (T("numeric"), T("numeric", shape=broadcast_partner, fresh=True, fill="nonzero", **_same))),
        OpDef("torch.remainder", "pointwise_binary", "torch.remainder({0}, {1})",
              (T("numeric"), T("numeric", shape=broadcast_partner, fresh=True, fill="nonzero", **_same))),
        OpDef("torch.fmod", "pointwise_binary", "torch.fmod({0}, {1})",
              (T("numeric"), T("numeric", shape=broadcast_partner, fresh=True, fill="nonzero", **_same))),
        OpDef("torch.bitwise_left_shift", "pointwise_binary",
              "torch.bitwise_left_shift({0}, {bits})", (T("int"),), {"bits": Int(0, 7)},
              _sample_shift),
        OpDef("torch.bitwise_right_shift", "pointwise_binary",
              "torch.bitwise_right_shift({0}, {bits})", (T("int"),), {"bits": Int(0, 7)},
              _sample_shift),
        OpDef("torch.where", "pointwise_ternary", "torch.where({0}, {1}, {2})",
              (T("bool"), T("any+complex", shape=broadcast_partner),
               T("any+complex", shape=broadcast_partner, same_dtype=True))),
        OpDef("torch.clamp", "pointwise_ternary", "torch.clamp({0}, min={min}, max={max})",
              (T("numeric"),), {"min": Float(-1e4, 1e4), "max": Float(-1e4, 1e4)}, _sample_clamp),
        OpDef("torch.clamp.tensor", "pointwise_ternary", "torch.clamp({0}, {1}, {2})",
              (T("numeric"), T("numeric", shape=broadcast_partner, **_same),
               T("numeric", shape=broadcast_partner, **_same)), target="torch.clamp"),
        OpDef("torch.lerp", "pointwise_ternary", "torch.lerp({0}, {1}, {weight})",
              (T(_FC), T(_FC, shape=broadcast_partner, **_same)),
              {"weight": Float(-10, 10)}, _sample_weight),
        OpDef("torch.addcmul", "pointwise_ternary", "torch.addcmul({0}, {1}, {2}, value={value})",
              (T(_FC), T(_FC, shape=broadcast_partner, **_same),
               T(_FC, shape=broadcast_partner, **_same)), {"value": Float(-10, 10)},
              _sample_value),
        OpDef("torch.addcdiv", "pointwise_ternary", "torch.addcdiv({0}, {1}, {2}, value={value})",
              (T(_FC), T(_FC, shape=broadcast_partner, **_same),
               T(_FC, shape=broadcast_partner, **_same)), {"value": Float(-10, 10)},
              _sample_value),
        OpDef("Tensor.to", "cast", "{0}.to({dtype})", (T("all"),), {"dtype": Dtype()}, _sample_to,
              weight=2.0),
        OpDef("torch.nan_to_num", "pointwise_unary",
              "torch.nan_to_num({0}, nan={nan}, posinf={posinf}, neginf={neginf})",
              (T("float"),), {"nan": Float(), "posinf": Float(), "neginf": Float()},
              _sample_nan_to_num),
        OpDef("torch.round.decimals", "pointwise_unary", "torch.round({0}, decimals={decimals})",
              (T("float"),), {"decimals": Int(-3, 3)}, _sample_round_decimals, target="torch.round"),
        OpDef("torch.polygamma", "pointwise_unary", "torch.polygamma({n}, {0})",
              (T("float"),), {"n": Int(0, 3)}, _sample_polygamma),
        OpDef("torch.logit", "pointwise_unary", "torch.logit({0}, eps={eps})",
              (T("float"),), {"eps": Float(0, 0.5)}, lambda rng, s: {"eps": rng.choice([1e-6, 0.01])}),
        OpDef("torch.isclose", "pointwise_binary", "torch.isclose({0}, {1})",
              (T(_FC), T(_FC, shape=broadcast_partner, **_same))),
        OpDef("torch.heaviside", "pointwise_binary", "torch.heaviside({0}, {1})",
              (T("numeric"), T("numeric", shape=broadcast_partner, **_same))),
        # Complex numbers from real parts: (real, imag) and (abs, angle).
        OpDef("torch.complex", "pointwise_binary", "torch.complex({0}, {1})",
              (T(_F32_64), T(_F32_64, shape=broadcast_partner, **_same))),
        OpDef("torch.polar", "pointwise_binary", "torch.polar({0}, {1})",
              (T(_F32_64), T(_F32_64, shape=broadcast_partner, **_same))),
    ]
)
