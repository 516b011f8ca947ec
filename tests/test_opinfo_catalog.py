"""The catalog entries derived from PyTorch's OpInfo (issue 18), the size arithmetic ops, and how
the generator draws from ~700 ops: derived, rendered, validated, run; the cache is plain data."""

import ast
import collections
import json
import os
import subprocess
import sys

import pytest
import torch

from covfuzz import codegen, ops
from covfuzz.generator import GenOptions, OpDraw, generate, op_table
from covfuzz.ir import Graph, Input, Node, ScalarSpec, TensorSpec, TestCase
from covfuzz.ops import opinfo
from covfuzz.propagate import propagate

from eager_run import run_eagerly

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DERIVED = sorted(name for name, op in ops.AVAILABLE.items() if op.source == "opinfo")
# A few OpInfo entries of different shapes: unary, tensor list, tuple output, nn with kwargs.
SUBSET = ("special.entr", "linalg.det", "stack", "max.reduction_with_dim", "nn.functional.conv2d")


def _child(code: str, cache_home: str, extra_env=None, timeout=300) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDG_CACHE_HOME=cache_home, PYTHONPATH=ROOT, **(extra_env or {}))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def subset_cache(tmp_path_factory):
    """A cache file holding the entries derived for SUBSET, written by a child process (deriving
    imports PyTorch's test utilities, which this process must not)."""
    home = str(tmp_path_factory.mktemp("cache"))
    path = os.path.join(home, "subset.json")
    code = (f"from covfuzz.ops import opinfo; "
            f"opinfo.write_cache({path!r}, opinfo.derive(set({list(SUBSET)!r})))")
    proc = _child(code, home, {opinfo.DERIVING_ENV: "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return path


def test_an_entry_that_kills_the_deriving_process_is_left_out(tmp_path):
    """The deriving child really dies by SIGSEGV at one entry (linalg.eigvals on NaN matrices
    did that to a whole derivation on this machine, leaving covfuzz with hand-written ops
    only): the derivation runs again without that entry and keeps the others."""
    home = str(tmp_path)
    path = os.path.join(home, "crash.json")
    code = (f"from covfuzz.ops import opinfo; t = opinfo._build({path!r}, {SUBSET!r}); "
            "print(sorted(e['opinfo'] for e in t['entries']), t['skipped'].get(opinfo.CRASHED))")
    # DERIVING_ENV: importing covfuzz.ops in this child must not derive the whole catalog into
    # the empty cache home first (minutes); only `_build`'s own children derive, the subset.
    proc = _child(code, home, {opinfo.CRASH_AT_ENV: "linalg.det", opinfo.DERIVING_ENV: "1"},
                  timeout=900)  # two children
    assert proc.returncode == 0, proc.stderr[-2000:]
    kept, crashed = proc.stdout.strip().rsplit("] ", 1)
    assert "linalg.det" not in kept and "special.entr" in kept and "stack" in kept
    assert crashed == "['linalg.det']"
    assert "OpInfo entry linalg.det killed the deriving process (SIGSEGV)" in proc.stderr
    assert opinfo.read_cache(path) is not None and not os.path.exists(path + ".journal")
    # An entry that hangs the child (no progress for ENTRY_STALL_S, 3 s here) likewise.
    path = os.path.join(home, "hang.json")
    code = (f"from covfuzz.ops import opinfo; opinfo.ENTRY_STALL_S = 3.0; "
            f"t = opinfo._build({path!r}, {SUBSET!r}); "
            "print(sorted(e['opinfo'] for e in t['entries']), t['skipped'].get(opinfo.CRASHED))")
    proc = _child(code, home, {opinfo.CRASH_AT_ENV: "hang:stack", opinfo.DERIVING_ENV: "1"},
                  timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    kept, crashed = proc.stdout.strip().rsplit("] ", 1)
    assert "'stack'" not in kept and "special.entr" in kept and crashed == "['stack']"
    assert "OpInfo entry stack stalled the deriving process for 3 s" in proc.stderr


def test_derived_entries_exist_beside_the_hand_written_ones():
    assert ops.DERIVED.status == "ok", "expecttest is a dependency: the derived catalog must load"
    assert len(DERIVED) >= 250, len(DERIVED)
    assert len(ops.AVAILABLE) >= 600
    hand = {name for name, op in ops.AVAILABLE.items() if op.source == "hand-written"}
    assert {"torch.add", "hop.cond", "py.closure", "Tensor.add_"} <= hand
    for name in ("torch.special.entr", "torch.linalg.det", "torch.hstack"):
        op = ops.AVAILABLE[name]
        assert op.source == "opinfo" and op.category in opinfo.CATEGORIES
        assert "float32" in op.dtypes_by_device["cpu"]
    # The hand-written entry wins: OpInfo's torch.add is not there twice.
    assert ops.AVAILABLE["torch.add"].source == "hand-written"
    assert "hand-written entry wins" in ops.DERIVED.skipped
    # Complex dtypes are recorded per device, though the IR filters them out.
    assert "complex64" in ops.AVAILABLE["torch.special.entr"].dtypes_by_device["cpu"] or any(
        "complex64" in ops.AVAILABLE[n].dtypes_by_device["cpu"] for n in DERIVED)
    assert ops.DERIVED.complex_ops > 100
    assert any("random" in reason for reason in ops.DERIVED.skipped)


def test_every_template_is_a_plain_call_on_a_public_torch_name():
    """Nothing from OpInfo reaches a program but validated identifiers resolving on torch,
    placeholders and literals rendered by AttrDomain."""
    rng = __import__("random").Random(0)
    for name in DERIVED:
        op = ops.AVAILABLE[name]
        assert opinfo.resolve(op.target) is not None, name
        spec = TensorSpec.contiguous((3, 4))
        attrs = op.propose_attrs(rng, spec)
        assert op.check_attrs(attrs) is None, (name, attrs)
        expr = op.render([f"v{i}" for i in range(len(op.args))], attrs)
        tree = ast.parse(expr, mode="eval").body
        if isinstance(tree, ast.Subscript):  # a tuple output's element
            assert isinstance(tree.slice, ast.Constant), expr
            tree = tree.value
        assert isinstance(tree, ast.Call), expr
        path, node = [], tree.func
        while isinstance(node, ast.Attribute):
            path.append(node.attr)
            node = node.value
        assert isinstance(node, ast.Name) and (node.id == "torch" or node.id == "v0"), expr
        assert not any(p.startswith("_") for p in path), expr
        for sub in ast.walk(tree):
            if isinstance(sub, ast.Name):
                assert sub.id == "torch" or sub.id.startswith("v"), expr
            assert not isinstance(sub, (ast.Lambda, ast.Starred, ast.JoinedStr)), expr


def test_a_sample_of_derived_ops_renders_validates_and_runs_eagerly():
    sample = DERIVED[::12]
    failures = []
    for name in sample:
        opts = GenOptions(op_weights={name: 4.0, "torch.sin": 1.0}, max_nodes=3,
                          data_dependent=ops.AVAILABLE[name].data_dependent)
        case = next((c for c in (generate(seed, opts) for seed in range(12))
                     if any(n.op == name for n in c.graph.nodes)), None)
        assert case is not None, f"{name}: not generated in 12 seeds"
        propagate(case)
        try:
            namespace, outputs = run_eagerly(case)
        except Exception as exc:  # noqa: BLE001 - collected, asserted below
            failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:80]}")
            continue
        # Propagation's specs are eager's.
        for v, out in zip(case.graph.outputs, outputs):
            spec = case.graph.spec_of(v)
            if isinstance(out, torch.Tensor):
                assert tuple(out.shape) == spec.shape, (name, codegen.program(case))
                assert str(out.dtype) == f"torch.{spec.dtype}", name
    assert len(failures) <= len(sample) // 10, failures


def test_cache_round_trips(subset_cache, tmp_path):
    table = opinfo.read_cache(subset_cache)
    assert table is not None
    names = {e["opinfo"] for e in table["entries"]}
    assert names == set(SUBSET), (names, table["skipped"])
    again = str(tmp_path / "again.json")
    opinfo.write_cache(again, table)
    assert opinfo.read_cache(again) == table
    by_name = {e["name"]: e for e in table["entries"]}
    assert opinfo.template_of(by_name["torch.special.entr"]) == "torch.special.entr({0})"
    assert opinfo.template_of(by_name["torch.stack"]).startswith("torch.stack([{0}, {1}")
    assert opinfo.template_of(by_name["torch.max.reduction_with_dim"]).endswith("[{item}]")
    assert "F.conv2d" in by_name  # nn.functional spelled as the hand-written families spell it
    for entry in table["entries"]:
        assert opinfo.op_def(entry).source == "opinfo"


def _rewritten(path, tmp_path, change) -> str:
    raw = json.load(open(path))
    change(raw)
    out = str(tmp_path / "changed.json")
    with open(out, "w") as handle:
        json.dump(raw, handle)
    return out


@pytest.mark.parametrize("change", [
    lambda raw: raw["entries"][0].__setitem__("target", "os.system"),
    lambda raw: raw["entries"][0]["params"].append({"kw": "__import__", "ref": ["none"]}),
    lambda raw: raw["entries"][0]["params"].append({"kw": "x); import os; (", "ref": ["none"]}),
    lambda raw: raw["entries"][0].__setitem__("name", "torch.add({0}) or __import__('os')"),
    lambda raw: next(e for e in raw["entries"] if e["attrs"])["patterns"][0]["attrs"].update(
        {k: "not a value" for k in next(e for e in raw["entries"] if e["attrs"])["attrs"]}),
    lambda raw: raw["entries"][0]["attrs"].__setitem__("x", {"kind": "code"}),
    lambda raw: raw.__setitem__("torch", "1.0.0"),  # another torch build's cache
    lambda raw: raw.__setitem__("deriver", "0" * 16),  # written by other derivation code
    lambda raw: raw["entries"].append(raw["entries"][0]),  # a duplicate name
], ids=["target", "kw-dunder", "kw-code", "name", "attr-value", "attr-kind", "torch", "deriver",
        "duplicate"])
def test_a_corrupt_or_foreign_cache_is_ignored(subset_cache, tmp_path, change):
    assert opinfo.read_cache(subset_cache) is not None
    assert opinfo.read_cache(_rewritten(subset_cache, tmp_path, change)) is None


def test_unreadable_cache_files_are_ignored(tmp_path):
    for content in (b"", b"not json", b"\xff\xfe", b"[]", b'{"format": 1}', b"[" * 100000):
        path = tmp_path / "c.json"
        path.write_bytes(content)
        assert opinfo.read_cache(str(path)) is None
    assert opinfo.read_cache(str(tmp_path / "missing.json")) is None


def test_version_skew_skips_the_entry_with_a_note(subset_cache, tmp_path, monkeypatch, capsys):
    """An entry whose target the installed torch lacks is skipped with a note, never a crash."""
    def rename(raw):
        entry = next(e for e in raw["entries"] if e["name"] == "torch.special.entr")
        entry["target"] = entry["name"] = "torch.special.entr_gone_in_this_torch"
        # A well-formed entry naming a torch function that is not a tensor op is refused too.
        entry = next(e for e in raw["entries"] if e["name"] == "torch.linalg.det")
        entry["target"] = entry["name"] = "torch.save"
    changed = _rewritten(subset_cache, tmp_path, rename)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home"))
    os.makedirs(os.path.dirname(opinfo.cache_path()))
    os.replace(changed, opinfo.cache_path())
    derived = opinfo.derived_ops(set(), set())
    assert derived.status == "ok"
    names = {op.name for op in derived.ops}
    assert "torch.stack" in names
    assert not names & {"torch.special.entr_gone_in_this_torch", "torch.save"}
    assert sorted(derived.skipped[opinfo.SKEW]) == ["linalg.det", "special.entr"]
    assert "target is missing in torch" in capsys.readouterr().err


def test_without_expecttest_the_hand_written_catalog_loads_with_one_note(tmp_path):
    home = tmp_path / "home"
    (home / "covfuzz").mkdir(parents=True)
    # A corrupt cache file is there too: it is ignored (data, never executed).
    corrupt = home / "covfuzz" / os.path.basename(opinfo.cache_path())
    corrupt.write_text('{"format": "covfuzz-opinfo-catalog", "entries": "__import__(\'os\')"}')
    code = ("import sys; sys.modules['expecttest'] = None\n"
            "import covfuzz.ops as ops\n"
            "from covfuzz.ops import opinfo\n"
            "assert ops.DERIVED.status == 'unavailable', ops.DERIVED.status\n"
            "assert all(op.source == 'hand-written' for op in ops.AVAILABLE.values())\n"
            "assert 'torch.add' in ops.AVAILABLE and 'sym.divmod' in ops.AVAILABLE\n"
            "again = opinfo.derived_ops(set(), set())\n"
            "print(len(ops.AVAILABLE), again.status)\n")
    proc = _child(code, str(home))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[1] == "unavailable"
    notes = [line for line in proc.stderr.splitlines() if "expecttest" in line]
    assert len(notes) == 1 and notes[0].startswith("covfuzz: "), proc.stderr


# ----------------------------------------------------------------------------- size arithmetic


def _sizes_graph(nodes) -> TestCase:
    x = Input(TensorSpec.contiguous((12, 5)))
    k = Input(ScalarSpec("int"), "normal", 3)
    return TestCase(Graph((x, k), tuple(nodes), (len(nodes) + 1,)))


@pytest.mark.parametrize("op,attrs,expected", [
    ("sym.divmod", {"k": -5, "i": 0}, divmod(12, -5)[0]),
    ("sym.divmod", {"k": 5, "i": 1}, 12 % 5),
    ("sym.pow", {"k": 2}, 144),
    ("sym.lshift", {"k": 2}, 48),
    ("sym.rshift", {"k": 2}, 3),
    ("sym.and", {"k": 7}, 12 & 7),
    ("sym.or", {"k": 3}, 15),
    ("sym.xor", {"k": 5}, 9),
    ("sym.floor_ratio", {"k": 5}, 2),
    ("sym.ceil_ratio", {"k": 5}, 3),
    ("sym.invert", {}, ~12),
])
def test_size_arithmetic_ops_compute_what_python_does(op, attrs, expected):
    nodes = [Node("Tensor.size", (0,), {"dim": 0}), Node(op, (2,), attrs),
             Node("torch.full_like.size", (0, 3), {})]
    case = propagate(_sizes_graph(nodes))
    assert case.graph.nodes[1].out == ScalarSpec("int")
    _, outputs = run_eagerly(case)
    assert outputs[0].flatten()[0].item() == pytest.approx(expected)


def test_sizes_feed_exponents_repeat_counts_slices_and_branches():
    nodes = [Node("Tensor.size", (0,), {"dim": 1}),             # v2 = 5
             Node("sym.lt", (2,), {"k": 8}),                     # v3 = True
             Node("sym.ifelse", (3, 2, 1), {}),                  # v4 = 5
             Node("sym.mul.sizes", (4, 1), {}),                  # v5 = 15
             Node("Tensor.__getitem__.size_bound", (0, 5), {}),  # v6 = x[:15]: all 12 rows
             Node("Tensor.pow.size", (6, 1), {}),                # v7 = v6 ** 3
             Node("torch.repeat_interleave.size", (7, 2), {"dim": 1}),  # 25 columns
             Node("sym.neg", (1,), {}),                           # v9 = -3
             Node("Tensor.__getitem__.size_start", (8, 9), {})]  # last 3 rows
    case = propagate(_sizes_graph(nodes))
    assert case.graph.nodes[-1].out.shape == (3, 25)
    _, (out,) = run_eagerly(case)
    assert out.shape == (3, 25)
    # Invalid uses are torch's to refuse: a reshape size that does not divide the elements,
    # an integer tensor to a negative power (meta kernels skip it; real propagation does not).
    from covfuzz.errors import InvalidGraph
    with pytest.raises(InvalidGraph):
        propagate(_sizes_graph([Node("Tensor.size", (0,), {"dim": 1}),
                                Node("sym.add", (2,), {"k": 2}),
                                Node("Tensor.reshape.size", (0, 3), {})]))
    xi = Input(TensorSpec.contiguous((4,), dtype="int64"))
    minus = Input(ScalarSpec("int"), "normal", -1)
    with pytest.raises(InvalidGraph, match="negative"):
        propagate(TestCase(Graph((xi, minus), (Node("Tensor.pow.size", (0, 1), {}),), (2,))))


# ----------------------------------------------------------------------------- drawing ops


def test_every_op_leads_a_case_early_without_a_yield_table():
    """Seeds s .. s+n-1 lead with n different ops: all of a 40-op table within 40 seeds."""
    names = sorted(ops.AVAILABLE)[::16][:40]
    opts = GenOptions(op_weights={n: 1.0 for n in names}, max_nodes=2,
                      data_dependent=True)
    leads = {OpDraw(seed, opts).lead.name for seed in range(40)}
    assert leads == set(names)
    default = GenOptions()
    table, _ = op_table(default)
    assert len({OpDraw(seed, default).lead.name for seed in range(len(table))}) == len(table)


def test_ops_are_drawn_by_what_they_paid_and_untried_ones_lead():
    table, _ = op_table(GenOptions())
    names = [op.name for op in table]
    paid = {name: (1.0, 5) for name in names}
    paid["torch.sin"] = (10.0, 5)
    paid["torch.cos"] = (0.1, 5)
    for untried in ("torch.tan", "torch.exp"):
        del paid[untried]
    opts = GenOptions(op_yield=paid)
    assert {OpDraw(seed, opts).lead.name for seed in range(4)} == {"torch.tan", "torch.exp"}
    draw = OpDraw(0, opts)
    rng = __import__("random").Random(1)
    counts = collections.Counter(draw.draw(rng).name for _ in range(60000))
    assert counts["torch.sin"] > 20 * max(counts["torch.cos"], 1)
    # Deterministic for a seed and its options.
    assert generate(5, opts) == generate(5, opts)
    assert generate(5, opts) != generate(5, GenOptions())


def test_the_trait_table_says_what_each_op_paid():
    from covfuzz.traits import TraitYield

    def case(op):
        x = Input(TensorSpec.contiguous((4, 3)))
        return propagate(TestCase(Graph((x,), (Node(op, (0,), {}),), (1,))))

    model = TraitYield()
    for _ in range(5):
        model.record(case("torch.sin"), 40.0, 1.0)
        model.record(case("torch.cos"), 0.0, 1.0)
    paid = model.op_yield()
    assert paid["torch.sin"][0] > 1.0 > paid["torch.cos"][0]
    assert paid["torch.sin"][1] == paid["torch.cos"][1] == 5
    assert "torch.tan" not in paid  # never executed: the generator leads with such ops
    again = TraitYield(json.loads(json.dumps(model.state())))
    assert again.op_yield() == paid
    lead = OpDraw(0, GenOptions(op_weights={"torch.sin": 1.0, "torch.cos": 1.0, "torch.tan": 1.0},
                                op_yield=paid)).lead
    assert lead.name == "torch.tan"
