"""Compact repro scripts (issue 17): a backward case gets the short script with a gradient check
that judges as the harness does, inputs too large to print are drawn bit for bit as covfuzz
draws them, and the reducer's `shapes` pass cuts large inputs to printable blocks of the same
values."""

from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest
import torch

from covfuzz import codegen, serialize
from covfuzz.ir import (MAX_LITERAL_VALUES, CompileSettings, Graph, Input, Node, TensorSpec,
                        TestCase)
from covfuzz.propagate import propagate
from covfuzz.triage.reduce import pass_shapes
from covfuzz.triage.reduce_values import pass_values, special_mask
from covfuzz.triage.repro import divergence, repro_script
from harness import oracle
from mutators.base import validate
from test_repro_families import start_standalone, torch_only_env

NAN, INF = float("nan"), float("inf")


def _case(inputs, nodes, outputs, seed=7, **settings) -> TestCase:
    return propagate(TestCase(Graph(tuple(inputs), tuple(nodes), tuple(outputs)),
                              CompileSettings(**settings), seed))


# ----------------------------------------------------------------------------- seeded inputs

FILLS = ("normal", "edge", "zeros", "ones", "uniform", "positive", "nonzero", "index")
DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool")


def _bytes(t: torch.Tensor) -> bytes:
    return t.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes() \
        if t.dtype != torch.bool else bytes(t.detach().reshape(-1).tolist())


@pytest.mark.parametrize("dtype", DTYPES)
def test_seeded_inputs_are_drawn_bit_for_bit_as_covfuzz_draws_them(dtype):
    """The compact program's statements for an input too large to print build exactly what the
    full program's `make_tensor` builds: values (NaN payloads, -0.0), strides, offset, leaf."""
    floating = dtype.startswith(("float", "bfloat"))
    for fill in FILLS:
        for shape, stride, offset in (((3, 5), (5, 1), 0), ((2, 3), (1, 4), 2), ((), (), 0),
                                      ((300,), (1,), 0)):
            spec = TensorSpec(shape, stride, dtype, offset, requires_grad=floating and fill != "index")
            index = Input(TensorSpec.contiguous((4, 6)))  # what an index input indexes
            case = TestCase(Graph((Input(spec, fill), index),
                                  (Node("torch.clone", (0,), {}),), (2,)), CompileSettings(), 99)
            ns = {"torch": torch}
            exec("\n".join(codegen._seeded_tensor_lines(case, 0, "x0", "")), ns)  # noqa: S102
            got, want = ns["x0"], codegen.build_input(case, 0)
            assert (got.dtype, got.shape, got.stride(), got.storage_offset()) == \
                (want.dtype, want.shape, want.stride(), want.storage_offset()), (fill, spec)
            assert (got.requires_grad, got.is_leaf) == (want.requires_grad, want.is_leaf)
            assert _bytes(got) == _bytes(want), (fill, spec)


@pytest.mark.parametrize("spec, values", [
    (TensorSpec.contiguous((2, 3), requires_grad=True), (1.0, NAN, -0.0, INF, -INF, 2.5)),
    (TensorSpec((2, 2), (1, 2), "float16", 1), (9.0, 1.0, NAN, -0.0, 65504.0)),
    (TensorSpec((1, 2, 2), (4, 1, 2), requires_grad=True), (1.0, 2.0, 3.0, 4.0)),
    (TensorSpec.contiguous((), "bfloat16", requires_grad=True), (NAN,)),
    (TensorSpec((), (), "int64", 2), (1, 2, -(1 << 63))),
    (TensorSpec.contiguous((12,), "int8"), (0,) * 11 + (-128,)),  # zeros, then one set
    (TensorSpec.contiguous((2, 2), "bool"), (True, False, False, True)),
    (TensorSpec.contiguous((0, 3), "float64"), ()),  # empty: a campaign's std_mean repro crashed
])
def test_literal_inputs_of_the_compact_program_are_bit_for_bit(spec, values):
    case = TestCase(Graph((Input(spec, values=values),), (Node("torch.clone", (0,), {}),), (1,)))
    ns = {"torch": torch}
    exec("\n".join(codegen._compact_tensor_lines("x0", spec, values, "")), ns)  # noqa: S102
    got, want = ns["x0"], codegen.build_input(case, 0)
    assert (got.dtype, got.shape, got.stride(), got.storage_offset()) == \
        (want.dtype, want.shape, want.stride(), want.storage_offset())
    assert (got.requires_grad, got.is_leaf) == (want.requires_grad, want.is_leaf)
    assert _bytes(got) == _bytes(want)


