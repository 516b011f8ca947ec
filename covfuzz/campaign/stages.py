"""Stages: work done on executions (LibAFL's stages).

`ExecuteStage` runs candidates on the worker pool and turns each result into an `Execution`.
Every other stage sees each execution after the feedbacks and objectives have judged it and the
campaign has recorded it: `process(ex, campaign)`. Confirming a new failure in a fresh process,
localizing a mismatch and reducing a new bucket are stages; each plugs in by being passed to
`Campaign(..., stages=[...])`, without editing the loop.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

from covfuzz import serialize
from covfuzz.campaign.execution import Candidate, Execution
from harness.pool import WorkerPool


class Stage(Protocol):
    def process(self, ex: Execution, campaign) -> None: ...


class ExecuteStage:
    """Candidates in, executions out, one per free worker of the pool."""

    def __init__(self, pool: WorkerPool):
        self.pool = pool

    def submit(self, candidate: Candidate) -> Future:
        """A future of the candidate's `Execution`."""
        out: Future = Future()
        data = serialize.encode(candidate.case)
        inner = self.pool.submit(data)

        def done(fut: Future) -> None:
            try:
                out.set_result(Execution.of(candidate, fut.result(), data))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on `out`
                out.set_exception(exc)
        inner.add_done_callback(done)
        return out

    def restarts(self) -> int:
        return self.pool.restarts()

    def close(self) -> None:
        self.pool.close()

