"""Explicit literal input values: exact round trips, strict decoding, programs that really build
them, and the `values` reduction pass that turns seeded inputs into a few readable specials."""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import warnings

import pytest
import torch

from covfuzz import codegen, serialize
from covfuzz.errors import TestCaseFormatError
from covfuzz.ir import (MAX_LITERAL_VALUES, CompileSettings, Graph, Input, Node, ScalarSpec,
                        TensorSpec, TestCase, literal_values_problem)
from covfuzz.propagate import propagate
from covfuzz.triage.reduce_values import (is_special, literal_candidate, pass_values,
                                          round_values)

NAN, INF = float("nan"), float("inf")
F32_TINY_SUB = struct.unpack("<f", struct.pack("<I", 1))[0]  # the smallest float32 subnormal
F32_MAX = struct.unpack("<f", struct.pack("<I", 0x7F7FFFFF))[0]


def _bits(values) -> list:
    """Values compared bit for bit: nan == nan, -0.0 != 0.0, 1 != 1.0 != True."""
    return [(type(v).__name__, struct.pack("<d", v) if type(v) is float else v) for v in values]


def _raw(tensor: torch.Tensor) -> torch.Tensor:
    """The bytes of a tensor's elements: equal bytes, equal values (NaN and -0.0 included)."""
    return tensor.detach().contiguous().view(torch.uint8)


def _case(inputs, nodes, outputs, seed=7, **settings) -> TestCase:
    return propagate(TestCase(Graph(tuple(inputs), tuple(nodes), tuple(outputs)),
                              CompileSettings(**settings), seed))


def _literal_case() -> TestCase:
    """Literal inputs of every dtype class, strided and offset, with the awkward floats."""
    f32 = TensorSpec((2, 2), (1, 2), "float32", 1)  # storage of 5: elements 1..4 are viewed
    f16 = TensorSpec.contiguous((3,), "float16")
    bf16 = TensorSpec.contiguous((2,), "bfloat16")
    i8 = TensorSpec.contiguous((4,), "int8")
    i64 = TensorSpec.contiguous((2,), "int64")
    b8 = TensorSpec.contiguous((2,), "bool")
    inputs = [Input(f32, values=(9.0, 1.0, NAN, -0.0, INF)),
              Input(f16, values=(65504.0, 5.960464477539063e-08, -INF)),
              Input(bf16, values=(1.5, -3.3895313892515355e+38)),
              Input(i8, values=(-128, 127, 0, -1)),
              Input(i64, values=(-(1 << 63), (1 << 63) - 1)),
              Input(b8, values=(True, False)),
              Input(TensorSpec.contiguous((2,), "float32"), values=(F32_TINY_SUB, -F32_MAX))]
    nodes = [Node("torch.neg", (i,), {}) for i in (0, 1, 2, 3, 4)] + \
            [Node("torch.logical_not", (5,), {}), Node("torch.neg", (6,), {})]
    return _case(inputs, nodes, range(7, 14))


# ----------------------------------------------------------------------------- serialization


def test_round_trip_is_exact_for_nan_inf_negative_zero_and_limits():
    case = _literal_case()
    data = serialize.encode(case)
    back = serialize.decode(data)
    for a, b in zip(case.graph.inputs, back.graph.inputs):
        assert _bits(a.values) == _bits(b.values)
    assert serialize.encode(back) == data
    assert serialize.encode(serialize.decode(serialize.to_json(case).encode())) == data
    assert serialize.case_id(back) == serialize.case_id(case)
    item = json.loads(serialize.to_json(case))["inputs"][0]
    assert item["values"] == [9.0, 1.0, "nan", -0.0, "inf"]  # JSON has no NaN: spelled out
    # the same case drawn from the seed is another case
    seeded = dataclasses.replace(case.graph, inputs=tuple(
        dataclasses.replace(i, values=None) for i in case.graph.inputs))
    assert serialize.case_id(case.replace(graph=seeded)) != serialize.case_id(case)


