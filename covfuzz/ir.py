"""The test-case IR: a typed DAG of torch ops plus how it is compiled.

Value ids are positional: graph input i is value i; node j produces value `len(inputs) + j`.
Every node produces exactly one value (ops that return tuples select one element through an
attribute), so value ids stay stable when shapes change.

All classes are frozen dataclasses holding only plain data (ints, floats, bools, strings,
tuples, dicts of those). Mutators build new cases with `dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from dataclasses import dataclass, field
from typing import Union

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
# Unsigned beyond uint8: torch supports them in few ops (copies, views, casts, comparisons).
UINT_DTYPES = ("uint16", "uint32", "uint64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8") + UINT_DTYPES
COMPLEX_DTYPES = ("complex64", "complex128")
# Tensor methods that convert to one integer dtype (x.short() is x.to(torch.int16)): like
# Tensor.to, undefined behaviour in C for a float input out of the dtype's range.
INT_CONVERSION_METHODS = ("Tensor.byte", "Tensor.char", "Tensor.short", "Tensor.int", "Tensor.long")
# 8-bit floats the CPU supports in casts, views and copies (covfuzz/ops declares which ops).
FLOAT8_DTYPES = ("float8_e4m3fn", "float8_e5m2")
# The dtypes every family supported first come first: their order names the catalog's derived
# dtype classes (covfuzz/ops/base.py), so newer dtypes are appended.
DTYPES = (FLOAT_DTYPES + INT_DTYPES[:5] + ("bool",) + COMPLEX_DTYPES + UINT_DTYPES
          + FLOAT8_DTYPES)
# The real float dtype of each complex dtype's parts (its tolerance and value classes).
COMPLEX_PARTS = {"complex64": "float32", "complex128": "float64"}
SHORT_NAMES = {"float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64",
               "int8": "i8", "int16": "i16", "int32": "i32", "int64": "i64", "uint8": "u8",
               "bool": "b8", "complex64": "c64", "complex128": "c128", "uint16": "u16",
               "uint32": "u32", "uint64": "u64", "float8_e4m3fn": "f8e4m3", "float8_e5m2": "f8e5m2"}
DEVICES = ("cpu", "cuda")
SCALAR_KINDS = ("int", "float", "bool")

# Fill families: how a tensor input's values are drawn from the seed.
FILLS = ("normal", "uniform", "positive", "edge", "zeros", "ones", "nonzero", "index", "bool")

# Hard bounds. They keep hostile or runaway cases from allocating without bound.
MAX_INPUTS = 64
MAX_NODES = 512
MAX_OUTPUTS = 64
MAX_RANK = 8
MAX_DIM = 1 << 16
MAX_NUMEL = 1 << 22  # elements of one tensor (its storage included)
MAX_SEED = (1 << 63) - 1
# Inputs with at most this many storage elements may carry explicit literal `values` (a repro
# then shows the NaN that matters); larger ones stay drawn from the seed.
MAX_LITERAL_VALUES = 256

INT_RANGES = {"int8": (-128, 127), "int16": (-(1 << 15), (1 << 15) - 1),
              "int32": (-(1 << 31), (1 << 31) - 1), "int64": (-(1 << 63), (1 << 63) - 1),
              "uint8": (0, 255), "uint16": (0, (1 << 16) - 1), "uint32": (0, (1 << 32) - 1),
              "uint64": (0, (1 << 64) - 1)}
# 8-bit float formats: (mantissa bits, exponent of the smallest normal, largest finite, has inf).
MINIFLOATS = {"float8_e4m3fn": (3, -6, 448.0, False), "float8_e5m2": (2, -14, 57344.0, True)}


def dtype_class(dtype: str) -> str:
    """'float' (float8 included), 'complex', 'int' or 'bool'."""
    if dtype in FLOAT_DTYPES or dtype in FLOAT8_DTYPES:
        return "float"
    if dtype in COMPLEX_DTYPES:
        return "complex"
    if dtype in INT_DTYPES:
        return "int"
    return "bool"


def contiguous_stride(shape: tuple[int, ...]) -> tuple[int, ...]:
    stride, acc = [], 1
    for size in reversed(shape):
        stride.append(acc)
        acc *= max(size, 1)
    return tuple(reversed(stride))


def permuted_stride(shape: tuple[int, ...], order: list[int]) -> tuple[int, ...]:
    """Dense strides with the dims laid out in memory in `order` (outermost first)."""
    stride = [0] * len(shape)
    acc = 1
    for d in reversed(order):
        stride[d] = acc
        acc *= max(shape[d], 1)
    return tuple(stride)


def storage_numel(shape: tuple[int, ...], stride: tuple[int, ...], offset: int) -> int:
    """Elements a strided view needs in its storage (0 for an empty tensor without offset)."""
    if any(s == 0 for s in shape):
        return offset
    return offset + 1 + sum((s - 1) * st for s, st in zip(shape, stride))


def float_in_dtype(value: float, dtype: str) -> float | None:
    """`value` rounded to `dtype` (a FLOAT_DTYPES or FLOAT8_DTYPES name) and back, or None when
    it overflows (or is an infinity the format lacks).

    Pure Python (struct), so the foundation layer needs no torch: float32 and float16 through
    IEEE pack formats, bfloat16 as the float32 bits with the low 16 bits rounded to nearest even,
    float8 by its mantissa width and exponent range (subnormals included).
    """
    if dtype in MINIFLOATS:
        return _minifloat(value, *MINIFLOATS[dtype])
    if dtype == "float64" or not math.isfinite(value):
        return value
    try:
        if dtype == "float16":
            return struct.unpack("<e", struct.pack("<e", value))[0]
        as32 = struct.unpack("<f", struct.pack("<f", value))[0]
    except OverflowError:
        return None
    if dtype == "float32":
        return as32
    bits = struct.unpack("<I", struct.pack("<f", as32))[0]
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16  # bfloat16: round to nearest even
    result = struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]
    return result if math.isfinite(result) else None


def _minifloat(value: float, mantissa: int, min_exp: int, top: float, has_inf: bool):
    if math.isnan(value) or value == 0:
        return value
    if math.isinf(value):
        return value if has_inf else None
    exp = math.frexp(abs(value))[1] - 1  # of the leading bit
    quantum = math.ldexp(1.0, max(exp, min_exp) - mantissa)
    rounded = round(abs(value) / quantum) * quantum  # exact: a power-of-two scale; ties to even
    return None if rounded > top else math.copysign(rounded, value)


def _float_problem(i: int, v, dtype: str, what: str = "value") -> str | None:
    if type(v) is not float:
        return f"{what} [{i}] {v!r:.40}: expected a float for {dtype}"
    rounded = float_in_dtype(v, dtype)
    if rounded is None:
        return f"{what} [{i}] {v!r}: out of the range of {dtype}"
    if not math.isnan(v) and rounded != v:
        return (f"{what} [{i}] {v!r} is not exactly representable in {dtype} "
                f"(nearest: {rounded!r})")
    return None


def literal_values_problem(spec, values) -> str | None:
    """Why `values` cannot be the literal storage of a tensor input with `spec`, or None.

    Literal values are the flat storage elements (strides and offset view them), as exact
    Python literals: `float` for floating dtypes (nan, +-inf and -0.0 included; every value
    exactly representable in the dtype, so what a reader sees is what the tensor holds),
    `complex` for complex dtypes (each part such a float of COMPLEX_PARTS[dtype]), `int`
    within the dtype's range for integer dtypes, `bool` for bool. Exact types only: a float
    subclass (numpy.float64) would not render as a plain literal.
    """
    if not isinstance(spec, TensorSpec):
        return "only tensor inputs take literal values"
    if not isinstance(values, tuple):
        return f"expected a tuple of values, got {type(values).__name__}"
    need = storage_numel(spec.shape, spec.stride, spec.offset)
    if need > MAX_LITERAL_VALUES:
        return f"storage of {need} elements: literal values are allowed up to {MAX_LITERAL_VALUES}"
    if len(values) != need:
        return f"{len(values)} values, but the storage of this spec holds {need}"
    kind = dtype_class(spec.dtype)
    for i, v in enumerate(values):
        if kind == "bool":
            if type(v) is not bool:
                return f"value [{i}] {v!r:.40}: expected a bool for {spec.dtype}"
        elif kind == "int":
            lo, hi = INT_RANGES[spec.dtype]
            if type(v) is not int or not lo <= v <= hi:
                return f"value [{i}] {v!r:.40}: expected an int in [{lo}, {hi}] for {spec.dtype}"
        elif kind == "complex":
            if type(v) is not complex:
                return f"value [{i}] {v!r:.40}: expected a complex for {spec.dtype}"
            part = COMPLEX_PARTS[spec.dtype]
            problem = (_float_problem(i, v.real, part, "real part of value")
                       or _float_problem(i, v.imag, part, "imaginary part of value"))
            if problem:
                return problem
        else:
            problem = _float_problem(i, v, spec.dtype)
            if problem:
                return problem
    return None


def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str = "float32"
    offset: int = 0
    device: str = "cpu"
    requires_grad: bool = False

    @staticmethod
    def contiguous(shape, dtype="float32", device="cpu", requires_grad=False) -> "TensorSpec":
        shape = tuple(shape)
        return TensorSpec(shape, contiguous_stride(shape), dtype, 0, device, requires_grad)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return numel(self.shape)

    def short(self) -> str:
        """Compact human form, e.g. `f32[4, 8] stride (8, 1)`."""
        text = f"{SHORT_NAMES[self.dtype]}{list(self.shape)}"
        if self.stride != contiguous_stride(self.shape):
            text += f" stride {self.stride}"
        if self.offset:
            text += f" offset {self.offset}"
        if self.requires_grad:
            text += " grad"
        return text


@dataclass(frozen=True)
class ScalarSpec:
    kind: str  # 'int' | 'float' | 'bool'

    def short(self) -> str:
        return self.kind


ValueSpec = Union[TensorSpec, ScalarSpec]


def type_name(spec) -> str:
    """A value's type in one word: a tensor's dtype, `py<kind>` for a Python scalar."""
    if isinstance(spec, TensorSpec):
        return spec.dtype
    if isinstance(spec, ScalarSpec):
        return f"py{spec.kind}"
    return "?"


@dataclass(frozen=True)
class Input:
    """A graph input: a tensor drawn from the seed with `fill`, or a Python scalar `value`.

    A tensor input may instead carry explicit `values`: its flat storage elements as Python
    literals (see `literal_values_problem`), at most MAX_LITERAL_VALUES; they override the fill
    (which stays recorded: mutators and index bounds still read it). None: drawn from the seed.

    A `param` tensor is not passed to the function: it is held as a parameter of an nn.Module
    that calls it (covfuzz/codegen.py), as model weights are; Inductor treats such tensors as
    static, and with `freezing` (in inference) folds them as constants.
    """

    spec: ValueSpec
    fill: str = "normal"
    value: int | float | bool | None = None
    param: bool = False
    values: tuple | None = None


def with_spec(inp: Input, spec: ValueSpec) -> Input:
    """`inp` with a new spec. Its literal values are kept while they still fit the new spec
    (same storage size, dtype class and range); otherwise the input goes back to being drawn
    from the seed, so a mutated or reduced case never holds values that do not fit."""
    values = inp.values
    if values is not None and literal_values_problem(spec, values) is not None:
        values = None
    return dataclasses.replace(inp, spec=spec, values=values)


@dataclass(frozen=True)
class Node:
    op: str
    args: tuple[int, ...]
    attrs: dict = field(default_factory=dict)
    out: ValueSpec | None = None  # filled by propagation


@dataclass(frozen=True)
class Graph:
    inputs: tuple[Input, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[int, ...]

    @property
    def num_values(self) -> int:
        return len(self.inputs) + len(self.nodes)

    def spec_of(self, value_id: int) -> ValueSpec | None:
        if value_id < len(self.inputs):
            return self.inputs[value_id].spec
        return self.nodes[value_id - len(self.inputs)].out

    def node_of(self, value_id: int) -> Node | None:
        if value_id < len(self.inputs):
            return None
        return self.nodes[value_id - len(self.inputs)]

    def users(self) -> dict[int, list[int]]:
        """value id -> ids of the values (node outputs) that use it."""
        result: dict[int, list[int]] = {v: [] for v in range(self.num_values)}
        base = len(self.inputs)
        for j, node in enumerate(self.nodes):
            for a in node.args:
                result[a].append(base + j)
        return result


@dataclass(frozen=True)
class CompileSettings:
    backend: str = "inductor"
    mode: str | None = None
    dynamic: bool | None = None
    fullgraph: bool = False
    mark_dynamic: tuple[tuple[int, int], ...] = ()  # (input index, dim)
    inductor_config: dict = field(default_factory=dict)
    dynamo_config: dict = field(default_factory=dict)
    device: str = "cpu"
    backward: bool = False
    # A METAMORPHIC_VARIANTS name: when the case passes, also compile it under this variant of
    # its settings and compare the two compiled results (harness/metamorphic.py). None: no.
    metamorphic: str | None = None


# Inductor settings under which compiled code keeps values it was compiled with (freezing folds
# parameters into constants; CUDA graphs keep static inputs in place).
VALUE_HOLDING_CONFIG = ("freezing", "triton.cudagraphs", "triton.cudagraph_trees")


def compiled_code_holds_values(mode: str | None, inductor_config: dict) -> bool:
    """Whether a program compiled under these settings may hold its inputs' values (a compile
    mode, or VALUE_HOLDING_CONFIG): such a program must not serve another case's values
    (harness.execute's compile reuse; the campaign's value sweeps)."""
    return mode is not None or any(inductor_config.get(k) for k in VALUE_HOLDING_CONFIG)


# Issue 19's metamorphic variants: named changes of the compile settings under which a case
# must compute what it computes under its own (the vectorized C++ path off, shapes dynamic or
# static, the C++ wrapper flipped). The name is what a case stores; `variant_settings` applies it.
METAMORPHIC_VARIANTS = ("novec", "dynamic", "static", "cpp_wrapper")
# Inductor's vector ISA is picked by `cpp.simdlen`: a width no ISA has (0) leaves the invalid
# ISA, so every C++ kernel is scalar (no at::vec in the generated code).
NOVEC_CONFIG = {"cpp.simdlen": 0}


def applicable_variants(settings: CompileSettings) -> tuple[str, ...]:
    """The variants that change something for a case compiled with `settings`: `novec` on
    the CPU under Inductor (unless already scalar), `dynamic` unless dynamic=True, `static`
    when some shape is dynamic (dynamic=True or marked dims), `cpp_wrapper` under Inductor."""
    out = []
    inductor = settings.backend == "inductor"
    config = settings.inductor_config
    if inductor and settings.device == "cpu" and config.get("cpp.simdlen") != 0 \
            and config.get("cpp.vec_isa_ok") is not False:
        out.append("novec")
    if settings.dynamic is not True:
        out.append("dynamic")
    if settings.dynamic is True or settings.mark_dynamic:
        out.append("static")
    if inductor:
        out.append("cpp_wrapper")
    return tuple(out)


def variant_settings(settings: CompileSettings, name: str) -> CompileSettings:
    """`settings` under metamorphic variant `name` (its own `metamorphic` field cleared: the
    result is an ordinary case's settings). ValueError for a name that is not a variant."""
    if name not in METAMORPHIC_VARIANTS:
        raise ValueError(f"not a metamorphic variant: {name!r:.40}")
    config = dict(settings.inductor_config)
    changes: dict = {"metamorphic": None}
    if name == "novec":
        changes["inductor_config"] = {**config, **NOVEC_CONFIG}
    elif name == "dynamic":
        changes["dynamic"] = True
    elif name == "static":
        changes.update(dynamic=False, mark_dynamic=())
    else:  # cpp_wrapper: the other wrapper than the case's (torch's default is the Python one)
        changes["inductor_config"] = {**config, "cpp_wrapper": not config.get("cpp_wrapper", False)}
    return dataclasses.replace(settings, **changes)


@dataclass(frozen=True)
class TestCase:
    graph: Graph
    settings: CompileSettings = field(default_factory=CompileSettings)
    seed: int = 0

    __test__ = False  # not a pytest test class

    def replace(self, **changes) -> "TestCase":
        return dataclasses.replace(self, **changes)


def metamorphic_case(case: TestCase) -> TestCase | None:
    """`case` under the metamorphic variant its settings name, as an ordinary case (no variant
    of its own); None when it names none, or one that changes nothing for its settings."""
    name = case.settings.metamorphic
    if name is None or name not in applicable_variants(case.settings):
        return None
    return case.replace(settings=variant_settings(case.settings, name))
