"""Campaigns without a cluster share seeds and failures through a directory (AFL++'s sync):
real campaigns, a real shared directory, and hostile files planted in it."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def fuzz(directory, *args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "covfuzz", "fuzz", str(directory), "--workers", "1",
                           "--no-triage", "--max-nodes", "4", "--status-interval", "1", *args],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(directory, "fuzzer_stats.json")) as f:
        return json.load(f)


def test_second_campaign_runs_what_the_first_shared_and_skips_hostile_files(tmp_path):
    shared = tmp_path / "shared"
    a = fuzz(tmp_path / "a", "--execs", "3", "--sync-dir", str(shared), "--sync-name", "a")
    exported = sorted(os.listdir(shared / "a" / "queue"))
    assert len(exported) == a["corpus"] >= 1 and a["sync"]["exported"] >= len(exported)
    assert not [n for n in exported if n.startswith(".")]  # no temporary file left behind

    evil = shared / "evil" / "queue"
    evil.mkdir(parents=True)
    (evil / "0123456789abcdef.cfz").write_bytes(b"\x00not a test case")
    os.symlink("/etc/passwd", evil / "fedcba9876543210.cfz")
    (evil / "README").write_text("not a case file name: never read")

    b = fuzz(tmp_path / "b", "--execs", str(len(exported) + 1), "--sync-dir", str(shared),
             "--sync-name", "b", "--sync-interval", "1")
    assert b["sync"]["imported"] == len(exported) and b["sync"]["rejected"] == 2, b["sync"]
    with open(tmp_path / "b" / "scheduler.jsonl") as f:
        ran = [json.loads(line) for line in f]
    synced = [r for r in ran if r["mutators"] == ["sync"]]
    assert sorted(f"{r['id']}.cfz" for r in synced) == exported
    # The second campaign shares its own finds too, and a resumed run imports nothing twice.
    assert os.listdir(shared / "b" / "queue")
    again = fuzz(tmp_path / "b", "--execs", "1", "--sync-dir", str(shared), "--sync-name", "b",
                 "--sync-interval", "1")
    assert again["sync"]["imported"] == 0
