"""The one-way architecture: the import-linter contracts of setup.cfg hold for the project, and
they fail when a module imports upward or two modules import each other."""

from __future__ import annotations

import ast
import glob
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("covfuzz", "corpus", "mutators", "harness")
LINT_IMPORTS = os.path.join(os.path.dirname(sys.executable), "lint-imports")  # the venv's


def lint_imports(root: str) -> subprocess.CompletedProcess:
    """`lint-imports` on the checkout at `root`: it reads root/setup.cfg, the cwd's config."""
    assert os.path.isfile(LINT_IMPORTS), "import-linter is missing: pip install -e '.[test]'"
    env = dict(os.environ, PYTHONPATH=root)  # grimp finds the packages through sys.path
    return subprocess.run([LINT_IMPORTS, "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout


def _append(path: str, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(text)


def test_contracts_fail_on_an_upward_import_and_a_cycle(tmp_path):
    for package in PACKAGES:
        shutil.copytree(os.path.join(ROOT, package), tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, "setup.cfg"), tmp_path / "setup.cfg")
    # upward: the IR (bottom layer) importing the command line (top)
    _append(str(tmp_path / "covfuzz" / "ir.py"), "\nimport covfuzz.cli  # noqa\n")
    # a cycle inside one layer: two siblings of covfuzz.triage import each other
    _append(str(tmp_path / "covfuzz" / "triage" / "signature.py"),
            "\nimport covfuzz.triage.known_issues  # noqa\n")
    _append(str(tmp_path / "covfuzz" / "triage" / "known_issues.py"),
            "\nimport covfuzz.triage.signature  # noqa\n")

    result = lint_imports(str(tmp_path))
    out = result.stdout
    assert result.returncode != 0, out
    assert "covfuzz.ir -> covfuzz.cli" in out  # the layers and the forbidden contract
    assert "Nothing imports the command line (python -m covfuzz runs it) BROKEN" in out
    assert "No import cycle between the modules of one package BROKEN" in out
    assert ".known_issues" in out and ".signature" in out


MAX_LOOP_FUNCTION_LINES = 60


def test_no_function_of_the_campaign_loop_is_long():
    """The loop's thinking lives in components, not in one long method (issue 14)."""
    long = []
    for path in glob.glob(os.path.join(ROOT, "covfuzz", "campaign", "*.py")):
        with open(path) as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LOOP_FUNCTION_LINES:
                    long.append(f"{os.path.basename(path)}:{node.name} ({lines} lines)")
    assert not long, long
