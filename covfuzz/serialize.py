"""Test-case serialization: canonical bytes, a readable JSON form, and content-hash ids.

Formats (schema version `SCHEMA_VERSION`):
- JSON form: a JSON object `{"format": "covfuzz-testcase", "version": 1, "seed": ..,
  "settings": {..}, "inputs": [..], "nodes": [..], "outputs": [..]}`, indented for people.
- Stored form: `MAGIC` (b"CFZT") + one version byte + zlib(canonical JSON), where canonical
  JSON is the same object with sorted keys, no whitespace, ASCII only.
- Id: the first 16 hex digits of sha256 over the canonical JSON *without* node output specs
  (they are derived by propagation, so an id does not change when torch infers a new stride).

The settings' `metamorphic` (a variant name, issue 19) is likewise written only when set.

A tensor input may carry literal `values` (its flat storage elements): written only when present,
so cases drawn from the seed encode and hash as before; non-finite floats are the strings "nan",
"inf", "-inf" (JSON has neither), every other float its shortest exact repr (-0.0 included); a
complex value is the pair [real, imag] of two such floats.

Nothing here uses pickle or eval. Every decoder checks types, ranges, op names (against the
catalog of the installed torch) and attribute domains, and raises `TestCaseFormatError` with a
message naming the offending field for anything else.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib

from covfuzz import jsondata
from covfuzz.errors import TestCaseFormatError
from covfuzz.ir import (DEVICES, DTYPES, FILLS, MAX_DIM, MAX_INPUTS, MAX_LITERAL_VALUES, MAX_NODES,
                        MAX_NUMEL, MAX_OUTPUTS, MAX_RANK, MAX_SEED, METAMORPHIC_VARIANTS,
                        SCALAR_KINDS, CompileSettings,
                        Graph, Input, Node, ScalarSpec, TensorSpec, TestCase, dtype_class,
                        literal_values_problem, numel, storage_numel)
from covfuzz.config_space import check_config_override
from covfuzz import ops

FORMAT = "covfuzz-testcase"
SCHEMA_VERSION = 1
MAGIC = b"CFZT"
MAX_ENCODED_BYTES = 1 << 20  # stored or JSON form, before decompression
MAX_DECODED_BYTES = 4 << 20  # canonical JSON after decompression
MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
BACKENDS = ("inductor", "aot_eager", "aot_eager_decomp_partition", "eager")

# ----------------------------------------------------------------------------- encoding


def _spec_to_dict(spec) -> dict:
    if isinstance(spec, TensorSpec):
        return {"kind": "tensor", "shape": list(spec.shape), "stride": list(spec.stride),
                "offset": spec.offset, "dtype": spec.dtype, "device": spec.device,
                "requires_grad": spec.requires_grad}
    return {"kind": spec.kind}


def _plain(value):
    """Tuples -> lists, recursively (JSON has no tuples)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


# Literal input values in JSON, which has no NaN or Infinity: those three floats are written as
# these strings (the only strings a value list may hold); every other float is written by
# Python's shortest round-tripping repr (-0.0 included), so decoding gives the same bits back.
_SPECIAL_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _value_to_json(v):
    if type(v) is complex:
        return [_value_to_json(v.real), _value_to_json(v.imag)]
    if type(v) is float and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def _float_from_json(v, floating: bool, dtype: str, where: str):
    if isinstance(v, str):
        if not floating or v not in _SPECIAL_FLOATS:
            raise TestCaseFormatError(f"{where}: {v!r:.40} is not a value of {dtype} "
                                      f"(strings allowed: {sorted(_SPECIAL_FLOATS)} for floats)")
        return _SPECIAL_FLOATS[v]
    return v


def values_to_json(values: tuple) -> list:
    return [_value_to_json(v) for v in values]


