"""Triage: signatures/dedup, known issues, crashes, replay, repro, export-tests, reduce, cmin,
merge, export/import, and loading a case from a file or id (covfuzz.triage.resolve). Real worker
processes; failing cases come from the harness's fault-injection seeds
(COVFUZZ_FAULT_INJECTION=1), so no real torch bug is needed."""

from __future__ import annotations

import ast
import fcntl
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import corpus
from covfuzz import cli, serialize, workdir
from covfuzz.errors import CovfuzzError
from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.propagate import propagate
from covfuzz.triage import failures, known_issues, resolve
from covfuzz.triage.signature import normalize_message, signature, signature_id, signature_of
from harness.pool import WorkerSpec, start_worker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAULT_ENV = {"COVFUZZ_FAULT_INJECTION": "1"}
RAISE_COMPILE, SEGFAULT = 0xFA017005, 0xFA017001


def _small_case(backend="eager", seed=3) -> TestCase:
    x = TensorSpec.contiguous((4, 3))
    g = Graph((Input(x), Input(x)), (Node("torch.add", (0, 1), {"alpha": 1}), Node("F.relu", (2,), {})), (3,))
    return propagate(TestCase(g, CompileSettings(backend=backend), seed=seed))


def _multi_node_case(seed: int, fault: int) -> TestCase:
    from covfuzz.generator import GenOptions, generate
    case = propagate(generate(seed, GenOptions(max_nodes=8)).replace(seed=fault))
    return case


@pytest.fixture(scope="module")
def fault_env():
    saved = os.environ.get("COVFUZZ_FAULT_INJECTION")
    os.environ["COVFUZZ_FAULT_INJECTION"] = "1"  # inherited by the workers the CLI spawns
    yield
    if saved is None:
        os.environ.pop("COVFUZZ_FAULT_INJECTION", None)
    else:
        os.environ["COVFUZZ_FAULT_INJECTION"] = saved


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, fault_env):
    """A campaign dir whose failures were produced by really running cases in a worker."""
    d = tmp_path_factory.mktemp("camp")
    info = {"dir": str(d), "sigs": {}}
    cases = {"crash_a": _multi_node_case(1, RAISE_COMPILE),  # one bug via two different graphs
             "crash_b": _multi_node_case(6, RAISE_COMPILE),
             "segv": _multi_node_case(3, SEGFAULT),          # another bug
             "passing": _small_case()}
    assert serialize.case_id(cases["crash_a"]) != serialize.case_id(cases["crash_b"])
    with start_worker(WorkerSpec.for_triage(timeout=120, env=FAULT_ENV)) as worker, \
            corpus.open_campaign_store(str(d), readonly=False, create=True) as store:
        for name, case in cases.items():
            result = worker.run(case)
            sig, sid = signature_of(case, result)
            if name == "passing":
                assert result.outcome == "pass", result.message
                # a bug that was "fixed" since: recorded under a signature the case no longer shows
                sig = "compile_crash|RuntimeError|old bug|torch/x.py:f"
                sid = signature_id(sig)
                result.outcome = "compile_crash"
            info["sigs"][name] = (sig, sid)
            store.record_failure(sid, result.outcome, result.message or "", result.exc_type or "",
                                 serialize.case_id(case), serialize.encode(case), result.to_dict(),
                                 extra={"signature": sig})
    info["cases"] = cases
    return info


def _main(argv, capsys):
    rc = cli.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


# ----------------------------------------------------------------------------- signatures


