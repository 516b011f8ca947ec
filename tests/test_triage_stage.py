"""Background triage in a real campaign: new buckets are confirmed in a fresh worker process,
reduced, and recorded on the bucket; what a fresh process does not reproduce is `flaky` and is
not listed as a root cause. Real workers, real torch.compile, a real LMDB store."""

import dataclasses
import json

import pytest

from corpus import CorpusStore
from covfuzz import serialize, workdir
from covfuzz.campaign import Campaign, CampaignOptions
from covfuzz.campaign.triage_stage import TriageStage
from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.propagate import propagate
from covfuzz.triage import failures as F
from covfuzz.triage.pipeline import Budgets, triage_failure
from harness.faults import FAULT_SEEDS
from harness.pool import WorkerSpec, start_worker

from cli_inprocess import run_covfuzz

pytestmark = pytest.mark.slow

RAISE_COMPILE = next(k for k, v in FAULT_SEEDS.items() if v == "raise_compile")
HANG = next(k for k, v in FAULT_SEEDS.items() if v == "hang")


def index_add_crash() -> TestCase:
    """A real Inductor crash in torch 2.13 (tests/test_repro_real_bug.py), behind a relu whose
    output is also returned: reduction must cut the relu."""
    inputs = (Input(TensorSpec.contiguous((4, 4, 1))),
              Input(TensorSpec.contiguous((6,), dtype="int64"), fill="index"),
              Input(TensorSpec.contiguous((4, 4, 6))))
    nodes = (Node("torch.index_add", (0, 1, 2), {"dim": -1}), Node("F.relu", (2,), {}))
    return propagate(TestCase(Graph(inputs, nodes, (3, 4)), CompileSettings(), seed=565))


def injected_crash() -> TestCase:
    """Fails only in workers started with fault injection on (the campaign's), never in the
    fresh process that confirms it: a stand-in for a failure that depends on a warm process."""
    x = TensorSpec.contiguous((4,))
    graph = Graph((Input(x),), (Node("F.relu", (0,), {}),), (1,))
    return propagate(TestCase(graph, CompileSettings(), seed=RAISE_COMPILE))


def test_new_buckets_are_confirmed_reduced_or_found_flaky(tmp_path):
    seeds = []
    for name, case in (("crash", index_add_crash()), ("flaky", injected_crash())):
        path = tmp_path / f"{name}.cfz"
        path.write_bytes(serialize.encode(case))
        seeds.append(str(path))
    d = str(tmp_path / "camp")
    # inject_faults: the campaign's workers obey fault seeds; a rate this small draws none.
    opts = CampaignOptions(workers=1, execs=2, seed_files=seeds, initial_seeds=0, quiet=True,
                           inject_faults=1e-12, no_feedback=True)
    stage = TriageStage(d, Budgets(localize=60, reduce=120, timeout=60))
    status = Campaign(d, opts, stages=[stage]).run()

    with CorpusStore(workdir.corpus_path(d), readonly=True) as store:
        rows = F.buckets(store, d)
    states = sorted((r["kind"], r["triage"]["state"]) for r in rows)
    assert states == [("compile_crash", "confirmed"), ("compile_crash", "flaky")], rows
    crash = next(r for r in rows if r["triage"]["state"] == "confirmed")
    assert crash["reduced"] and crash["reduced_nodes"] == 1  # the relu is gone
    assert F.reduced_info(d, crash["signature_id"])["root_id"] == crash["triage"]["root_id"]
    causes = F.root_causes(rows)
    assert [c["root_id"] for c in causes] == [crash["triage"]["root_id"]]
    assert [r["signature_id"] for r in F.hidden_rows(rows)] != []
    assert status["triage"]["states"] == {"confirmed": 1, "flaky": 1}
    assert status["triage_queue"] == 0 and status["triage"]["worker_share"] > 0
    on_disk = json.loads((tmp_path / "camp" / workdir.STATS).read_text())
    assert on_disk["triage"]["root_causes"] == 1

    # The morning view: one root cause, the check that fired beneath Dynamo's wrapper, the
    # flaky bucket counted and not listed (and listed with --all).
    ran = run_covfuzz("crashes", d)
    assert ran.returncode == 0, ran.stderr
    assert "1 root causes" in ran.stdout and "not reported: flaky 1" in ran.stdout
    assert "assert isinstance(index, CppCSEVariable) and index.is_vec" in ran.stdout
    assert "reduced to 1 nodes" in ran.stdout
    assert "flaky: fresh process gave pass" in run_covfuzz("crashes", d, "--all").stdout
    shown = run_covfuzz("show", crash["signature_id"], "--dir", d, "--no-code")
    assert "failing check: " in shown.stdout and "index.is_vec" in shown.stdout, shown.stdout


