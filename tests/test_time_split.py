"""Where campaign time goes (issue 20): each execution's time split into stages by torch's own
compile instrumentation, summed by a real campaign with its workers' idle time into
fuzzer_stats.json, shown by `covfuzz status`; status files and states made before the split
still load, and a damaged split is refused in one line."""

import json
import math

import pytest

from cli_inprocess import run_covfuzz
from covfuzz import serialize, workdir
from covfuzz.campaign import Campaign, CampaignOptions
from covfuzz.campaign.state import CampaignStateError, Counters
from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.propagate import propagate
from covfuzz.status import read_status, status_view, time_line
from harness.pool import WorkerPool
from harness.result import STAGES, compile_parts, stage_split

TRIAGE_KEYS = ("triage_confirm", "triage_localize", "triage_reduce")
PARTS = ("dynamo", "aot", "inductor", "build")


class RecordingPool(WorkerPool):
    """The campaign's own local pool, each result also kept for the test to read."""

    def __init__(self, inner):
        self.inner, self.results = inner, []

    @property
    def size(self):
        return self.inner.size

    def submit(self, case_bytes):
        return self.submit_group([case_bytes], lambda result: False)[0]

    def submit_group(self, cases, keep_going):  # the inner pool's groups, on one worker each
        futures = self.inner.submit_group(cases, keep_going)
        for future in futures:
            future.add_done_callback(lambda f: f.cancelled() or self.results.append(f.result()))
        return futures

    def restarts(self):
        return self.inner.restarts()

    def close(self):
        self.inner.close()


def tiny_case(backward: bool, seed: int) -> TestCase:
    x = TensorSpec.contiguous((4, 9), requires_grad=backward)
    graph = Graph((Input(x),), (Node("torch.sin", (0,), {}), Node("torch.mul", (1, 0), {})), (2,))
    return propagate(TestCase(graph, CompileSettings(backward=backward), seed=seed))


@pytest.mark.slow  # a real campaign: a worker's start-up and two compiles (as test_campaign.py)
def test_a_real_campaign_stores_the_split_and_status_shows_it(tmp_path):
    seeds = []
    for i, backward in enumerate((True, False)):
        path = tmp_path / f"seed{i}.cfz"
        path.write_bytes(serialize.encode(tiny_case(backward, 700 + i)))
        seeds.append(str(path))
    d = str(tmp_path / "camp")
    opts = CampaignOptions(workers=1, execs=2, seed_files=seeds, initial_seeds=0, quiet=True,
                           no_feedback=True, status_interval=1.0)
    campaign = Campaign(d, opts)
    pool = RecordingPool(campaign._pool())
    status = campaign.run(pool=pool)

    # Each execution: torch's compile parts lie inside the regions they ran in, and the stages
    # partition its total.
    assert len(pool.results) == 2 and all(r.outcome == "pass" for r in pool.results)
    for r in pool.results:
        t = r.timings
        elsewhere = t["compile_in_eager"] + t["compile_in_run"] + t["compile_in_backward"]
        assert sum(t[k] for k in PARTS) - elsewhere <= t["compile"] + 1e-6
        assert t["compile_in_backward"] <= t["backward"] + 1e-6
        split = r.stages()
        assert set(split) == set(STAGES) and min(split.values()) >= 0
        assert math.isclose(sum(split.values()), t["total"], rel_tol=1e-9)
        assert split["compile_other"] > 0  # the parts did not overflow the region
    lazy = [r for r in pool.results if r.timings["backward"] > 0]
    assert len(lazy) == 1 and lazy[0].timings["compile_in_backward"] > 0  # backward's own compile

    # The campaign: every stage key, non-negative, no more than the worker slots' time.
    split = read_status(d)["time_split"]
    assert split == status["time_split"]
    stages = split["stages"]
    assert set(stages) == {*STAGES, *TRIAGE_KEYS, "idle"}
    assert min(stages.values()) >= 0 and split["execs"] == 2
    assert 0 < sum(stages.values()) <= split["worker_seconds"] <= status["elapsed"] + 1
    assert all(stages[k] > 0 for k in PARTS) and stages["idle"] > 0
    executed = sum(r.timings["total"] for r in pool.results)
    assert math.isclose(sum(stages[k] for k in STAGES), executed, abs_tol=0.01)
    lines = (tmp_path / "camp" / workdir.SCHEDULER_LOG).read_text().splitlines()
    logged = [json.loads(line) for line in lines]
    assert all(abs(sum(rec["stages"].values()) - rec["seconds"]) < 0.02 for rec in logged)

    shown = run_covfuzz("status", d)
    assert shown.returncode == 0, shown.stderr
    line = next(s for s in shown.stdout.splitlines() if s.startswith("time: "))
    assert "execs/hour/worker" in line and "build " in line and "idle " in line
    plotted = run_covfuzz("plot", d)  # the PNG's last panel; the line on stdout
    assert plotted.returncode == 0 and line in plotted.stdout