def test_a_large_seeded_input_keeps_the_compact_program():
    case = _case([Input(TensorSpec.contiguous((16, 7, 3)), fill="edge")],
                 [Node("torch.nansum", (0,), {"dim": (1,), "keepdim": False})], [1])
    text = codegen.compact_program(case)
    assert text is not None and "make_tensor" not in text
    assert "torch.Generator().manual_seed(" in text and "float('nan')" in text  # the edge table
    assert len(text.splitlines()) <= 45


# ----------------------------------------------------------------------------- the check


def _script_verdict(eager, compiled, reference) -> str | None:
    """What the compact program's check says: None when it passes, else its message."""
    names = [f"output {i}" for i in range(len(eager))]
    loop = (codegen.COMPACT_TOL + "\nfor name, e, c, r in zip(names, eager, compiled, reference):\n"
            + codegen.COMPACT_CHECK.strip("\n").replace('print("eager and compiled agree")', ""))
    ns = {"torch": torch, "names": names, "eager": eager, "compiled": compiled,
          "reference": reference}
    try:
        exec(compile(loop, "check.py", "exec"), ns)  # noqa: S102
    except AssertionError as exc:
        return str(exc)
    return None


def _trial(rng: random.Random):
    """(eager, compiled, reference) of one random output: a float tensor with noise, NaN/inf
    classes moved in compiled or in the reference, or an int/bool tensor, or a Python number."""
    kind = rng.choice(["float", "float", "float", "int", "bool", "scalar"])
    if kind == "scalar":
        e = rng.choice([1.5, NAN, 2.0, 7])
        c = rng.choice([e, 1.5 + 1e-3, NAN, 0.0]) if isinstance(e, float) else rng.choice([7, 8])
        return e, c, (float(e) if isinstance(e, float) else e)
    n = rng.choice([1, 4, 11, 40])
    if kind in ("int", "bool"):
        dtype = torch.bool if kind == "bool" else torch.int32
        e = torch.randint(0, 2 if kind == "bool" else 9, (n,)).to(dtype)
        c = e.clone()
        if rng.random() < 0.5:
            at = rng.randrange(n)
            c[at] = ~c[at] if kind == "bool" else 100
        return e, c, e.clone()
    dtype = rng.choice([torch.float16, torch.bfloat16, torch.float32, torch.float64])
    r = torch.randn(n, dtype=torch.float64)
    e = (r + torch.randn(n, dtype=torch.float64) * rng.choice([0, 1e-6, 1e-3])).to(dtype)
    c = (r + torch.randn(n, dtype=torch.float64) * rng.choice([0, 1e-6, 1e-4, 1e-3, 1e-2, 1])).to(dtype)
    at = rng.randrange(n)
    move = rng.choice(["none", "compiled", "reference", "both"])
    special = rng.choice([NAN, INF, -INF])
    if move in ("compiled", "both"):
        c[at] = special
    if move in ("reference", "both"):
        r[at] = special
        e[at] = special
    return e, c, r


