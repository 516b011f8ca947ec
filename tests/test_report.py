"""report.md: a title in PyTorch's style (the culprit by its public torch name, the symptom,
dtypes and device), observed vs expected with the float64 reference, the minimal settings and
the culprit's Inductor kernel, captured by really running the repro (TORCH_LOGS=output_code)."""

from __future__ import annotations

import pytest
import torch

from covfuzz import cli, serialize
from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.propagate import propagate
from covfuzz.triage import repro


def test_public_names():
    assert repro.public_name("F.softshrink") == "torch.nn.functional.softshrink"
    assert repro.public_name("hop.flex_attention") == "flex_attention"
    assert repro.public_name("py.map_unbind") == "map over Tensor.unbind"
    assert repro.public_name("Tensor.unary_", {"f": "sin"}) == "Tensor.sin_"
    assert repro.public_name("torch.floor_divide") == "torch.floor_divide"
    assert repro.public_name("func.jvp") == "torch.func.jvp"


LOG = "V1130 07:51:34.990000 25289 torch/_inductor/graph.py:2722] [0/0] [__output_code] "


def test_output_code_and_culprit_kernel_from_a_log():
    code = ["Output code: ", "import torch", "cpp_fused_add_0 = async_compile.cpp_pybinding(['float*'], r'''",
            "void kernel() { add; }", "''')", "cpp_fused_softshrink_1 = async_compile.cpp_pybinding(['float*'], r'''",
            "void kernel() { softshrink; }", "''')", "def call(args):", "    pass"]
    stderr = "\n".join(LOG + line for line in code) + "\nTraceback (most recent call last):\n"
    text = repro.output_code(stderr)
    assert text.startswith("import torch") and "def call" in text
    kernel, what = repro.culprit_kernels(text, ["softshrink"])
    assert "cpp_fused_softshrink_1" in kernel and "cpp_fused_add_0" not in kernel
    assert "softshrink" in what
    kernel, what = repro.culprit_kernels(text, ["nothing"])
    assert "cpp_fused_add_0" in kernel and "first kernel" in what


def test_title_of_a_crash_names_the_check():
    x = Input(TensorSpec.contiguous((4,)))
    case = propagate(TestCase(Graph((x,), (Node("torch.sin", (0,), {}),), (1,))))
    failure = {"kind": "compile_crash", "check": {"where": "torch/_inductor/codegen/common.py:1 in _bound_variable",
                                                  "source": "assert not kwargs", "root_type": "AssertionError"}}
    title = repro.title(case, failure)
    assert title == ("[inductor] `torch.sin` fails to compile with AssertionError in _bound_variable "
                     "(assert not kwargs) (float32, CPU)")


@pytest.mark.slow
def test_report_of_a_reduced_file_runs_it(tmp_path, capsys):
    """A report made from a file (no campaign record) still gets a real title, signature and
    observed values by running the repro, and quotes the culprit's kernel."""
    if not torch.__version__.startswith("2.13.0"):
        pytest.skip(f"the bug was found on torch 2.13.0; this is {torch.__version__}")
    x = Input(TensorSpec.contiguous(()), values=(float("nan"),))
    case = propagate(TestCase(Graph((x,), (Node("F.softshrink", (0,), {"lambd": 0.5}),), (1,)),
                              CompileSettings(), seed=0))
    path = tmp_path / "case.cfz"
    path.write_bytes(serialize.encode(case))
    rc = cli.main(["repro", str(path), "-o", str(tmp_path / "repro.py"), "--report", str(tmp_path / "r.md")])
    assert rc == 0, capsys.readouterr().err
    md = (tmp_path / "r.md").read_text()
    assert md.startswith("# [inductor] `torch.nn.functional.softshrink` returns 0.0 instead of nan "
                         "(float32, CPU)\n"), md[:300]
    assert "### Expected" in md and "float64 reference (the same function on float64 inputs) gives `nan`" in md
    assert "signature ` mismatch|F.softshrink<-input `" in md
    assert "### Inductor output code" in md and "cpp_fused_" in md and "softshrink" in md.split("### Inductor output code")[1]
    assert "(not recorded" not in md
