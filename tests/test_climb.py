"""Climbs (issue 19): a kept execution that came closer to a mismatch than any before (a new
`divergence` feature) has value mutants of its own queued, and `climb` is an arm of the strategy
bandit while they wait: it runs them as often as they pay.
Real campaign objects and real mutators on a real case; the executions are built by hand (what
a worker would return), since which case diverges is what is being set up."""

from __future__ import annotations

import pytest

from covfuzz.campaign import Campaign, CampaignOptions
from covfuzz.campaign.candidates import CLIMB_MUTATORS, CLIMB_STEPS, STRATEGIES
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


def _paid(maker, rates: dict[str, float]) -> None:
    """The strategy bandit as if each arm had earned `rates[arm]` new features per second over
    50 seconds (every other arm of STRATEGIES: 0.1)."""
    for arm in list(STRATEGIES) + ["climb"]:
        maker.strategies.reward(arm, 50 * rates.get(arm, 0.1), 50.0)


@pytest.fixture
def campaign(tmp_path):
    c = Campaign(str(tmp_path / "c"), CampaignOptions(metamorphic_rate=0.0, rng_seed=3,
                                                     sweep_steps=0))  # climbs alone
    yield c
    c.close()


def test_a_case_closer_to_a_mismatch_is_climbed_when_climbs_pay(campaign):
    maker = campaign.candidates
    _paid(maker, {"climb": 20.0})
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


def test_climbs_that_do_not_pay_are_rarely_run(campaign):
    maker = campaign.candidates
    case = _case()
    for i in range(10):  # far more queued than are run below
        maker.learn(_kept(case.replace(seed=100 + i), {"divergence": 1}))
    _paid(maker, {"generate": 20.0, "climb": 0.01})
    strategies = [maker.next().origin.get("strategy") for _ in range(60)]
    # only the bandit's uniform exploration share (0.1, over 5 arms) picks them
    assert strategies.count("climb") <= 6 and strategies.count("generate") >= 40
    # the newest step runs first when one is chosen
    newest = maker.climbs[-1]
    _paid(maker, {"climb": 1e4})
    chosen = [c for c in (maker.next() for _ in range(10)) if c.origin.get("strategy") == "climb"]
    assert chosen and chosen[0].case == newest.case


def test_no_climb_without_a_divergence_find_or_without_feedback(tmp_path, campaign):
    campaign.candidates.learn(_kept(_case(), {"coverage": 500, "values": 3}))
    assert not campaign.candidates.climbs
    base = Campaign(str(tmp_path / "b"), CampaignOptions(no_feedback=True, metamorphic_rate=0.0))
    try:
        base.candidates.learn(_kept(_case(), {"coverage": 5, "divergence": 1}))
        assert not base.candidates.climbs
    finally:
        base.close()