def test_cases_without_values_keep_their_ids():
    """Pinned from covfuzz before literal values existed: `values` is absent when None, so every
    stored case (corpus keys, bucket examples) keeps its id."""
    inputs = (Input(TensorSpec.contiguous((3, 4))),
              Input(TensorSpec((4,), (2,), "float16", 1, requires_grad=True), fill="edge"),
              Input(TensorSpec.contiguous((2,), "int64"), fill="index"),
              Input(ScalarSpec("float"), value=0.5), Input(TensorSpec.contiguous((4,)), param=True))
    g = Graph(inputs, (Node("torch.index_select", (0, 2), {"dim": 0}), Node("torch.abs", (1,), {})),
              (5, 6))
    case = TestCase(g, CompileSettings(backward=True), seed=12345)
    assert serialize.case_id(case) == "4e68faa3b9f3b395"
    assert all("values" not in item for item in serialize.to_dict(case)["inputs"])


def _hostile(input_index, values):
    obj = json.loads(serialize.to_json(_literal_case()))
    if values is _DELETE:
        obj["inputs"][input_index].pop("values")
    else:
        obj["inputs"][input_index]["values"] = values
    return json.dumps(obj).encode()


_DELETE = object()


@pytest.mark.parametrize("index,values,fragment", [
    (0, [1.0, 2.0], "2 values, but the storage of this spec holds 5"),
    (0, [1.0, "nan", -0.0, "inf", "NaN"], "is not a value of float32"),
    (0, [1.0, 1, 2.0, 3.0, 4.0], "expected a float for float32"),
    (0, [1.0, True, 2.0, 3.0, 4.0], "expected a float for float32"),
    (0, [0.1, 1.0, 2.0, 3.0, 4.0], "not exactly representable in float32"),
    (0, [1e39, 1.0, 2.0, 3.0, 4.0], "out of the range of float32"),
    (0, [[1.0], 1.0, 2.0, 3.0, 4.0], "expected a float"),
    (0, None, "expected a list"),
    (0, "nan", "expected a list"),
    (1, [65520.0, 1.0, 1.0], "out of the range of float16"),
    (2, [1.1, 1.0], "not exactly representable in bfloat16"),
    (3, [128, 0, 0, 0], "expected an int in [-128, 127] for int8"),
    (3, ["nan", 0, 0, 0], "is not a value of int8"),
    (3, [1.0, 0, 0, 0], "expected an int"),
    (3, [False, 0, 0, 0], "expected an int"),
    (4, [1 << 63, 0], "expected an int in"),
    (5, [1, 0], "expected a bool for bool"),
    (0, [0.0] * (MAX_LITERAL_VALUES + 1), f"at most {MAX_LITERAL_VALUES}"),
])
def test_hostile_values_are_refused_naming_the_field(index, values, fragment):
    with pytest.raises(TestCaseFormatError) as info:
        serialize.decode(_hostile(index, values))
    assert fragment in str(info.value) and f"inputs[{index}].values" in str(info.value), str(info.value)


def test_values_on_scalars_and_large_storage_are_refused():
    obj = json.loads(serialize.to_json(_case([Input(ScalarSpec("float"), value=0.5),
                                               Input(TensorSpec.contiguous((300,)))],
                                              [Node("torch.mul", (1, 0), {})], [2])))
    obj["inputs"][0]["values"] = [1.0]
    with pytest.raises(TestCaseFormatError, match="unexpected field"):
        serialize.decode(json.dumps(obj).encode())
    del obj["inputs"][0]["values"]
    obj["inputs"][1]["values"] = [0.0] * 256
    with pytest.raises(TestCaseFormatError, match="allowed up to 256"):
        serialize.decode(json.dumps(obj).encode())


def test_in_process_cases_with_bad_values_never_become_code():
    """A case built in-process never went through the decoder: encode and codegen check too."""
    good = _literal_case()
    for bad in [(1.0, "__import__('os')", 2.0, 3.0, 4.0), (1.0, 2.0, 3.0, 4.0), [9.0, 1.0, 2.0, 3.0, 4.0]]:
        inputs = (dataclasses.replace(good.graph.inputs[0], values=bad),) + good.graph.inputs[1:]
        case = good.replace(graph=dataclasses.replace(good.graph, inputs=inputs))
        assert literal_values_problem(inputs[0].spec, bad)
        with pytest.raises(TestCaseFormatError):
            serialize.encode(case)
        with pytest.raises(TestCaseFormatError):
            codegen.input_call(case, 0)


# ----------------------------------------------------------------------------- programs