def minimal_status(**extra) -> dict:
    return {"elapsed": 60.0, "execs": 3, "execs_per_s": 0.05, "corpus": 1, "features": 10,
            "unique_failures": 0, "worker_restarts": 0, **extra}


def write_status(d, obj) -> None:
    d.mkdir(exist_ok=True)
    (d / workdir.STATS).write_text(json.dumps(obj))


def test_status_files_without_or_with_a_damaged_split(tmp_path):
    d = tmp_path / "old"
    write_status(d, minimal_status())  # made before the split existed
    s = read_status(str(d))
    assert s["time_split"] is None and time_line(s) is None
    assert not any(line.startswith("time: ") for line in status_view(s, str(d)))
    shown = run_covfuzz("status", str(d))
    assert shown.returncode == 0 and "time: " not in shown.stdout

    split = {"worker_seconds": 7200.0, "execs": 1240,
             "stages": {"build": 3600.0, "inductor": 1440.0, "idle": 72.0}}
    write_status(d, minimal_status(time_split=split))
    line = time_line(read_status(str(d)))
    assert line == ("time: 2.00 worker-hours, 620 execs/hour/worker | build 50.0%, "
                    "inductor 20.0%, idle 1.0%, unaccounted 29.0%")

    for bad in ({"worker_seconds": -1.0}, {"execs": "many"}, {"stages": {"build": 1e300}},
                {"stages": {"build": -3}}, {"stages": [1, 2]}, "fast"):
        write_status(d, minimal_status(time_split=bad))
        shown = run_covfuzz("status", str(d))
        assert shown.returncode == 2, (bad, shown.stdout)
        assert len(shown.stderr.strip().splitlines()) == 1 and "time_split" in shown.stderr


def test_stage_split_of_old_damaged_and_killed_results():
    old = {"eager": 0.1, "compile": 2.0, "run": 0.1, "backward": 0.0, "coverage": 0.3,
           "overhead": 0.5, "total": 3.0}  # a result from before the parts were measured
    split = stage_split(old, "pass")
    assert split["compile_other"] == 2.0 and math.isclose(sum(split.values()), 3.0)
    assert math.isclose(split["harness"], 0.5)
    junk = dict(old, dynamo=float("nan"), aot=-4.0, build="x", reference=True)
    assert stage_split(junk, "pass") == split
    killed = stage_split({"total": 120.0, "overhead": 120.0}, "timeout")
    assert killed["killed"] == 120.0 and sum(killed.values()) == 120.0
    # Parts measured beyond their region are scaled back: still a partition of the total.
    over = dict(old, build=5.0)
    assert math.isclose(sum(stage_split(over, "pass").values()), 3.0)
    # Keys that nest are capped by their parent: the parts sum to the compile windows.
    parts = compile_parts({"frame": 2.0, "OutputGraph.call_user_compiler": 3.0,
                           "create_aot_dispatcher_function": 1.0, "compile_fx_inner": 0.8,
                           "compile_file": 0.5, "lazy_backward": 0.4})
    assert math.isclose(sum(parts.values()), 2.4) and min(parts.values()) >= 0
    assert parts == pytest.approx({"dynamo": 0.0, "aot": 0.6, "inductor": 1.3, "build": 0.5})


def test_states_without_or_with_a_damaged_split():
    assert Counters.from_dict({"execs": 4}).time_split == {}  # a state from before the split
    counters = Counters.from_dict({"execs": 4, "time_split": {"build": 1.5, "worker": 9.0},
                                   "timed_execs": 2})
    assert counters.time_split == {"build": 1.5, "worker": 9.0} and counters.timed_execs == 2
    assert Counters.from_dict(counters.to_dict()).time_split == counters.time_split
    for bad in ({"time_split": {"build": -1}}, {"time_split": [3]}, {"timed_execs": -2},
                {"time_split": {"build": "1"}}):
        with pytest.raises(CampaignStateError):
            Counters.from_dict(bad)