def values_from_json(raw, spec: TensorSpec, path: str) -> tuple:
    """A JSON value list -> validated literal values for `spec` (TestCaseFormatError if not)."""
    if not isinstance(raw, list):
        raise TestCaseFormatError(f"{path}: expected a list, got {type(raw).__name__}")
    if len(raw) > MAX_LITERAL_VALUES:
        raise TestCaseFormatError(f"{path}: {len(raw)} values, at most {MAX_LITERAL_VALUES}")
    values = []
    kind = dtype_class(spec.dtype)
    for i, v in enumerate(raw):
        if kind == "complex":  # [real, imag]: two floats (literal_values_problem checks them)
            if not (isinstance(v, list) and len(v) == 2):
                raise TestCaseFormatError(f"{path}[{i}]: expected [real, imag] for {spec.dtype}, "
                                          f"got {v!r:.40}")
            parts = [_float_from_json(p, True, spec.dtype, f"{path}[{i}]") for p in v]
            if not all(type(p) is float for p in parts):
                raise TestCaseFormatError(f"{path}[{i}]: the parts of a {spec.dtype} value are "
                                          f"floats, got {v!r:.40}")
            v = complex(*parts)
        else:
            v = _float_from_json(v, kind == "float", spec.dtype, f"{path}[{i}]")
        values.append(v)
    values = tuple(values)
    problem = literal_values_problem(spec, values)
    if problem:
        raise TestCaseFormatError(f"{path}: {problem}")
    return values


def to_dict(case: TestCase, with_specs: bool = True) -> dict:
    g, s = case.graph, case.settings
    inputs = []
    for inp in g.inputs:
        item = _spec_to_dict(inp.spec)
        if isinstance(inp.spec, TensorSpec):
            item["fill"] = inp.fill
            if inp.param:  # written only when set: cases without parameters encode as before
                item["param"] = True
            if inp.values is not None:  # likewise: seeded inputs encode (and hash) as before
                problem = literal_values_problem(inp.spec, inp.values)
                if problem:
                    raise TestCaseFormatError(f"cannot encode input values: {problem}")
                item["values"] = values_to_json(inp.values)
        else:
            item["value"] = inp.value
        inputs.append(item)
    nodes = []
    for node in g.nodes:
        item = {"op": node.op, "args": list(node.args),
                "attrs": {k: _plain(v) for k, v in node.attrs.items()}}
        if with_specs and node.out is not None:
            item["out"] = _spec_to_dict(node.out)
        nodes.append(item)
    settings = {"backend": s.backend, "mode": s.mode, "dynamic": s.dynamic,
                "fullgraph": s.fullgraph, "mark_dynamic": [list(p) for p in s.mark_dynamic],
                "inductor_config": {k: _plain(v) for k, v in s.inductor_config.items()},
                "dynamo_config": {k: _plain(v) for k, v in s.dynamo_config.items()},
                "device": s.device, "backward": s.backward}
    if s.metamorphic is not None:  # written only when set: other cases encode (and hash) as before
        settings["metamorphic"] = s.metamorphic
    return {"format": FORMAT, "version": SCHEMA_VERSION, "seed": case.seed, "settings": settings,
            "inputs": inputs, "nodes": nodes, "outputs": list(g.outputs)}


def canonical_json(obj: dict) -> bytes:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False).encode("ascii")
    except ValueError as exc:  # NaN/Inf sneaked into a float field
        raise TestCaseFormatError(f"cannot encode test case: {exc}") from None


def encode(case: TestCase) -> bytes:
    """The stored form: magic + version + zlib(canonical JSON)."""
    return MAGIC + bytes([SCHEMA_VERSION]) + zlib.compress(canonical_json(to_dict(case)), 6)


def to_json(case: TestCase) -> str:
    """The human form: indented JSON with the same content as the stored form."""
    return json.dumps(to_dict(case), indent=2, sort_keys=False, allow_nan=False) + "\n"


def case_id(case: TestCase) -> str:
    return hashlib.sha256(canonical_json(to_dict(case, with_specs=False))).hexdigest()[:16]


# ----------------------------------------------------------------------------- decoding


