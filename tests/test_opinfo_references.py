"""Independent references from PyTorch's OpInfo database (harness/references.py) deciding the
non-bug labels (harness/labels.py), issue 18 point 4.

The real case: torch.native_layer_norm's mean output (item 1) over a row holding +inf (or -inf
and FLT_MAX). Eager's CPU kernel accumulates the row mean with Welford's update, which turns
inf followed by a finite value into inf - inf = NaN; its float64 run is the same algorithm and
gives NaN too, while the exact mean is +-inf. Inductor computes it right. OpInfo's
reference_native_layer_norm (numpy mean) gives +-inf, and no hand-written numpy entry covers
the op, so only the OpInfo ref can tell the divergence is eager's.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.ops import get_op
from covfuzz.propagate import propagate
from harness import labels, references
from harness.execute import probe_case
from harness.labels import CulpritContext, label

pytest.importorskip("expecttest")  # PyTorch's test utilities, hence op_db, need it

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INF = math.inf
F32_MAX = torch.finfo(torch.float32).max
LN = "torch.native_layer_norm"
LN_ATTRS = {"p1": (3,), "p4": 1e-5, "item": 1}  # normalized_shape, eps; item 1: the row mean


def run_op(op: str, attrs: dict, args: list):
    """The catalog op, run eagerly: its template rendered with the test's literal attrs."""
    names = [f"a{i}" for i in range(len(args))]
    expr = get_op(op).render(names, attrs)
    return eval(expr, {"torch": torch}, dict(zip(names, args)))  # noqa: S307 (test literals)


# Rows of the input: +inf then finite values, an ordinary row, -inf then FLT_MAX.
ROWS = [(INF, 1.0, 2.0), (1.0, 2.0, 3.0), (-INF, F32_MAX, 1.0)]


def _layer_norm_case(rows) -> TestCase:
    flat = tuple(v for row in rows for v in row)
    inputs = (Input(TensorSpec.contiguous((len(rows), 3)), values=flat),
              Input(TensorSpec.contiguous((3,)), values=(1.0, 1.0, 1.0)),
              Input(TensorSpec.contiguous((3,)), values=(0.0, 0.0, 0.0)))
    graph = Graph(inputs, (Node(LN, (0, 1, 2), LN_ATTRS),), (3,))
    return propagate(TestCase(graph, CompileSettings(), seed=0))


def _culprit(probe) -> CulpritContext:
    return CulpritContext(op=LN, attrs=dict(LN_ATTRS), args=list(probe.inputs),
                          eager=probe.eager[0], compiled=probe.compiled[0],
                          reference=probe.reference[0],
                          evaluate=lambda a: run_op(LN, LN_ATTRS, a), rerun=None)


@pytest.mark.slow
def test_shared_welford_defect_is_decided_by_the_opinfo_reference():
    assert LN not in labels._NUMPY  # no hand-written reference: the OpInfo ref is the judge
    assert get_op(LN).check_attrs(LN_ATTRS) is None  # a case the catalog can generate
    # A real run of the one-node case through the harness (real torch.compile, oracle).
    probe = probe_case(_layer_norm_case(ROWS))
    eager, compiled, f64 = probe.eager[0], probe.compiled[0], probe.reference[0]
    assert eager[:, 0].tolist()[1] == 2.0 and eager[[0, 2], 0].isnan().all()  # eager: NaN
    assert f64[[0, 2], 0].isnan().all()  # its float64 run shares the defect
    assert compiled[:, 0].tolist() == [INF, 2.0, -INF]  # Inductor: the exact means
    # Judged against eager's float64 run, the oracle blames compiled.
    assert probe.verdicts[0] is not None and probe.verdicts[0]["kind"] == "nonfinite"

    ref = references.reference(LN, probe.inputs, LN_ATTRS, eager.shape)
    assert ref is not None and ref.value[:, 0].tolist() == [INF, 2.0, -INF]
    assert ref.source == ("OpInfo native_layer_norm ref "
                          "common_methods_invocations.reference_native_layer_norm")

    name, reason = label(_culprit(probe))
    assert name == "compiled_closer", reason
    assert "(OpInfo native_layer_norm ref" in reason and "exact inf" in reason

    # Every row special: no position where eager and compiled agree to check the ref's call
    # on, so the label falls back to eager's float64 run, which shares the NaN: no label.
    alone = probe_case(_layer_norm_case([ROWS[0], ROWS[2]]))
    assert alone.compiled[0][:, 0].tolist() == [INF, -INF] and alone.verdicts[0] is not None
    assert labels.compiled_closer(_culprit(alone)) is None and label(_culprit(alone)) is None


