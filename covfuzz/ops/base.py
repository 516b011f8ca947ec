"""What an op in the catalog declares, and how a call to it is rendered as Python.

An `OpDef` says:
- `name`: the catalog name users and test cases use (`torch.add`, `Tensor.view`, `F.conv2d`);
- `target`: the attribute path checked against the installed torch at import;
- `args`: one `ArgSpec` per value argument (kind, dtype class, rank range, how to build a fresh
  input that fits);
- `attrs`: the domain of each literal attribute (checked when a case is loaded: this is what
  keeps code out of generated programs);
- `template`: the Python expression, with `{0}`.. for arguments and `{name}` for attributes;
- `sample_attrs(rng, first_arg_spec)`: proposes attributes that make sense for that input;
- flags: `data_dependent` (needs dynamo's capture_* settings), `nondeterministic`, `real_only`
  (no meta kernel: propagate on small real tensors), `graph_break` (Dynamo must split the graph
  there, so the op is invalid under fullgraph=True);
- `check_template`: what propagation evaluates instead of `template`, when the real call is
  expensive outside a compiled region (an eager `torch.cond` compiles its branches with Dynamo:
  ~100 ms) and a plain expression has the same output spec. The harness's eager run still
  calls the real op, so a case the cheap check let through fails there as `invalid`;
- `helpers`: names of the Python helpers (covfuzz/ops/helpers.py) the template calls;
- `source`: 'hand-written' or 'opinfo' (derived from PyTorch's OpInfo: covfuzz/ops/opinfo.py),
  with `dtypes_by_device`, every dtype OpInfo lists for the op per device.

Shape rules stay in torch: `ArgSpec.shape` only *proposes* a shape for a fresh input
(a broadcast partner, the other matmul operand); propagation through torch decides validity.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable

from covfuzz.ir import (COMPLEX_DTYPES, DTYPES, FLOAT8_DTYPES, MAX_DIM, MAX_RANK, UINT_DTYPES,
                        TensorSpec)

# ----------------------------------------------------------------------------- attributes


@dataclass(frozen=True)
class AttrDomain:
    """The set of literal values an attribute may hold."""

    kind: str  # 'int' | 'float' | 'bool' | 'enum' | 'dtype' | 'ints' | 'floats'
    lo: float = -MAX_DIM
    hi: float = MAX_DIM
    choices: tuple = ()
    max_len: int = MAX_RANK
    optional: bool = False  # None allowed
    torch_name: bool = False  # enum rendered as `torch.<value>` (memory formats)
    bare: bool = False  # enum rendered as the bare identifier (a method or helper name)

    def check(self, value) -> str | None:
        """None when `value` is in the domain, else the reason it is not."""
        if value is None:
            return None if self.optional else "None not allowed"
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"expected bool, got {type(value).__name__}"
        if self.kind == "int":
            return _check_int(value, self.lo, self.hi)
        if self.kind == "float":
            return _check_float(value, self.lo, self.hi)
        if self.kind == "enum":
            return None if isinstance(value, str) and value in self.choices else (
                f"expected one of {list(self.choices)}")
        if self.kind == "dtype":
            return None if isinstance(value, str) and value in DTYPES else "expected a dtype name"
        if self.kind in ("ints", "floats"):
            if not isinstance(value, tuple):
                return f"expected a tuple, got {type(value).__name__}"
            if len(value) > self.max_len:
                return f"tuple longer than {self.max_len}"
            check = _check_int if self.kind == "ints" else _check_float
            for item in value:
                reason = check(item, self.lo, self.hi)
                if reason:
                    return reason
            return None
        return f"unknown attribute kind {self.kind}"

    def render(self, value) -> str:
        """Python source for a value already accepted by `check`."""
        if value is None:
            return "None"
        if self.kind == "dtype" or self.torch_name:
            return f"torch.{value}"
        if self.bare:
            return str(value)
        if self.kind == "float":
            return repr(float(value))
        return repr(value)


def _check_int(value, lo, hi) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected int, got {type(value).__name__}"
    if not lo <= value <= hi:
        return f"int {value} outside [{lo}, {hi}]"
    return None


def _check_float(value, lo, hi) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected float, got {type(value).__name__}"
    if not math.isfinite(value) or not lo <= value <= hi:
        return f"float {value} outside [{lo}, {hi}]"
    return None


def Int(lo=-MAX_DIM, hi=MAX_DIM, optional=False) -> AttrDomain:
    return AttrDomain("int", lo, hi, optional=optional)


def Float(lo=-1e6, hi=1e6, optional=False) -> AttrDomain:
    return AttrDomain("float", lo, hi, optional=optional)


def Bool() -> AttrDomain:
    return AttrDomain("bool")


def Enum(*choices: str, optional=False, torch_name=False) -> AttrDomain:
    return AttrDomain("enum", choices=tuple(choices), optional=optional, torch_name=torch_name)


def Name(*choices: str) -> AttrDomain:
    """One of a fixed set of identifiers (method or helper names), rendered without quotes."""
    assert all(c.isidentifier() for c in choices), choices
    return AttrDomain("enum", choices=tuple(choices), bare=True)


def Dtype() -> AttrDomain:
    return AttrDomain("dtype")


def Ints(lo=-MAX_DIM, hi=MAX_DIM, max_len=MAX_RANK, optional=False) -> AttrDomain:
    return AttrDomain("ints", lo, hi, max_len=max_len, optional=optional)


DIM = Int(-MAX_RANK, MAX_RANK - 1)

# ----------------------------------------------------------------------------- arguments

# Dtype classes an argument accepts. "any" is the ten dtypes nearly every op supports; an op
# declares complex ("+complex"), wide unsigned or float8 ("all": every IR dtype) only where
# eager and torch.compile both run it on the CPU (checked per op when it was declared).
_ANY = ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
        "bool")
DTYPE_CLASSES = {
    "any": _ANY,
    "float": ("float16", "bfloat16", "float32", "float64"),
    "int": ("int8", "int16", "int32", "int64", "uint8"),
    "numeric": ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8"),
    "intbool": ("int8", "int16", "int32", "int64", "uint8", "bool"),
    "bool": ("bool",),
    "long": ("int64",),
    "signed": ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64"),
    "float32_or_less": ("float16", "bfloat16", "float32"),
    "all": DTYPES,
    "complex": COMPLEX_DTYPES,
    "any+complex": _ANY + COMPLEX_DTYPES,
    "float+complex": ("float16", "bfloat16", "float32", "float64") + COMPLEX_DTYPES,
    "float32+complex": ("float32", "float64") + COMPLEX_DTYPES,
    "numeric+complex": ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32",
                        "int64", "uint8") + COMPLEX_DTYPES,
    "signed+complex": ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32",
                       "int64") + COMPLEX_DTYPES,
}



_GROUPS = {"complex": COMPLEX_DTYPES, "uint": UINT_DTYPES, "float8": FLOAT8_DTYPES}


def plus(key: str, *groups: str) -> str:
    """The dtype class `key` with the dtypes of `groups` ('complex', 'uint', 'float8') added,
    named `key+group+...` (registered when new; DTYPES order)."""
    name = "+".join((key,) + groups)
    if name not in DTYPE_CLASSES:
        wanted = set(DTYPE_CLASSES[key]).union(*(_GROUPS[g] for g in groups))
        DTYPE_CLASSES[name] = tuple(d for d in DTYPES if d in wanted)
    return name


def with_complex(key: str) -> str:
    """The dtype class `key` ('float', 'numeric', 'signed', 'any') with complex64/128 added."""
    return plus(key, "complex")


def dtype_class_for(dtypes: tuple[str, ...]) -> str:
    """The DTYPE_CLASSES key of exactly `dtypes` (in DTYPES order), registered when new: the
    OpInfo-derived ops (covfuzz/ops/opinfo.py) each support their own set of dtypes."""
    wanted = tuple(d for d in DTYPES if d in dtypes)
    for key, members in DTYPE_CLASSES.items():
        if tuple(members) == wanted:
            return key
    key = "|".join(wanted)
    DTYPE_CLASSES[key] = wanted
    return key


ShapeFn = Callable[[random.Random, list, dict], tuple]


@dataclass(frozen=True)
class ArgSpec:
    kind: str = "tensor"  # 'tensor' | 'scalar' (Python int/float/bool value) | 'tensor_or_scalar'
    dtypes: str = "any"  # key of DTYPE_CLASSES
    min_rank: int = 0
    max_rank: int = 4
    # Proposes the shape of a fresh input from the specs of the earlier args and the attrs.
    shape: ShapeFn | None = None
    # A fresh graph input is always created for this argument (index tensors, divisors).
    fresh: bool = False
    fill: str | None = None  # fill of a fresh input ('index', 'nonzero', 'positive', 'bool')
    # For fill='index': (argument position, attribute name or int dim) whose size bounds values.
    bound: tuple | None = None
    same_dtype: bool = False  # fresh input takes the dtype of argument 0
    scalar_kind: str = "float"  # for 'scalar' args


def T(dtypes="any", min_rank=0, max_rank=4, **kw) -> ArgSpec:
    return ArgSpec("tensor", dtypes, min_rank, max_rank, **kw)


# ----------------------------------------------------------------------------- ops


@dataclass(frozen=True)
class OpDef:
    name: str
    category: str
    template: str
    args: tuple[ArgSpec, ...]
    attrs: dict[str, AttrDomain] = field(default_factory=dict)
    sample_attrs: Callable[[random.Random, object], dict] | None = None
    target: str = ""  # attribute path under `torch` checked at import ('' = name)
    out_kind: str = "tensor"  # 'tensor' | 'int' | 'float' | 'bool'
    data_dependent: bool = False
    nondeterministic: bool = False
    real_only: bool = False
    graph_break: bool = False
    check_template: str = ""
    helpers: tuple[str, ...] = ()
    weight: float = 1.0
    # Where the entry comes from: 'hand-written' (the families here) or 'opinfo' (derived from
    # PyTorch's OpInfo database, covfuzz/ops/opinfo.py).
    source: str = "hand-written"
    # Every dtype the op supports per device ('cpu', 'cuda'), including ones the IR lacks
    # (complex): None when the entry does not say (hand-written ops: their ArgSpecs do).
    dtypes_by_device: dict | None = None

    def check_attrs(self, attrs: dict) -> str | None:
        """None when `attrs` has exactly the declared keys with in-domain values."""
        extra = set(attrs) - set(self.attrs)
        if extra:
            return f"unexpected attribute(s) {sorted(extra)}"
        missing = set(self.attrs) - set(attrs)
        if missing:
            return f"missing attribute(s) {sorted(missing)}"
        for key, domain in self.attrs.items():
            reason = domain.check(attrs[key])
            if reason:
                return f"attribute {key!r}: {reason}"
        return None

    def render(self, arg_names: list[str], attrs: dict, check: bool = False) -> str:
        """The Python expression for a call (`check`: the one propagation evaluates); attrs
        must have passed `check_attrs`."""
        rendered = {k: self.attrs[k].render(v) for k, v in attrs.items()}
        template = self.check_template if check and self.check_template else self.template
        return template.format(*arg_names, **rendered)

    def propose_attrs(self, rng: random.Random, first: object) -> dict:
        return self.sample_attrs(rng, first) if self.sample_attrs else {}


# ----------------------------------------------------------------------------- sampling helpers
# Small helpers shared by the catalog's attribute samplers. They take a spec (or None).


def rank_of(spec) -> int:
    return spec.rank if isinstance(spec, TensorSpec) else 0


def pick_dim(rng: random.Random, spec, allow_negative=True) -> int:
    rank = max(rank_of(spec), 1)
    dim = rng.randrange(rank)
    if allow_negative and rng.random() < 0.3:
        dim -= rank
    return dim


def pick_dims(rng: random.Random, spec) -> tuple[int, ...]:
    rank = rank_of(spec)
    if rank == 0:
        return ()
    k = rng.randint(1, rank)
    return tuple(sorted(rng.sample(range(rank), k)))


def same_shape(rng, specs, attrs) -> tuple:
    return tuple(specs[0].shape) if isinstance(specs[0], TensorSpec) else ()


def broadcast_partner(rng: random.Random, specs, attrs) -> tuple:
    """A shape that broadcasts with argument 0: same, with some dims 1, or with leading dims dropped."""
    if not isinstance(specs[0], TensorSpec):
        return (rng.choice([1, 3, 8]),)
    shape = list(specs[0].shape)
    roll = rng.random()
    if roll < 0.55 or not shape:
        return tuple(shape)
    if roll < 0.8:
        return tuple(1 if rng.random() < 0.5 else s for s in shape)
    return tuple(shape[rng.randint(1, len(shape)):])
