"""Campaigns: corpus growth, status, resume after SIGKILL at random instants, baseline mode."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from cli_inprocess import run_covfuzz
from corpus import CorpusStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def covfuzz(*args, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "covfuzz", *args], capture_output=True,
                          text=True, env=env, timeout=kw.pop("timeout", 600), **kw)


def start(directory, *extra):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-m", "covfuzz", "fuzz", str(directory),
                             "--workers", "1", "--status-interval", "1", "--max-nodes", "4", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def snapshot(directory):
    """(seed ids, {failure signature: count}) committed so far."""
    path = os.path.join(directory, "corpus.lmdb")
    if not os.path.exists(path):
        return set(), {}
    with CorpusStore(path, readonly=True, create=False) as store:
        seeds = set(store.seed_ids())
        failures = {f["signature"]: f["count"] for f in store.failures()}
    return seeds, failures


def test_campaign_grows_reports_and_resumes(tmp_path):
    d = tmp_path / "camp"
    # --no-triage: a bucket found on the way would be triaged before the run ends (minutes);
    # triage has its own tests (tests/test_triage_stage.py), and the SIGKILL test keeps it on.
    first = covfuzz("fuzz", str(d), "--no-triage", "--workers", "1", "--execs", "6", "--max-nodes", "4",
                    "--status-interval", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "summary:" in first.stdout
    status = json.loads(covfuzz("status", str(d), "--json").stdout)
    assert status["execs"] == 6 and status["corpus"] >= 1 and status["features"] > 1000
    assert status["running"] is False
    seeds, _ = snapshot(d)
    assert len(seeds) == status["corpus"]
    second = covfuzz("fuzz", str(d), "--no-triage", "--workers", "1", "--execs", "4",
                     "--max-nodes", "4")
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(covfuzz("status", str(d), "--json").stdout)
    assert again["execs"] == 10 and again["features"] >= status["features"]
    assert seeds <= snapshot(d)[0]
    lines = (d / "scheduler.jsonl").read_text().splitlines()
    assert len(lines) == 10 and all("mutators" in json.loads(line) for line in lines)
    plot = run_covfuzz("plot", d)  # in this process: matplotlib's import takes seconds
    assert plot.returncode == 0 and os.path.getsize(d / "progress.png") > 1000
    text = covfuzz("status", str(d))
    assert "stopped" in text.stdout and "features" in text.stdout


def test_sigkill_at_random_instants_loses_nothing_committed(tmp_path):
    d = tmp_path / "killed"
    rng = random.Random(1)
    previous_execs = 0
    for round_ in range(3):
        before_seeds, before_failures = snapshot(d)
        proc = start(d)
        time.sleep(rng.uniform(4, 30) if round_ else 25)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        seeds, failures = snapshot(d)  # opens the store after a kill: stale readers cleared
        assert before_seeds <= seeds, f"lost seeds in round {round_}"
        for sig, count in before_failures.items():
            assert failures.get(sig, 0) >= count
    # Triage stays on (a killed triage loses nothing: its bucket is queued again), bounded here.
    final = covfuzz("fuzz", str(d), "--workers", "1", "--execs", "3", "--max-nodes", "4",
                    "--drain-limit", "120")
    assert final.returncode == 0, final.stderr[-3000:]
    seeds, _ = snapshot(d)
    status = json.loads(covfuzz("status", str(d), "--json").stdout)
    assert status["corpus"] == len(seeds) and len(seeds) >= 1
    assert status["execs"] >= previous_execs + 3


def test_no_feedback_mode_only_generates(tmp_path):
    d = tmp_path / "baseline"
    result = covfuzz("fuzz", str(d), "--no-feedback", "--no-triage", "--workers", "1", "--execs", "4",
                     "--max-nodes", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    status = json.loads(covfuzz("status", str(d), "--json").stdout)
    assert status["mode"] == "no-feedback"
    records = [json.loads(line) for line in (d / "scheduler.jsonl").read_text().splitlines()]
    assert records and all(r["mutators"] == ["generate"] for r in records)
