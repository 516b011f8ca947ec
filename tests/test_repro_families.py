"""Every op family's repro runs standalone: the script `covfuzz repro` writes for a case of
each family (pointwise, higher-order ops with flex_attention, Python constructs, parameters
with freezing, in-place, data-dependent ops, and a case that needs the full program) is run
by a plain interpreter where covfuzz cannot be imported, and must reach its verdict ("eager
and compiled agree") rather than break on a missing import or helper; so must the compact
script of a backward case with an input too large to print (drawn as covfuzz draws it), and
the full program (`repro_script(full=True)`: what GPU cases get). Exported pytest files are
multi-line and strict: a broken script fails instead of counting as an expected failure."""

from __future__ import annotations

import ast
import os
import site
import subprocess
import sys

import pytest
import torch

from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.propagate import propagate
from covfuzz.triage.repro import pytest_file, repro_script

pytestmark = pytest.mark.slow

f32 = TensorSpec.contiguous


def _case(inputs, nodes, outputs, **settings) -> TestCase:
    return propagate(TestCase(Graph(tuple(inputs), tuple(nodes), tuple(outputs)),
                              CompileSettings(**settings), seed=7))


def family_cases() -> dict[str, TestCase]:
    """Small cases, one per family; all pass on a correct torch.compile."""
    qkv = f32((1, 1, 4, 8))
    return {
        "pointwise": _case([Input(f32((6,)))],
                           [Node("F.softshrink", (0,), {"lambd": 0.5}),
                            Node("torch.add", (1, 0), {"alpha": 2})], [2]),
        "flex_attention": _case([Input(qkv), Input(qkv), Input(qkv)],
                                [Node("hop.flex_attention", (0, 1, 2), {"mod": "score_causal"})], [3]),
        "hop_and_python": _case(  # torch.cond, map over unbind, a dataclass, functools.partial
            [Input(f32((3, 4))), Input(f32((3, 4)))],
            [Node("hop.cond", (0,), {"f": "sin", "g": "cos"}),
             Node("py.map_unbind", (2,), {"f": "tanh", "dim": 0}),
             Node("py.dataclass", (3, 1), {}),
             Node("py.partial", (4, 1), {"alpha": 2})], [5]),
        "params_freezing": _case([Input(f32((2, 8))), Input(f32((4, 8)), param=True),
                                  Input(f32((4,)), param=True)],
                                 [Node("F.linear", (0, 1, 2), {})], [3],
                                 inductor_config={"freezing": True}),
        "inplace": _case([Input(f32((5,))), Input(f32((5,)))],
                         [Node("Tensor.add_", (0, 1), {}), Node("torch.mul", (2, 1), {})], [3]),
        "data_dependent": _case([Input(f32((6,)))], [Node("torch.nonzero", (0,), {})], [1],
                                dynamo_config={"capture_dynamic_output_shape_ops": True}),
        # an input too large to spell out (drawn from its seed in the script), and backward
        "backward_seeded": _case([Input(f32((20, 20), requires_grad=True)), Input(f32((20,)))],
                                 [Node("torch.sin", (0,), {}), Node("torch.mul", (2, 1), {})], [3],
                                 backward=True),
        # the same case as the full program (the materializer, BACKWARD, the harness's helpers)
        "full_program": _case([Input(f32((20, 20), requires_grad=True))],
                              [Node("torch.sin", (0,), {})], [1], backward=True),
    }


def family_script(name: str, case: TestCase) -> str:
    return repro_script(case, full=name == "full_program")


def torch_only_env(tmp_path) -> dict:
    """PYTHONPATH with torch's site-packages (and the base interpreter's) for `python -S`:
    without `site`, no .pth file runs, so the editable covfuzz install is invisible."""
    paths = [os.path.dirname(os.path.dirname(torch.__file__))] + site.getsitepackages()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVFUZZ", "PYTHON"))}
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / "inductor")
    return env


