"""A real torch.compile bug found by covfuzz, as its reduced standalone repro, run where only
torch (not covfuzz) can be imported: the script must show the compiler's error."""

import os
import site
import subprocess
import sys

import pytest
import torch

from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.propagate import propagate
from covfuzz.triage.repro import repro_script

pytestmark = pytest.mark.slow


def index_add_case() -> TestCase:
    """Reduced from a no-feedback campaign (bucket ff98b22541e5): index_add into a size-1 dim."""
    inputs = (Input(TensorSpec.contiguous((4, 4, 1))),
              Input(TensorSpec.contiguous((6,), dtype="int64"), fill="index"),
              Input(TensorSpec.contiguous((4, 4, 6))))
    graph = Graph(inputs, (Node("torch.index_add", (0, 1, 2), {"dim": -1}),), (3,))
    return propagate(TestCase(graph, CompileSettings(), seed=565))


def torch_only_env() -> dict:
    """PYTHONPATH with torch's site-packages (and the base interpreter's) for `python -S`:
    without `site`, no .pth file runs, so the editable covfuzz install is invisible."""
    paths = [os.path.dirname(os.path.dirname(torch.__file__))] + site.getsitepackages()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVFUZZ", "PYTHON"))}
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def run_standalone(text: str, tmp_path) -> subprocess.CompletedProcess:
    """Write `text` as tmp_path/repro.py and run it with `python -S` where only torch (not
    covfuzz) can be imported, with its own Inductor cache."""
    script = tmp_path / "repro.py"
    script.write_text(text)
    env = torch_only_env()
    env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / "inductor")
    return subprocess.run([sys.executable, "-S", str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def _needs_found_torch():
    if not torch.__version__.startswith("2.13.0"):
        pytest.skip(f"the bug was found on torch 2.13.0; this is {torch.__version__}")


def test_reduced_repro_shows_the_inductor_error_without_covfuzz(tmp_path):
    _needs_found_torch()
    probe = subprocess.run([sys.executable, "-S", "-c", "import covfuzz"], cwd=tmp_path,
                           env=torch_only_env(), capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'covfuzz'" in probe.stderr
    proc = run_standalone(repro_script(index_add_case()), tmp_path)
    assert proc.returncode != 0
    assert "InductorError" in proc.stderr, proc.stderr[-2000:]


def frozen_cpp_gemm_case() -> TestCase:
    """Found while adding model parameters, reduced by `covfuzz reduce`: a frozen linear weight
    through the C++ GEMM template, then reshape and a 1x1 conv2d, gives wrong values."""
    f32 = TensorSpec.contiguous
    inputs = (Input(f32((16, 8))), Input(f32((16, 8)), param=True), Input(f32((16,))),
              Input(f32((4, 16, 1, 1))), Input(f32((4,))))
    nodes = (Node("F.linear", (0, 1, 2), {}),
             Node("torch.reshape", (5,), {"shape": (1, 16, 4, 4)}),
             Node("F.conv2d", (6, 3, 4), {"stride": 1, "padding": 1, "dilation": 1, "groups": 1}))
    settings = CompileSettings(inductor_config={"freezing": True, "max_autotune": True,
                                                "max_autotune_gemm_backends": "CPP"})
    return propagate(TestCase(Graph(inputs, nodes, (7,)), settings, seed=1))


def test_reduced_frozen_model_repro_shows_the_miscompile_without_covfuzz(tmp_path):
    """The standalone script of a case with model parameters (a Model, run under no_grad
    where freezing applies) runs without covfuzz and shows the wrong values against eager
    and the float64 reference."""
    _needs_found_torch()
    text = repro_script(frozen_cpp_gemm_case())
    assert "class Model(torch.nn.Module):" in text and "torch.no_grad()" in text
    proc = run_standalone(text, tmp_path)
    assert proc.returncode != 0
    assert "AssertionError: output 0 at [" in proc.stderr, proc.stderr[-2000:]
    assert "float64 reference" in proc.stderr


def softshrink_nan_case() -> TestCase:
    """As triage reduces it (tests/triage_set.py, softshrink_nan): Inductor's softshrink sends
    a NaN input to 0; the input is the one literal NaN that triggers it."""
    x = Input(TensorSpec.contiguous(()), values=(float("nan"),))
    graph = Graph((x,), (Node("F.softshrink", (0,), {"lambd": 0.5}),), (1,))
    return propagate(TestCase(graph, CompileSettings(), seed=0))


def test_reduced_repro_is_short_and_shows_the_triggering_value(tmp_path):
    """A reduced case whose inputs are literal values gets the compact program: a few lines
    that spell out the NaN, and one check naming eager, compiled and float64 values."""
    _needs_found_torch()
    text = repro_script(softshrink_nan_case())
    assert len(text.splitlines()) <= 40, text
    assert "x0 = torch.tensor(float('nan'), dtype=torch.float32)" in text
    assert "make_tensor" not in text  # no seeded materializer: the values are in the script
    proc = run_standalone(text, tmp_path)
    assert proc.returncode != 0
    assert "eager nan, compiled 0.0, float64 reference nan" in proc.stderr, proc.stderr[-2000:]


def test_flex_attention_repro_imports_what_it_needs(tmp_path):
    """`import torch` does not load torch.nn.attention.flex_attention: the script must import
    it itself (a worker that already had it imported hid this), and runs to its verdict."""
    qkv = TensorSpec.contiguous((1, 1, 4, 8))
    graph = Graph((Input(qkv), Input(qkv), Input(qkv)),
                  (Node("hop.flex_attention", (0, 1, 2), {"mod": "score_scale"}),), (3,))
    text = repro_script(propagate(TestCase(graph, CompileSettings(), seed=3)))
    assert "import torch.nn.attention.flex_attention" in text
    proc = run_standalone(text, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "eager and compiled agree" in proc.stdout