@pytest.mark.slow
def test_triage_in_a_worker_labels_it_not_a_bug():
    # The campaign's path: a real worker runs the case, the triage pipeline localizes it in
    # that worker (which imports op_db there) and labels it; the worker then runs on.
    from covfuzz.triage.pipeline import Budgets, triage_failure
    from harness.pool import WorkerSpec, start_worker
    case = _layer_norm_case(ROWS)
    worker = start_worker(WorkerSpec.for_reducer(timeout=300))
    try:
        result = worker.run(case, coverage=False)
        assert result.outcome == "mismatch", result.message
        t = triage_failure(case, result.to_dict(), worker=worker, reduce=False,
                           budgets=Budgets(localize=300, timeout=300))
        assert t.state == "not_a_bug" and t.label[0] == "compiled_closer", (t.state, t.label)
        assert "(OpInfo native_layer_norm ref" in t.label[1]
        assert worker.run(case, coverage=False).outcome == "mismatch"
    finally:
        worker.close()


def test_an_op_without_an_opinfo_ref_gets_none():
    assert references._opinfos()["logaddexp2"].ref is None  # OpInfo has no ref for it
    x = torch.tensor([1.0, INF])
    assert get_op("torch.logaddexp2").source == "opinfo"
    assert references.opinfo_of("torch.logaddexp2") is None
    assert references.reference("torch.logaddexp2", [x, x], {}, x.shape) is None
    assert references.reference("no.such.op", [x], {}, x.shape) is None


def test_a_ref_that_calls_torch_is_not_independent():
    # OpInfo's conv_transpose refs convert to tensors and run torch's own convolution.
    attrs = {"groups": 1, "output_padding": (1,), "padding": 2, "stride": (2,)}
    gen = torch.Generator().manual_seed(0)
    args = [torch.randn(1, 3, 4, generator=gen), torch.randn(3, 3, 3, generator=gen),
            torch.randn(3, generator=gen)]
    out = run_op("F.conv_transpose1d", attrs, args)
    info = references.opinfo_of("F.conv_transpose1d")
    assert info is not None and info.ref is not None
    assert references.reference("F.conv_transpose1d", args, attrs, out.shape) is None
    assert references.REJECTED["nn.functional.conv_transpose1d"].startswith("calls torch")
    with pytest.raises(references.NotIndependent):
        references.run_independent(lambda a: torch.from_numpy(a).sin().numpy(),
                                   [args[2].numpy()], {})
    # a NumPy ref runs untouched
    assert references.run_independent(lambda a: a * 2, [args[2].numpy()], {}).shape == (3,)


def test_refs_that_depend_on_the_dtype_are_refused():
    # nan_to_num's default posinf is the dtype's max: numpy's float64 answer overflows float32.
    x = torch.tensor([INF, 1.0, -2.0])
    attrs = {"nan": 0.0, "posinf": None, "neginf": None}
    assert references.reference("torch.nan_to_num", [x], attrs, x.shape) is None
    r = references.reference("torch.nan_to_num", [x.double()], attrs, x.shape)
    assert r is not None and r.value.tolist() == [torch.finfo(torch.float64).max, 1.0, -2.0]