def test_program_spells_the_values_and_builds_them_bit_for_bit():
    case = _literal_case()
    src = codegen.program(case)
    assert ("torch.tensor([9.0, 1.0, float('nan'), -0.0, float('inf')], dtype=torch.float32)"
            ".to(device).as_strided((2, 2), (1, 2), 1)") in src
    assert "float('-inf')" in src and "-9223372036854775808" in src and "[True, False]" in src
    ns = {"__name__": "covfuzz_literal_test"}
    exec(compile(src, "literal_case.py", "exec"), ns)  # noqa: S102 - generated from a checked case
    built = ns["make_inputs"]("cpu")
    for i, tensor in enumerate(built):
        mine = codegen.build_input(case, i)
        assert tensor.dtype == mine.dtype and tensor.stride() == mine.stride()
        assert tensor.storage_offset() == mine.storage_offset()
        assert torch.equal(_raw(tensor), _raw(mine))
    out, _ = ns["eager"](built)
    # x0 views storage [9, 1, nan, -0, inf] from offset 1 with strides (1, 2): [[1, -0], [nan, inf]]
    neg = out[0]
    assert neg[0, 0].item() == -1.0 and neg[0, 1].item() == 0.0 and not neg[0, 1].signbit()
    assert math.isnan(neg[1, 0].item()) and neg[1, 1].item() == -INF
    assert out[1].tolist() == [-65504.0, -5.960464477539063e-08, INF]
    assert out[2].tolist() == [-1.5, 3.3895313892515355e+38]
    assert out[3].tolist() == [-128, -127, 0, 1]  # int8: -(-128) wraps
    assert out[4].tolist() == [-(1 << 63), -(1 << 63) + 1]
    assert out[5].tolist() == [False, True]
    assert out[6].tolist() == [-F32_TINY_SUB, F32_MAX]  # the subnormal is kept, not flushed


def test_long_value_lists_wrap_and_still_parse():
    values = round_values([i / 7 for i in range(40)], "float32")
    case = _case([Input(TensorSpec.contiguous((40,)), values=values)], [Node("torch.abs", (0,), {})], [1])
    src = codegen.program(case)
    assert max(len(line) for line in src.splitlines()) < 200
    ns = {"__name__": "covfuzz_literal_test"}
    exec(compile(src, "wrapped.py", "exec"), ns)  # noqa: S102
    assert ns["make_inputs"]("cpu")[0].tolist() == list(values)


def _index_case(index_values) -> TestCase:
    return _case([Input(TensorSpec.contiguous((4, 3))),
                  Input(TensorSpec.contiguous((2,), "int64"), fill="index", values=index_values)],
                 [Node("torch.index_select", (0, 1), {"dim": 0})], [2])


@pytest.mark.slow
def test_the_harness_runs_the_literal_values():
    """The worker's program uses the literal: an in-range index passes, an out-of-range one
    (which the seed never draws) fails the eager run, so the harness calls it invalid."""
    from harness.execute import execute
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ok = execute(serialize.encode(_index_case((3, 0))))
        bad = execute(serialize.encode(_index_case((3, 4))))
    assert ok["outcome"] == "pass", ok["message"]
    assert bad["outcome"] == "invalid" and bad["details"]["stage"] == "eager", bad
    assert "out of range" in bad["message"], bad["message"]


# ----------------------------------------------------------------------------- values pass


def _sum_case(inp: Input, seed=7) -> TestCase:
    return _case([inp], [Node("torch.sum", (0,), {"dim": (0,), "keepdim": False})], [1], seed=seed)


def test_first_candidate_makes_a_seeded_input_literal_and_identical():
    case = _sum_case(Input(TensorSpec((3, 2), (1, 3), "float16", 0), fill="edge"), seed=11)
    first = next(pass_values(case))
    assert serialize.case_id(first) == serialize.case_id(literal_candidate(case, 0))
    values = first.graph.inputs[0].values
    assert len(values) == 6 and all(type(v) is float for v in values)
    seeded, literal = codegen.build_input(case, 0), codegen.build_input(first, 0)
    assert torch.equal(_raw(seeded), _raw(literal))
    # and as the generated programs build them
    progs = []
    for c in (case, first):
        ns = {"__name__": "covfuzz_literal_test"}
        exec(compile(codegen.program(c), "p.py", "exec"), ns)  # noqa: S102
        progs.append(ns["make_inputs"]("cpu")[0])
    assert torch.equal(_raw(progs[0]), _raw(progs[1]))
    # too large, scalar, or already literal: no conversion
    big = _sum_case(Input(TensorSpec.contiguous((MAX_LITERAL_VALUES + 1,))))
    assert literal_candidate(big, 0) is None and list(pass_values(big)) == []
    assert literal_candidate(first, 0) is None


