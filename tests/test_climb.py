"""Climbs (issue 19): a kept execution that came closer to a mismatch than any before (a new
`divergence` feature) has value mutants of its own run next, within a share of the candidates.
Real campaign objects and real mutators on a real case; the executions are built by hand (what
a worker would return), since which case diverges is what is being set up."""

from __future__ import annotations

import pytest

from covfuzz.campaign import Campaign, CampaignOptions
from covfuzz.campaign.candidates import CLIMB_MUTATORS, CLIMB_SHARE, CLIMB_STEPS
from covfuzz.campaign.execution import Candidate, Execution
from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.propagate import propagate
from harness.result import RunResult


def _case() -> TestCase:
    """exp of a float32 [3, 37]: values to move, a vectorized body and a scalar tail."""
    x = TensorSpec.contiguous((3, 37))
    graph = Graph((Input(x),), (Node("torch.exp", (0,), {}),), (1,))
    return propagate(TestCase(graph, CompileSettings(), seed=5))


def _kept(case: TestCase, novelty: dict, origin: dict | None = None) -> Execution:
    origin = origin or {"parent": None, "mutators": ["generate"], "depth": 0, "strategy": "generate"}
    ex = Execution.of(Candidate(case, origin), RunResult("pass", timings={"total": 1.0}))
    ex.kept, ex.novelty = True, novelty
    return ex


@pytest.fixture
def campaign(tmp_path):
    c = Campaign(str(tmp_path / "c"), CampaignOptions(metamorphic_rate=0.0, rng_seed=3,
                                                     sweep_steps=0))  # climbs alone
    yield c
    c.close()


def test_a_case_closer_to_a_mismatch_is_climbed_first(campaign):
    maker = campaign.candidates
    ex = _kept(_case(), {"coverage": 40, "divergence": 1})
    maker.learn(ex)
    assert len(maker.climbs) == CLIMB_STEPS
    steps = []
    for _ in range(40):
        candidate = maker.next()
        if candidate.origin.get("strategy") == "climb":
            steps.append(candidate)
    assert len(steps) == CLIMB_STEPS and not maker.climbs
    for step in steps:
        assert step.origin["parent"] == ex.case_id and step.origin["depth"] == 1
        assert len(step.origin["mutators"]) == 1 and step.origin["mutators"][0] in CLIMB_MUTATORS
        # values or element counts moved, not the ops
        assert [n.op for n in step.case.graph.nodes] == [n.op for n in ex.case.graph.nodes]
        assert step.case != ex.case
    # A climb step that came closer again climbs on from there.
    maker.learn(_kept(steps[0].case, {"divergence": 2}, steps[0].origin))
    assert maker.climbs and all(c.origin["depth"] == 2 for c in maker.climbs)


def test_climbs_stay_within_their_share(campaign):
    maker = campaign.candidates
    case = _case()
    for i in range(10):  # far more queued than the share allows
        maker.learn(_kept(case.replace(seed=100 + i), {"divergence": 1}))
    strategies = [maker.next().origin.get("strategy") for _ in range(30)]
    assert 0 < strategies.count("climb") <= CLIMB_SHARE * 30 + 1


def test_no_climb_without_a_divergence_find_or_without_feedback(tmp_path, campaign):
    campaign.candidates.learn(_kept(_case(), {"coverage": 500, "values": 3}))
    assert not campaign.candidates.climbs
    base = Campaign(str(tmp_path / "b"), CampaignOptions(no_feedback=True, metamorphic_rate=0.0))
    try:
        base.candidates.learn(_kept(_case(), {"coverage": 5, "divergence": 1}))
        assert not base.candidates.climbs
    finally:
        base.close()
