"""Complex, wide unsigned and float8 dtypes (issue 18): values drawn and serialized, the oracle
on complex outputs (by parts), views between real and complex, a real torch.compile of a
complex graph, and generation reaching every dtype the catalog declares."""

import json
import math
import random
import warnings

import pytest
import torch

from covfuzz import codegen, ops, serialize
from covfuzz.errors import CovfuzzError, InvalidGraph, TestCaseFormatError
from covfuzz.generator import GenOptions, generate
from covfuzz.ir import (COMPLEX_DTYPES, DTYPES, FLOAT8_DTYPES, UINT_DTYPES, CompileSettings,
                        Graph, Input, Node, TensorSpec, TestCase, literal_values_problem)
from covfuzz.ops.base import DTYPE_CLASSES
from covfuzz.propagate import propagate
from covfuzz.triage.reduce_values import is_special, pass_values
from covfuzz.triage.repro import divergence
from harness import oracle

from eager_run import run_eagerly

NAN, INF = math.nan, math.inf


def _case(inputs, nodes, outputs, seed=3, **settings) -> TestCase:
    graph = Graph(tuple(inputs), tuple(nodes), tuple(outputs))
    return propagate(TestCase(graph, CompileSettings(**settings), seed))


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The bytes of a tensor (NaN payloads and -0.0 included)."""
    t = torch.view_as_real(t) if t.is_complex() else t
    return t.contiguous().view(torch.uint8)


# ----------------------------------------------------------------------------- serialization


def _literal_case() -> TestCase:
    c64 = (complex(1.0, NAN), complex(-0.0, INF), complex(0.5, -2.0), complex(-INF, 0.25))
    return _case([Input(TensorSpec.contiguous((4,), "complex64"), values=c64),
                  Input(TensorSpec.contiguous((3,), "uint64"), values=(0, 7, 2 ** 64 - 1)),
                  Input(TensorSpec.contiguous((2,), "uint16"), fill="edge"),
                  Input(TensorSpec.contiguous((3,), "float8_e4m3fn"), values=(448.0, -0.0, NAN)),
                  Input(TensorSpec.contiguous((2,), "complex128"), fill="edge")],
                 [Node("torch.view_as_real", (0,), {}), Node("torch.clone", (1,), {}),
                  Node("torch.clone", (3,), {})], [5, 6, 7])


def test_complex_unsigned_and_float8_specs_round_trip():
    case = _literal_case()
    data = serialize.encode(case)
    back = serialize.decode(data)
    assert serialize.encode(back) == data
    assert serialize.case_id(back) == serialize.case_id(case)
    values = back.graph.inputs[0].values
    assert all(type(v) is complex for v in values)
    assert math.isnan(values[0].imag) and math.copysign(1, values[1].real) < 0
    assert back.graph.inputs[1].values[2] == 2 ** 64 - 1
    assert [i.spec.dtype for i in back.graph.inputs] == [
        "complex64", "uint64", "uint16", "float8_e4m3fn", "complex128"]
    stored = json.loads(serialize.to_json(case))["inputs"][0]["values"]
    assert stored[0] == [1.0, "nan"] and stored[1] == [-0.0, "inf"]  # [real, imag] pairs
    # the program builds the literal values bit for bit
    built = codegen.build_input(back, 0)
    assert torch.equal(_bits(built), _bits(torch.tensor(list(values), dtype=torch.complex64)))
    assert codegen.build_input(back, 1).tolist() == [0, 7, 2 ** 64 - 1]


def _decode_error(obj) -> str:
    with pytest.raises(TestCaseFormatError) as info:
        serialize.decode(json.dumps(obj).encode())
    assert isinstance(info.value, CovfuzzError)
    text = str(info.value)
    assert "\n" not in text  # one line
    return text


def test_bad_dtypes_and_complex_values_are_one_line_errors():
    base = json.loads(serialize.to_json(_literal_case()))
    for bad_dtype in ("complex32", "uint128", "float8_e8m0fnu", 5, None):
        obj = json.loads(json.dumps(base))
        obj["inputs"][2]["dtype"] = bad_dtype
        assert "dtype" in _decode_error(obj)
    for bad_values, fragment in (
            ([[1.0, 2.0]] * 3 + [1.0], "expected [real, imag]"),
            ([[1.0, 2.0, 3.0]] * 4, "expected [real, imag]"),
            ([[1, 2]] * 4, "floats"),
            ([["nan", "zero"]] * 4, "not a value"),
            ([[0.1, 0.0]] * 4, "not exactly representable in float32"),
            ([[1e300, 0.0]] * 4, "out of the range of float32")):
        obj = json.loads(json.dumps(base))
        obj["inputs"][0]["values"] = bad_values
        assert fragment in _decode_error(obj)
    obj = json.loads(json.dumps(base))
    obj["inputs"][1]["values"] = [0, 1, 2 ** 64]
    assert "expected an int in [0, 18446744073709551615]" in _decode_error(obj)
    obj = json.loads(json.dumps(base))
    obj["inputs"][3]["values"] = ["inf", 1.0, 2.0]  # e4m3fn has no infinity
    assert "out of the range of float8_e4m3fn" in _decode_error(obj)
    spec = TensorSpec.contiguous((1,), "float8_e5m2")
    assert literal_values_problem(spec, (0.3,)) and not literal_values_problem(spec, (INF,))


# ----------------------------------------------------------------------------- values


def test_complex_inputs_hold_special_values_in_either_part():
    case = _case([Input(TensorSpec.contiguous((256,), "complex64"), fill="edge")],
                 [Node("torch.view_as_real", (0,), {})], [1], seed=5)
    x = codegen.build_input(case, 0)
    parts = torch.view_as_real(x)
    for k in (0, 1):
        assert parts[:, k].isnan().any() and parts[:, k].isinf().any()
    assert set(oracle.value_classes(x)) >= {"nan", "+inf", "-inf", "-0.0"}
    # a compact repro draws the same storage as make_tensor, bit for bit
    namespace: dict = {}
    exec("import torch\n" + "\n".join(codegen._seeded_tensor_lines(case, 0, "x", "")), namespace)  # noqa: S102
    assert torch.equal(_bits(namespace["x"]), _bits(x))


def test_unsigned_edge_values_reach_the_dtype_maximum():
    for dtype in UINT_DTYPES:
        case = _case([Input(TensorSpec.contiguous((200,), dtype), fill="edge")],
                     [Node("torch.clone", (0,), {})], [1], seed=11)
        x = codegen.build_input(case, 0)
        assert x.dtype == getattr(torch, dtype) and (x == torch.iinfo(x.dtype).max).any()
        assert oracle.value_classes(x) == ["int_max", "zero"]


def test_reduction_makes_complex_inputs_literal_and_keeps_special_parts():
    case = _case([Input(TensorSpec.contiguous((8,), "complex64"), fill="edge")],
                 [Node("torch.view_as_real", (0,), {})], [1], seed=5)
    candidates = list(pass_values(case))
    literal = candidates[0].graph.inputs[0].values  # the same values, spelled out
    assert all(type(v) is complex for v in literal)
    assert torch.equal(_bits(codegen.build_input(candidates[0], 0)), _bits(codegen.build_input(case, 0)))
    special = [is_special(v, "complex64") for v in literal]
    assert any(special) and not all(special)
    steps = list(pass_values(candidates[0]))  # the reducer restarts on the literal case
    simpler = steps[0].graph.inputs[0].values  # ordinary values to 0, the specials kept
    for v, was, sp in zip(simpler, literal, special):
        assert (v == was or math.isnan(v.real) or math.isnan(v.imag)) if sp else v == 0j
    for candidate in candidates + steps:
        spec = candidate.graph.inputs[0].spec
        assert literal_values_problem(spec, candidate.graph.inputs[0].values) is None


# ----------------------------------------------------------------------------- oracle


def _judge(e, c, r):
    return oracle.compare_outputs([e], [c], [r])


def test_oracle_complex_imaginary_part_beyond_tolerance_is_a_mismatch():
    e = torch.complex(torch.linspace(-2, 2, 12), torch.linspace(1, 3, 12)).reshape(3, 4)
    ref = e.to(torch.complex128)  # the float64 reference agrees with eager
    near = e + 1e-6j  # within float32's tolerance in the imaginary part
    assert _judge(e, near, ref) is None
    far = e.clone()
    far[1, 2] += 0.5j
    d = _judge(e, far, ref)
    assert d is not None and d["kind"] == "value" and d["part"] == "imag"
    assert d["index"] == [1, 2] and d["dtype"] == "complex64" and d["shape"] == [3, 4]
    assert d["rtol"] == oracle.tolerance(torch.float32)[0]
    # complex128 is judged with float64's tolerance: 1e-6 relative is past it
    e128 = e.to(torch.complex128)
    d = _judge(e128, e128 * (1 + 1e-6), e128)
    assert d is not None and d["rtol"] == oracle.tolerance(torch.float64)[0]


def test_oracle_complex_nan_in_one_part_only():
    e = torch.complex(torch.ones(6), torch.full((6,), 2.0))
    c = e.clone()
    torch.view_as_real(c)[4, 1] = NAN  # the imaginary part of element 4
    d = _judge(e, c, e.to(torch.complex128))
    assert d["kind"] == "nonfinite" and d["index"] == [4] and d["part"] == "imag"
    assert d["compiled"] == "nan" and d["eager"] == 2.0
    # the reference holds that NaN too: eager is the one that deviates, not compiled
    r = e.to(torch.complex128)
    torch.view_as_real(r)[4, 1] = NAN
    assert _judge(e, c, r) is None
    assert oracle.bitwise_equal([c], [c.clone()]) and not oracle.bitwise_equal([c], [e])
    assert oracle.error_ratio(e, e + 1e-5) == pytest.approx(1e-5 / (1e-5 + 1e-4), rel=0.05)


def _script_verdict(eager, compiled, reference) -> str | None:
    """What a compact repro's check says (None: it passes), as tests/test_compact_repro.py runs it."""
    loop = (codegen.COMPACT_TOL + "\nfor name, e, c, r in zip(names, eager, compiled, reference):\n"
            + codegen.COMPACT_CHECK.strip("\n").replace('print("eager and compiled agree")', ""))
    ns = {"torch": torch, "names": [f"output {i}" for i in range(len(eager))], "eager": eager,
          "compiled": compiled, "reference": reference}
    try:
        exec(compile(loop, "check.py", "exec"), ns)  # noqa: S102
    except AssertionError as exc:
        return str(exc)
    return None