def test_simplification_order_on_a_hand_made_literal():
    values = (NAN, 0.5, -0.0, 2.0, 1.0, 0.0)
    case = _sum_case(Input(TensorSpec.contiguous((6,)), values=values))
    got = [c.graph.inputs[0].values for c in pass_values(case)]
    expected = [
        # ordinary values not yet 0 (positions 1, 3, 4) -> 0: all, then (3 // 2 = 1) singles
        (NAN, 0.0, -0.0, 0.0, 0.0, 0.0),
        (NAN, 0.0, -0.0, 2.0, 1.0, 0.0), (NAN, 0.5, -0.0, 0.0, 1.0, 0.0),
        (NAN, 0.5, -0.0, 2.0, 0.0, 0.0),
        # ordinary values neither 0 nor 1 (positions 1, 3) -> 1: all, then singles
        (NAN, 1.0, -0.0, 1.0, 1.0, 0.0),
        (NAN, 1.0, -0.0, 2.0, 1.0, 0.0), (NAN, 0.5, -0.0, 1.0, 1.0, 0.0),
        # each special value -> 0, then 1
        (0.0, 0.5, -0.0, 2.0, 1.0, 0.0), (1.0, 0.5, -0.0, 2.0, 1.0, 0.0),
        (NAN, 0.5, 0.0, 2.0, 1.0, 0.0), (NAN, 0.5, 1.0, 2.0, 1.0, 0.0),
    ]
    assert [_bits(v) for v in got] == [_bits(v) for v in expected]
    assert [serialize.case_id(c) for c in pass_values(case)] == \
        [serialize.case_id(c) for c in pass_values(case)]  # deterministic


def test_value_classes():
    assert all(is_special(v, "float32") for v in (NAN, INF, -INF, -0.0, F32_MAX, F32_TINY_SUB, 1e20))
    assert not any(is_special(v, "float32") for v in (0.0, 1.0, -2.5, 1e4, 1e-30))
    assert is_special(300.0, "float16") and not is_special(100.0, "float16")
    assert all(is_special(v, "int8") for v in (-128, -127, 126, 127))
    assert not any(is_special(v, "uint8") for v in (0, 1, 7)) and is_special(255, "uint8")
    assert not is_special(True, "bool")


def _eager_has_nan(case: TestCase) -> bool:
    """The predicate a reduction keeps: the generated program's eager output holds a NaN."""
    ns = {"__name__": "covfuzz_literal_test"}
    exec(compile(codegen.program(case), "p.py", "exec"), ns)  # noqa: S102
    out, _ = ns["eager"](ns["make_inputs"]("cpu"))
    return bool(out[0].isnan().any())


def _fixed_point(case: TestCase, keep) -> tuple[TestCase, int]:
    """The reducer's loop (covfuzz/triage/reduce.py) with one pass: take the first candidate that
    still fails, restart the pass, stop when a whole pass accepts nothing."""
    tried: dict[str, bool] = {}
    while True:
        current = serialize.case_id(case)
        for cand in pass_values(case):
            cid = serialize.case_id(cand)
            if cid == current:
                continue
            if cid not in tried:
                tried[cid] = keep(cand)
            if tried[cid]:
                case = cand
                break
        else:
            return case, len(tried)


def test_reduction_shrinks_twelve_values_to_the_one_nan():
    values = (0.31, -1.25, 1e30, 7.5, -0.0, INF, 0.125, NAN, -3.0, 1.0, 0.0, 2.5)
    values = round_values(values, "float32")
    case = _sum_case(Input(TensorSpec.contiguous((12,)), values=values))
    assert _eager_has_nan(case)
    reduced, runs = _fixed_point(case, _eager_has_nan)
    # The values that are not 0 are moved to the front (so a later shape cut keeps them):
    # one NaN first, zeros after.
    expected = (NAN,) + (0.0,) * 11
    assert _bits(reduced.graph.inputs[0].values) == _bits(expected)
    assert runs < 60
    assert "float('nan')" in codegen.program(reduced)


