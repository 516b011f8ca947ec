"""Inputs held as model parameters, inference under no_grad, and the fusion-pass config lists:
serialized, checked, mutated, reduced, and compiled for real (freezing, CPP GEMM templates,
split/cat passes)."""

import dataclasses
import json
import os
import random
import warnings

import pytest
import torch
import torch._functorch.config
import torch._inductor.config
from coverage.python import PythonParser

from covfuzz import codegen, config_space, serialize
from covfuzz.errors import TestCaseFormatError
from covfuzz.generator import generate
from covfuzz.ir import CompileSettings, Graph, Input, Node, ScalarSpec, TensorSpec, TestCase
from covfuzz.propagate import propagate
from covfuzz.traits import traits
from covfuzz.triage.reduce import pass_settings
from harness.coverage import Collector, line_id, torch_dir
from harness.execute import execute
from mutators.base import MutationContext, structural_problem, validate
from mutators.params import mutate_settings


def linear_case(params=(1, 2), backward=False, **inductor_config) -> TestCase:
    """relu(linear(x0, x1, x2)) * 2 with the inputs in `params` held as Model parameters."""
    grad = backward
    inputs = (Input(TensorSpec.contiguous((8, 16), requires_grad=grad)),
              Input(TensorSpec.contiguous((32, 16), requires_grad=grad), param=1 in params),
              Input(TensorSpec.contiguous((32,), requires_grad=grad), param=2 in params))
    nodes = (Node("F.linear", (0, 1, 2), {}), Node("F.relu", (3,), {}))
    settings = CompileSettings(backward=backward, inductor_config=inductor_config)
    return propagate(TestCase(Graph(inputs, nodes, (4,)), settings, seed=7))


def _namespace(case: TestCase) -> dict:
    namespace: dict = {}
    exec(compile(codegen.program(case), "<case>", "exec"), namespace)  # noqa: S102 - our codegen
    return namespace


def _lines_of(features, rel_path: str) -> int:
    parser = PythonParser(filename=os.path.join(torch_dir(), rel_path[len("torch/"):]))
    parser.parse_source()
    ids = {line_id(rel_path, n) for n in parser.statements}
    return len(ids & set(features))


# ----------------------------------------------------------------------------- format


def test_param_round_trips_and_is_written_only_when_set():
    case = linear_case()
    data = serialize.to_dict(case)
    assert [item.get("param", False) for item in data["inputs"]] == [False, True, True]
    assert serialize.decode(serialize.encode(case)) == serialize.decode(serialize.encode(case))
    assert [i.param for i in serialize.decode(serialize.encode(case)).graph.inputs] == [False, True, True]
    plain = linear_case(params=())
    assert all("param" not in item for item in serialize.to_dict(plain)["inputs"])


def test_bad_params_are_refused_at_load():
    data = serialize.to_dict(linear_case())
    data["inputs"][1]["param"] = "yes"
    with pytest.raises(TestCaseFormatError, match=r"inputs\[1\]\.param: expected a bool"):
        serialize.from_dict(data)
    scalar = {"kind": "float", "value": 0.5, "param": True}
    data = serialize.to_dict(linear_case())
    data["inputs"].append(scalar)
    with pytest.raises(TestCaseFormatError, match=r"inputs\[3\]: unexpected field\(s\) \['param'\]"):
        serialize.from_dict(data)
    data = serialize.to_dict(linear_case())
    data["settings"]["mark_dynamic"] = [[1, 0]]
    with pytest.raises(TestCaseFormatError, match="input 1 is a parameter"):
        serialize.from_dict(data)


def test_pass_lists_are_checked_and_become_dicts():
    ok = config_space.check_config_override
    assert ok("inductor_config", "pre_grad_fusion_options", ("merge_splits_pass", "normalization_pass")) is None
    assert ok("inductor_config", "pre_grad_fusion_options", ("normalization_pass", "merge_splits_pass"))
    assert ok("inductor_config", "pre_grad_fusion_options", ("os.system",))
    assert ok("inductor_config", "post_grad_fusion_options", ())
    assert ok("inductor_config", "post_grad_fusion_options", "batch_aten_add")
    rng = random.Random(0)
    for key in ("pre_grad_fusion_options", "post_grad_fusion_options"):
        for _ in range(50):
            value = config_space.sample_value(rng, "inductor_config", key)
            assert ok("inductor_config", key, value) is None
    case = linear_case(pre_grad_fusion_options=("batch_relu", "normalization_pass"))
    again = serialize.decode(serialize.encode(case))
    assert again.settings.inductor_config["pre_grad_fusion_options"] == ("batch_relu", "normalization_pass")
    assert ("INDUCTOR_CONFIG = {'pre_grad_fusion_options': {'batch_relu': {}, 'normalization_pass': {}}}"
            in codegen.program(case))
    data = serialize.to_dict(case)
    data["settings"]["inductor_config"]["pre_grad_fusion_options"] = ["__import__"]
    with pytest.raises(TestCaseFormatError, match="pass names"):
        serialize.from_dict(json.loads(json.dumps(data)))


# ----------------------------------------------------------------------------- program