def test_repro_check_judges_complex_outputs_as_the_oracle_does():
    """A repro's check fails exactly when the oracle reports, over random complex outputs (noise
    and NaN/inf moved in one part), and names the element and the part it differs in."""
    torch.manual_seed(0)
    rng = random.Random(0)
    verdicts = {"pass": 0, "fail": 0}
    for _ in range(300):
        n = rng.choice([1, 4, 11, 40])
        r = torch.randn(n, dtype=torch.complex128)
        e = (r + torch.randn(n, dtype=torch.complex128) * rng.choice([0, 1e-6])).to(torch.complex64)
        c = (r + torch.randn(n, dtype=torch.complex128) * rng.choice([0, 1e-6, 1e-4, 1e-2, 1])
             ).to(torch.complex64)
        at, part = rng.randrange(n), rng.randrange(2)
        special = rng.choice([NAN, INF, -INF])
        move = rng.choice(["none", "compiled", "reference"])
        if move == "compiled":
            torch.view_as_real(c)[at, part] = special
        elif move == "reference":
            torch.view_as_real(r)[at, part] = special
            torch.view_as_real(e)[at, part] = special
        harness = oracle.compare_outputs([e], [c], [r])
        script = _script_verdict([e], [c], [r])
        assert (harness is None) == (script is None), (e, c, r, harness, script)
        verdicts["pass" if script is None else "fail"] += 1
    assert min(verdicts.values()) > 30  # both verdicts were exercised
    e = torch.tensor([1 + 2j, 3 + 4j])
    c = torch.tensor([1 + 2j, complex(3, NAN)])
    message = _script_verdict([e], [c], [e.to(torch.complex128)])
    assert message == ("output 0: imaginary part at [1] (1 of 2 differ): eager 4.0, compiled nan, "
                       "float64 reference 4.0")
    found = divergence("AssertionError: " + message)
    assert (found["output"], found["at"], found["compiled"]) == (0, "1", "nan")