def test_reduction_makes_a_seeded_nan_visible():
    """A seeded `edge` input whose draw holds a NaN: first made literal, then reduced to it."""
    spec = TensorSpec.contiguous((12,))
    seed = next(s for s in range(200) if any(
        math.isnan(v) for v in codegen.build_input(_sum_case(Input(spec, fill="edge"), s), 0).tolist())
        and not math.isnan(sum(v for v in codegen.build_input(
            _sum_case(Input(spec, fill="edge"), s), 0).tolist() if not math.isnan(v))))
    case = _sum_case(Input(spec, fill="edge"), seed)
    reduced, _ = _fixed_point(case, _eager_has_nan)
    values = reduced.graph.inputs[0].values
    assert values is not None and sum(math.isnan(v) for v in values) == 1
    assert all(v == 0.0 and math.copysign(1, v) > 0 for v in values if not math.isnan(v))


# ----------------------------------------------------------------------------- repro gradients


def test_repro_judges_none_and_zero_gradients_alike():
    """x1 reaches only a comparison: autograd gives it no gradient (None), compiled code may give
    zeros. The repro's helpers count None as zeros, as the harness does, so they agree."""
    x = Input(TensorSpec.contiguous((3,), requires_grad=True), values=(1.0, -2.0, NAN))
    y = Input(TensorSpec.contiguous((3,), requires_grad=True), values=(0.5, -0.0, INF))
    case = _case([x, y], [Node("torch.neg", (0,), {}), Node("torch.gt", (1, 0), {})], [2, 3],
                 backward=True)
    ns = {"__name__": "covfuzz_literal_test"}
    exec(compile(codegen.program(case), "grad_case.py", "exec"), ns)  # noqa: S102
    out, leaves = ns["eager"](ns["make_inputs"]("cpu"))
    assert torch.autograd.grad(out[0].sum(), leaves, allow_unused=True, retain_graph=True)[1] is None
    eager_grads = ns["grads"](out, leaves)
    assert eager_grads[0].tolist() == [-1.0, -1.0, -1.0] and eager_grads[1].tolist() == [0.0] * 3
    compiled_like = [eager_grads[0].clone(), torch.zeros(3)]  # what a compiled backward may give
    assert ns["divergences"](eager_grads, compiled_like, None) == []
    # and a real difference in that gradient is still reported
    assert ns["divergences"](eager_grads, [eager_grads[0], torch.ones(3)],
                             [eager_grads[0].double(), torch.zeros(3, dtype=torch.float64)])


def test_with_spec_keeps_values_only_while_they_fit():
    from covfuzz.ir import with_spec
    inp = Input(TensorSpec.contiguous((4,)), values=(1.0, NAN, -0.0, 2.0))
    grad = with_spec(inp, TensorSpec.contiguous((4,), requires_grad=True))
    assert _bits(grad.values) == _bits(inp.values)
    assert with_spec(inp, TensorSpec.contiguous((2,))).values is None  # storage changed
    assert with_spec(inp, TensorSpec.contiguous((4,), "int32")).values is None  # dtype class


def test_unused_inputs_are_dropped_keeping_literal_values():
    """A prefix keeps every input (their seeded values depend on their position); once they are
    literal, the reducer's `unused` pass drops those no node reads."""
    from covfuzz.triage.reduce import pass_unused
    used = Input(TensorSpec.contiguous((2,)), values=(NAN, 1.0))
    unused = Input(TensorSpec.contiguous((3,)), values=(0.0, 0.0, 0.0))
    graph = Graph((unused, used), (Node("torch.abs", (1,)),), (2,))
    case = propagate(TestCase(graph))
    (smaller,) = list(pass_unused(case))
    assert len(smaller.graph.inputs) == 1 and smaller.graph.inputs[0].values == used.values
    assert smaller.graph.nodes[0].args == (0,) and smaller.graph.outputs == (1,)
    assert list(pass_unused(smaller)) == []


def test_data_dependent_ops_propagate_on_the_literal_values():
    """Propagation of a data-dependent op runs on real inputs: the literal ones, not a seeded
    draw (two nonzero elements give a (2, 1) result)."""
    x = Input(TensorSpec.contiguous((4,)), values=(0.0, 1.0, 0.0, 2.0))
    graph = Graph((x,), (Node("torch.nonzero", (0,)),), (1,))
    case = propagate(TestCase(graph))
    assert case.graph.nodes[0].out.shape == (2, 1)
