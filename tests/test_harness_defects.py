"""Regression tests for covfuzz's own defects that were reported as bugs (issue 16, point 6),
the failing check of a crash (point 3), and the probe API localization builds on.

Everything runs real torch.compile in this process on graphs of one to three nodes.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from covfuzz.errors import InvalidGraph
from covfuzz.generator import GenOptions, generate
from covfuzz.ir import CompileSettings, Graph, Input, Node, ScalarSpec, TensorSpec, TestCase
from covfuzz.propagate import may_overlap, propagate
from covfuzz.serialize import encode
from covfuzz.triage import signature as sig
from harness import execute as ex
from harness import oracle
from mutators.base import validate


def _case(inputs, nodes, outputs, seed=3, **settings) -> TestCase:
    return propagate(TestCase(Graph(tuple(inputs), tuple(nodes), tuple(outputs)),
                              CompileSettings(**settings), seed=seed))


def _run(case: TestCase) -> dict:
    return ex.execute(encode(case))


def vec(n=4, **kw) -> Input:
    return Input(TensorSpec.contiguous((n,), **kw))


# ----------------------------------------------------------------------------- (a) own inputs

@pytest.mark.parametrize("mutation", [
    Node("Tensor.add_", (1, 0), {}),
    Node("Tensor.unary_", (1,), {"f": "sigmoid"}),
])
def test_parameter_mutated_in_place_is_applied_once_per_call(mutation):
    """A parameter mutated in place, returned as an output (an alias of the parameter): the
    confirming second compiled call must run on its own module, and the first call's output
    must be a copy taken before it (both used to make the op look applied twice)."""
    x1 = dataclasses.replace(vec(), param=True)
    case = _case([vec(), x1], [mutation, Node("torch.mul", (2, 0), {})], (2, 3))
    r = _run(case)
    assert r["outcome"] == "pass", r["message"]
    assert "note" not in r["details"], r["details"]
    probe = ex.probe_case(case)
    assert probe.verdicts == [None, None]
    torch.testing.assert_close(probe.compiled[0], probe.eager[0])
    # The inputs the probe reports are the values before the call mutated them.
    assert not torch.equal(probe.inputs[1], probe.eager[0])


def test_input_mutated_in_place_and_returned_matches():
    case = _case([vec(), vec()], [Node("Tensor.mul_", (0, 1), {})], (2,))
    r = _run(case)
    assert r["outcome"] == "pass", r["message"]
    assert "note" not in r["details"], r["details"]


# ----------------------------------------------------------------------------- (b) writes

def _expanded() -> Input:
    return Input(TensorSpec((3, 4), (0, 1), "float32"))


def test_no_in_place_write_into_an_expanded_tensor():
    """`fill_` / `zero_` on a stride-0 input: eager writes (PyTorch calls it unsupported) and
    compiled code writes every row; the validity check refuses it."""
    for node in (Node("Tensor.fill_", (0,), {"value": 1.0}), Node("Tensor.zero_", (0,), {})):
        with pytest.raises(InvalidGraph, match="overlap"):
            _case([_expanded()], [node], (1,))
        bad = TestCase(Graph((_expanded(),), (node,), (1,)), CompileSettings(), 3)
        assert validate(bad) is None  # the mutators' check
        assert _case([Input(TensorSpec.contiguous((3, 4)))], [node], (1,)).graph.nodes[0].out
    # An expanded view made inside the graph is refused as well.
    expand = Node("Tensor.expand", (0,), {"sizes": (3, 4)})
    with pytest.raises(InvalidGraph, match="overlap"):
        _case([vec()], [expand, Node("Tensor.zero_", (1,), {})], (2,))


def test_may_overlap():
    assert may_overlap((3, 4), (0, 1)) and may_overlap((2, 2), (1, 1))
    assert not may_overlap((3, 4), (4, 1)) and not may_overlap((3, 4), (1, 3))
    assert not may_overlap((1, 3), (0, 1)) and not may_overlap((0, 4), (0, 1))
    assert not may_overlap((2, 3), (8, 2))  # gapped, not overlapping


@pytest.mark.parametrize("producer", [
    Node("F.dropout", (0,), {"p": 0.5}),           # eval: returns its input itself
    Node("Tensor.contiguous", (0,), {}),           # of a contiguous tensor: itself
    Node("Tensor.to", (0,), {"dtype": "float32"}),  # same dtype: itself
])
def test_no_in_place_write_through_an_alias_the_schema_does_not_promise(producer):
    write = Node("Tensor.add_", (2, 1), {})
    with pytest.raises(InvalidGraph, match="promises a new tensor"):
        _case([vec(), ScalarSpec_input(1.0)], [producer, write], (3, 0))
    # Writing into the original while such an alias lives is refused too.
    with pytest.raises(InvalidGraph, match="promises a new tensor"):
        _case([vec(), ScalarSpec_input(1.0)], [producer, Node("Tensor.add_", (0, 1), {})], (2, 3))


def ScalarSpec_input(value: float) -> Input:  # noqa: N802 - reads as the spec it builds
    return Input(ScalarSpec("float"), "normal", value)


def test_in_place_writes_that_own_their_elements_stay_allowed():
    """A copy (`.to` another dtype), an intermediate and a documented view may be written."""
    to64 = Node("Tensor.to", (0,), {"dtype": "float64"})
    _case([vec(), ScalarSpec_input(1.0)], [to64, Node("Tensor.add_", (2, 1), {})], (3,))
    _case([vec(), ScalarSpec_input(1.0)],
          [Node("torch.sin", (0,), {}), Node("Tensor.add_", (2, 1), {})], (3,))
    view = Node("torch.unsqueeze", (0,), {"dim": 0})  # a view: writes reach x0, as documented
    _case([vec(), ScalarSpec_input(1.0)], [view, Node("Tensor.add_", (2, 1), {})], (3, 0))


def test_generator_never_writes_into_expanded_inputs_or_unpromised_aliases():
    opts = GenOptions(op_weights={"Tensor.fill_": 1, "Tensor.zero_": 1, "Tensor.add_": 1,
                                  "Tensor.masked_fill_": 1, "F.dropout": 1,
                                  "Tensor.contiguous": 1, "torch.sin": 1},
                      max_nodes=6, backward_prob=0.3, config_prob=0)
    writes = 0
    for seed in range(150):
        case = generate(seed, opts)
        g = case.graph
        for node in g.nodes:
            if node.op.endswith("_"):
                writes += 1
                target = g.spec_of(node.args[0])
                assert not may_overlap(target.shape, target.stride), (seed, node)
                producer = g.node_of(node.args[0])
                if producer is not None and producer.op in ("F.dropout", "Tensor.contiguous"):
                    # dropout in eval returns its input; contiguous() too when it already is
                    src = g.spec_of(producer.args[0])
                    assert producer.op != "F.dropout" and (
                        (src.stride, src.offset) != (producer.out.stride, producer.out.offset)), (
                        seed, node)
    assert writes > 50


def test_in_place_write_autograd_needs_is_invalid():
    """On a leaf that requires grad, and on a value autograd saved: refused by propagation
    whenever the harness would run with grad enabled (with or without backward)."""
    with pytest.raises(InvalidGraph, match="leaf"):
        _case([vec(requires_grad=True)], [Node("Tensor.zero_", (0,), {})], (1,), backward=True)
    saved = [Node("torch.exp", (0,), {}), Node("Tensor.mul_", (1, 0), {})]
    for backward in (True, False):
        with pytest.raises(InvalidGraph, match="modified by an inplace operation"):
            _case([vec(requires_grad=True)], saved, (2,), backward=backward)
    _case([vec()], saved, (2,))  # nothing requires grad: fine


# ----------------------------------------------------------------------------- (c) None grads

def test_none_and_zero_gradients_are_judged_alike():
    """x1 does not reach the loss: eager autograd leaves its .grad None; compiled code may hand
    back zeros. Both count as zeros."""
    case = _case([vec(requires_grad=True), vec(requires_grad=True)],
                 [Node("torch.sin", (0,), {})], (2,), backward=True)
    r = _run(case)
    assert r["outcome"] == "pass", r["message"]
    probe = ex.probe_case(case)
    assert probe.grad_verdicts == [None, None]
    assert torch.equal(probe.eager_grads[1], torch.zeros(4))
    # The judgement itself, on the two forms: a leaf whose .grad is None, one with zeros.
    none_leaf = torch.ones(4, requires_grad=True)
    zero_leaf = torch.ones(4, requires_grad=True)
    zero_leaf.grad = torch.zeros(4)
    assert oracle.compare_outputs(ex._grads([none_leaf]), ex._grads([zero_leaf])) is None
    nonzero = torch.ones(4, requires_grad=True)
    nonzero.grad = torch.ones(4)
    assert oracle.compare_outputs(ex._grads([none_leaf]), ex._grads([nonzero])) is not None


# ----------------------------------------------------------------------------- (d) eager first

def test_backward_that_fails_in_eager_too_is_invalid_not_a_crash():
    """No backward asked, but an input requires grad: AOTAutograd traces the backward when it
    compiles, and fails on the in-place write into a value exp saved. Eager's backward fails
    the same way: the case is invalid (a stored case from before propagation checked it)."""
    plain = _case([vec()], [Node("torch.exp", (0,), {}), Node("Tensor.mul_", (1, 0), {})], (2,))
    case = plain.replace(graph=dataclasses.replace(plain.graph,
                                                   inputs=(vec(requires_grad=True),)))
    r = _run(case)
    assert r["outcome"] == "invalid", (r["outcome"], r["message"])
    assert "eager backward fails too" in r["details"]["note"]
    assert r["details"]["stage"] == "compile"


# ----------------------------------------------------------------------------- crash checks

def _inner_check(gm):
    assert len(gm.graph.nodes) < 0  # the check that fires


def _backend(gm, example_inputs):
    _inner_check(gm)
    return gm


def test_failing_check_beneath_the_dynamo_wrapper():
    torch._dynamo.reset()
    with pytest.raises(Exception) as info:
        torch.compile(lambda x: x.sin() + 1, backend=_backend)(torch.ones(3))
    assert "TORCHDYNAMO_VERBOSE" in str(info.value)  # the wrapper, as users see it
    check = oracle.failing_check(info.value)
    assert check["source"] == "assert len(gm.graph.nodes) < 0  # the check that fires"
    assert check["where"].startswith("test_harness_defects.py:")
    assert check["where"].endswith(":_inner_check")
    assert check["root_type"] == "AssertionError"
    # (pytest rewrites this module's asserts, so the message is its explanation, if any)
    assert "TORCHDYNAMO" not in check["root_message"] and "raised:" not in check["root_message"]


def test_wrapper_texts_are_unwrapped():
    text = ("backend='inductor' raised:\nLoweringException: AssertionError: index is not vec\n"
            "  target: aten.index.Tensor\n  args[0]: TensorBox\n\nSet TORCHDYNAMO_VERBOSE=1 ...")
    assert oracle._unwrap_text("BackendCompilerFailed", text, True) == (
        "AssertionError", "index is not vec")
    assert oracle._unwrap_text("RuntimeError", "ValueError: not a wrapper", False) == (
        "RuntimeError", "ValueError: not a wrapper")


def test_compile_crash_result_names_its_check(monkeypatch):
    monkeypatch.setenv("COVFUZZ_FAULT_INJECTION", "1")
    case = _case([vec()], [Node("torch.sin", (0,), {})], (1,), seed=0xFA017005)
    r = _run(case)
    assert r["outcome"] == "compile_crash", r["message"]
    check = r["details"]["check"]
    assert check["root_type"] == "RuntimeError"
    assert check["root_message"] == "covfuzz fault injection: backend raised during compilation"
    assert check["source"].startswith("raise RuntimeError(") and ":_raising_backend" in check["where"]
    s, _ = sig.signature_of(case, r)
    assert s.startswith("compile_crash|RuntimeError|covfuzz fault injection") and "raise" in s


def test_crash_signature_uses_the_check_and_reads_records_defensively():
    base = {"outcome": "compile_crash", "exc_type": "torch._dynamo.exc.BackendCompilerFailed",
            "message": "BackendCompilerFailed: backend='inductor' raised:\nAssertionError: \n\n"
                       "Set TORCHDYNAMO_VERBOSE=1 for the internal stack trace",
            "frames": ["torch/_inductor/codegen/cpp.py:1200:store", "torch/_inductor/codegen/cpp.py:1234:fn"]}

    def with_check(source, where="torch/_inductor/codegen/cpp.py:1234:fn", **extra):
        check = {"where": where, "source": source, "root_type": "AssertionError",
                 "root_message": "", **extra}
        return {**base, "details": {"check": check}}

    a, _ = sig.signature_of(None, with_check("assert isinstance(index, CppCSEVariable) and index.is_vec"))
    b, _ = sig.signature_of(None, with_check("assert   isinstance(index, CppCSEVariable) and index.is_vec",
                                             where="torch/_inductor/codegen/cpp.py:1240:fn"))
    c, _ = sig.signature_of(None, with_check("assert self.is_vec"))
    assert a == b != c  # line numbers and spacing do not split; another check does
    assert a.startswith("compile_crash|AssertionError||assert isinstance(index, CppCSEVariable)")
    assert "TORCHDYNAMO" not in a and "codegen/cpp.py:fn" in a
    old, _ = sig.signature_of(None, base)  # a record from before checks were recorded
    assert old.startswith("compile_crash|torch._dynamo.exc.BackendCompilerFailed|")
    hostile = {**base, "details": {"check": {"where": 5, "source": ["x"], "root_type": "X" * 9999,
                                             "root_message": None}}}
    h, _ = sig.signature_of(None, hostile)
    assert len(h) < 2000 and "['x']" not in h
    for junk in ("check", 7, None, {"check": "nope"}):
        sig.signature_of(None, {**base, "details": junk})


# ----------------------------------------------------------------------------- probe

def test_probe_reports_values_and_verdicts():
    case = _case([vec(requires_grad=True), vec(requires_grad=True), Input(ScalarSpec("int"), "normal", 2)],
                 [Node("torch.mul", (0, 1), {}), Node("torch.add", (3, 0), {"alpha": 1})], (3, 4),
                 backward=True)
    probe = ex.probe_case(case, config={"emulate_precision_casts": True})
    assert probe.outcome == "pass", probe.message
    assert len(probe.inputs) == 3 and probe.inputs[2] == 2
    assert all(not t.requires_grad for t in probe.inputs[:2] + probe.eager + probe.compiled)
    assert probe.verdicts == [None, None] and probe.grad_verdicts == [None, None]
    assert [r.dtype for r in probe.reference] == [torch.float64, torch.float64]
    torch.testing.assert_close(probe.eager[0], probe.inputs[0] * probe.inputs[1])
    torch.testing.assert_close(probe.eager_grads[0], 2 * probe.inputs[1] + 1)  # d(v3 + v4)/dx0
    assert len(probe.compiled_grads) == 2 and len(probe.reference_grads) == 2
    # A verdict in the oracle's own form, for a doctored compiled output.
    bad = [probe.compiled[0] + 1, probe.compiled[1]]
    verdicts = ex._verdicts(probe.eager, bad, probe.reference)
    assert verdicts[1] is None and verdicts[0]["kind"] == "value" and verdicts[0]["output"] == 0


def test_probe_of_a_crash_has_no_compiled_values(monkeypatch):
    monkeypatch.setenv("COVFUZZ_FAULT_INJECTION", "1")
    case = _case([vec()], [Node("torch.sin", (0,), {})], (1,), seed=0xFA017005)
    probe = ex.probe_case(case)
    assert probe.outcome == "compile_crash" and probe.compiled is None and probe.verdicts == []
    assert len(probe.eager) == 1 and probe.grad_verdicts is None


def test_value_classes():
    vc = oracle.value_classes
    assert vc(torch.tensor([1.0, -2.0])) == [] and vc(True) == [] and vc(3) == []
    assert vc(torch.tensor([math.nan, -0.0, 1e-45, 3e38, math.inf, -math.inf])) == [
        "+inf", "-0.0", "-inf", "denormal", "huge", "nan"]
    assert vc(torch.tensor([65504.0], dtype=torch.float16)) == ["huge"]
    assert vc(torch.tensor([1e-6], dtype=torch.float16)) == ["denormal"]
    assert vc(torch.tensor([-128, 0, 127], dtype=torch.int8)) == ["int_max", "int_min",
                                                                   "negative", "zero"]
    assert vc(torch.tensor([0, 255], dtype=torch.uint8)) == ["int_max", "zero"]
    assert vc(torch.tensor([True])) == []
    assert vc(-0.0) == ["-0.0"] and vc(math.nan) == ["nan"] and vc(-5) == ["negative"]
    assert vc(2 ** 63 - 1) == ["int_max"] and vc(-2 ** 63) == ["int_min", "negative"]