def start_standalone(text: str, folder, env) -> subprocess.Popen:
    folder.mkdir()
    (folder / "repro.py").write_text(text)
    return subprocess.Popen([sys.executable, "-S", "repro.py"], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every family's repro, started at once (compiles overlap), and what each printed."""
    tmp = tmp_path_factory.mktemp("families")
    env = torch_only_env(tmp)
    probe = subprocess.run([sys.executable, "-S", "-c", "import covfuzz"], cwd=tmp, env=env,
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'covfuzz'" in probe.stderr
    texts = {name: family_script(name, case) for name, case in family_cases().items()}
    procs = {name: start_standalone(text, tmp / name, env) for name, text in texts.items()}
    out = {}
    for name, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        out[name] = (texts[name], proc.returncode, stdout, stderr)
    return out


@pytest.mark.parametrize("family", list(family_cases()))
def test_family_repro_runs_standalone(runs, family):
    text, rc, stdout, stderr = runs[family]
    tree = ast.parse(text)
    imported = {n.names[0].name for n in ast.walk(tree) if isinstance(n, ast.Import)}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {name.split(".")[0] for name in imported} <= {"torch", "functools", "dataclasses",
                                                          "collections"}
    if family == "full_program":
        assert "make_tensor(" in text and "BACKWARD = True" in text
    else:
        assert "make_tensor" not in text  # small inputs are spelled out, large ones drawn
    if family == "backward_seeded":
        assert "torch.Generator().manual_seed(" in text and "def run(f, args" in text
        assert "'gradient of x0'" in text
    assert rc == 0, f"{family}:\n{text}\n{stderr[-3000:]}"
    assert "eager and compiled agree" in stdout


def test_family_repros_hold_what_they_need():
    texts = {name: family_script(name, case) for name, case in family_cases().items()}
    assert "import torch.nn.attention.flex_attention" in texts["flex_attention"]
    flex = texts["flex_attention"]
    assert "def score_causal" in flex and "def score_scale" not in flex  # only its own helper
    assert "import functools" in texts["hop_and_python"] and "import dataclasses" in texts["hop_and_python"]
    assert "import collections" not in texts["hop_and_python"]
    frozen = texts["params_freezing"]
    assert "class Model(torch.nn.Module)" in frozen and "torch.no_grad()" in frozen
    assert "'freezing': True" in frozen
    assert texts["inplace"].count("make_args()") >= 3  # a fresh input for every run
    assert "capture_dynamic_output_shape_ops" in texts["data_dependent"]


def test_exported_tests_are_readable_and_strict(tmp_path):
    """export-tests' module: each repro as multi-line text; xfail(raises=..., strict=True), so a
    script that breaks some other way (a NameError here) FAILS instead of passing as xfail, and
    one that raises what a bug raises is XFAIL."""
    failing = repro_script(family_cases()["pointwise"]).replace(
        'print("eager and compiled agree")', 'raise AssertionError("the bug")')
    broken = repro_script(family_cases()["pointwise"]).replace("import torch\n", "import torch\nundefined_name\n", 1)
    entries = [{"sig_id": "a" * 12, "kind": "mismatch", "signature": "mismatch|x", "script": failing},
               {"sig_id": "b" * 12, "kind": "mismatch", "signature": "mismatch|y", "script": broken},
               {"sig_id": "c" * 12, "kind": "compile_crash", "signature": "c", "script": failing,
                "exc_type": "torch._inductor.exc.InductorError"},
               {"sig_id": "d" * 12, "kind": "compile_crash", "signature": "d", "script": failing,
                "exc_type": "os.system"}]  # not an exception class of torch: not imported
    src = pytest_file(entries)
    assert max(len(line) for line in src.splitlines()) < 200
    assert src.count("strict=True") == 4 and "strict=False" not in src
    assert "raises=AssertionError" in src and "raises=torch._inductor.exc.InductorError" in src
    assert "import os" not in src and "raises=Exception" in src
    out = tmp_path / "test_exported.py"
    out.write_text(src)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVFUZZ")}
    env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / "inductor")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
                           str(out), "-k", "aaaa or bbbb"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    report = proc.stdout
    assert "XFAIL test_exported.py::test_mismatch_aaaaaaaaaaaa" in report, report[-3000:]
    assert "FAILED test_exported.py::test_mismatch_bbbbbbbbbbbb" in report, report[-3000:]
    assert "NameError" in report
