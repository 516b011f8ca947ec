"""Short runs of covfuzz's self-fuzzing targets (covfuzz/selffuzz.py) and regression tests for
what they found. Longer runs: `covfuzz selffuzz TARGET --runs 100000`."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys

import pytest

from cli_inprocess import run_covfuzz
from covfuzz import cli, selffuzz
from covfuzz.cli import selffuzz as selffuzz_cli
from covfuzz.errors import CovfuzzError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHORT_RUNS = {"testcase": 4000, "json": 4000, "records": 5000, "known_issues": 3000,
              "selectors": 2000, "state": 3000, "status": 3000, "reduced_meta": 1000,
              "matcher": 2000}


@pytest.mark.parametrize("name", sorted(selffuzz.TARGETS))
def test_short_in_process_run_has_no_findings(name):
    report = selffuzz.fuzz_in_process(name, runs=SHORT_RUNS[name], max_seconds=60, seed=1)
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


def test_command_line_list():
    proc = subprocess.run([sys.executable, "-m", "covfuzz", "selffuzz", "list"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in selffuzz.TARGETS:
        assert name in proc.stdout


def test_in_process_command_line():
    # run in this process (tests/cli_inprocess.py); `selffuzz list` above runs the real entry point
    proc = run_covfuzz("selffuzz", "json", "--in-process", "--runs", "500")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "500 inputs" in proc.stdout and "findings 0" in proc.stdout


def test_add_parser_for_the_cli():
    parser = argparse.ArgumentParser(prog="covfuzz")
    sub = parser.add_subparsers(dest="command")
    selffuzz_cli.add_parsers(sub)
    args = parser.parse_args(["selffuzz", "records", "--runs", "10", "--in-process"])
    assert args.func is selffuzz_cli.main_args and args.target == "records" and args.runs == 10


# ----------------------------------------------------------------------------- findings


def test_known_issues_target_accepts_its_seeds():
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


def _cli_main(argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    return code, err.getvalue()


def test_sf2_error_line_escapes_control_characters(tmp_path):
    code, err = _cli_main(["show", str(tmp_path / "a\nb\x1b[31m")])
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "\x1b" not in err


def test_cli_answers_hostile_selectors_with_one_line(tmp_path):
    """What the selectors target once checked through the CLI: a selector given as a file, id or
    campaign directory exits 2 with one line on stderr, never a traceback."""
    nowhere = str(tmp_path / "no-such-dir")
    for data in selffuzz._selector_seeds():
        text = data.decode("utf-8", "surrogateescape")
        if "\x00" in text or os.path.exists(text):
            continue
        for argv in (["show", "--no-code", "--", text], ["show", "--dir", nowhere, "--", text],
                     ["status", "--json", "--", text], ["status", "--", os.path.join(nowhere, text)]):
            code, err = _cli_main(argv)
            assert code == 2, (argv, err)
            assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_ki1_known_issues_pattern_cannot_hang_matching():
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
