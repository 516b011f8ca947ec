"""The command line: gen / show / ops, exit codes and one-line errors.

`covfuzz` runs as a real process (python -m covfuzz, the entry point) for `--help` and for one
`gen`, the rest in the test process (tests/cli_inprocess.py): a real process spends seconds
importing torch before it answers.
"""

import json
import os
import subprocess
import sys

import pytest

import corpus
from cli_inprocess import run_covfuzz
from covfuzz import cli, serialize
from covfuzz.generator import GenOptions, generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def covfuzz(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "covfuzz", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=300)


def test_help_everywhere():
    result = covfuzz("--help")  # the entry point, without importing torch
    assert result.returncode == 0 and "usage: covfuzz" in result.stdout
    for args in ([], ["gen"], ["show"], ["ops"]):
        result = run_covfuzz(*args, "--help")
        assert result.returncode == 0 and "usage: covfuzz" in result.stdout


COMMANDS = ("gen", "show", "ops", "fuzz", "status", "plot", "crashes", "replay", "repro",
            "export-tests", "reduce", "cmin", "merge", "export", "import", "selffuzz", "run")


def test_every_command_has_help(capsys):
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            cli.main([command, "--help"])
        assert exc.value.code == 0
        assert f"usage: covfuzz {command}" in capsys.readouterr().out


def test_show_takes_a_campaign_id_prefix(tmp_path, capsys):
    case = generate(4, GenOptions(max_nodes=3))
    cid = serialize.case_id(case)
    with corpus.open_campaign_store(str(tmp_path), readonly=False, create=True) as store:
        store.add_seed(cid, serialize.encode(case), corpus.seed_meta(), [1])
    assert cli.main(["show", "--json", cid[:6], "--dir", str(tmp_path)]) == 0
    assert serialize.from_json_text(capsys.readouterr().out) == case
    assert cli.main(["show", "fedcba9876543210", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("covfuzz show: fedcba9876543210: not a seed, example or signature id")
    assert err.count("\n") == 1


def test_gen_is_deterministic_and_show_reads_both_forms(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    # one real process and this one: two interpreters, each with its own hash seed
    assert covfuzz("gen", "--seed", "3", "-n", "5", "--out", str(a)).returncode == 0
    assert run_covfuzz("gen", "--seed", "3", "-n", "5", "--out", str(b)).returncode == 0
    names = sorted(os.listdir(a))
    assert len(names) == 5 and names == sorted(os.listdir(b))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    stored = a / names[0]
    shown = run_covfuzz("show", str(stored))
    assert shown.returncode == 0 and "def fn(" in shown.stdout
    as_json = run_covfuzz("show", "--json", str(stored))
    edited = tmp_path / "edited.json"
    edited.write_text(as_json.stdout)
    again = run_covfuzz("show", "--json", str(edited))
    assert again.returncode == 0 and json.loads(again.stdout) == json.loads(as_json.stdout)


def test_ops_lists_the_catalog():
    result = run_covfuzz("ops", "--json")
    rows = json.loads(result.stdout)
    assert sum(r["available"] for r in rows) >= 120


def test_bad_inputs_give_one_line_errors(tmp_path):
    good = tmp_path / "good.cfz"
    assert run_covfuzz("gen", "--seed", "1", "--out", str(good)).returncode == 0
    data = good.read_bytes()
    bad = {
        "truncated.cfz": data[: len(data) // 2],
        "random.bin": os.urandom(300),
        "evil.json": json.dumps({"format": "covfuzz-testcase", "version": 1, "seed": 0,
                                 "settings": {}, "outputs": [1],
                                 "inputs": [{"kind": "tensor", "shape": [2], "stride": [1],
                                             "dtype": "float32", "device": "cpu", "fill": "normal"}],
                                 "nodes": [{"op": "__import__('os').system('touch PWNED')",
                                            "args": [0], "attrs": {}}]}).encode(),
    }
    for name, content in bad.items():
        path = tmp_path / name
        path.write_bytes(content)
        result = run_covfuzz("show", str(path), cwd=tmp_path)
        assert result.returncode == 2, (name, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "PWNED").exists()
    missing = run_covfuzz("show", str(tmp_path / "nope.cfz"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    unknown = run_covfuzz("gen", "--supported-ops", "torch.bogus")
    assert unknown.returncode == 2 and "unknown op" in unknown.stderr