def decode(data: bytes) -> TestCase:
    """Stored form or JSON form (detected from the first bytes) -> validated TestCase."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TestCaseFormatError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_ENCODED_BYTES:
        raise TestCaseFormatError(f"test case too large ({len(data)} bytes > {MAX_ENCODED_BYTES})")
    if data.startswith(MAGIC):
        if len(data) < len(MAGIC) + 1:
            raise TestCaseFormatError("truncated test case: no version byte after the magic")
        version = data[len(MAGIC)]
        if version != SCHEMA_VERSION:
            raise TestCaseFormatError(
                f"unsupported test-case schema version {version} (this covfuzz reads {SCHEMA_VERSION})")
        text = _inflate(data[len(MAGIC) + 1:])
    elif data.lstrip()[:1] in (b"{", b"["):
        text = data
    else:
        raise TestCaseFormatError("not a covfuzz test case: neither the stored form (magic CFZT) "
                                  "nor JSON")
    return from_json_text(text)


def _inflate(payload: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(payload, MAX_DECODED_BYTES)
    except zlib.error as exc:
        raise TestCaseFormatError(f"corrupt test case: zlib: {exc}") from None
    if inflater.unconsumed_tail:
        raise TestCaseFormatError(f"test case expands beyond {MAX_DECODED_BYTES} bytes")
    if not inflater.eof:
        raise TestCaseFormatError("truncated test case: compressed stream ends early")
    if inflater.unused_data:  # one stored case is exactly one zlib stream
        raise TestCaseFormatError(f"corrupt test case: {len(inflater.unused_data)} bytes after "
                                  "the compressed stream")
    return text


def from_json_text(text: bytes | str) -> TestCase:
    """The JSON form (UTF-8) -> validated TestCase; size and nesting depth are bounded before
    parsing (`covfuzz.jsondata`), so deep nesting is a TestCaseFormatError, not a RecursionError."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")  # a lone surrogate then fails as not UTF-8
    obj = jsondata.loads(text, "test case JSON", TestCaseFormatError, max_bytes=MAX_DECODED_BYTES)
    return from_dict(obj)


