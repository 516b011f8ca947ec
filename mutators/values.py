"""Value mutators (issue 19): change the numbers a graph computes on, not only its structure.

Miscompiles hide in values: an `exp` that overflows in a lowering's intermediate math, a NaN
that a decomposition drops, a count that leaves only the scalar tail of a vectorized loop. These
mutators edit a tensor input's explicit value table (`Input.values`, the flat storage elements;
an input drawn from the seed is first spelled out as the values it holds today, so only the
chosen positions change) and the literal scalar operands, and resize dims around SIMD widths:

- `value_magnitudes`: magnitudes log-uniform over the dtype's whole exponent range
  (subnormals to the largest finite), or values right at the overflow / underflow threshold of
  the op the input feeds (where `exp`, squares and products overflow in that dtype);
- `value_specials`: special values (nan, +-inf, -0.0, the largest finite, the smallest normal,
  a subnormal, integer limits) at chosen positions (first, last, around a vector's width, the
  start of the tail), or a literal scalar operand made 0, -0.0, 1, -1 or huge;
- `simd_counts`: a dim resized below, at, one past, or to a multiple plus a remainder of a
  SIMD width (4..64 elements by dtype size), in every input that shares it.

Inputs whose fill an argument depends on (index bounds, nonzero divisors, positive variances)
are left alone, as `mutate_values` leaves them; every candidate is validated by the caller.
"""

from __future__ import annotations

import dataclasses
import math
import random

from covfuzz import codegen
from covfuzz.generator import MAX_FRESH_NUMEL
from covfuzz.ir import (INT_RANGES, MAX_LITERAL_VALUES, ScalarSpec, TensorSpec, TestCase,
                        contiguous_stride, dtype_class, float_in_dtype, literal_values_problem,
                        storage_numel, with_spec)

from mutators.base import EGraph, MutationContext, settle
from mutators.params import _fixed_fill_inputs

# dtype -> (exponent of the smallest subnormal, exponent of the largest binade, largest finite,
# smallest normal), as powers of two.
FLOAT_RANGE = {
    "float16": (-24, 15, 65504.0, 2.0 ** -14),
    "bfloat16": (-133, 127, 3.3895313892515355e+38, 2.0 ** -126),
    "float32": (-149, 127, 3.4028234663852886e+38, 2.0 ** -126),
    "float64": (-1074, 1023, 1.7976931348623157e+308, 2.0 ** -1022),
    "float8_e4m3fn": (-9, 8, 448.0, 2.0 ** -6),
    "float8_e5m2": (-16, 15, 57344.0, 2.0 ** -14),
}
ELEMENT_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "int8": 1, "uint8": 1,
                 "int16": 2, "int32": 4, "int64": 8, "bool": 1, "uint16": 2, "uint32": 4,
                 "uint64": 8, "float8_e4m3fn": 1, "float8_e5m2": 1, "complex64": 8,
                 "complex128": 16}

# Ops by the arithmetic that overflows first in them (matched on the op name's last part).
EXP_OPS = {"exp", "expm1", "exp2", "sinh", "cosh", "softmax", "log_softmax", "logsumexp",
           "sigmoid", "softplus", "elu", "selu", "celu", "silu", "mish", "gelu", "logaddexp",
           "logaddexp2", "logcumsumexp"}
SQUARE_OPS = {"square", "pow", "mul", "matmul", "mm", "bmm", "prod", "cumprod", "norm", "var",
              "std", "var_mean", "std_mean", "rms_norm", "layer_norm", "group_norm",
              "batch_norm", "addcmul", "vector_norm", "dot", "einsum", "baddbmm", "addmm",
              "hypot", "linear", "conv1d", "conv2d", "cross", "outer", "kron"}
DIV_OPS = {"div", "reciprocal", "rsqrt", "sqrt", "remainder", "fmod", "true_divide",
           "floor_divide", "log", "log1p", "log2", "log10", "atan2", "xlogy"}

SCALAR_FLOATS = (0.0, -0.0, 1.0, -1.0, 1e38, -1e38, 3.0e38, 65504.0, 1e-30, 1e300)
SCALAR_INTS = (0, 1, -1, 2, 127, -128, 255)


# ----------------------------------------------------------------------------- helpers


def _editable(case: TestCase, kinds=("float", "int")) -> list[int]:
    """Tensor inputs whose values may be edited: not a fixed fill, an index or bool, and a
    storage small enough for a literal value table."""
    g = case.graph
    fixed = _fixed_fill_inputs(case)
    out = []
    for i, inp in enumerate(g.inputs):
        spec = inp.spec
        if (not isinstance(spec, TensorSpec) or i in fixed or inp.fill == "index"
                or dtype_class(spec.dtype) not in kinds):
            continue
        if 0 < storage_numel(spec.shape, spec.stride, spec.offset) <= MAX_LITERAL_VALUES:
            out.append(i)
    return out


