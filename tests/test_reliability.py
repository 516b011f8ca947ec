"""Reliability and security: no code from data, CLI behaviour on hostile files, two campaigns on
one directory, status while a campaign writes, and a short fault campaign (SIGKILLs of the
campaign process, worker faults, a tiny LMDB map) with 0 lost committed records."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
import zlib

import pytest

from cli_inprocess import run_covfuzz
from covfuzz import cli, codegen, serialize, workdir
from covfuzz.errors import TestCaseFormatError
from covfuzz.generator import GenOptions, generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def _payload(sentinel) -> str:
    """Python that would create `sentinel` if anything ever evaluated it."""
    return f"__import__('pathlib').Path({str(sentinel)!r}).touch()"


def _base_case():
    for seed in range(200):  # a case with a string attribute (an enum) and a second input
        case = generate(seed, GenOptions(max_nodes=4))
        d = serialize.to_dict(case)
        if len(d["inputs"]) >= 1 and any(
                isinstance(v, str) for n in d["nodes"] for v in n["attrs"].values()):
            return d
    raise AssertionError("no generated case with a string attribute")


def _set_str_attr(d, p):
    for node in d["nodes"]:
        for key, value in node["attrs"].items():
            if isinstance(value, str):
                node["attrs"][key] = p
                return


INJECTIONS = {
    "op": lambda d, p: d["nodes"][0].__setitem__("op", p),
    "op_suffix": lambda d, p: d["nodes"][0].__setitem__("op", d["nodes"][0]["op"] + ";" + p),
    "input_dtype": lambda d, p: d["inputs"][0].__setitem__("dtype", p),
    "input_device": lambda d, p: d["inputs"][0].__setitem__("device", p),
    "fill": lambda d, p: d["inputs"][0].__setitem__("fill", p),
    "kind": lambda d, p: d["inputs"][0].__setitem__("kind", p),
    "out_dtype": lambda d, p: d["nodes"][0].__setitem__(
        "out", {"kind": "tensor", "shape": [1], "stride": [1], "dtype": p}),
    "settings_device": lambda d, p: d["settings"].__setitem__("device", p),
    "backend": lambda d, p: d["settings"].__setitem__("backend", p),
    "mode": lambda d, p: d["settings"].__setitem__("mode", p),
    "attr_value": _set_str_attr,
    "attr_key": lambda d, p: d["nodes"][0]["attrs"].__setitem__(p[:60], 1),
    "inductor_config_key": lambda d, p: d["settings"].__setitem__("inductor_config", {p[:60]: True}),
    "dynamo_config_key": lambda d, p: d["settings"].__setitem__("dynamo_config", {p[:60]: 1}),
    "config_value": lambda d, p: d["settings"].__setitem__(
        "inductor_config", {"max_autotune": p[:60]}),
    "format": lambda d, p: d.__setitem__("format", p),
}


def _hostile(name, sentinel) -> dict:
    d = copy.deepcopy(_base_case())
    INJECTIONS[name](d, _payload(sentinel)[:64])
    return d


@pytest.fixture
def no_codegen(monkeypatch):
    """Fail loudly if any test case reaches code generation."""
    calls = []

    def spy(*args, **kwargs):
        calls.append(args)
        raise AssertionError("code was generated from a hostile test case")
    monkeypatch.setattr(codegen, "program", spy)
    return calls


@pytest.mark.parametrize("name", sorted(INJECTIONS))
def test_code_in_data_is_rejected_before_codegen(name, tmp_path, no_codegen):
    sentinel = tmp_path / "pwned"
    d = _hostile(name, sentinel)
    with pytest.raises(TestCaseFormatError):
        serialize.from_dict(d)
    text = json.dumps(d)
    with pytest.raises(TestCaseFormatError):
        serialize.decode(text.encode())
    # the stored form carries the same JSON
    with pytest.raises(TestCaseFormatError):
        serialize.decode(serialize.MAGIC + bytes([serialize.SCHEMA_VERSION])
                         + zlib.compress(serialize.canonical_json(d)))
    assert not no_codegen
    assert not sentinel.exists()


@pytest.mark.parametrize("command", ["show", "run"])
def test_cli_in_process_rejects_hostile_case_without_codegen(command, tmp_path, no_codegen, capsys):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "case.json"
    path.write_text(json.dumps(_hostile("op", sentinel)))
    code = cli.main([command, str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not no_codegen and not sentinel.exists()


def _hostile_files(tmp_path, sentinel) -> dict:
    good = serialize.encode(serialize.from_dict(_base_case()))
    rng = random.Random(7)
    files = {
        "truncated_stored": good[: len(good) // 2],
        "truncated_json": json.dumps(_base_case()).encode()[:150],
        "random_bytes": bytes(rng.randrange(256) for _ in range(512)),
        "code_op_json": json.dumps(_hostile("op", sentinel)).encode(),
        "code_attr_stored": serialize.MAGIC + bytes([serialize.SCHEMA_VERSION]) + zlib.compress(serialize.canonical_json(_hostile("attr_value", sentinel))),
        "python_source": f"{_payload(sentinel)}\n".encode(),
        "empty": b"",
    }
    out = {}
    for name, data in files.items():
        path = tmp_path / f"{name}.cfz"
        path.write_bytes(data)
        out[name] = path
    return out


def _check_refused(command, name, proc, sentinel):
    assert proc.returncode != 0, (name, proc.stdout, proc.stderr)
    assert proc.returncode == 2, (name, proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, (name, proc.stderr)
    assert "Traceback" not in proc.stderr, (name, proc.stderr)
    assert lines[0].startswith(f"covfuzz {command}:"), (name, proc.stderr)
    assert not sentinel.exists(), name


@pytest.mark.parametrize("command", ["show", "run"])
def test_cli_hostile_files(command, tmp_path, no_codegen):
    """Every hostile file in this process (tests/cli_inprocess.py), never reaching codegen; one
    of them also through a real `covfuzz` process, which spends seconds importing torch."""
    sentinel = tmp_path / "pwned"
    files = _hostile_files(tmp_path, sentinel)
    for name, path in files.items():
        _check_refused(command, name, run_covfuzz(command, path), sentinel)
    assert not no_codegen
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([PY, "-m", "covfuzz", command, str(files["code_attr_stored"])],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    _check_refused(command, "code_attr_stored", proc, sentinel)


# ----------------------------------------------------------------------------- concurrency


def _wait_for(predicate, timeout, proc=None, what=""):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"campaign exited {proc.returncode} while waiting for {what}: "
                                 f"{out[-2000:]}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _lock_taken(directory) -> bool:
    lock = workdir.lock_path(directory)
    try:
        with open(lock) as handle:
            return handle.read().strip().isdigit()
    except OSError:
        return False


def test_second_campaign_is_refused_and_status_reads_while_writing(tmp_path):
    directory = str(tmp_path / "camp")
    env = dict(os.environ, PYTHONPATH=ROOT)
    first = subprocess.Popen([PY, "-m", "covfuzz", "fuzz", directory, "--execs", "200",
                              "--workers", "1", "--timeout", "30", "--status-interval", "1",
                              "--max-nodes", "3"],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    try:
        _wait_for(lambda: _lock_taken(directory), 240, first, "the lock")
        second = subprocess.run([PY, "-m", "covfuzz", "fuzz", directory, "--execs", "5",
                                 "--workers", "1"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=240)
        assert second.returncode == 2, second.stderr
        assert "Traceback" not in second.stderr
        assert f"pid {first.pid}" in second.stderr, second.stderr
        assert "in use by another covfuzz campaign" in second.stderr
        # status reads safely while the campaign writes
        stats = workdir.stats_path(directory)
        _wait_for(lambda: os.path.exists(stats), 240, first, workdir.STATS)
        seen = []
        for _ in range(6):
            proc = subprocess.run([PY, "-m", "covfuzz", "status", directory, "--json"], cwd=ROOT,
                                  env=env, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stderr
            status = json.loads(proc.stdout)
            assert status["pid"] == first.pid and status["running"] is True
            seen.append(status["execs"])
            time.sleep(1.0)
        assert seen == sorted(seen)
        assert first.poll() is None, "the first campaign must not be disturbed"
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGTERM)
            try:
                first.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(first.pid, signal.SIGKILL)
                first.wait()
    assert first.returncode == 0, first.stdout.read()[-2000:]
    final = json.loads(subprocess.run([PY, "-m", "covfuzz", "status", directory, "--json"],
                                      cwd=ROOT, env=env, capture_output=True, text=True,
                                      timeout=120).stdout)
    assert final["running"] is False


# ----------------------------------------------------------------------------- fault campaign


def _fault_campaign_module():
    spec = importlib.util.spec_from_file_location(
        "fault_campaign", os.path.join(ROOT, "benchmarks", "fault_campaign.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_short_fault_campaign(tmp_path):
    """~2.5 minutes: 1 worker, half the candidates faulty, the campaign process SIGKILLed twice,
    a 256 KiB map. On a loaded machine worker start-ups can eat those minutes, so the last
    segment goes on (5 minutes at most) until a fault was handled."""
    fc = _fault_campaign_module()
    result = fc.run(str(tmp_path / "fc"), minutes=2.5, kills=2, rate=0.5, workers=1,
                    map_size=256 * 1024, seed=1, min_faults=1)
    print(fc.table(result))
    assert result["kills"] == 2
    assert result["resumed"] == 2, result["segments"]
    assert result["lost"] == []
    assert result["deaths"] == []
    assert result["execs_decreased"] == []
    assert result["consistency"] == []
    assert result["orphans"] == []
    assert result["final_execs"] and result["final_execs"] > 0
    assert result["data_bytes"] > 256 * 1024  # more data than the initial map: it grew
    assert sum(result["faults_as_expected"].values()) > 0
    for kind, outcomes in result["injected_outcomes"].items():  # each fault got its own outcome
        assert set(outcomes) <= {fc.FAULT_OUTCOME[kind], "invalid"}, (kind, outcomes)
