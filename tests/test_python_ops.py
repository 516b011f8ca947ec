"""Higher-order ops, Python constructs and in-place ops: generated, checked, run for real."""

import warnings

import pytest
import torch

from covfuzz import codegen, ops, serialize
from covfuzz.errors import InvalidGraph
from covfuzz.generator import GenOptions, generate
from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.propagate import propagate
from harness.coverage import Collector, line_id
from harness.execute import execute

NEW_CATEGORIES = ("hop", "python", "inplace")
NEW_OPS = sorted(name for name, op in ops.AVAILABLE.items() if op.category in NEW_CATEGORIES)


def _case_with(name: str) -> TestCase:
    opts = GenOptions(op_weights={name: 4.0, "torch.sin": 1.0, "torch.transpose": 1.0},
                      max_nodes=3)
    for seed in range(40):
        case = generate(seed, opts)
        if any(n.op == name for n in case.graph.nodes):
            return case
    raise AssertionError(f"no case with {name} in 40 seeds")


@pytest.mark.parametrize("name", NEW_OPS)
def test_check_spec_matches_the_real_call(name):
    """Propagation may evaluate a cheaper `check_template`; the spec it records must be the
    spec the program's real call produces (eagerly, on real inputs)."""
    case = _case_with(name)
    namespace = {}
    exec(compile(codegen.program(case), "<case>", "exec"), namespace)  # noqa: S102
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = namespace["make_inputs"]("cpu")
        env = {codegen.value_name(case.graph, i): a for i, a in enumerate(args)}
        env.update({k: v for k, v in namespace.items() if not k.startswith("__")})
        base = len(args)
        for j, node in enumerate(case.graph.nodes):
            value = eval(codegen.node_expr(case.graph, node), env)  # noqa: S307 - our codegen
            env[codegen.value_name(case.graph, base + j)] = value
            if isinstance(value, torch.Tensor):
                assert tuple(value.shape) == node.out.shape, (node.op, node.attrs)
                assert str(value.dtype) == f"torch.{node.out.dtype}", (node.op, node.attrs)


def test_graph_breaks_are_invalid_under_fullgraph():
    x = Input(TensorSpec.contiguous((4, 3)))
    graph = Graph((x,), (Node("py.graph_break", (0,), {"f": "sin"}),), (1,))
    assert propagate(TestCase(graph)).graph.nodes[0].out.shape == (4, 3)
    with pytest.raises(InvalidGraph, match="fullgraph"):
        propagate(TestCase(graph, CompileSettings(fullgraph=True)))
    breaking = {n for n, op in ops.AVAILABLE.items() if op.graph_break}
    for seed in range(300):
        case = generate(seed)
        if breaking & {n.op for n in case.graph.nodes}:
            assert not case.settings.fullgraph, seed


def test_program_defines_only_the_helpers_it_uses():
    x = Input(TensorSpec.contiguous((2, 3)))
    graph = Graph((x,), (Node("py.dataclass", (0, 0), {}),), (1,))
    text = codegen.program(propagate(TestCase(graph)))
    assert "class Pair" in text and "import dataclasses" in text
    assert "class Affine" not in text and "def region" not in text
    plain = codegen.program(propagate(TestCase(Graph((x,), (Node("torch.sin", (0,), {}),), (1,)))))
    assert "import dataclasses" not in plain


def test_constructs_compile_and_reach_dynamo_python_level_code():
    """One real torch.compile of a case using torch.cond, a user class, an in-place update of a
    view of an input, and a graph break: eager and compiled agree, and coverage shows Dynamo's
    higher-order-op and user-defined-object handling ran."""
    x = Input(TensorSpec.contiguous((4, 3)))
    nodes = (
        Node("hop.cond", (0,), {"f": "sin", "g": "cos"}),             # v1
        Node("py.user_class", (1,), {"scale": 2.0, "shift": 0.5}),    # v2
        Node("torch.transpose", (0,), {"dim0": 0, "dim1": 1}),        # v3: a view of x0
        Node("Tensor.mul_", (3, 3), {}),                              # v4: x0 changes too
        Node("py.graph_break", (2,), {"f": "tanh"}),                  # v5
        Node("torch.add", (5, 0), {"alpha": 1}),                      # v6: reads mutated x0
    )
    case = propagate(TestCase(Graph((x,), nodes, (6,))))
    result = execute(serialize.encode(case), collector=Collector())
    assert result["outcome"] == "pass", result["message"]
    features = set(result["features"])
    for rel in ("torch/_dynamo/variables/higher_order_ops.py",
                "torch/_dynamo/variables/user_defined.py"):
        assert any(line_id(rel, n) in features for n in range(1, 8000)), rel