def test_program_holds_params_in_a_model_and_backward_reaches_them():
    case = linear_case(backward=True)
    ns = _namespace(case)
    assert ns["PARAMS"] == [1, 2] and ns["NO_GRAD"] is False
    target, call_args, leaves = ns["bind"](ns["make_inputs"]("cpu"))
    assert isinstance(target, torch.nn.Module) and len(call_args) == 1
    assert [name for name, _ in target.named_parameters()] == ["x1", "x2"]
    target(*call_args)[0].sum().backward()
    assert all(leaf.grad is not None for leaf in leaves)
    assert leaves[1] is target.x1
    # without backward, a model runs as in inference
    assert _namespace(linear_case())["NO_GRAD"] is True
    assert _namespace(linear_case(params=()))["NO_GRAD"] is False


def test_generator_and_mutator_make_valid_param_cases():
    with_params = [c for c in (generate(s) for s in range(200)) if any(i.param for i in c.graph.inputs)]
    assert 20 <= len(with_params) <= 80
    for case in with_params:
        assert structural_problem(case) is None
        assert not any(case.graph.inputs[i].param for i, _ in case.settings.mark_dynamic)
        assert "input:param" in traits(case)
    ctx = MutationContext(choose_setting=lambda moves: "params")
    rng = random.Random(1)
    toggled = 0
    for case in with_params[:20]:
        out = mutate_settings(case, rng, ctx)
        if out is not None and validate(out) is not None:
            toggled += [i.param for i in out.graph.inputs] != [i.param for i in case.graph.inputs]
    assert toggled >= 15


def test_turning_freezing_on_makes_the_case_a_model_in_inference():
    ctx = MutationContext(choose_setting=lambda moves: "inductor:freezing")
    rng = random.Random(3)
    start = linear_case(params=(), backward=True)
    frozen = [out for out in (mutate_settings(start, rng, ctx) for _ in range(20))
              if out is not None and out.settings.inductor_config.get("freezing")]
    assert frozen
    for out in frozen:
        assert any(i.param for i in out.graph.inputs) and not out.settings.backward
        assert validate(out) is not None
    # freezing is a rare draw (about 1 case in 500): these seeds hold two
    seeds = range(500, 750)
    generated = [c for c in (generate(s) for s in seeds) if c.settings.inductor_config.get("freezing")]
    assert generated and all(any(i.param for i in c.graph.inputs) and not c.settings.backward
                             for c in generated)


def test_reducer_tries_plain_arguments_and_shorter_pass_lists():
    case = linear_case(pre_grad_fusion_options=("batch_relu", "normalization_pass"))
    candidates = list(pass_settings(case))
    assert any(not any(i.param for i in c.graph.inputs) for c in candidates)
    assert any(c.settings.inductor_config.get("pre_grad_fusion_options") == ("normalization_pass",)
               for c in candidates)


# ----------------------------------------------------------------------------- real compiles


@pytest.fixture(scope="module")
def collector():
    """A coverage collector, with the compile caches off as in the workers: a graph compiled by
    an earlier test run must not skip the passes whose coverage is checked."""
    with torch._inductor.config.patch(fx_graph_cache=False), \
            torch._functorch.config.patch(enable_autograd_cache=False):
        yield Collector()


def _run(case, collector):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return execute(serialize.encode(case), collector=collector)


def test_frozen_parameters_reach_freezing_and_the_cpp_gemm_template(collector):
    plain = _run(linear_case(), collector)
    frozen = _run(linear_case(freezing=True), collector)
    assert plain["outcome"] == frozen["outcome"] == "pass", (plain["message"], frozen["message"])
    assert _lines_of(plain["features"], "torch/_inductor/freezing.py") == 0
    assert _lines_of(frozen["features"], "torch/_inductor/freezing.py") > 20
    tuned = _run(linear_case(freezing=True, max_autotune=True, max_autotune_gemm_backends="CPP"),
                 collector)
    assert tuned["outcome"] == "pass", tuned["message"]
    assert _lines_of(tuned["features"], "torch/_inductor/codegen/cpp_gemm_template.py") > 50


def test_cpp_alone_without_constant_weights_is_a_settings_defect(collector):
    result = _run(linear_case(params=(), max_autotune=True, max_autotune_gemm_backends="CPP"), collector)
    assert result["outcome"] == "invalid" and "settings defect" in result["details"]["note"]


def test_pass_lists_reach_the_split_cat_passes(collector):
    x = Input(TensorSpec.contiguous((4, 6)))
    nodes = (Node("torch.split", (0,), {"split_size": 3, "dim": 1, "index": 0}),
             Node("torch.tanh", (1,), {}), Node("torch.cat", (2, 1), {"dim": 1}))
    base = propagate(TestCase(Graph((x,), nodes, (3,)), CompileSettings(), seed=3))
    passes = ("merge_splits_pass", "normalization_pass", "split_cat_pass")
    with_passes = base.replace(settings=dataclasses.replace(
        base.settings, inductor_config={"pre_grad_fusion_options": passes}))
    before, after = _run(base, collector), _run(with_passes, collector)
    assert before["outcome"] == after["outcome"] == "pass", after["message"]
    assert _lines_of(after["features"], "torch/_inductor/fx_passes/split_cat.py") > \
        _lines_of(before["features"], "torch/_inductor/fx_passes/split_cat.py") + 20
