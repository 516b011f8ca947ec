"""A campaign on a real local Ray cluster: a head and a second node as separate processes on
loopback. The second node joins after the campaign started (and gets work), then is killed
mid-run (its whole process group, SIGKILL)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from corpus import CorpusStore

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(*args, block=False, log=None):
    """`ray start` in a session of its own, so its whole process group can be killed."""
    cmd = [RAY, "start", "--num-cpus", "1", "--node-ip-address", "127.0.0.1",
           "--disable-usage-stats", *args] + (["--block"] if block else [])
    return subprocess.Popen(cmd, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _alive_nodes(address: str) -> int:
    code = ("import ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))" % address)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return int(out.stdout.strip() or 0)


def _wait(predicate, timeout, what, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"campaign exited early while waiting for {what}: "
                                 f"{proc.stderr.read()[-3000:]}")
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def cluster(tmp_path):
    """(head address, a function that starts a second node): the head runs from the start."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head = _ray_start("--head", "--port", str(port), "--include-dashboard=false")
    head.wait(timeout=180)
    assert head.returncode == 0, "ray start --head failed"
    nodes = []

    def add_node():
        nodes.append(_ray_start("--address", address, block=True,
                                log=open(tmp_path / "node2.log", "w")))
        return nodes[-1]
    try:
        yield address, add_node
    finally:
        for node in nodes:
            _kill_group(node)
        _kill_group(head)  # the head's daemons stay in the group `ray start` made


def _stats(directory) -> dict:
    try:
        with open(os.path.join(directory, "fuzzer_stats.json")) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {}


def _seeds(directory) -> set:
    with CorpusStore(os.path.join(directory, "corpus.lmdb"), readonly=True, create=False) as store:
        return set(store.seed_ids())


def _worker_node(stats: dict) -> dict | None:
    """The second node's entry in the campaign's per-node stats (the one that is not the head)."""
    for node in (stats.get("nodes") or {}).values():
        if not node.get("head"):
            return node
    return None


def test_a_node_that_joins_gets_work_and_losing_it_loses_nothing(cluster, tmp_path):
    address, add_node = cluster
    d = str(tmp_path / "camp")
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "covfuzz", "fuzz", d, "--ray", address, "--workers-per-node", "1",
         "--execs", "500", "--max-nodes", "4", "--no-triage", "--status-interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait(lambda: _stats(d).get("execs", 0) >= 1, 900, "the head's first result", proc)
        node2 = add_node()  # joins a running campaign: the pool's watcher gives it a slot
        _wait(lambda: (_worker_node(_stats(d)) or {}).get("execs", 0) >= 1, 900,
              "the joined node's first result", proc)
        before, execs_before = _seeds(d), _stats(d)["execs"]
        _kill_group(node2)  # the node's raylet and everything it started, at once
        # The campaign carries on with the head: the node is marked lost, results keep coming.
        _wait(lambda: (not _worker_node(_stats(d))["alive"]
                       and _stats(d)["execs"] >= execs_before + 2), 900,
              "the node marked lost and two more results", proc)
        proc.send_signal(signal.SIGINT)  # stop cleanly (the budget is only a bound)
        _, err = proc.communicate(timeout=1200)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    stats = _stats(d)
    lost_node = _worker_node(stats)
    # The campaign went on with the head alone, stopped cleanly, and knows the node is gone.
    assert stats["execs"] >= 4 and not lost_node["alive"] and stats["running"] is False
    # The case the node was running when it died was queued again (and ran elsewhere) or,
    # failing twice, counted lost: every case submitted has a result or is counted.
    assert lost_node["requeued"] + lost_node["lost"] >= 1, lost_node
    pool = stats["pool"]
    assert pool["submitted"] == pool["results"] + pool["lost"] + pool["cancelled"], pool
    # Nothing committed before the kill is lost, and the store matches the stats.
    after = _seeds(d)
    assert before <= after and len(after) == stats["corpus"]
    # `covfuzz status` shows each node: the head alive, the other one lost.
    view = subprocess.run([sys.executable, "-m", "covfuzz", "status", d], capture_output=True,
                          text=True, env=env, timeout=120).stdout
    nodes = [line for line in view.splitlines() if line.startswith("  ") and " workers " in line]
    assert len(nodes) == 2 and any(" lost " in n and "head" not in n for n in nodes), view


def test_missing_cluster_is_one_line_and_exit_2(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-m", "covfuzz", "fuzz", str(tmp_path / "c"), "--ray",
                          f"127.0.0.1:{_free_port()}", "--execs", "1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines and "Ray cluster" in lines[-1], out.stderr[-2000:]
