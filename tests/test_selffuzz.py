"""Short runs of covfuzz's self-fuzzing targets (covfuzz/selffuzz.py) and regression tests for
what they found. Longer runs: `python -m covfuzz.selffuzz TARGET --runs 100000`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from covfuzz import selffuzz
from covfuzz.errors import CovfuzzError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHORT_RUNS = {"testcase": 4000, "json": 4000, "records": 5000, "known_issues": 3000,
              "selectors": 400}


def _skip_if_skipped(report):
    if report.skipped:
        pytest.skip(report.skipped)


@pytest.mark.parametrize("name", sorted(selffuzz.TARGETS))
def test_short_in_process_run_has_no_findings(name):
    report = selffuzz.fuzz_in_process(name, runs=SHORT_RUNS[name], max_seconds=60, seed=1)
    _skip_if_skipped(report)
    assert report.runs > 0
    assert report.findings == [], "\n".join(f"{f}\n{f.detail}" for f in report.findings)


def test_targets_accept_their_seeds():
    """Seeds are well formed: the real encoded cases decode, records decode."""
    from covfuzz import serialize
    for data in selffuzz._testcase_seeds():
        serialize.decode(data)
    one = selffuzz.TARGETS["records"].make()
    for data in selffuzz._record_seeds():
        one(data)


def test_structured_mutation_keeps_the_framing():
    import random
    import zlib
    from covfuzz import serialize
    rng = random.Random(3)
    seed = selffuzz._testcase_seeds()[0]
    for _ in range(50):
        out = selffuzz.structured_mutate("testcase", seed, rng)
        assert out.startswith(serialize.MAGIC)
        zlib.decompress(out[5:])  # still a valid zlib stream: the mutation reached the JSON


def test_target_contract_reports_foreign_exceptions(monkeypatch):
    """A decoder raising something other than its documented error is a finding."""
    from covfuzz import serialize

    def broken(data):
        raise KeyError("boom")
    monkeypatch.setattr(serialize, "decode", broken)
    report = selffuzz.fuzz_in_process("testcase", runs=20)
    assert report.findings and "KeyError" in report.findings[0].summary


def test_atheris_subprocess_run():
    pytest.importorskip("atheris")
    report = selffuzz.run_target("records", runs=2000, max_seconds=120)
    assert report.engine == "atheris"
    assert report.returncode == 0, report.output[-3000:]
    assert report.runs == 2000
    assert report.findings == []


def test_module_command_line_list():
    proc = subprocess.run([sys.executable, "-m", "covfuzz.selffuzz", "list"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in selffuzz.TARGETS:
        assert name in proc.stdout


def test_in_process_command_line():
    proc = subprocess.run([sys.executable, "-m", "covfuzz.selffuzz", "json", "--in-process",
                           "--runs", "500"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "500 inputs" in proc.stdout and "findings 0" in proc.stdout


def test_add_parser_for_the_cli():
    parser = argparse.ArgumentParser(prog="covfuzz")
    sub = parser.add_subparsers(dest="command")
    selffuzz.add_parser(sub)
    args = parser.parse_args(["selffuzz", "records", "--runs", "10", "--in-process"])
    assert args.func is selffuzz.main_args and args.target == "records" and args.runs == 10


# ----------------------------------------------------------------------------- findings


def test_known_issues_target_runs_when_module_exists():
    try:
        selffuzz.known_issues_module()
    except selffuzz.Skip as exc:
        pytest.skip(str(exc))
    one = selffuzz.TARGETS["known_issues"].make()
    for data in selffuzz._known_issues_seeds():
        one(data)


def test_sf1_malformed_id_lookup_raises_covfuzz_error(tmp_path):
    from corpus import CorpusStore
    store = CorpusStore(str(tmp_path / "c"))
    try:
        for bad in ("", "a b", "é" * 3, "x" * 200, "id\n"):
            with pytest.raises(CovfuzzError):
                store.get_meta(bad)
    finally:
        store.close()


def test_sf2_error_line_escapes_control_characters(tmp_path):
    from covfuzz import cli
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["show", str(tmp_path / "a\nb\x1b[31m")])
    assert code == 2
    assert len(err.getvalue().strip().splitlines()) == 1
    assert "\x1b" not in err.getvalue()


def test_ki1_known_issues_pattern_cannot_hang_matching():
    try:
        selffuzz.known_issues_module()
    except selffuzz.Skip as exc:
        pytest.skip(str(exc))
    code = ("from covfuzz.errors import CovfuzzError\n"
            "from covfuzz.triage import known_issues as k\n"
            "try:\n"
            "    ki = k.parse(b'[{\"pattern\": \"(a+)+$\"}]')\n"
            "except CovfuzzError:\n"
            "    raise SystemExit(0)\n"
            "ki.match('compile_crash|' + 'a' * 40 + '!')\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=20,
                              capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        pytest.fail("matching one failure against '(a+)+$' ran for more than 20 s")
    assert proc.returncode == 0, proc.stderr
