"""The morning view: `covfuzz status` on a real campaign directory (an LMDB store with seeds and
failure buckets, its status file written by the campaign's own monitor): the pid and how to
stop, time left, per-bucket culprit / failing check / divergence / reduced / first seen, restart
reasons, warming workers, `--since` (a time, and `last` remembered in DIR/status_seen.json),
the repro command after a new failure's log line, and the live view (`--watch`: one frame of
plain text when stdout is not a terminal, rich frames on a terminal, Ctrl-C exits cleanly).
No worker is started: the campaign is built and ticked, not run."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from rich.console import Console

import corpus
from covfuzz import serialize
from covfuzz.campaign import Campaign, CampaignOptions
from covfuzz.cli import status_watch
from covfuzz.generator import GenOptions, generate
from covfuzz.status import read_status, status_line
from covfuzz.triage.signature import signature_id
from tests.cli_inprocess import run_covfuzz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MISMATCH = "mismatch|F.softshrink<-torch.acosh"
CRASH = ("compile_crash|AssertionError||assert isinstance(index, CppCSEVariable)|"
         "torch/_inductor/codegen/cpp.py:store,torch/_inductor/codegen/common.py:store")
LATE = "mismatch|torch.floor_divide"


def _record(store, sig: str, kind: str, message: str, seed: int, extra: dict | None = None):
    case = generate(seed, GenOptions(max_nodes=3))
    store.record_failure(signature_id(sig), kind, message, "", serialize.case_id(case),
                         serialize.encode(case), {"outcome": kind},
                         extra={"signature": sig, **(extra or {})})


@pytest.fixture(scope="module")
def camp(tmp_path_factory):
    """A campaign directory: 20 seeds, an old triaged mismatch, an old crash with its failing
    check, then (after `mid`) a new mismatch; a status file written while 'running'."""
    d = str(tmp_path_factory.mktemp("status") / "camp")
    os.makedirs(d)
    rng = np.random.default_rng(0)
    with corpus.open_campaign_store(d, readonly=False, create=True) as store:
        for k in range(20):
            case = generate(k, GenOptions(max_nodes=3))
            store.add_seed(serialize.case_id(case), serialize.encode(case),
                           {"nodes": len(case.graph.nodes)},
                           rng.integers(0, 5000, size=40).astype(np.uint64))
        _record(store, MISMATCH, "mismatch", "output 0 nonfinite mismatch: eager nan vs "
                "compiled 0.0 (reference nan)", 100)
        store.update_failure_extra(signature_id(MISMATCH), {"triage": {
            "state": "confirmed", "root": MISMATCH, "root_id": signature_id(MISMATCH),
            "culprit_op": "F.softshrink", "reduced_nodes": 2, "triaged_at": time.time()}})
        _record(store, CRASH, "compile_crash", "InductorError: AssertionError", 101,
                {"check": {"where": "torch/_inductor/codegen/cpp.py:store",
                           "source": "assert isinstance(index, CppCSEVariable) and index.is_vec"}})
    time.sleep(0.05)
    mid = time.time()
    time.sleep(0.05)
    with corpus.open_campaign_store(d, readonly=False, create=False) as store:
        _record(store, LATE, "mismatch", "output 2 nonfinite mismatch: eager nan vs compiled -inf",
                102)
    campaign = Campaign(d, CampaignOptions(workers=2, hours=1.0, quiet=True))
    try:
        counters = campaign.counters
        counters.outcomes.update({"timeout": 1, "process_crash": 1})
        counters.restarts = 3
        for column in ("proposals", "valid", "executed", "ran", "wins"):
            counters.count_mutator("insert_node", column)
        warming = campaign.monitor.status(running=True)  # nothing finished yet in this run
        campaign.monitor.report(running=True)  # fuzzer_stats.json, as a live campaign writes
    finally:
        campaign.close()
    return d, mid, warming


def test_status_file_holds_the_morning_view(camp):
    d, _, warming = camp
    assert warming["warming"] == 2 and warming["run_execs"] == 0
    line = status_line(warming)
    assert "warming 2 worker(s)" in line and "execs 0 (" not in line
    s = read_status(d)
    assert s["running"] and s["pid"] == os.getpid() and s["hours"] == 1.0
    assert s["restart_reasons"] == {"timeout": 1, "process_crash": 1, "recycled": 1}
    rows = {r["id"]: r for r in s["buckets"]}
    m = rows[signature_id(MISMATCH)]
    assert (m["culprit"], m["state"], m["reduced_nodes"]) == ("F.softshrink", "confirmed", 2)
    assert m["divergence"].startswith("output 0 nonfinite mismatch")
    c = rows[signature_id(CRASH)]
    assert "CppCSEVariable" in c["check"] and c["state"] == "untriaged" and c["divergence"] == ""
    assert [r["id"] for r in s["buckets"]][0] == signature_id(LATE)  # newest first
    assert len(s["history"]) == 1 and s["history"][0]["corpus"] == 20


def test_status_text(camp):
    d, _, _ = camp
    ran = run_covfuzz("status", d)
    assert ran.returncode == 0, ran.stderr
    out = ran.stdout
    assert f"pid {os.getpid()}: stop with `kill -INT {os.getpid()}`" in out
    assert "left of --hours 1" in out
    assert "restarts 3 (process_crash 1, recycled 1, timeout 1)" in out
    assert "F.softshrink: output 0 nonfinite mismatch" in out and "2 nodes" in out
    assert "  assert isinstance(index, CppCSEVariable)" in out
    assert f"covfuzz repro BUCKET --dir {d} -o repro-BUCKET.py" in out
    # the mutator table explains its columns
    assert "proposals: mutants it proposed" in out and "wins: executed cases that found" in out
    assert "insert_node" in out
    # feedback mode: the next sweep's length (the default: no step has run yet)
    assert "sweeps: 4 value variants after each chosen case (the default, until" in out


def test_since_a_time_and_since_last(camp):
    d, mid, _ = camp
    ran = run_covfuzz("status", d, "--since", repr(mid))
    assert ran.returncode == 0, ran.stderr
    assert "2 new bucket(s)" not in ran.stdout and "1 new bucket(s)" in ran.stdout
    new_part = ran.stdout.split("new since", 1)[1]
    assert signature_id(LATE) in new_part and signature_id(MISMATCH) not in new_part
    seen = os.path.join(d, "status_seen.json")
    assert not os.path.exists(seen)  # only `--since last` writes it
    first = run_covfuzz("status", d, "--since", "last")
    assert "3 new bucket(s)" in first.stdout  # never looked: everything is new
    assert json.load(open(seen))["seen"] > mid
    second = run_covfuzz("status", d, "--since", "last")
    assert "0 new bucket(s)" in second.stdout
    bad = run_covfuzz("status", d, "--since", "yesterday-ish")
    assert bad.returncode == 2 and "not a time" in bad.stderr


def test_status_imports_no_torch(camp):
    d, _, _ = camp
    code = ("import sys; from covfuzz.cli import main; rc = main(['status', sys.argv[1]]); "
            "heavy = [m for m in ('torch', 'numpy', 'lmdb') if m in sys.modules]; "
            "print('HEAVY', heavy); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, d], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


def test_watch_renders_a_frame(camp):
    d, _, _ = camp
    ran = run_covfuzz("status", d, "--watch", "--iterations", "1")  # stdout is not a terminal
    assert ran.returncode == 0, ran.stderr
    assert "stop with `kill -INT" in ran.stdout and signature_id(LATE) in ran.stdout
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=140, color_system=None)
    assert status_watch.watch(d, interval=0.1, iterations=2, console=console) == 0
    text = screen.getvalue()
    for words in ("process timing", "overall results", "triage", "workers", "newest buckets",
                  "time left", f"kill -INT {os.getpid()}", signature_id(MISMATCH),
                  "F.softshrink", "recycled 1"):
        assert words in text, words


def test_watch_leaves_on_ctrl_c(camp):
    d, _, _ = camp
    proc = subprocess.Popen([sys.executable, "-m", "covfuzz", "status", d, "--watch",
                             "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    first = ""
    while "kill -INT" not in first:  # the first frame's pid line is out: the view is running
        line = proc.stdout.readline()
        assert line, proc.stderr.read()[-2000:]
        first += line
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    out = first + out
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "kill -INT" in out


def test_new_failure_log_line_names_the_repro_command(camp, capsys):
    d, _, _ = camp
    campaign = Campaign(d, CampaignOptions(workers=1))
    try:
        campaign.monitor.log(f"[new failure] mismatch {signature_id(LATE)} {LATE}")
    finally:
        campaign.close()
    err = capsys.readouterr().err
    assert f"reproduce: covfuzz repro {signature_id(LATE)} --dir {d}" in err


GOOD = {"elapsed": 1.0, "execs": 1, "execs_per_s": 1.0, "corpus": 1, "features": 1,
        "unique_failures": 0, "worker_restarts": 0}


@pytest.mark.parametrize("key,value", [
    ("buckets", "not a list"),
    ("buckets", [{"id": 5}]),
    ("buckets", [{"culprit": "x" * 1000}]),
    ("buckets", [{}] * 501),
    ("history", [{"t": -1}]),
    ("restart_reasons", {"timeout": -2}),
    ("run_started", float("1e20")),
    ("sweep_steps", -1),
    ("sweep_pay", "fast"),
])
def test_malformed_morning_view_fields_are_refused_in_one_line(tmp_path, key, value):
    from covfuzz.errors import CampaignDataError
    from covfuzz.status import decode_status
    with pytest.raises(CampaignDataError, match=key):
        decode_status(json.dumps(dict(GOOD, **{key: value})).encode())
