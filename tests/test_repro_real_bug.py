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
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVFUZZ")}
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def test_reduced_repro_shows_the_inductor_error_without_covfuzz(tmp_path):
    if not torch.__version__.startswith("2.13.0"):
        pytest.skip(f"the bug was found on torch 2.13.0; this is {torch.__version__}")
    env = torch_only_env()
    probe = subprocess.run([sys.executable, "-S", "-c", "import covfuzz"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'covfuzz'" in probe.stderr
    script = tmp_path / "repro.py"
    script.write_text(repro_script(index_add_case()))
    env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / "inductor")
    proc = subprocess.run([sys.executable, "-S", str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "InductorError" in proc.stderr, proc.stderr[-2000:]