def test_compact_check_agrees_with_the_oracle():
    """The script's check fails exactly when harness/oracle.py's `compare_outputs` reports (the
    same verdict the harness gives an output or a gradient), over random outputs near every
    boundary: tolerances, RMSE against float64, NaN/inf classes, exact ints and bools."""
    torch.manual_seed(0)
    rng = random.Random(0)
    outcomes = {"pass": 0, "fail": 0}
    for _ in range(600):
        outs = [_trial(rng) for _ in range(rng.choice([1, 2]))]
        eager, compiled, reference = ([o[k] for o in outs] for k in range(3))
        harness = oracle.compare_outputs(eager, compiled, reference)
        script = _script_verdict(eager, compiled, reference)
        assert (harness is None) == (script is None), (eager, compiled, reference, harness, script)
        outcomes["pass" if script is None else "fail"] += 1
    assert min(outcomes.values()) > 100  # both verdicts were exercised


def test_check_names_the_first_position_with_three_values():
    e = torch.tensor([1.0, NAN, 3.0])
    message = _script_verdict([e], [torch.tensor([1.0, 0.0, 3.0])], [e.double()])
    assert message == "output 0 at [1] (1 of 3 differ): eager nan, compiled 0.0, float64 reference nan"
    # compiled closer to float64 than eager (eager deviates): not a bug, as the harness says
    assert _script_verdict([torch.tensor([NAN, 2.0])], [torch.tensor([1.0, 2.0])],
                           [torch.tensor([1.0, 2.0], dtype=torch.float64)]) is None


def test_divergence_reads_gradients_and_outputs():
    grad = divergence("AssertionError: gradient of x0 at [0, 1] (2 of 4 differ): eager 1.0, "
                      "compiled 2.0, float64 reference 1.0")
    assert grad["grad"] and grad["what"] == "gradient of x0" and grad["output"] is None
    assert (grad["at"], grad["eager"], grad["compiled"]) == ("0, 1", "1.0", "2.0")
    full = divergence("grad output 0: torch.float32[2, 3] at [1, 0]: eager 1.0, compiled 2.0, "
                      "float64 reference 1.0; max finite")
    assert full["grad"] and full["at"] == "1, 0"
    out = divergence("output 1: torch.float32[2, 3] at [1, 2]: eager nan, compiled 0.0, "
                     "float64 reference nan; max")
    assert out["output"] == 1 and not out["grad"] and out["what"] == "output 1"


# ----------------------------------------------------------------------------- backward


def unfold_case(stride) -> TestCase:
    """A real torch 2.13 gradient bug (campaign bucket 443a72635e9f, reduced): `x[idx]` with a
    repeated index, then `unfold(0, 1, 2)`: with x laid out transposed (stride (2, 1, 2)) the
    compiled gradient also counts the row that unfold skips (2 where eager gives 1)."""
    x = Input(TensorSpec((1, 2, 2), stride, requires_grad=True), values=(1.0, 2.0, 3.0, 4.0))
    idx = Input(TensorSpec.contiguous((2,), "int64"), fill="index", values=(0, 0))
    return _case([x, idx], [Node("Tensor.__getitem__.tensor", (0, 1), {}),
                            Node("Tensor.unfold", (2,), {"dimension": 0, "size": 1, "step": 2})],
                 [3], backward=True)


def test_backward_script_is_compact_and_mirrors_the_harness_loss():
    text = repro_script(unfold_case((2, 1, 2)))
    assert len(text.splitlines()) <= 46, text  # the TOL table takes 3 lines
    assert "def run(f, args, leaves=None):" in text and "make_tensor" not in text
    assert "sum(o.double().sum() for o in out if torch.is_tensor(o) and o.requires_grad " \
           "and o.is_floating_point())" in text  # covfuzz.propagate.backward_loss, inlined
    assert "zip(['output 0', 'gradient of x0'], eager, compiled, reference)" in text
    assert ".as_strided((1, 2, 2), (2, 1, 2), 0)" in text  # the layout the bug needs