class _Reader:
    """Typed field access that turns every surprise into TestCaseFormatError with a path."""

    def __init__(self, obj, path: str):
        if not isinstance(obj, dict):
            raise TestCaseFormatError(f"{path}: expected an object, got {type(obj).__name__}")
        self.obj, self.path = obj, path

    def _get(self, key, default):
        if key not in self.obj:
            if default is _REQUIRED:
                raise TestCaseFormatError(f"{self.path}.{key}: missing")
            return default
        return self.obj[key]

    def only(self, *keys):
        extra = set(self.obj) - set(keys)
        if extra:
            raise TestCaseFormatError(f"{self.path}: unexpected field(s) {sorted(map(str, extra))}")

    def int(self, key, lo, hi, default=None):
        value = self._get(key, _REQUIRED if default is None else default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise TestCaseFormatError(f"{self.path}.{key}: expected an int in [{lo}, {hi}], got {value!r:.80}")
        return value

    def bool(self, key, default=None, optional=False):
        value = self._get(key, _REQUIRED if default is None and not optional else default)
        if value is None and optional:
            return None
        if not isinstance(value, bool):
            raise TestCaseFormatError(f"{self.path}.{key}: expected a bool, got {value!r:.80}")
        return value

    def choice(self, key, choices, default=None, required=True):
        value = self._get(key, _REQUIRED if required else default)
        if isinstance(value, bool) or value not in choices:
            raise TestCaseFormatError(
                f"{self.path}.{key}: {value!r:.80} is not one of {[c for c in choices]}")
        return value

    def list(self, key, max_len):
        value = self._get(key, _REQUIRED)
        if not isinstance(value, list):
            raise TestCaseFormatError(f"{self.path}.{key}: expected a list, got {type(value).__name__}")
        if len(value) > max_len:
            raise TestCaseFormatError(f"{self.path}.{key}: {len(value)} items, at most {max_len}")
        return value

    def dict(self, key, default):
        value = self._get(key, default)
        if not isinstance(value, dict):
            raise TestCaseFormatError(f"{self.path}.{key}: expected an object")
        return value


_REQUIRED = object()


def _int_list(values, path, lo, hi, max_len=MAX_RANK) -> tuple[int, ...]:
    if not isinstance(values, list) or len(values) > max_len:
        raise TestCaseFormatError(f"{path}: expected a list of at most {max_len} ints")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise TestCaseFormatError(f"{path}: {v!r:.40} is not an int in [{lo}, {hi}]")
    return tuple(values)


def _spec_from_dict(obj, path) -> TensorSpec | ScalarSpec:
    r = _Reader(obj, path)
    kind = r.choice("kind", ("tensor",) + SCALAR_KINDS)
    if kind != "tensor":
        return ScalarSpec(kind)
    shape = _int_list(r._get("shape", _REQUIRED), f"{path}.shape", 0, MAX_DIM)
    stride = _int_list(r._get("stride", _REQUIRED), f"{path}.stride", 0, MAX_NUMEL)
    if len(stride) != len(shape):
        raise TestCaseFormatError(f"{path}: shape has {len(shape)} dims but stride has {len(stride)}")
    offset = r.int("offset", 0, MAX_NUMEL, default=0)
    if numel(shape) > MAX_NUMEL or storage_numel(shape, stride, offset) > MAX_NUMEL:
        raise TestCaseFormatError(f"{path}: tensor of shape {list(shape)} is too large "
                                  f"(limit {MAX_NUMEL} elements)")
    return TensorSpec(shape, stride, r.choice("dtype", DTYPES), offset,
                      r.choice("device", DEVICES), r.bool("requires_grad", default=False))


def _literal(value, path):
    """Attribute / config values: int, float, bool, str, None, or lists of those (one level)."""
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, str) and len(value) > 64:
            raise TestCaseFormatError(f"{path}: string longer than 64 characters")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SEED:
            raise TestCaseFormatError(f"{path}: integer out of range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TestCaseFormatError(f"{path}: non-finite float")
        return value
    if isinstance(value, list):
        if len(value) > 16:
            raise TestCaseFormatError(f"{path}: list longer than 16")
        # Checked before recursing: a dict from_dict is given directly may nest without bound.
        if any(isinstance(v, (list, tuple, dict)) for v in value):
            raise TestCaseFormatError(f"{path}: nested lists or objects are not allowed")
        return tuple(_literal(v, f"{path}[{i}]") for i, v in enumerate(value))
    raise TestCaseFormatError(f"{path}: {type(value).__name__} is not a literal")


def from_dict(obj) -> TestCase:
    r = _Reader(obj, "testcase")
    r.only("format", "version", "seed", "settings", "inputs", "nodes", "outputs")
    if r._get("format", _REQUIRED) != FORMAT:
        raise TestCaseFormatError(f"testcase.format: expected {FORMAT!r}")
    version = r._get("version", _REQUIRED)
    if type(version) is not int or version != SCHEMA_VERSION:  # 1.0 == True == 1 in Python
        raise TestCaseFormatError(
            f"unsupported test-case schema version {version!r:.20} (this covfuzz reads {SCHEMA_VERSION})")
    seed = r.int("seed", 0, MAX_SEED)
    settings = _settings_from_dict(r.dict("settings", {}))

    inputs = []
    for i, item in enumerate(r.list("inputs", MAX_INPUTS)):
        path = f"inputs[{i}]"
        ir = _Reader(item, path)
        spec = _spec_from_dict(item, path)
        if isinstance(spec, TensorSpec):
            ir.only("kind", "shape", "stride", "offset", "dtype", "device", "requires_grad", "fill",
                    "param", "values")
            values = None
            if "values" in item:  # absent (never null) for inputs drawn from the seed
                values = values_from_json(item["values"], spec, f"{path}.values")
            inputs.append(Input(spec, ir.choice("fill", FILLS),
                                param=ir.bool("param", default=False), values=values))
        else:
            ir.only("kind", "value")
            value = ir._get("value", _REQUIRED)
            expected = {"int": int, "float": (int, float), "bool": bool}[spec.kind]
            if not isinstance(value, expected) or (spec.kind != "bool" and isinstance(value, bool)):
                raise TestCaseFormatError(f"{path}.value: expected a {spec.kind}")
            inputs.append(Input(spec, "normal", _literal(value, f"{path}.value")))

    nodes = []
    for j, item in enumerate(r.list("nodes", MAX_NODES)):
        path = f"nodes[{j}]"
        nr = _Reader(item, path)
        nr.only("op", "args", "attrs", "out")
        name = nr._get("op", _REQUIRED)
        if not isinstance(name, str):
            raise TestCaseFormatError(f"{path}.op: expected a string")
        reason = ops.unavailable_reason(name)
        if reason:
            raise TestCaseFormatError(f"{path}.op: {reason[:120]}")
        op = ops.get_op(name)
        value_id = len(inputs) + j
        args = _int_list(nr._get("args", _REQUIRED), f"{path}.args", 0, value_id - 1, max_len=8)
        if len(args) != len(op.args):
            raise TestCaseFormatError(f"{path}: {name} takes {len(op.args)} argument(s), got {len(args)}")
        raw_attrs = nr.dict("attrs", {})
        attrs = {str(k): _literal(v, f"{path}.attrs.{k}") for k, v in raw_attrs.items()}
        reason = op.check_attrs(attrs)
        if reason:
            raise TestCaseFormatError(f"{path} ({name}): {reason}")
        out = _spec_from_dict(item["out"], f"{path}.out") if item.get("out") is not None else None
        nodes.append(Node(name, args, attrs, out))

    num_values = len(inputs) + len(nodes)
    outputs = _int_list(r._get("outputs", _REQUIRED), "testcase.outputs", 0, max(num_values - 1, 0),
                        max_len=MAX_OUTPUTS)
    if not outputs or num_values == 0:
        raise TestCaseFormatError("testcase.outputs: a test case needs at least one output")
    for input_index, dim in settings.mark_dynamic:
        spec = inputs[input_index].spec if input_index < len(inputs) else None
        if not isinstance(spec, TensorSpec) or dim >= spec.rank:
            raise TestCaseFormatError(f"settings.mark_dynamic: ({input_index}, {dim}) names no input dim")
        if inputs[input_index].param:
            raise TestCaseFormatError(f"settings.mark_dynamic: input {input_index} is a parameter "
                                      "(parameters have static shapes)")
    return TestCase(Graph(tuple(inputs), tuple(nodes), outputs), settings, seed)


def _settings_from_dict(obj) -> CompileSettings:
    r = _Reader(obj, "settings")
    r.only("backend", "mode", "dynamic", "fullgraph", "mark_dynamic", "inductor_config",
           "dynamo_config", "device", "backward", "metamorphic")
    marks = []
    for i, pair in enumerate(r.list("mark_dynamic", 64) if "mark_dynamic" in obj else []):
        marks.append(_int_list(pair, f"settings.mark_dynamic[{i}]", 0, MAX_INPUTS, max_len=2))
        if len(marks[-1]) != 2:
            raise TestCaseFormatError(f"settings.mark_dynamic[{i}]: expected [input, dim]")
    configs = {}
    for section in ("inductor_config", "dynamo_config"):
        raw = r.dict(section, {})
        if len(raw) > 64:
            raise TestCaseFormatError(f"settings.{section}: too many overrides")
        values = {}
        for key, value in raw.items():
            value = _literal(value, f"settings.{section}.{key}")
            reason = check_config_override(section, key, value)
            if reason:
                raise TestCaseFormatError(f"settings.{section}.{key}: {reason}")
            values[key] = value
        configs[section] = values
    return CompileSettings(
        backend=r.choice("backend", BACKENDS, "inductor", required=False),
        mode=r.choice("mode", MODES, None, required=False),
        dynamic=r.bool("dynamic", optional=True),
        fullgraph=r.bool("fullgraph", default=False),
        mark_dynamic=tuple(marks),
        inductor_config=configs["inductor_config"],
        dynamo_config=configs["dynamo_config"],
        device=r.choice("device", DEVICES, "cpu", required=False),
        backward=r.bool("backward", default=False),
        metamorphic=r.choice("metamorphic", (None,) + METAMORPHIC_VARIANTS, None, required=False),
    )