def test_normalize_message_and_signature_shapes():
    a = normalize_message("RuntimeError: size mismatch at buf12 [4, 8] vs (3,) in /tmp/x/y.py 0x7f00")
    b = normalize_message("RuntimeError: size mismatch at buf3 [2, 2] vs (5,) in /home/z.py 0xdead")
    assert a == b
    wrapped = "backend='inductor' raised:\nLoweringException: bad thing\n  from user code..."
    assert "LoweringException" in normalize_message(wrapped)
    s1 = signature("compile_crash", "E", "boom 1", ["torch/_inductor/a.py:10:f", "torch/_inductor/b.py:20:g"])
    s2 = signature("compile_crash", "E", "boom 2", ["torch/_inductor/a.py:11:f", "torch/_inductor/b.py:99:g"])
    assert s1 == s2 and len(signature_id(s1)) == 12
    assert s1 != signature("compile_crash", "E", "boom", ["torch/_inductor/c.py:1:h"])
    # a layout assertion repeats its clause per offending dim: a reduced case keeps its bucket
    clause = "expected size {0}=={0}, stride {1}=={2} at dim={3}"
    three = "; ".join(clause.format(17, 1, 9, d) for d in range(3))
    assert normalize_message(three) == normalize_message(clause.format(2, 3, 3, 0))
    # a check that fired in Inductor's generated code: the shapes in its source line vary
    frames = ["torch/_inductor/output_code.py:5:__call__"]

    def generated(shape):
        return {"where": "/tmp/cache/ab/cabcdef.py:40:call", "root_type": "AssertionError",
                "root_message": "", "source": f"assert_size_stride(arg0_1, {shape}, (51, 1))"}
    assert (signature("runtime_crash", "E", "", frames, check=generated((2, 17, 3, 3)))
            == signature("runtime_crash", "E", "", frames, check=generated((1, 1))))
    in_torch = {**generated((2, 3)), "where": "torch/_inductor/ir.py:9:f"}
    assert "(2, 3)" in signature("runtime_crash", "E", "", frames, check=in_torch)


def test_signature_of_mismatch_uses_output_index():
    case = _small_case()
    res = {"outcome": "mismatch", "details": {"output": 0}, "message": "x"}
    sig, sid = signature_of(case, res)
    assert sig == "mismatch|F.relu<-torch.add" and sid == signature_id(sig)


def test_dedup_buckets(campaign):
    sigs = campaign["sigs"]
    assert sigs["crash_a"] == sigs["crash_b"]  # same bug, different graphs: one bucket
    assert sigs["crash_a"][1] != sigs["segv"][1]
    assert sigs["crash_a"][0].startswith("compile_crash|")
    assert sigs["segv"][0].startswith("process_crash|")


# ----------------------------------------------------------------------------- known issues


def test_known_issues_match_and_errors(tmp_path):
    p = tmp_path / "known_issues.json"
    p.write_text(json.dumps({"issues": [{"pattern": r"process_crash\|.*SIGSEGV", "link": "https://x/1"}]}))
    ki = known_issues.load(None, str(tmp_path))
    assert ki.match("process_crash|worker killed by SIGSEGV").link == "https://x/1"
    assert ki.match("compile_crash|foo") is None
    t = tmp_path / "k.toml"
    t.write_text("[[issues]]\npattern = 'fault injection'\nnote = 'harness test'\n")
    assert known_issues.load(str(t)).match("sig", "covfuzz fault injection: x").note == "harness test"
    for bad in ["{not json", json.dumps({"issues": [{"pattern": "("}]}),
                json.dumps({"issues": [{"pattern": "a" * 5000}]}), json.dumps({"issues": [{"link": "x"}]}),
                json.dumps({"issues": [{"pattern": "a", "code": "import os"}]}), json.dumps({"other": 1}),
                json.dumps([1, 2])]:
        p.write_text(bad)
        with pytest.raises(CovfuzzError) as exc:
            known_issues.load(str(p))
        assert "\n" not in str(exc.value) and str(p) in str(exc.value)
    with pytest.raises(CovfuzzError):
        known_issues.load(str(tmp_path / "missing.json"))