# ----------------------------------------------------------------------------- views


def test_view_as_real_and_view_as_complex_propagate_and_run():
    case = _case([Input(TensorSpec.contiguous((3, 4, 2), "float32"))],
                 [Node("torch.view_as_complex", (0,), {}),
                  Node("torch.view_as_real", (1,), {}),
                  Node("Tensor.view.dtype", (1,), {"dtype": "float32"}),
                  Node("torch.imag", (1,), {})], [2, 3, 4])
    outs = [n.out for n in case.graph.nodes]
    assert [(o.dtype, o.shape) for o in outs] == [
        ("complex64", (3, 4)), ("float32", (3, 4, 2)), ("float32", (3, 8)), ("float32", (3, 4))]
    assert outs[3].stride == (8, 2)  # a view: every other float of the input
    _, (real, doubled, imag) = run_eagerly(case)
    x = codegen.build_input(case, 0)
    assert torch.equal(real, x) and torch.equal(doubled, x.reshape(3, 8))
    assert torch.equal(imag, x[..., 1])
    # view_as_complex needs a last dim of 2 with stride 1: propagation refuses the rest
    for spec in (TensorSpec.contiguous((3, 4), "float32"), TensorSpec((3, 2), (1, 3), "float32"),
                 TensorSpec.contiguous((3, 2), "float16")):
        with pytest.raises(InvalidGraph):
            _case([Input(spec)], [Node("torch.view_as_complex", (0,), {})], [1])


