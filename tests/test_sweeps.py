"""Sweeps (issue 20, covfuzz/campaign/candidates.py): each chosen candidate is followed by value
variants of its own case, which a worker runs on the program it compiled for the candidate
(harness/execute.py's compile reuse). Real campaign objects and mutators; one real campaign."""

from __future__ import annotations

import concurrent.futures as cf
import json

import pytest

from covfuzz import serialize, workdir
from covfuzz.campaign import Campaign, CampaignOptions
from covfuzz.campaign.candidates import SWEEP_GROWTH, SWEEP_MUTATORS, sweep_goes_on
from covfuzz.campaign.execution import Candidate, Execution
from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.propagate import propagate
from harness.pool import LocalPool, WorkerPool, WorkerSpec, start_worker
from harness.result import RunResult

from test_time_split import RecordingPool


def _case(seed=5, **settings) -> TestCase:
    x = TensorSpec.contiguous((3, 37))
    graph = Graph((Input(x), Input(x, fill="positive")),
                  (Node("torch.exp", (0,), {}), Node("torch.mul", (2, 1), {})), (3,))
    return propagate(TestCase(graph, CompileSettings(**settings), seed=seed))


def _chosen(case: TestCase, **origin) -> Candidate:
    return Candidate(case, {"parent": None, "mutators": ["generate"], "depth": 0,
                            "strategy": "generate", **origin})


@pytest.fixture
def campaign(tmp_path):
    c = Campaign(str(tmp_path / "c"), CampaignOptions(metamorphic_rate=0.0, rng_seed=3))
    yield c
    c.close()


def test_a_chosen_candidate_is_followed_by_value_variants_of_its_case(campaign, monkeypatch):
    maker = campaign.candidates
    monkeypatch.setattr(maker, "_choose", lambda: _chosen(_case()))  # what the strategies chose
    parent = maker.next()
    steps = maker.sweep_of(parent)
    assert len(steps) >= 3 and all(s.origin["strategy"] == "sweep" for s in steps)
    pid = serialize.case_id(parent.case)
    for step in steps:
        assert step.origin["parent"] == pid and step.origin["depth"] == 1
        assert step.origin["mutators"][0] in SWEEP_MUTATORS
        g, p = step.case.graph, parent.case.graph
        assert g.nodes == p.nodes and g.outputs == p.outputs  # the same program...
        assert [i.spec for i in g.inputs] == [i.spec for i in p.inputs]
        assert step.case.settings == parent.case.settings
        assert step.case != parent.case  # ...on other values
    # A step goes on only after a result whose program compiled (the worker holds it).
    assert sweep_goes_on(RunResult("pass")) and sweep_goes_on(RunResult("mismatch"))
    assert not any(sweep_goes_on(RunResult(outcome)) for outcome in
                   ("compile_crash", "invalid", "timeout", "process_crash", "runtime_crash"))


@pytest.mark.slow  # two real workers: their start-up and a few compiles
def test_a_group_runs_on_one_worker_and_stops_where_a_result_did_not_compile(tmp_path):
    """Two groups at once on two workers: a sweep whose steps all run on the program their
    case compiled (so on its worker), and one whose case cannot compile, whose steps are not
    run. The pool-agnostic version (WorkerPool.submit_group) stops the same way."""
    good = _case()
    broken = good.replace(seed=0xFA017005)  # harness/faults.py: a backend that raises
    spec = WorkerSpec(cache_dir=str(tmp_path / "inductor"), coverage=False, timeout=300,
                      env={"COVFUZZ_FAULT_INJECTION": "1"})
    with LocalPool(spec, 2) as pool:
        sweep = pool.submit_group([serialize.encode(good.replace(seed=s)) for s in (1, 2, 3, 4)],
                                  sweep_goes_on)
        stopped = pool.submit_group([serialize.encode(c) for c in (broken, good, good)],
                                    sweep_goes_on)
        results = [f.result(timeout=900) for f in sweep]
        assert [r.outcome for r in results] == ["pass"] * 4, [r.message for r in results]
        assert not results[0].details.get("reused_compile")
        assert all(r.details.get("reused_compile") for r in results[1:])
        assert stopped[0].result(timeout=900).outcome == "compile_crash"
        assert all(f.cancelled() for f in stopped[1:])
        # ... and done for concurrent.futures.wait too, as the campaign loop waits on them
        assert not cf.wait(stopped, timeout=5).not_done
        chained = WorkerPool.submit_group(pool, [serialize.encode(c) for c in (broken, good)],
                                          sweep_goes_on)
        assert chained[0].result(timeout=900).outcome == "compile_crash"
        assert chained[1].cancelled() and not cf.wait(chained, timeout=5).not_done
    with pytest.raises(RuntimeError):
        pool.submit_group([serialize.encode(good)], sweep_goes_on)


def test_no_sweep_where_the_program_cannot_serve_other_values(tmp_path, campaign):
    maker = campaign.candidates
    assert maker.sweep_of(_chosen(_case()))
    assert not maker.sweep_of(_chosen(_case(metamorphic="novec")))  # compiles again in between
    assert not maker.sweep_of(_chosen(_case(inductor_config={"freezing": True})))
    assert not maker.sweep_of(_chosen(_case(mode="max-autotune-no-cudagraphs")))
    assert not maker.sweep_of(_chosen(_case(), strategy="climb"))
    for opts in (CampaignOptions(no_feedback=True), CampaignOptions(sweep_steps=0)):
        other = Campaign(str(tmp_path / f"o{opts.sweep_steps}"), opts)
        try:
            assert not other.candidates.sweep_of(_chosen(_case()))
        finally:
            other.close()
    with pytest.raises(ValueError):
        CampaignOptions(sweep_steps=-1)


