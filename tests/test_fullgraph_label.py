"""Triage labels Dynamo's refusal of a graph break under fullgraph=True `fullgraph_break` (not a
bug) when the case passes with graph breaks allowed; other compile crashes stay confirmed."""

from __future__ import annotations

import dataclasses

import pytest

from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.propagate import propagate
from covfuzz.triage.pipeline import Budgets, triage_failure
from harness.pool import WorkerSpec, start_worker

from test_triage_stage import index_add_crash

pytestmark = pytest.mark.slow


def _lstsq(fullgraph: bool) -> TestCase:
    """torch.linalg.lstsq's residuals: their shape depends on the values (the matrix's rank),
    so Dynamo must break the graph there (found by a campaign, reduced to this)."""
    x = Input(TensorSpec.contiguous((1, 1)), values=(0.0,))
    graph = Graph((x,), (Node("torch.linalg.lstsq", (0, 0), {"driver": "gels", "item": 2}),),
                  (1,))
    return propagate(TestCase(graph, CompileSettings(fullgraph=fullgraph), seed=29))


def _refusal_then_crash() -> TestCase:
    """index_add_crash's graph, then lstsq's residuals: under fullgraph=True Dynamo refuses the
    residuals; with graph breaks allowed, Inductor compiles the index_add and crashes."""
    crash = index_add_crash()
    x = Input(TensorSpec.contiguous((1, 1)), values=(0.0,))
    lstsq = Node("torch.linalg.lstsq", (3, 3), {"driver": "gels", "item": 2})
    graph = Graph(crash.graph.inputs + (x,),
                  (Node("torch.index_add", (0, 1, 2), {"dim": -1}), lstsq), (4, 5))
    return propagate(TestCase(graph, CompileSettings(fullgraph=True), seed=crash.seed))


def test_a_graph_break_refused_under_fullgraph_is_labelled_and_a_real_crash_is_not():
    case = _lstsq(True)
    crash = index_add_crash()
    crash = crash.replace(settings=dataclasses.replace(crash.settings, fullgraph=True))
    with start_worker(WorkerSpec.for_reducer(timeout=120)) as worker:
        refused = worker.run(case, coverage=False)
        assert refused.outcome == "compile_crash", refused.message
        assert refused.exc_type == "torch._dynamo.exc.Unsupported", refused.exc_type
        assert refused.details["check"]["root_type"] == "DynamicOutputShapeException"
        out = triage_failure(case, refused.to_dict(), budgets=Budgets(timeout=120),
                             reduce=False, worker=worker)
        assert out.state == "not_a_bug", out.record()
        assert out.label[0] == "fullgraph_break" and "fullgraph=False" in out.label[1]
        # The refusal and, past it, another failure (a real Inductor crash): the refusal is
        # still by design; the crash is another bug, which this bucket does not stand for.
        both = _refusal_then_crash()
        refused = worker.run(both, coverage=False)
        assert refused.exc_type == "torch._dynamo.exc.Unsupported", refused.message
        out = triage_failure(both, refused.to_dict(), budgets=Budgets(timeout=120),
                             reduce=False, worker=worker)
        assert out.state == "not_a_bug" and "then gives compile_crash" in out.label[1], out.record()
        # Near miss: a real Inductor crash under fullgraph=True is not a graph break.
        real = worker.run(crash, coverage=False)
        assert real.outcome == "compile_crash", real.message
        confirmed = triage_failure(crash, real.to_dict(), budgets=Budgets(timeout=120),
                                   reduce=False, worker=worker)
        assert confirmed.state == "confirmed", confirmed.record()