def test_numpy_ufunc_refs_are_marked_ieee():
    x = torch.tensor([0.5, -0.0, INF])
    r = references.reference("torch.sin", [x], {}, x.shape)  # hand-written op, same callable
    assert r is not None and r.ieee_ufunc and r.source == "OpInfo sin ref numpy.sin"
    r = references.reference("torch.special.i0e", [x], {}, x.shape)  # scipy: not C99's
    assert r is not None and not r.ieee_ufunc and r.source.endswith("scipy.special.i0e")


def test_eager_not_ieee_judged_by_an_opinfo_numpy_ufunc():
    # torch.float_power has no hand-written numpy entry; OpInfo's ref is numpy.float_power.
    assert "torch.float_power" not in labels._NUMPY
    x, y = torch.tensor([-0.0, 2.0]), torch.tensor([-1.0, 2.0])
    ieee = run_op("torch.float_power", {}, [x, y])  # C99: pow(-0, -1) = -inf
    assert ieee.tolist() == [-INF, 4.0]
    broken_eager = ieee.clone()
    broken_eager[0] = INF  # an eager kernel that loses the sign of zero
    c = CulpritContext(op="torch.float_power", attrs={}, args=[x, y], eager=broken_eager,
                       compiled=ieee, reference=None,
                       evaluate=lambda a: run_op("torch.float_power", {}, a), rerun=None)
    name, reason = label(c)
    assert name == "eager_not_ieee" and "(OpInfo float_power ref numpy.float_power)" in reason


def test_the_reason_names_the_source_that_decided():
    # the hand-written numpy table first, then the OpInfo ref (float64 eager: see the
    # subprocess test without expecttest below)
    for op, source in (("torch.log", "(numpy float64)"),
                       ("torch.special.i0e", "(OpInfo special.i0e ref scipy.special.i0e)")):
        x = torch.tensor([2.0, 3.0])
        exact = run_op(op, {}, [x])
        c = CulpritContext(op=op, attrs={}, args=[x], eager=exact * torch.tensor([1.5, 1.0]),
                           compiled=exact, reference=None,
                           evaluate=lambda a, op=op: run_op(op, {}, a), rerun=None)
        name, reason = label(c)
        assert name == "compiled_closer" and reason.endswith(source), reason


_STATE = """
import sys, warnings, torch
def state():
    return (torch.backends.flags_frozen(), repr(warnings.filters), list(sys.path),
            torch.get_default_dtype())
from harness import references  # imports covfuzz's catalog, not op_db
before = state()
assert references._opinfos(), 'op_db'
assert state() == before, (before, state())
torch.backends.cudnn.benchmark = False  # raises while disable_global_flags() holds
print('restored')
"""

_NO_EXPECTTEST = """
import sys, torch
sys.modules['expecttest'] = None  # as if not installed: importing it raises ImportError
from harness import labels, references
x = torch.tensor([1.0, 2.0])
assert references.reference('torch.special.i0e', [x], {}, x.shape) is None
assert references.reference('torch.special.i0e', [x], {}, x.shape) is None  # noted once
exact = torch.special.i0e(x)
ctx = labels.CulpritContext(op='torch.special.i0e', attrs={}, args=[x],
                            eager=exact * torch.tensor([1.5, 1.0]), compiled=exact,
                            reference=None, evaluate=lambda a: torch.special.i0e(a[0]), rerun=None)
name, reason = labels.label(ctx)
assert name == 'compiled_closer' and reason.endswith('(float64 eager)'), reason
print('fallback')
"""


@pytest.mark.parametrize("script, printed", [(_STATE, "restored"), (_NO_EXPECTTEST, "fallback")],
                         ids=["state_restored", "without_expecttest"])
def test_importing_op_db_leaves_no_global_state_and_is_optional(script, printed):
    # A fresh process: op_db's import runs its global changes only once per process.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get(
        "PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == printed
    notes = [line for line in proc.stderr.splitlines() if "no OpInfo references" in line]
    assert len(notes) == (1 if printed == "fallback" else 0), proc.stderr[-2000:]