def _script_namespace(case: TestCase) -> dict:
    """The definitions of `case`'s compact program (make_args, fn, run), not its runs."""
    text = codegen.compact_program(case)
    ns: dict = {}
    exec(compile(text.split("\n\n\neager = ")[0], "defs.py", "exec"), ns)  # noqa: S102
    return ns


def test_backward_script_judges_none_and_zero_gradients_alike():
    """x1 reaches only a comparison: autograd gives it no gradient (None); the script's `run`
    counts None as zeros, as the harness does; without a float output that needs grad, all
    gradients are zeros (the harness runs no backward)."""
    x = Input(TensorSpec.contiguous((3,), requires_grad=True), values=(1.0, -2.0, NAN))
    y = Input(TensorSpec.contiguous((3,), requires_grad=True), values=(0.5, -0.0, INF))
    case = _case([x, y], [Node("torch.neg", (0,), {}), Node("torch.gt", (1, 0), {})], [2, 3],
                 backward=True)
    ns = _script_namespace(case)
    out, gt, g0, g1 = ns["run"](ns["fn"], ns["make_args"]())
    assert g0.tolist() == [-1.0, -1.0, -1.0] and g1.tolist() == [0.0, 0.0, 0.0]
    x0, x1 = ns["make_args"]()
    assert [g.tolist() for g in ns["run"](lambda a, b: (a > b,), [x0, x1])[1:]] == [[0.0] * 3] * 2


def test_backward_model_parameters_get_their_gradients():
    """A parameter's gradient is the Model's parameter's (a fresh nn.Parameter per run), in
    input order with the plain inputs."""
    w = Input(TensorSpec.contiguous((3,), requires_grad=True), param=True, values=(1.0, 2.0, 3.0))
    x = Input(TensorSpec.contiguous((3,), requires_grad=True), values=(4.0, 5.0, 6.0))
    case = _case([w, x], [Node("torch.mul", (0, 1), {})], [2], backward=True)
    text = codegen.compact_program(case)
    assert "eager = run(model, [x1], [model.x0, x1])" in text and "torch.no_grad()" not in text
    ns = _script_namespace(case)
    x0, x1 = ns["make_args"]()
    model = ns["Model"](x0)
    out, gw, gx = ns["run"](model, [x1], [model.x0, x1])
    assert gw.tolist() == [4.0, 5.0, 6.0] and gx.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.slow