# ----------------------------------------------------------------------------- compile


@pytest.mark.slow
def test_compiled_complex_graph_passes_the_oracle():
    """A real torch.compile of a small complex graph (complex inputs with special values in
    either part, complex arithmetic, views to and from real); the oracle judges its outputs."""
    from harness.execute import execute
    case = _case([Input(TensorSpec.contiguous((4, 6), "complex64")),
                  Input(TensorSpec.contiguous((4, 6, 2), "float32"))],
                 [Node("torch.view_as_complex", (1,), {}),
                  Node("torch.mul", (0, 2), {}),
                  Node("torch.add", (3, 0), {"alpha": 2}),
                  Node("torch.view_as_real", (4,), {})], [4, 5], seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = execute(serialize.encode(case))
    assert result["outcome"] == "pass", result["message"]
    script = codegen.compact_program(case)  # the repro judges complex outputs by parts too
    assert "view_as_real(t.resolve_conj()" in script


# ----------------------------------------------------------------------------- generation


def test_every_ir_dtype_is_declared_and_generated():
    declared = {d for op in ops.AVAILABLE.values() for a in op.args if a.kind != "scalar"
                for d in DTYPE_CLASSES[a.dtypes]}
    assert declared == set(DTYPES)
    seen, n = set(), 300
    for seed in range(n):
        case = generate(seed, GenOptions())
        propagate(serialize.decode(serialize.encode(case)))  # every case valid
        seen |= {i.spec.dtype for i in case.graph.inputs if isinstance(i.spec, TensorSpec)}
        seen |= {node.out.dtype for node in case.graph.nodes if isinstance(node.out, TensorSpec)}
    assert seen == set(DTYPES), set(DTYPES) - seen
    assert set(COMPLEX_DTYPES) | set(UINT_DTYPES) | set(FLOAT8_DTYPES) <= seen