@pytest.mark.slow  # a real campaign: a worker's start-up and one compile
def test_a_campaigns_sweep_steps_run_on_the_program_their_parent_compiled(tmp_path):
    seed = tmp_path / "seed.cfz"
    seed.write_bytes(serialize.encode(_case()))
    d = str(tmp_path / "camp")
    # Two workers: the seed's steps still run on the worker that compiled it (one group).
    opts = CampaignOptions(workers=2, execs=5, seed_files=[str(seed)], initial_seeds=0,
                           quiet=True, metamorphic_rate=0.0, sweep_steps=4)
    campaign = Campaign(d, opts)
    pool = RecordingPool(campaign._pool())
    campaign.run(pool=pool)
    logged = [json.loads(line) for line in
              (tmp_path / "camp" / workdir.SCHEDULER_LOG).read_text().splitlines()]
    sweeps = [rec for rec in logged if rec.get("strategy") == "sweep"]
    assert len(sweeps) >= 2 and len(pool.results) == len(logged)
    assert all(r.outcome == "pass" for r in pool.results)
    first, rest = pool.results[0], pool.results[1:]
    assert not first.details.get("reused_compile") and first.timings["build"] > 0
    # Every step ran on the seed's compiled program: no Inductor work, no C++ build.
    assert len(rest) == len(sweeps)
    assert all(r.details.get("reused_compile") and r.details.get("recompiled") == 0
               and r.timings["inductor"] == 0 and r.timings["build"] == 0 for r in rest)
    # ... and no Python coverage measured: no compiler code ran.
    assert first.n_lines > 0 and all(r.n_lines == 0 for r in rest)


def test_a_seed_kept_from_a_reused_compile_is_weighed_as_a_compiled_one(campaign):
    seeds = campaign.seeds
    compiled = Execution.of(_chosen(_case()), RunResult("pass", timings={"total": 4.0}))
    reused = Execution.of(_chosen(_case(seed=6)), RunResult(
        "pass", timings={"total": 0.05}, details={"reused_compile": True}))
    assert seeds.exec_time(reused) == 1.0  # nothing compiled yet: the default cost
    assert seeds.exec_time(compiled) == 4.0
    seeds.count_cost(compiled)  # kept (SeedCorpus.add counts it)
    assert seeds.exec_time(reused) == 4.0  # the scheduler must not favour it as 80x cheaper


def _reward(maker, kind: str, times: int, gain: float, seconds: float) -> None:
    for _ in range(times):
        maker.sweep_pay.reward(kind, gain, seconds)


def test_sweeps_grow_while_their_steps_pay_per_second_and_shrink_when_they_stop(campaign):
    maker = campaign.candidates
    base = campaign.opts.sweep_steps
    assert maker.sweep_length() == base and maker.sweep_pay_ratio() is None  # nothing known yet
    # Steps 60x cheaper than a compiled case, finding as much each: the longest sweep.
    _reward(maker, "chosen", 6, gain=1.0, seconds=24.0)
    _reward(maker, "sweep", 6, gain=1.0, seconds=0.4)
    assert maker.sweep_pay_ratio() > 10 and maker.sweep_length() == SWEEP_GROWTH * base
    assert base < len(maker.sweep_of(_chosen(_case()))) <= SWEEP_GROWTH * base
    # Steps that stop finding anything while chosen cases go on: down to a single step.
    for _ in range(200):
        _reward(maker, "sweep", 4, gain=0.0, seconds=0.4)
        _reward(maker, "chosen", 1, gain=1.0, seconds=24.0)
    assert maker.sweep_pay_ratio() < 0.4 and maker.sweep_length() == 1
    campaign.opts.sweep_steps = 0  # --sweep-steps 0: none at all
    assert maker.sweep_length() == 0 and not maker.sweep_of(_chosen(_case()))


def test_sweep_steps_pay_the_sweep_meter_not_the_strategy_bandit(campaign):
    """A step is never the strategy bandit's choice: crediting it there would decay what the
    bandit knows of the strategies with each cheap step."""
    maker = campaign.candidates
    step = Candidate(_case(seed=6), {"parent": "p", "mutators": ["mutate_values"], "depth": 1,
                                     "strategy": "sweep"})
    maker.learn(Execution.of(step, RunResult("pass", timings={"total": 0.3})))
    maker.learn(Execution.of(_chosen(_case()), RunResult("pass", timings={"total": 20.0})))
    assert set(maker.strategies.arms) == {"generate"}
    assert set(maker.sweep_pay.arms) == {"sweep", "chosen"}
    assert set(maker.strategy_table()) == {"generate", "sweep"}  # the status shows both


def test_a_worker_is_recycled_after_cases_that_compiled_not_after_sweep_steps(tmp_path):
    """`recycle_after` counts compiles: value variants run on the program their parent
    compiled do not bring a worker's restart (worker start-up and warm-up) nearer."""
    good = _case()
    other = propagate(TestCase(Graph(good.graph.inputs, (Node("torch.cos", (0,), {}),), (2,)),
                               CompileSettings(), seed=9))
    spec = WorkerSpec(cache_dir=str(tmp_path / "inductor"), coverage=False, timeout=300,
                      recycle_after=2)
    with start_worker(spec) as worker:
        for seed in (1, 2, 3):  # one compile, two runs on its program
            result = worker.run(good.replace(seed=seed))
            assert result.outcome == "pass", result.message
        assert result.details.get("reused_compile") and worker.stats["recycles"] == 0
        assert worker.run(other).outcome == "pass"
        assert worker.stats["recycles"] == 1
