"""Codegen: standalone programs that import only torch (and the standard library) and carry
no code from data."""

import ast
import json
import os
import subprocess
import sys

import pytest

from covfuzz import codegen, serialize
from covfuzz.errors import TestCaseFormatError
from covfuzz.generator import GenOptions, generate


def test_program_imports_only_torch_and_parses():
    """torch, plus the standard library modules the Python-construct helpers use."""
    for seed in range(100):
        tree = ast.parse(codegen.program(generate(seed)))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add((node.module or "").split(".")[0])
        assert imported <= {"torch", "collections", "dataclasses", "functools"}, imported


def test_one_line_per_node_with_spec_comment():
    case = generate(11)
    text = codegen.program(case)
    body = text.split("def fn(")[1].split("\n\n")[0].splitlines()[1:-1]
    assert len(body) == len(case.graph.nodes)
    for line, node in zip(body, case.graph.nodes):
        assert line.rstrip().endswith(node.out.short())


def test_attribute_strings_cannot_inject_code():
    """Enum attributes render through repr; anything outside the domain is refused at load."""
    case = next(c for c in (generate(s) for s in range(200))
                if any(n.op == "F.gelu" or n.op == "torch.div.rounding" for n in c.graph.nodes))
    obj = json.loads(serialize.to_json(case))
    node = next(n for n in obj["nodes"] if n["op"] in ("F.gelu", "torch.div.rounding"))
    key = "approximate" if node["op"] == "F.gelu" else "rounding_mode"
    node["attrs"][key] = "tanh') or __import__('os').system('touch /tmp/pwned') or ('"
    with pytest.raises(TestCaseFormatError):
        serialize.decode(json.dumps(obj).encode())


@pytest.mark.slow
def test_standalone_program_runs_eager_and_compiled(tmp_path):
    opts = GenOptions(op_weights={"torch.add": 1, "torch.sin": 1, "torch.sum": 1}, max_nodes=3)
    # (a case without dims marked dynamic: one that Dynamo specializes fails by design)
    case = next(c for c in (generate(s, opts) for s in range(5, 60)) if not c.settings.mark_dynamic)
    script = tmp_path / "repro.py"
    script.write_text(codegen.program(case))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / "inductor")
    # Run from an empty directory so covfuzz cannot be imported by accident.
    result = subprocess.run([sys.executable, "-I", str(script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "max |eager - compiled|" in result.stdout