def current_values(case: TestCase, i: int) -> list:
    """Input `i`'s storage elements as exact Python literals: its value table, or the values
    the seed draws for it (what the program builds today)."""
    inp = case.graph.inputs[i]
    if inp.values is not None:
        return list(inp.values)
    spec = inp.spec
    n = storage_numel(spec.shape, spec.stride, spec.offset)
    tensor = codegen.build_input(case, i, "cpu").detach()
    return list(tensor.as_strided((n,), (1,), 0).tolist())


def _with_values(case: TestCase, i: int, values: list) -> TestCase | None:
    inp = case.graph.inputs[i]
    values = tuple(values)
    if literal_values_problem(inp.spec, values) is not None or values == inp.values:
        return None
    inputs = list(case.graph.inputs)
    inputs[i] = dataclasses.replace(inp, values=values)
    return case.replace(graph=dataclasses.replace(case.graph, inputs=tuple(inputs)))


def _exact(value: float, dtype: str) -> float | None:
    """`value` rounded to `dtype` (None when it overflows)."""
    if math.isnan(value):
        return value
    rounded = float_in_dtype(float(value), dtype)
    return None if rounded is None else float(rounded)


def lanes(dtype: str) -> list[int]:
    """Plausible SIMD widths in elements of `dtype` (128-, 256- and 512-bit vectors; Inductor
    picks one of them on CPUs, and 8 / 16 are common loop steps whatever the ISA)."""
    size = ELEMENT_BYTES.get(dtype, 4)
    return sorted({16 // size, 32 // size, 64 // size, 8, 16} - {0, 1})


def positions(rng: random.Random, n: int, dtype: str) -> list[int]:
    """Storage positions to edit: the first or last element, elements around a vector's width,
    the first element of the tail, a random one, or a random half."""
    width = rng.choice(lanes(dtype))
    kind = rng.choice(["first", "last", "lane", "tail", "random", "many"])
    if kind == "first":
        return [0]
    if kind == "last":
        return [n - 1]
    if kind == "lane":
        return sorted({p for p in (width - 1, width) if p < n}) or [n - 1]
    if kind == "tail":
        return [n - n % width if n % width else max(n - 1, 0)]
    if kind == "random":
        return [rng.randrange(n)]
    return sorted(rng.sample(range(n), max(1, n // 2)))


def _consumers(case: TestCase, vid: int) -> list[str]:
    """The short op names (after the last '.') of the nodes reading value `vid`."""
    return [n.op.rsplit(".", 1)[-1] for n in case.graph.nodes if vid in n.args]


def thresholds(dtype: str, consumers: list[str]) -> list[float]:
    """Input magnitudes at which the consuming ops overflow or underflow in `dtype`."""
    lo_exp, _, big, tiny = FLOAT_RANGE[dtype]
    names = set(consumers)
    out = [big, tiny, 2.0 ** lo_exp]
    if names & EXP_OPS:
        out += [math.log(big), math.log(tiny), math.log(2.0 ** lo_exp), math.log2(big)]
    if names & SQUARE_OPS:
        out += [math.sqrt(big), math.sqrt(tiny), big ** (1 / 3)]
    if names & DIV_OPS:
        out += [1.0 / big, tiny * 2, 2.0 ** (lo_exp + 1)]
    return out


def _log_uniform(rng: random.Random, dtype: str) -> float | int:
    if dtype_class(dtype) == "int":
        lo, hi = INT_RANGES[dtype]
        magnitude = int(2.0 ** rng.uniform(0, math.log2(hi)))
        value = -magnitude if lo < 0 and rng.random() < 0.5 else magnitude
        return max(lo, min(hi, value))
    lo_exp, hi_exp, big, _ = FLOAT_RANGE[dtype]
    value = math.ldexp(rng.uniform(1.0, 2.0), rng.randint(lo_exp, hi_exp))
    return math.copysign(min(value, big), -1.0 if rng.random() < 0.5 else 1.0)


def _near(rng: random.Random, threshold: float) -> float:
    """A value at `threshold` or a step of 1/256 either side of it (a few units in the last
    place of a half-precision value), of either sign."""
    value = threshold * (1 + rng.choice([-2, -1, 0, 0, 1, 2]) * 2.0 ** -8)
    return -value if rng.random() < 0.3 else value


def specials(dtype: str) -> list:
    if dtype_class(dtype) == "int":
        lo, hi = INT_RANGES[dtype]
        return sorted({lo, hi, lo + 1, hi - 1, 0, 1, max(lo, -1)})
    lo_exp, _, big, tiny = FLOAT_RANGE[dtype]  # powers of two and the largest finite: exact
    return [v for v in (math.nan, math.inf, -math.inf, -0.0, 0.0, big, -big, tiny, -tiny,
                        2.0 ** lo_exp, 1.0, -1.0)
            if float_in_dtype(v, dtype) is not None]  # float8_e4m3fn has no infinity


# ----------------------------------------------------------------------------- mutators


def value_magnitudes(case: TestCase, rng: random.Random, ctx: MutationContext) -> TestCase | None:
    """Values of a small tensor input made log-uniform over its dtype's exponent range, or put
    at the overflow / underflow threshold of the op it feeds."""
    inputs = _editable(case)
    if not inputs:
        return None
    i = rng.choice(inputs)
    dtype = case.graph.inputs[i].spec.dtype
    values = current_values(case, i)
    at_threshold = dtype_class(dtype) == "float" and rng.random() < 0.5
    limits = thresholds(dtype, _consumers(case, i)) if at_threshold else []
    for p in positions(rng, len(values), dtype):
        if at_threshold:
            new = _exact(_near(rng, rng.choice(limits)), dtype)
        else:
            new = _log_uniform(rng, dtype)
            if isinstance(new, float):
                new = _exact(new, dtype)
        if new is not None:
            values[p] = new
    return _with_values(case, i, values)


def value_specials(case: TestCase, rng: random.Random, ctx: MutationContext) -> TestCase | None:
    """A special value at chosen positions of a small tensor input, or a literal scalar
    operand made 0, -0.0, 1, -1 or huge."""
    inputs = _editable(case)
    scalars = [i for i, inp in enumerate(case.graph.inputs)
               if isinstance(inp.spec, ScalarSpec) and inp.spec.kind in ("int", "float")]
    if scalars and (not inputs or rng.random() < 0.3):
        i = rng.choice(scalars)
        inp = case.graph.inputs[i]
        table = SCALAR_FLOATS if inp.spec.kind == "float" else SCALAR_INTS
        choices = [v for v in table if repr(v) != repr(inp.value)]  # -0.0 differs from 0.0
        new_inputs = list(case.graph.inputs)
        new_inputs[i] = dataclasses.replace(inp, value=rng.choice(choices))
        return case.replace(graph=dataclasses.replace(case.graph, inputs=tuple(new_inputs)))
    if not inputs:
        return None
    i = rng.choice(inputs)
    dtype = case.graph.inputs[i].spec.dtype
    values = current_values(case, i)
    special = rng.choice(specials(dtype))
    for p in positions(rng, len(values), dtype):
        values[p] = special
    return _with_values(case, i, values)


def simd_counts(case: TestCase, rng: random.Random, ctx: MutationContext) -> TestCase | None:
    """A dim of a tensor input (the innermost, mostly) resized around a SIMD width: one
    below, equal, one past, or a multiple plus a remainder; every input sharing the dim at the
    same broadcast-aligned position follows, as do shape attributes holding the old size."""
    eg = EGraph(case)
    tensors = [(u, inp) for u, inp in eg.inputs if isinstance(inp.spec, TensorSpec)
               and inp.spec.rank and inp.fill != "index"]
    if not tensors:
        return None
    uid, inp = rng.choice(tensors)
    spec = inp.spec
    d = spec.rank - 1 if rng.random() < 0.7 else rng.randrange(spec.rank)
    old = spec.shape[d]
    width = rng.choice(lanes(spec.dtype))
    k = rng.randint(2, 4)
    new = rng.choice([width - 1, width, width + 1, k * width + rng.randint(1, width - 1),
                      k * width])
    if new == old or new <= 0:
        return None
    from_right = spec.rank - d
    changed = False
    for u, other in eg.inputs:
        ospec = other.spec
        if not isinstance(ospec, TensorSpec):
            continue
        pos = ospec.rank - from_right
        if pos < 0 or ospec.shape[pos] != old:
            continue
        shape = list(ospec.shape)
        shape[pos] = new
        shape = tuple(shape)
        if math.prod(shape) > MAX_FRESH_NUMEL * 4:
            return None
        # A value table that no longer fits the storage goes (the input is drawn again).
        eg.set_input(u, with_spec(other, dataclasses.replace(
            ospec, shape=shape, stride=contiguous_stride(shape), offset=0)))
        changed = True
    if not changed:
        return None
    for node in eg.nodes:
        for key in ("shape", "sizes", "normalized_shape"):
            value = node.attrs.get(key)
            if isinstance(value, tuple) and old in value:
                node.attrs[key] = tuple(new if v == old else v for v in value)
    return settle(eg)
