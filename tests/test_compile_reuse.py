"""One compile, many inputs (harness/execute.py, issue 20): a case that differs from the worker's
previous one only in its tensor values runs on that case's compiled program, with the outputs a
fresh compile gives; anything else compiles afresh. Real torch.compile, in this process."""

from __future__ import annotations

import torch

from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.propagate import propagate
from covfuzz.serialize import encode
from harness import execute as ex

SPEC = TensorSpec.contiguous((37,), "float32")


def _case(values=None, fill="normal", seed=7, op="torch.sin", **settings) -> TestCase:
    inputs = (Input(SPEC, fill=fill, values=values), Input(SPEC, fill="positive"))
    nodes = (Node(op, (0,), {}), Node("torch.mul", (2, 1), {}))
    return propagate(TestCase(Graph(inputs, nodes, (3,)), CompileSettings(**settings), seed))


def _run(case: TestCase) -> dict:
    return ex.execute(encode(case))


def _compiled(case: TestCase) -> torch.Tensor:
    return ex.probe_case(case).compiled[0]


def test_values_only_reuse_the_compiled_program_and_give_a_fresh_compiles_outputs(monkeypatch):
    first = _run(_case())
    assert first["outcome"] == "pass" and not first["details"].get("reused_compile")
    assert first["timings"]["inductor"] > 0
    big = _case(values=tuple(float(i) * 1e3 for i in range(37)), seed=8)
    second = _run(big)
    assert second["outcome"] == "pass"
    assert second["details"]["reused_compile"] and second["details"]["recompiled"] == 0
    assert second["timings"]["inductor"] == 0 and second["timings"]["build"] == 0
    # The same values through a probe (reused again: the previous case differs in values) and
    # through a fresh compile: the same compiled outputs, bit for bit.
    _run(_case(fill="edge"))
    reused = _compiled(big)
    monkeypatch.setenv(ex.REUSE_ENV, "0")
    fresh = _compiled(big)
    assert torch.equal(reused.view(torch.int32), fresh.view(torch.int32))
    assert not torch.equal(fresh, _compiled(_case()))  # the values did reach the program


def test_what_is_not_only_values_compiles_afresh(monkeypatch):
    _run(_case())
    # The same case again (a rerun means a compile), another op, other settings.
    assert not _run(_case())["details"].get("reused_compile")
    assert not _run(_case(op="torch.cos"))["details"].get("reused_compile")
    assert not _run(_case(op="torch.cos", dynamic=True))["details"].get("reused_compile")
    # Compiled code that keeps values of its own is never reused.
    frozen = {"inductor_config": {"freezing": True}}
    _run(_case(**frozen))
    assert not _run(_case(fill="edge", **frozen))["details"].get("reused_compile")
    # Turned off by the environment.
    _run(_case())
    monkeypatch.setenv(ex.REUSE_ENV, "0")
    assert not _run(_case(fill="edge"))["details"].get("reused_compile")


def test_a_reset_in_between_ends_the_reuse():
    _run(_case())
    assert not _run(_case(op="torch.cos", seed=99))["details"].get("reused_compile")
    # The sin program is gone from Dynamo's cache: its value variant compiles again.
    assert not _run(_case(fill="edge"))["details"].get("reused_compile")
