"""Every `covfuzz` command: the module that implements it and its one-line summary.

`covfuzz/cli/__init__.py` imports only the module of the command being run (the others would
import torch and the op catalog for nothing: seconds), so `covfuzz --help` and `covfuzz status`
answer at once. The summaries live here, once, for both the command list and the command.
"""

from __future__ import annotations

COMMANDS: dict[str, tuple[str, str]] = {
    "gen": ("cases", "generate random test cases"),
    "show": ("cases", "print a test case: graph, specs, code"),
    "ops": ("cases", "list the op catalog and availability"),
    "fuzz": ("campaign", "run (or resume) a coverage-guided campaign in DIR"),
    "status": ("status", "status of a campaign (running or stopped)"),
    "plot": ("status", "PNG of features and unique failures over time"),
    "crashes": ("triage", "list distinct failures (buckets) of a campaign"),
    "replay": ("triage", "re-run stored failures on the current torch"),
    "repro": ("triage", "write a standalone reproducer (and a markdown report)"),
    "export-tests": ("triage", "write a pytest file with one test per failure bucket"),
    "reduce": ("triage", "shrink a failing test case, keeping its signature"),
    "cmin": ("corpus", "minimize a campaign's corpus (keeps every feature)"),
    "merge": ("corpus", "merge two campaigns' corpora into a new one"),
    "export": ("corpus", "write every seed as a test-case file"),
    "import": ("corpus", "add test-case files to a campaign's corpus as seeds"),
    "salvage": ("corpus", "copy every readable record of a damaged campaign into a new one"),
    "coverage": ("corpus", "where the corpus and a bucket reach into Inductor and Dynamo (HTML report)"),
    "selffuzz": ("selffuzz", "fuzz covfuzz's own parsers (atheris)"),
    "run": ("run", "run test-case files through the harness"),
}


def summary(command: str) -> str:
    return COMMANDS[command][1]


def module_of(command: str) -> str:
    """The dotted name of the module that adds `command`'s parser (`add_parsers(sub)`)."""
    return f"covfuzz.cli.{COMMANDS[command][0]}"