def test_backward_script_runs_standalone_and_agrees_with_the_harness(tmp_path):
    """The compact backward script runs where covfuzz cannot be imported: it passes for a
    correct case and fails with the gradient's values for the real bug, as the harness judges
    the same two cases (pass, grad_mismatch)."""
    from harness.execute import execute
    env = torch_only_env(tmp_path)
    probe = subprocess.run([sys.executable, "-S", "-c", "import covfuzz"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'covfuzz'" in probe.stderr
    cases = {"bug": unfold_case((2, 1, 2)), "correct": unfold_case((4, 2, 1))}
    procs = {name: start_standalone(repro_script(case), tmp_path / name, env)
             for name, case in cases.items()}
    verdicts = {name: execute(serialize.encode(case))["outcome"] for name, case in cases.items()}
    runs = {name: proc.communicate(timeout=600) + (proc.returncode,) for name, proc in procs.items()}
    if not torch.__version__.startswith("2.13.0"):
        pytest.skip(f"the gradient bug was found on torch 2.13.0; this is {torch.__version__}")
    assert verdicts == {"bug": "grad_mismatch", "correct": "pass"}
    out, err, rc = runs["correct"]
    assert rc == 0 and "eager and compiled agree" in out, err[-2000:]
    out, err, rc = runs["bug"]
    assert rc != 0
    assert "AssertionError: gradient of x0 at [0, 0, 0] (4 of 4 differ): eager 1.0, compiled 2.0, " \
           "float64 reference 1.0" in err, err[-2000:]


# ----------------------------------------------------------------------------- shapes


def test_shapes_pass_cuts_a_large_input_to_a_printable_block_of_its_values():
    """First candidate: every input fits MAX_LITERAL_VALUES, as a block of the values it held
    (the window with the most special values); a transposed input stays transposed."""
    spec = TensorSpec((16, 7, 3), (1, 48, 16))  # dim 0 innermost in memory
    case = _case([Input(spec, fill="edge")], [Node("torch.sum", (0,), {"dim": (1,), "keepdim": False})], [1])
    before = codegen.build_input(case, 0)
    first = next(pass_shapes(case))
    inp = first.graph.inputs[0]
    assert inp.values is not None and len(inp.values) <= MAX_LITERAL_VALUES
    assert min(range(3), key=lambda d: inp.spec.stride[d]) == 0  # still dim 0 innermost
    after = codegen.build_input(first, 0)
    blocks = _blocks(before, after.shape)
    assert any(_bytes(b) == _bytes(after) for b in blocks), "not a block of the input's values"
    assert int(special_mask(after).sum()) >= int(special_mask(blocks[0]).sum())  # vs leading
    assert validate(first) is not None


def _blocks(t: torch.Tensor, shape) -> list[torch.Tensor]:
    """Every block of `t` of `shape` whose dims start at 0 or at the end (a halved dim)."""
    out = [t]
    for d, new in enumerate(shape):
        out = [o.narrow(d, s, new) for o in out for s in sorted({0, t.shape[d] - new})]
    return out


def _fixed_point(case: TestCase, keep, passes) -> TestCase:
    """The reducer's loop (tests run the real one on real bugs): the first valid candidate
    that `keep` accepts replaces the case and its pass restarts, until no pass finds one."""
    tried: dict[str, bool] = {}
    progress = True
    while progress:
        progress = False
        for make in passes:
            restart = True
            while restart:
                restart = False
                current = serialize.case_id(case)
                for cand in make(case):
                    cid = serialize.case_id(cand)
                    if cid == current or tried.get(cid) is False:
                        continue
                    checked = validate(cand)
                    tried[cid] = checked is not None and keep(checked)
                    if tried[cid]:
                        case, progress, restart = checked, True, True
                        break
    return case


def test_reduction_makes_a_large_input_printable_and_the_repro_compact():
    """A seeded `edge` input of 336 elements whose sum over a dim holds NaN (what a NaN bug
    needs): shapes then values leave a tiny literal input with the NaN, and the repro is the
    compact program with the NaN spelled out."""
    case = _case([Input(TensorSpec.contiguous((16, 7, 3)), fill="edge")],
                 [Node("torch.sum", (0,), {"dim": (1,), "keepdim": False})], [1], seed=3)

    def sum_has_nan(c: TestCase) -> bool:
        return bool(torch.sum(codegen.build_input(c, 0), dim=(1,)).isnan().any())

    assert sum_has_nan(case) and codegen.build_input(case, 0).numel() > MAX_LITERAL_VALUES
    reduced = _fixed_point(case, sum_has_nan, [pass_shapes, pass_values])
    inp = reduced.graph.inputs[0]
    assert inp.values is not None and len(inp.values) <= 2, inp
    assert any(math.isnan(v) for v in inp.values)
    text = repro_script(reduced)
    assert "float('nan')" in text and "Generator" not in text
    assert len(text.splitlines()) <= 38, text  # the TOL table takes 3 lines


def test_observed_line_says_whose_failure_it_was():
    """A reduced case's repro quotes the failure of the original case: its figures and positions
    are not the reduced program's, and the comment says so."""
    case = _case((Input(TensorSpec.contiguous((3,))),), (Node("torch.sin", (0,), {}),), (1,))
    failure = {"kind": "mismatch", "message": "output 1 value mismatch at [0, 3]"}
    assert "# Observed on covfuzz: mismatch" in repro_script(case, failure)
    reduced = repro_script(case, failure, reduced=True)
    assert "# Observed on the original case, before reduction: mismatch" in reduced