def test_a_different_failure_in_the_fresh_process_opens_its_own_bucket(tmp_path, capsys):
    """The campaign's worker times out (fault injection hangs it before the compile); the fresh
    process that confirms the timeout has no injection and meets the real Inductor crash. The
    timeout bucket is flaky, the crash becomes a bucket of its own and is triaged too."""
    case = dataclasses.replace(index_add_crash(), seed=HANG)
    path = tmp_path / "hang.cfz"
    path.write_bytes(serialize.encode(case))
    d = str(tmp_path / "camp")
    opts = CampaignOptions(workers=1, execs=1, seed_files=[str(path)], initial_seeds=0,
                           quiet=False, inject_faults=1e-12, no_feedback=True, timeout=20.0)
    stage = TriageStage(d, Budgets(localize=60, reduce=60, timeout=60))
    Campaign(d, opts, stages=[stage]).run()
    with CorpusStore(workdir.corpus_path(d), readonly=True) as store:
        rows = F.buckets(store, d)
    states = sorted((r["kind"], r["triage"]["state"]) for r in rows)
    assert states == [("compile_crash", "confirmed"), ("timeout", "flaky")], rows
    flaky = next(r for r in rows if r["kind"] == "timeout")
    assert flaky["triage"]["fresh_outcome"] == "compile_crash"
    log = capsys.readouterr().err
    assert f"(seen when confirming {flaky['signature_id']} in a fresh process)" in log


def test_a_bucket_left_untriaged_is_queued_on_resume(tmp_path):
    """A campaign interrupted before triage recorded anything: the next run triages it."""
    d = str(tmp_path / "camp")
    path = tmp_path / "crash.cfz"
    path.write_bytes(serialize.encode(index_add_crash()))
    opts = CampaignOptions(workers=1, execs=1, seed_files=[str(path)], initial_seeds=0,
                           quiet=True, no_feedback=True)
    Campaign(d, opts).run()  # no triage stage: the bucket stays untriaged
    with CorpusStore(workdir.corpus_path(d), readonly=True) as store:
        assert [r["triage"] for r in F.buckets(store, d)] == [None]
    stage = TriageStage(d, Budgets(localize=60, reduce=60, timeout=60))
    Campaign(d, CampaignOptions(workers=1, execs=0, initial_seeds=0, quiet=True, no_feedback=True),
             stages=[stage]).run()
    with CorpusStore(workdir.corpus_path(d), readonly=True) as store:
        rows = F.buckets(store, d)
    assert [r["triage"]["state"] for r in rows] == ["confirmed"]


def test_a_timeout_is_a_hang_only_when_a_fresh_process_cannot_finish_either():
    """A campaign timeout whose case a fresh process finishes late (here: a first compile takes
    seconds, the recorded limit was 2 s) is `slow`, not a bug; one it finishes well inside the
    limit did not need the time (flaky); one that still runs at the hang limit is confirmed."""
    case = injected_crash().replace(seed=7)  # a plain relu: passes everywhere
    timed_out = {"outcome": "timeout", "exc_type": "", "message": "timed out after 2 s",
                 "frames": [], "details": {"timeout": 2.0}}
    slow = triage_failure(case, timed_out, budgets=Budgets(timeout=60, hang=120), reduce=False)
    assert slow.state == "not_a_bug" and slow.label[0] == "slow", slow.record()
    assert "slow, not hung" in slow.label[1]

    with start_worker(WorkerSpec.for_reducer(timeout=60)) as warm:
        warm.run(case, timeout=60, coverage=False)  # warm: the next run takes well under 1 s
        roomy = dict(timed_out, details={"timeout": 100.0})
        flaky = triage_failure(case, roomy, budgets=Budgets(timeout=60, hang=120), reduce=False,
                               worker=warm)
    assert flaky.state == "flaky" and flaky.fresh["outcome"] == "pass"

    hang = dataclasses.replace(case, seed=HANG)
    with start_worker(WorkerSpec.for_reducer(timeout=60, env={"COVFUZZ_FAULT_INJECTION": "1"})) \
            as injected:
        hung = triage_failure(hang, timed_out, budgets=Budgets(timeout=60, hang=5), reduce=False,
                              worker=injected)
    assert hung.state == "confirmed" and hung.fresh["outcome"] == "timeout"