def test_crashes_json(campaign, tmp_path, capsys):
    rc, out, _ = _main(["crashes", campaign["dir"], "--json", "--sort", "count"], capsys)
    assert rc == 0
    rep = json.loads(out)
    assert rep["buckets"] == 3 and rep["raw_failures"] == 4
    rows = {r["signature_id"]: r for r in rep["failures"]}
    crash = rows[campaign["sigs"]["crash_a"][1]]
    assert crash["count"] == 2 and crash["kind"] == "compile_crash"
    assert crash["signature"] == campaign["sigs"]["crash_a"][0]
    assert crash["example_id"] == serialize.case_id(campaign["cases"]["crash_a"])
    assert crash["first_seen"] <= crash["last_seen"] and crash["known"] is None
    assert rep["failures"][0]["count"] == 2  # most frequent first
    k = tmp_path / "k.json"
    k.write_text(json.dumps([{"pattern": "SIGSEGV", "note": "known segv"}]))
    rc, out, _ = _main(["crashes", campaign["dir"], "--json", "--known-issues", str(k)], capsys)
    rep = json.loads(out)
    assert rep["known"] == 1 and rep["new"] == 2
    assert rows[campaign["sigs"]["segv"][1]]["signature_id"] in [
        r["signature_id"] for r in rep["failures"] if r["known"]]
    rc, out, _ = _main(["crashes", campaign["dir"]], capsys)
    assert rc == 0 and "3 buckets" in out
    k.write_text("[{")
    rc, _, err = _main(["crashes", campaign["dir"], "--known-issues", str(k)], capsys)
    assert rc == 2 and err.count("\n") == 1


# ----------------------------------------------------------------------------- replay


def test_replay_verdicts(campaign, tmp_path, capsys):
    d, sigs = campaign["dir"], campaign["sigs"]
    rc, out, _ = _main(["replay", d, sigs["crash_a"][1], "--json"], capsys)
    rows = json.loads(out)["replayed"]
    assert rc == 1 and rows[0]["verdict"] == "reproduces" and rows[0]["signature"] == sigs["crash_a"][0]
    rc, out, _ = _main(["replay", d, sigs["passing"][1]], capsys)
    assert rc == 0 and "fixed" in out
    eid = serialize.case_id(campaign["cases"]["segv"])
    rc, out, _ = _main(["replay", d, eid], capsys)
    assert rc == 1 and "REPRODUCES" in out
    f = tmp_path / "pass.json"
    f.write_text(serialize.to_json(_small_case()))
    rc, out, _ = _main(["replay", str(f)], capsys)
    assert rc == 0 and "passes" in out
    c = tmp_path / "crash.cfz"
    c.write_bytes(serialize.encode(campaign["cases"]["crash_a"]))
    rc, out, _ = _main(["replay", str(c)], capsys)
    assert rc == 1 and "FAILS" in out
    rc, _, err = _main(["replay", d, "ffffffffffff"], capsys)
    assert rc == 2 and "not a seed, example or signature id" in err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    rc, _, err = _main(["replay", str(bad)], capsys)
    assert rc == 2 and err.count("\n") == 1


# ----------------------------------------------------------------------------- repro / export-tests


