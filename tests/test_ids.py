"""One id resolver: `show`, `run`, `repro`, `replay` and `reduce` accept the same forms (seed,
example, reduced-case and signature ids, full signatures, unique prefixes, DIR/reduced/ files,
plain files) and pick the same case for each, and say on stderr which one they picked. A
signature means the bucket's reduced case; `--original` its first example. The campaign store
is real (LMDB on disk); its cases use the eager backend, so `run` and `replay` run them in a
real worker without compiling."""

from __future__ import annotations

import os

import pytest

import corpus
from covfuzz import cli, serialize
from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.propagate import propagate
from covfuzz.triage import failures, resolve
from covfuzz.triage.signature import signature_id

SIG = "compile_crash|RuntimeError|boom|torch/x.py:f"
ROOT = "abcdef012345"  # the root-cause id triage gave the bucket (`covfuzz crashes` lists it)


def _case(seed: int, op: str = "torch.sin") -> TestCase:
    x = TensorSpec.contiguous((3,))
    return propagate(TestCase(Graph((Input(x),), (Node(op, (0,), {}),), (1,)),
                              CompileSettings(backend="eager"), seed=seed))


def _unique_prefix(full: str, others) -> str:
    return next(full[:n] for n in range(resolve.MIN_PREFIX, len(full) + 1)
                if not any(o.startswith(full[:n]) for o in others if o != full))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two seeds, one bucket with one example, and that bucket's reduced case."""
    tmp = tmp_path_factory.mktemp("ids")
    d = str(tmp / "camp")
    seeds, example, reduced = [_case(1), _case(2, "torch.cos")], _case(3), _case(4, "torch.neg")
    sid = signature_id(SIG)
    with corpus.open_campaign_store(d, readonly=False, create=True) as st:
        for case in seeds:
            st.add_seed(serialize.case_id(case), serialize.encode(case),
                        corpus.seed_meta(nodes=1), [1, 2])
        st.record_failure(sid, "compile_crash", "boom", "RuntimeError", serialize.case_id(example),
                          serialize.encode(example), {"outcome": "compile_crash", "message": "boom"},
                          extra={"signature": SIG})
        st.update_failure_extra(sid, {"triage": {"state": "confirmed", "root_id": ROOT}})
    failures.write_reduced(d, sid, reduced, {"signature_id": sid,
                                             "reduced_id": serialize.case_id(reduced)})
    plain = tmp / "plain.cfz"
    plain.write_bytes(serialize.encode(seeds[0]))
    ids = {"seed": serialize.case_id(seeds[0]), "example": serialize.case_id(example),
           "reduced": serialize.case_id(reduced), "sig": sid}
    every = list(ids.values()) + [serialize.case_id(seeds[1])]
    reduced_json = os.path.join(d, "reduced", f"{sid}.json")
    # form -> (argument, --original?, the case id it must pick)
    forms = {
        "seed id": (ids["seed"], False, ids["seed"]),
        "seed prefix": (_unique_prefix(ids["seed"], every), False, ids["seed"]),
        "example id": (ids["example"], False, ids["example"]),
        "example prefix": (_unique_prefix(ids["example"], every), False, ids["example"]),
        "signature id": (sid, False, ids["reduced"]),
        "signature prefix": (_unique_prefix(sid, every), False, ids["reduced"]),
        "full signature": (SIG, False, ids["reduced"]),
        "reduced id": (ids["reduced"], False, ids["reduced"]),
        "reduced metadata file": (reduced_json, False, ids["reduced"]),
        "reduced case file": (reduced_json[:-5] + ".cfz", False, ids["reduced"]),
        "root-cause id": (ROOT, False, ids["reduced"]),
        "root-cause prefix": (ROOT[:6], False, ids["reduced"]),
        "signature id --original": (sid, True, ids["example"]),
        "reduced metadata file --original": (reduced_json, True, ids["example"]),
        "plain file": (str(plain), False, ids["seed"]),
    }
    return {"dir": d, "tmp": tmp, "forms": forms, "sid": sid}


def _picked(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("picked ")]


def _main(argv, capsys):
    rc = cli.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_every_form_resolves_to_its_case(store):
    for name, (arg, original, want) in store["forms"].items():
        got = resolve.load_case(arg, store["dir"], prefer_reduced=not original)
        assert serialize.case_id(got.case) == want, name
    got = resolve.load_case(store["sid"], store["dir"])
    assert got.kind == "reduced" and got.describe().startswith("reduced case ")
    assert "--original: example" in got.describe()


def test_show_and_repro_pick_the_same_case(store, capsys, tmp_path):
    for name, (arg, original, want) in store["forms"].items():
        flag = ["--original"] if original else []
        rc, out, err = _main(["show", arg, "--dir", store["dir"], "--no-code", *flag], capsys)
        assert rc == 0, (name, err)
        assert f"test case {want}" in out, name
        [shown] = _picked(err)
        rc, _, err = _main(["repro", arg, "--dir", store["dir"], "-o", str(tmp_path / "r.py"), *flag],
                           capsys)
        assert rc == 0, (name, err)
        assert _picked(err) == [shown], name  # the same words: the same case
        assert want in (tmp_path / "r.py").read_text().splitlines()[0], name


def test_run_and_replay_pick_the_same_case(store, capsys):
    d = store["dir"]
    for original in (False, True):
        forms = {n: f for n, f in store["forms"].items() if f[1] == original}
        args = [f[0] for f in forms.values()]
        flag = ["--original"] if original else []
        expected = [resolve.load_case(a, d, prefer_reduced=not original).describe() for a in args]
        rc, _, err = _main(["run", *args, "--dir", d, "--no-coverage", *flag], capsys)
        assert rc == 0, err
        assert _picked(err) == [f"picked {e}" for e in expected]
        rc, _, err = _main(["replay", d, *args, *flag], capsys)
        assert rc in (0, 1), err
        assert _picked(err) == [f"picked {e}" for e in expected]
        for want in (f[2] for f in forms.values()):
            assert want in err or any(want in e for e in expected)


def test_reduce_picks_the_same_case(store, capsys, tmp_path):
    """reduce resolves like the others (the bucket's fake failure does not reproduce, so the
    reduction itself stops: what matters is the case it picked first)."""
    d, sid = store["dir"], store["sid"]
    for flag in ([], ["--original"]):
        want = resolve.load_case(sid, d, prefer_reduced=not flag).describe()
        rc, _, err = _main(["reduce", sid, "--dir", d, "-o", str(tmp_path / "out.cfz"),
                            "--max-steps", "2", "--budget", "60", "--timeout", "60", "-q", *flag],
                           capsys)
        assert _picked(err) == [f"picked {want}"], err


def test_ambiguous_and_unknown_ids(store, capsys):
    rc, _, err = _main(["show", "ffffffffffff", "--dir", store["dir"]], capsys)
    assert rc == 2 and "not a seed, example or signature id" in err
    rc, _, err = _main(["show", "zz", "--dir", store["dir"]], capsys)
    assert rc == 2 and err.count("\n") == 1
