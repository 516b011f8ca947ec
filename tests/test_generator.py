"""Generator, catalog and propagation: determinism, validity, variety, options."""

import collections

import pytest
import torch

import covfuzz.generator as generator
from covfuzz import codegen, ops, serialize
from covfuzz.errors import InvalidGraph
from covfuzz.generator import GenOptions, OptionError, generate, parse_dtypes, parse_supported_ops
from covfuzz.ir import DTYPES, TensorSpec
from covfuzz.propagate import propagate

from eager_run import run_eagerly

N = 500


@pytest.fixture(scope="module")
def cases():
    return [generate(seed) for seed in range(N)]


def test_same_seed_same_bytes():
    for seed in (0, 7, 12345):
        assert serialize.encode(generate(seed)) == serialize.encode(generate(seed))
    assert serialize.encode(generate(1)) != serialize.encode(generate(2))


def test_catalog_has_at_least_120_available_ops():
    assert len(ops.AVAILABLE) >= 120
    categories = {op.category for op in ops.AVAILABLE.values()}
    for needed in ("pointwise_unary", "pointwise_binary", "reduction", "view", "matmul", "conv",
                   "pool", "norm", "indexing", "data_dependent", "attention"):
        assert needed in categories


def test_validity_and_variety_over_500_seeds(cases):
    valid = 0
    for case in cases:
        try:
            propagate(case)
            valid += 1
        except InvalidGraph:
            pass
    assert valid / N >= 0.99
    used_ops = collections.Counter(n.op for c in cases for n in c.graph.nodes)
    assert len(used_ops) >= 100, len(used_ops)
    dtypes = {i.spec.dtype for c in cases for i in c.graph.inputs if isinstance(i.spec, TensorSpec)}
    assert dtypes == set(DTYPES)
    shapes = [i.spec for c in cases for i in c.graph.inputs if isinstance(i.spec, TensorSpec)]
    assert any(0 in s.shape for s in shapes) and any(1 in s.shape for s in shapes)
    assert any(0 in s.stride and s.numel > 1 for s in shapes)  # overlapping (stride 0)
    assert any(s.offset for s in shapes)
    assert any(s.rank >= 2 and s.stride[-1] != 1 for s in shapes)  # transposed or gapped


def test_generated_programs_run_eagerly(cases):
    failures = collections.Counter()
    sample = cases[:200]
    for case in sample:
        try:
            run_eagerly(case)
        except Exception as exc:  # noqa: BLE001 - counting eager failures is the point
            failures[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
    assert sum(failures.values()) / len(sample) <= 0.03, failures


def test_propagation_fills_specs_like_eager():
    case = generate(3)
    namespace = {}
    exec(compile(codegen.program(case), "<case>", "exec"), namespace)
    args = namespace["make_inputs"]("cpu")
    env = dict(zip(range(len(args)), args))
    for j, node in enumerate(case.graph.nodes):
        # the program's namespace holds the helpers a py.* template calls
        local = {**namespace, **{codegen.value_name(case.graph, k): v for k, v in env.items()}}
        value = eval(codegen.node_expr(case.graph, node), local)  # noqa: S307 - our own codegen
        env[len(args) + j] = value
        if isinstance(value, torch.Tensor):
            assert tuple(value.shape) == node.out.shape
            assert str(value.dtype) == f"torch.{node.out.dtype}"


def test_every_available_op_can_be_generated():
    missing = []
    for name, op in sorted(ops.AVAILABLE.items()):
        device = "cpu" if ops.allowed_on(op, "cpu") else "cuda"  # CUDA streams: cuda cases only
        opts = GenOptions(op_weights={name: 1.0}, max_nodes=3, data_dependent=op.data_dependent,
                          device=device)
        if not any(name in {n.op for n in generate(seed, opts).graph.nodes} for seed in range(12)):
            missing.append(name)
    assert not missing, missing


def test_options_restrict_ops_and_dtypes():
    opts = GenOptions(op_weights=parse_supported_ops("torch.add,torch.mm=5"),
                      dtypes=parse_dtypes("float32,float64"))
    seen = collections.Counter()
    for seed in range(40):
        case = generate(seed, opts)
        seen.update(n.op for n in case.graph.nodes)
        for inp in case.graph.inputs:
            if isinstance(inp.spec, TensorSpec):
                assert inp.spec.dtype in ("float32", "float64", "int64")  # int64 only for indices
    assert set(seen) <= {"torch.add", "torch.mm", "torch.clone"}
    assert seen["torch.mm"] > seen["torch.add"]
    with pytest.raises(OptionError, match="unknown op"):
        parse_supported_ops("torch.add,torch.bogus")
    with pytest.raises(OptionError, match="not a number"):
        parse_supported_ops("torch.add=x")
    with pytest.raises(OptionError, match="unknown dtype"):
        parse_dtypes("float32,complex32")


def test_max_depth_and_nodes_are_respected():
    opts = GenOptions(max_nodes=4, max_depth=2)
    for seed in range(30):
        case = generate(seed, opts)
        assert len(case.graph.nodes) <= 4
        depth = {}
        for v in range(len(case.graph.inputs)):
            depth[v] = 0
        base = len(case.graph.inputs)
        for j, node in enumerate(case.graph.nodes):
            depth[base + j] = 1 + max(depth[a] for a in node.args)
            assert depth[base + j] <= 2


def test_data_dependent_ops_only_on_request_and_with_capture_flags():
    for seed in range(50):
        assert not any(ops.get_op(n.op).data_dependent for n in generate(seed).graph.nodes)
    opts = GenOptions(op_weights={"torch.nonzero": 1, "torch.unique": 1, "Tensor.item": 1,
                                  "torch.mul": 2}, data_dependent=True)
    case = next(c for c in (generate(s, opts) for s in range(30))
                if any(ops.get_op(n.op).data_dependent for n in c.graph.nodes))
    assert case.settings.dynamo_config["capture_scalar_outputs"] is True
    assert case.settings.dynamo_config["capture_dynamic_output_shape_ops"] is True


def test_checking_each_new_node_alone_draws_the_same_graphs(monkeypatch):
    """The builder checks a new node on the kept meta values of the graph so far; checking the
    whole graph at every step (what it does once real tensors are needed) must accept the same
    nodes, so both draw byte-identical cases."""
    incremental = [serialize.encode(generate(seed)) for seed in range(120)]
    monkeypatch.setattr(generator, "needs_real_tensors", lambda graph: True)
    whole = [serialize.encode(generate(seed)) for seed in range(120)]
    assert incremental == whole
