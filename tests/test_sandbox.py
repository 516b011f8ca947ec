"""Real-tensor checks run in a sandbox child outside workers (covfuzz/propagate.py,
covfuzz/sandbox.py): a CPU kernel that dies on the case's values makes the candidate invalid
and leaves the calling process (a campaign) alive."""

from __future__ import annotations

import os

import pytest

from covfuzz import propagate as P
from covfuzz.errors import InvalidGraph
from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.sandbox import Sandbox, SandboxCrashed

INT64_MIN = -(1 << 63)


def _div_trunc(a: int, b: int) -> TestCase:
    spec = TensorSpec.contiguous((1,), "int64")
    return TestCase(Graph((Input(spec, values=(a,)), Input(spec, values=(b,))),
                          (Node("torch.div.rounding", (0, 1), {"rounding_mode": "trunc"}),),
                          (2,)), CompileSettings(), 1)


@pytest.fixture(autouse=True)
def _not_inline(monkeypatch):
    monkeypatch.delenv(P.INLINE_ENV, raising=False)


def test_a_kernel_that_kills_its_process_makes_the_case_invalid_not_the_caller_dead():
    # torch.div(INT64_MIN, -1, rounding_mode="trunc") traps (SIGFPE) in torch 2.13's CPU kernel.
    with pytest.raises(InvalidGraph, match="SIGFPE"):
        P.propagate(_div_trunc(INT64_MIN, -1), real=True)
    # The caller lives on, and the next real check starts a fresh child.
    ok = P.propagate(_div_trunc(7, -2), real=True)
    assert ok.graph.nodes[0].out.shape == (1,) and ok.graph.nodes[0].out.dtype == "int64"
    # torch's own refusal comes back as the same InvalidGraph as inline, node index included.
    spec = TensorSpec.contiguous((3,), "float32")
    bad = TestCase(Graph((Input(spec), Input(TensorSpec.contiguous((4,), "float32"))),
                         (Node("torch.mul", (0, 1), {}),), (2,)), CompileSettings(), 1)
    with pytest.raises(InvalidGraph) as inline_err:
        P._propagate(bad, True)
    with pytest.raises(InvalidGraph) as sandboxed:
        P.propagate(bad, real=True)
    assert str(sandboxed.value) == str(inline_err.value) and sandboxed.value.node == 0


def _echo_then_die(conn):
    while True:
        data = conn.recv_bytes()
        if data == b"die":
            os._exit(3)
        conn.send_bytes(data[::-1])


def test_sandbox_reports_how_its_child_ended_and_restarts():
    box = Sandbox(_echo_then_die, "echo")
    try:
        assert box.call(b"abc", 30) == b"cba"
        with pytest.raises(SandboxCrashed, match="exited with status 3"):
            box.call(b"die", 30)
        assert box.call(b"xy", 30) == b"yx"
    finally:
        box.close()
