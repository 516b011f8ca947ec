"""Harness tests: real worker processes that really crash, plus pure oracle tests."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch

from corpus import CorpusStore
from covfuzz import workdir
from covfuzz.cli import run as cli_run
from covfuzz.generator import GenOptions, generate
from covfuzz.serialize import case_id, encode, to_json
from harness import oracle
from harness.coverage import feature_id
from harness.pool import LocalPool, WorkerHandle, WorkerSpec, start_worker
from harness.result import RunResult
from harness.worker import rss_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GiB = 1 << 30
FAULT_ENV = {"COVFUZZ_FAULT_INJECTION": "1"}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("inductor-cache"))


@pytest.fixture(scope="session")
def good_case():
    return generate(1, GenOptions(op_weights={"torch.add": 1, "torch.mul": 1}, max_nodes=3,
                                  backward_prob=0, config_prob=0))


def _pid_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" in line.split()[1]  # a zombie has exited
    except OSError:
        return True
    return False


# ----------------------------------------------------------------------------- processes

@pytest.mark.slow
def test_faults_then_recovery(cache_dir, good_case):
    sup = start_worker(WorkerSpec(cache_dir=cache_dir, env=FAULT_ENV, timeout=120))
    try:
        first = sup.run(good_case)
        assert first.outcome == "pass", first.message
        assert len(first.features) > 1000 and first.n_lines > 0
        sup.memory_limit = rss_bytes(sup.pid) + int(1.5 * GiB)
        expected = [(0xFA017001, "process_crash", True), (0xFA017002, "process_crash", True),
                    (0xFA017003, "timeout", True), (0xFA017004, "oom", True),
                    (0xFA017005, "compile_crash", False), (0xFA017006, "invalid", False)]
        for seed, outcome, kills in expected:
            pid = sup.pid
            timeout = 10 if outcome == "timeout" else None
            r = sup.run(good_case.replace(seed=seed), timeout=timeout)
            assert r.outcome == outcome, (hex(seed), r.outcome, r.message)
            if seed == 0xFA017001:
                assert r.details["signal"] == "SIGSEGV"
            if seed == 0xFA017002:
                assert r.details["signal"] == "SIGABRT"
            if outcome == "compile_crash":
                assert "BackendCompilerFailed" in r.exc_type and r.frames
            after = sup.run(good_case)
            assert after.outcome == "pass", (hex(seed), after.message)
            assert (sup.pid != pid) == kills
        assert sup.stats["restarts"] == 4
        assert sup.stats["crashes"] == 2 and sup.stats["timeouts"] == 1 and sup.stats["ooms"] == 1
    finally:
        sup.close()


@pytest.mark.slow
def test_local_pool_runs_cases_and_counts_restarts(cache_dir, good_case):
    """Two workers, cases in parallel; a crashing case restarts its worker, counted once."""
    spec = WorkerSpec(cache_dir=cache_dir, coverage=False, env=FAULT_ENV, timeout=120)
    with LocalPool(spec, 2) as pool:
        assert pool.size == 2 and pool.restarts() == 0
        cases = [good_case.replace(seed=seed) for seed in range(1, 6)]
        futures = [pool.submit(encode(case)) for case in cases]
        results = [future.result(timeout=600) for future in futures]
        assert [r.outcome for r in results] == ["pass"] * len(cases), [r.message for r in results]
        assert [r.case_id for r in results] == [case_id(case) for case in cases]
        crash = pool.submit(encode(good_case.replace(seed=0xFA017001))).result(timeout=600)
        assert crash.outcome == "process_crash" and crash.details["signal"] == "SIGSEGV"
        assert pool.restarts() == 0  # the crashed worker restarts when it takes its next case
        for _ in range(5):  # until the crashed worker has taken a case
            batch = [pool.submit(encode(good_case)) for _ in range(2)]
            assert all(f.result(timeout=600).outcome == "pass" for f in batch)
            if pool.restarts():
                break
        assert pool.restarts() == 1
    with pytest.raises(RuntimeError):
        pool.submit(encode(good_case))


@pytest.mark.slow
def test_fault_seeds_are_ordinary_without_env(cache_dir, good_case):
    with start_worker(WorkerSpec(cache_dir=cache_dir, coverage=False)) as sup:
        r = sup.run(good_case.replace(seed=0xFA017006))
        assert r.outcome == "pass", r.message
        assert r.features == []


@pytest.mark.slow
def test_coverage_stable_across_fresh_workers(cache_dir, good_case):
    sets = []
    with start_worker(WorkerSpec(cache_dir=cache_dir)) as sup:
        for _ in range(2):
            r = sup.run(good_case)
            assert r.outcome == "pass"
            sets.append(set(r.features))
            sup.recycle()
    a, b = sets
    stability = len(a & b) / len(a | b)
    assert stability >= 0.9, stability
    assert all(0 <= f < (1 << 63) for f in a)


def test_feature_ids_stable():
    assert feature_id("torch/_inductor/lowering.py", 10, 12) == \
        feature_id("torch/_inductor/lowering.py", 10, 12)
    assert feature_id("torch/_inductor/lowering.py", 10, 12) != \
        feature_id("torch/_inductor/lowering.py", 12, 10)


def test_worker_dies_with_its_parent(cache_dir):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {ROOT!r})
        from harness.pool import WorkerSpec, start_worker
        worker = start_worker(WorkerSpec(cache_dir={cache_dir!r}, coverage=False))
        print(worker.pid, flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(proc.stdout.readline())
        assert not _pid_gone(pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while not _pid_gone(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _pid_gone(pid)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cuda_device():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: the cuda and reference='cpu' paths need an NVIDIA GPU")
    case = generate(1, GenOptions(op_weights={"torch.add": 1}, max_nodes=2, device="cuda",
                                  backward_prob=0, config_prob=0))
    with start_worker(WorkerSpec(reference="cpu")) as sup:
        assert sup.run(case, device="cuda").outcome == "pass"


# ----------------------------------------------------------------------------- result / CLI

def test_run_result_json_roundtrip():
    r = RunResult(outcome="mismatch", message="m", exc_type="X", frames=["torch/a.py:1:f"],
                  features=[1, 2, (1 << 63) - 1], n_lines=3, details={"index": [0, 1]})
    back = RunResult.from_json(r.to_json())
    assert back == r and back.failed


def _cli(argv):
    p = argparse.ArgumentParser()
    sp = p.add_subparsers(dest="cmd")
    cli_run.add_parsers(sp)
    return cli_run.main(p.parse_args(["run", *argv]))


def test_cli_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "nope"}')
    assert _cli([str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"covfuzz run: {bad}:") and "\n" not in err
    stored = tmp_path / "bad.cfz"
    stored.write_bytes(b"CFZT\x01garbage")
    assert _cli([str(stored)]) == 2
    assert _cli(["0123456789abcdef"]) == 2
    assert "name its campaign with --dir DIR" in capsys.readouterr().err
    assert _cli(["0123456789abcdef", "--dir", str(tmp_path)]) == 2
    assert "not a campaign directory" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_runs_files(tmp_path, capsys, monkeypatch, cache_dir, good_case):
    monkeypatch.setenv("COVFUZZ_CACHE_DIR", cache_dir)
    (tmp_path / "a.cfz").write_bytes(encode(good_case))
    (tmp_path / "b.json").write_text(to_json(good_case))
    assert _cli([str(tmp_path / "a.cfz"), str(tmp_path / "b.json"), "--json",
                 "--no-coverage"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["outcome"] for x in lines] == ["pass", "pass"]
    assert set(lines[0]["timings"]) >= {"eager", "compile", "run", "backward", "coverage",
                                        "overhead", "total"}
    # a seed id of a campaign directory
    with CorpusStore(workdir.corpus_path(str(tmp_path / "camp"))) as store:
        store.add_seed(case_id(good_case), encode(good_case), {}, [1, 2, 3])
    assert _cli([case_id(good_case), "--dir", str(tmp_path / "camp"), "--no-coverage"]) == 0
    assert capsys.readouterr().out.startswith(f"{case_id(good_case)}: pass")
    assert _cli(["fedcba9876543210", "--dir", str(tmp_path / "camp")]) == 2


# ----------------------------------------------------------------------------- oracle (pure)

def test_oracle_ints_exact():
    e = torch.tensor([1, 2, 3])
    assert oracle.compare_outputs([e], [e.clone()]) is None
    d = oracle.compare_outputs([e], [torch.tensor([1, 2, 4])])
    assert d["kind"] == "value" and d["index"] == [2] and d["eager"] == 3 and d["compiled"] == 4
    assert oracle.compare_outputs([e], [e.to(torch.int32)])["kind"] == "dtype"
    assert oracle.compare_outputs([e], [e.reshape(3, 1)])["kind"] == "shape"
    b = torch.tensor([True, False])
    assert oracle.compare_outputs([b], [~b])["exact"]
    assert oracle.compare_outputs([3, True], [3, True]) is None
    assert oracle.compare_outputs([3], [4]) is not None


def test_oracle_fp32_tolerance():
    e = torch.linspace(-2, 2, 100)
    assert oracle.compare_outputs([e], [e + 1e-6]) is None
    d = oracle.compare_outputs([e], [e + 1e-2])  # no reference: allclose decides
    assert d["kind"] == "value" and d["max_abs_err"] == pytest.approx(1e-2, rel=1e-3)
    assert d["rtol"] == 1e-4 and d["atol"] == 1e-5


def test_oracle_fp64_reference_rule():
    ref = torch.linspace(-2, 2, 100, dtype=torch.float64) * 1.001
    eager = (ref + 1e-2).float()      # eager is far from the reference
    closer = (ref + 1e-3).float()     # compiled is closer to it: pass
    assert oracle.compare_outputs([eager], [closer], [ref]) is None
    worse = (ref + 5e-2).float()      # compiled much farther: mismatch
    d = oracle.compare_outputs([eager], [worse], lambda: [ref])
    assert d is not None and d["rmse_compiled"] > 2 * d["rmse_eager"]
    assert d["reference"] == pytest.approx(float(ref[d["index"][0]]))
    calls = []
    assert oracle.compare_outputs([eager], [eager.clone()], lambda: calls.append(1)) is None
    assert calls == []  # the reference is only computed when needed


def test_oracle_nan_rules():
    e = torch.tensor([1.0, math.nan, 3.0, math.inf])
    assert oracle.compare_outputs([e], [e.clone()]) is None
    c = torch.tensor([1.0, 2.0, 3.0, math.inf])       # compiled lost a NaN
    ref_nan = torch.tensor([1.0, math.nan, 3.0, math.inf], dtype=torch.float64)
    d = oracle.compare_outputs([e], [c], [ref_nan])    # reference agrees with eager: mismatch
    assert d["kind"] == "nonfinite" and d["index"] == [1]
    ref_fin = torch.tensor([1.0, 2.0, 3.0, math.inf], dtype=torch.float64)
    assert oracle.compare_outputs([e], [c], [ref_fin]) is None  # eager deviates: not a bug
    assert oracle.compare_outputs([e], [c]) is not None          # no reference: mismatch
    c2 = torch.tensor([1.0, math.nan, 3.0, 1e38])                # inf vs finite overflow
    ref_big = torch.tensor([1.0, math.nan, 3.0, 1e39], dtype=torch.float64)
    assert oracle.compare_outputs([e], [c2], [ref_big]) is None


def test_oracle_half_and_small():
    e = torch.tensor([1.0, 2.0], dtype=torch.float16)
    assert oracle.compare_outputs([e], [e + 0.004]) is None
    assert oracle.multiplier(torch.float16, 1000) == 3.0
    assert oracle.multiplier(torch.float32, 5) == 3.0
    assert oracle.multiplier(torch.float32, 1000) == 2.0


def test_oracle_bitwise_and_classify():
    a = [torch.tensor([math.nan, 1.0]), 3]
    assert oracle.bitwise_equal(a, [torch.tensor([math.nan, 1.0]), 3])
    assert not oracle.bitwise_equal(a, [torch.tensor([math.nan, 1.0 + 1e-7]), 3])
    assert oracle.classify(RuntimeError("x"), "eager") == "invalid"
    assert oracle.classify(MemoryError(), "compile") == "oom"
    assert oracle.classify(RuntimeError("x"), "run") == "runtime_crash"
    from torch._dynamo.exc import Unsupported
    try:
        exc = Unsupported("graph break")
    except TypeError:
        exc = Unsupported.__new__(Unsupported)
    assert oracle.classify(exc, "compile") == "compile_crash"


def test_worker_survives_starting_thread_exit(cache_dir):
    sup = WorkerHandle(WorkerSpec(cache_dir=cache_dir, coverage=False))  # started below
    try:
        t = threading.Thread(target=sup.start)
        t.start()
        t.join()
        time.sleep(1.0)
        assert sup.alive()  # PDEATHSIG is tied to the launcher thread, not this one
    finally:
        sup.close()
    assert not sup.alive()