def test_repro_script_runs_standalone(campaign, tmp_path, capsys):
    # fault injection lives in the harness only, so the standalone program of the "fixed"
    # bucket (a genuinely passing case) shows the mechanics: imports only torch, runs with -I.
    script, report = tmp_path / "repro.py", tmp_path / "report.md"
    rc, _, _ = _main(["repro", campaign["sigs"]["passing"][1], "--dir", campaign["dir"],
                      "-o", str(script), "--report", str(report), "--no-run"], capsys)
    assert rc == 0
    src = script.read_text()
    imports = {n.names[0].name for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Import)}
    imports |= {n.module for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom)}
    assert {i.split(".")[0] for i in imports} == {"torch"}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COVFUZZ_FAULT_INJECTION")}
    proc = subprocess.run([sys.executable, "-I", str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "eager and compiled agree" in proc.stdout
    md = report.read_text()
    assert md.startswith("# [") and "### Versions" in md and "```python" in md
    # a failing example: the report carries the observed error
    rc, _, _ = _main(["repro", campaign["sigs"]["crash_a"][1], "--dir", campaign["dir"], "--original",
                      "-o", str(tmp_path / "r2.py"), "--report", str(tmp_path / "r2.md"), "--no-run"],
                     capsys)
    assert rc == 0 and "fault injection" in (tmp_path / "r2.md").read_text()
    # a genuinely failing program: the same script machinery surfaces the error, exit != 0
    # (the compact program of a small case, or the full one: the compiled call's line either way)
    line = next(text for text in src.splitlines()
                if text.startswith(("compiled = torch.compile(", "    compiled = torch.compile(",
                                    "    compiled_out = compile_fn(")))
    broken = src.replace(line, line + "; raise RuntimeError('boom in compile')")
    (tmp_path / "r3.py").write_text(broken)
    proc = subprocess.run([sys.executable, "-I", "r3.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "boom in compile" in proc.stderr
    rc, _, err = _main(["repro", "nope.cfz", "-o", str(tmp_path / "x.py")], capsys)
    assert rc == 2


def test_export_tests_collectable(campaign, tmp_path, capsys):
    out = tmp_path / "test_repros.py"
    rc, text, _ = _main(["export-tests", campaign["dir"], "-o", str(out)], capsys)
    assert rc == 0 and "3 tests" in text
    src = out.read_text()
    compile(src, str(out), "exec")
    assert src.count("strict=True") == 3 and "strict=False" not in src
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 tests collected" in proc.stdout


# ----------------------------------------------------------------------------- reduce


def test_reduce_keeps_signature(campaign, capsys):
    d, (sig, sid) = campaign["dir"], campaign["sigs"]["crash_a"]
    before = len(campaign["cases"]["crash_a"].graph.nodes)
    assert before >= 2
    rc, out, _ = _main(["reduce", sid, "--dir", d, "--max-steps", "60", "--budget", "120", "-q"], capsys)
    assert rc == 0, out
    path = os.path.join(workdir.reduced_dir(d), f"{sid}.cfz")
    with open(path, "rb") as handle:
        reduced = serialize.decode(handle.read())
    assert len(reduced.graph.nodes) < before and len(reduced.graph.nodes) == 1
    meta = json.load(open(os.path.join(workdir.reduced_dir(d), f"{sid}.json")))
    assert meta["nodes_before"] == before and meta["signature"] == sig
    rc, out, _ = _main(["replay", d, sid, "--reduced", "--json"], capsys)
    row = json.loads(out)["replayed"][0]
    assert rc == 1 and row["verdict"] == "reproduces" and row["signature"] == sig
    rc, out, _ = _main(["crashes", d, "--json"], capsys)
    row = [r for r in json.loads(out)["failures"] if r["signature_id"] == sid][0]
    assert row["reduced"] and row["reduced_nodes"] == 1


def test_reduce_refuses_passing_case(tmp_path, capsys):
    f = tmp_path / "p.json"
    f.write_text(serialize.to_json(_small_case()))
    rc, _, err = _main(["reduce", str(f), "-q"], capsys)
    assert rc == 2 and "does not fail" in err


# ----------------------------------------------------------------------------- cmin / merge / export


def _synthetic_campaign(path, n=40, rng_seed=0):
    from covfuzz.generator import GenOptions, generate
    rng = np.random.default_rng(rng_seed)
    os.makedirs(path, exist_ok=True)
    with corpus.open_campaign_store(path, readonly=False, create=True) as store:
        for k in range(n):
            case = generate(1000 * rng_seed + k, GenOptions(max_nodes=4))
            feats = np.unique(rng.integers(0, 300, size=int(rng.integers(1, 30)))).astype(np.uint64)
            store.add_seed(serialize.case_id(case), serialize.encode(case),
                           {"nodes": len(case.graph.nodes)}, feats)
    return path


def _features(path):
    with corpus.open_campaign_store(path) as store:
        feats = [f for _, f in store.iter_features()]
        return set(np.concatenate(feats).tolist()), store.num_seeds()


def test_cmin_out_and_in_place(tmp_path, capsys):
    src = _synthetic_campaign(str(tmp_path / "a"))
    before, n_before = _features(src)
    rc, out, _ = _main(["cmin", src, "-o", str(tmp_path / "min")], capsys)
    assert rc == 0 and "seeds 40 ->" in out
    after, n_after = _features(str(tmp_path / "min"))
    assert after == before and n_after < n_before
    rc, out, _ = _main(["cmin", src], capsys)
    assert rc == 0 and "in place" in out
    after, n_in = _features(src)
    assert after == before and n_in == n_after
    with open(workdir.lock_path(src), "a+") as handle:  # a running campaign holds the lock
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        rc, _, err = _main(["cmin", src], capsys)
        assert rc == 2 and "in use by another covfuzz campaign" in err


def test_merge_and_export_import_round_trip(tmp_path, capsys):
    a = _synthetic_campaign(str(tmp_path / "a"), 20, 1)
    b = _synthetic_campaign(str(tmp_path / "b"), 20, 2)
    rc, out, _ = _main(["merge", a, b, "-o", str(tmp_path / "c")], capsys)
    assert rc == 0
    fa, _ = _features(a)
    fb, _ = _features(b)
    fc, _ = _features(str(tmp_path / "c"))
    assert fc == fa | fb
    rc, out, _ = _main(["export", a, "-o", str(tmp_path / "seeds"), "--json"], capsys)
    assert rc == 0 and "exported 20" in out
    files = sorted(str(p) for p in (tmp_path / "seeds").iterdir())
    rc, out, _ = _main(["import", str(tmp_path / "new")] + files, capsys)
    assert rc == 0 and "imported 20 of 20" in out
    with corpus.open_campaign_store(a) as sa:
        ids_a = sorted(sa.seed_ids())
        data_a = {i: sa.get_case_bytes(i) for i in ids_a}
    with corpus.open_campaign_store(str(tmp_path / "new")) as sn:
        assert sorted(sn.seed_ids()) == ids_a
        for i in ids_a:
            assert serialize.decode(sn.get_case_bytes(i)) == serialize.decode(data_a[i])
    rc, _, err = _main(["import", str(tmp_path / "new"), str(tmp_path / "missing.cfz")], capsys)
    assert rc == 2


# ----------------------------------------------------------------------------- resolving ids and files


def _prefix_twins() -> tuple[TestCase, TestCase]:
    """Two cases whose ids share their first 5 hex digits (seeds searched deterministically)."""
    seen: dict[str, TestCase] = {}
    for seed in range(20000):
        case = TestCase(_small_case().graph, CompileSettings(backend="eager"), seed=seed)
        prefix = serialize.case_id(case)[:5]
        if prefix in seen:
            return seen[prefix], case
        seen[prefix] = case
    raise AssertionError("no two ids share 5 hex digits")


@pytest.fixture
def id_campaign(tmp_path):
    """Seeds (two of them sharing an id prefix), one failure bucket with one example, and a
    reduced case of that bucket; no worker runs."""
    d = str(tmp_path / "camp")
    twin_a, twin_b = _prefix_twins()
    failing = _small_case(seed=11)
    sig = "compile_crash|RuntimeError|boom|torch/x.py:f"
    sid = signature_id(sig)
    with corpus.open_campaign_store(d, readonly=False, create=True) as store:
        for case in (twin_a, twin_b):
            store.add_seed(serialize.case_id(case), serialize.encode(case),
                           corpus.seed_meta(nodes=len(case.graph.nodes)), [1, 2])
        store.record_failure(sid, "compile_crash", "boom", "RuntimeError", serialize.case_id(failing),
                             serialize.encode(failing), {"outcome": "compile_crash", "message": "boom"},
                             extra={"signature": sig})
    reduced = _small_case(seed=12)
    failures.write_reduced(d, sid, reduced, {"signature": sig, "reduced_id": serialize.case_id(reduced)})
    return {"dir": d, "twins": (twin_a, twin_b), "failing": failing, "reduced": reduced,
            "sig": sig, "sid": sid}


def test_resolve_each_id_kind(id_campaign):
    d, sid = id_campaign["dir"], id_campaign["sid"]
    twin = id_campaign["twins"][0]
    seed = resolve.load_case(serialize.case_id(twin), d)
    assert seed.label == serialize.case_id(twin) and seed.case == propagate(twin)
    assert seed.signature is None and seed.failure == {}

    eid = serialize.case_id(id_campaign["failing"])
    example = resolve.load_case(eid, d)
    assert example.label == eid == example.example_id
    assert example.sig_id == sid and example.signature == id_campaign["sig"]
    assert example.failure["kind"] == "compile_crash" and example.failure["message"] == "boom"
    assert serialize.case_id(example.case) == eid

    bucket = resolve.load_case(sid, d, prefer_reduced=False)
    assert bucket.label == eid and bucket.sig_id == sid  # a bucket's first example (--original)...
    reduced = resolve.load_case(sid, d)  # ...or by default its reduced case
    assert reduced.label == f"{sid} (reduced)"
    assert serialize.case_id(reduced.case) == serialize.case_id(id_campaign["reduced"])
    assert resolve.load_case(id_campaign["sig"], d).sig_id == sid  # the full signature too


def _unique_prefix(full: str, others) -> str:
    return next(full[:n] for n in range(resolve.MIN_PREFIX, len(full) + 1)
                if not any(o.startswith(full[:n]) for o in others if o != full))


def test_resolve_prefixes(id_campaign):
    d, sid = id_campaign["dir"], id_campaign["sid"]
    a, b = (serialize.case_id(c) for c in id_campaign["twins"])
    eid = serialize.case_id(id_campaign["failing"])
    ids = (a, b, eid, sid)
    for full in ids:  # a unique prefix picks its id, whatever the kind
        got = resolve.load_case(_unique_prefix(full, ids), d)
        assert full in (got.label, got.sig_id)
    common = a[:5]
    assert b.startswith(common)
    with pytest.raises(CovfuzzError) as exc:  # ambiguous: one line naming the candidates
        resolve.load_case(common, d)
    message = str(exc.value)
    assert "ambiguous id prefix" in message and f"seed {a}" in message and f"seed {b}" in message
    assert "\n" not in message
    with pytest.raises(CovfuzzError, match="not a seed, example or signature id"):
        resolve.load_case(a[:resolve.MIN_PREFIX - 1], d)  # too short to be looked up


def test_resolve_missing_ids_and_directories(id_campaign, tmp_path):
    d = id_campaign["dir"]
    with pytest.raises(CovfuzzError, match="not a seed, example or signature id"):
        resolve.load_case("fedcba9876543210", d)
    with pytest.raises(CovfuzzError, match="name its campaign with --dir"):
        resolve.load_case("fedcba9876543210")
    with pytest.raises(CovfuzzError, match="not a campaign directory"):
        resolve.load_case("fedcba9876543210", str(tmp_path))
    with pytest.raises(CovfuzzError, match="no such campaign directory"):
        resolve.load_case("fedcba9876543210", str(tmp_path / "nowhere"))


def test_resolve_files(tmp_path):
    case = _small_case()
    stored, as_json = tmp_path / "c.cfz", tmp_path / "c.json"
    stored.write_bytes(serialize.encode(case))
    as_json.write_text(serialize.to_json(case))
    for path in (stored, as_json):
        got = resolve.load_case(str(path))
        assert got.label == str(path) and got.case == case
        assert got.example_id == serialize.case_id(case)
    big = tmp_path / "big.json"
    with open(big, "wb") as handle:
        handle.truncate(serialize.MAX_ENCODED_BYTES + 1)  # sparse: checked by size, not read
    with pytest.raises(CovfuzzError, match="too large"):
        resolve.load_case(str(big))
    with pytest.raises(CovfuzzError, match="not a regular file"):
        resolve.load_case(str(tmp_path))
    bad = tmp_path / "bad.cfz"
    bad.write_bytes(b"CFZT\x01garbage")
    with pytest.raises(CovfuzzError) as exc:
        resolve.load_case(str(bad))
    assert str(exc.value).startswith(f"{bad}: ")
