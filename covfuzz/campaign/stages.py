"""Stages: work done on executions (LibAFL's stages).

`ExecuteStage` runs candidates on the worker pool and turns each result into an `Execution`.
Every other stage sees each execution after the feedbacks and objectives have judged it and the
campaign has recorded it: `process(ex, campaign)`. Confirming a new failure in a fresh process,
localizing a mismatch and reducing a new bucket are stages; each plugs in by being passed to
`Campaign(..., stages=[...])`, without editing the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future

from covfuzz import serialize
from covfuzz.campaign.execution import Candidate, Execution
from harness.pool import WorkerPool, cancel
from harness.result import RunResult


class Stage:
    """Work done on executions after they are recorded. Every hook is optional:
    - `process(ex, campaign)`: see one execution (main thread);
    - `poll(campaign)`: called on every turn of the loop (main thread): record background work;
    - `slots()`: worker slots the stage holds now (the loop runs that many fewer cases);
    - `pending()`: work left (the loop lets it finish at the end of the budget);
    - `resume(campaign)`: when a run starts, pick up what an earlier run left;
    - `status()`: keys added to the campaign's status;
    - `candidates()`: cases the stage wants run (the loop runs them before making new ones);
    - `close()`: the run ends."""

    def process(self, ex: Execution, campaign) -> None:
        pass

    def poll(self, campaign) -> None:
        pass

    def slots(self) -> int:
        return 0

    def pending(self) -> int:
        return 0

    def resume(self, campaign) -> None:
        pass

    def status(self) -> dict:
        return {}

    def candidates(self) -> list:
        return []

    def close(self) -> None:
        pass


class ExecuteStage:
    """Candidates in, executions out, one per free worker of the pool."""

    def __init__(self, pool: WorkerPool):
        self.pool = pool

    def submit(self, candidate: Candidate) -> Future:
        """A future of the candidate's `Execution`."""
        data = serialize.encode(candidate.case)
        return self._execution(candidate, data, self.pool.submit(data))

    def submit_group(self, candidates: list[Candidate],
                     keep_going: Callable[[RunResult], bool]) -> list[Future]:
        """Futures of the candidates' `Execution`s, run in order on one worker where the pool
        can (`WorkerPool.submit_group`), each only while the result before it passes
        `keep_going`; those not run end cancelled."""
        if len(candidates) == 1:
            return [self.submit(candidates[0])]
        data = [serialize.encode(c.case) for c in candidates]
        inner = self.pool.submit_group(data, keep_going)
        return [self._execution(c, d, f) for c, d, f in zip(candidates, data, inner)]

    @staticmethod
    def _execution(candidate: Candidate, data: bytes, inner: Future) -> Future:
        out: Future = Future()

        def done(fut: Future) -> None:
            if fut.cancelled():
                cancel(out)
                return
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

