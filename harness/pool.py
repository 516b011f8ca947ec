"""Creating workers, and pools of them.

- `WorkerSpec` (defined next to `WorkerHandle` in harness.worker_handle) says how to start a
  worker; its presets name the roles that start workers: `for_campaign` (warm-up, coverage),
  `for_triage` (replaying stored cases: no warm-up), `for_reducer` (no coverage), `for_run`
  (`covfuzz run`);
- `start_worker(spec)` is the one way to create a `WorkerHandle` (one worker process, started);
- `WorkerPool` is the interface a campaign runs its cases on: `submit(case_bytes)` returns a
  future of the `RunResult`; `LocalPool(spec, n)` implements it with n local workers, and a
  remote pool (e.g. on Ray) implements the same four members.
"""

from __future__ import annotations

import abc
import queue
import threading
from concurrent.futures import Future

from harness.result import RunResult
from harness.worker_handle import WorkerHandle, WorkerSpec

__all__ = ["LocalPool", "WorkerHandle", "WorkerPool", "WorkerSpec", "start_worker"]


def start_worker(spec: WorkerSpec) -> WorkerHandle:
    """A handle on a freshly started worker process made to `spec` (raises WorkerStartError
    when it cannot start). Close it when done; it restarts its worker after a crash."""
    handle = WorkerHandle(spec)
    try:
        handle.start()
    except BaseException:
        handle.close()
        raise
    return handle


class WorkerPool(abc.ABC):
    """Runs encoded test cases on a set of workers, one case per free worker."""

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """How many cases run at once (the number of workers)."""

    @abc.abstractmethod
    def submit(self, case_bytes: bytes) -> Future[RunResult]:
        """Queue one case (`covfuzz.serialize.encode` bytes); the future holds its RunResult,
        or the exception when no worker could run it (e.g. WorkerStartError)."""

    @abc.abstractmethod
    def restarts(self) -> int:
        """Worker processes restarted so far (after crashes, timeouts, memory kills), all
        workers together."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop: cases not started yet are cancelled, running ones finish, workers exit."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LocalPool(WorkerPool):
    """`n` worker processes on this machine, each driven by its own thread; submitted cases
    wait in one queue for the next free worker. Each worker starts when its thread takes its
    first case (the threads start theirs in parallel)."""

    def __init__(self, spec: WorkerSpec, n: int):
        if n < 1:
            raise ValueError(f"a pool needs at least one worker, got {n}")
        self.spec = spec
        self._cases: queue.SimpleQueue = queue.SimpleQueue()  # (future, bytes), or None: stop
        self._handles: list[WorkerHandle | None] = [None] * n
        self._closed = False
        self._threads = [threading.Thread(target=self._serve, args=(slot,), daemon=True,
                                          name=f"covfuzz-pool-{slot}") for slot in range(n)]
        for thread in self._threads:
            thread.start()

    @property
    def size(self) -> int:
        return len(self._threads)

    def submit(self, case_bytes: bytes) -> Future[RunResult]:
        if self._closed:
            raise RuntimeError("submit on a closed pool")
        future: Future = Future()
        self._cases.put((future, bytes(case_bytes)))
        return future

    def restarts(self) -> int:
        return sum(h.stats["restarts"] for h in self._handles if h is not None)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        while True:  # cancel what no worker has taken yet
            try:
                item = self._cases.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in self._threads:
            self._cases.put(None)
        for thread in self._threads:
            thread.join()

    def _serve(self, slot: int) -> None:
        """One worker's thread: run cases from the queue until told to stop."""
        try:
            while True:
                item = self._cases.get()
                if item is None:
                    return
                future, case_bytes = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    if self._handles[slot] is None:
                        self._handles[slot] = start_worker(self.spec)
                    future.set_result(self._handles[slot].run(case_bytes))
                except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on it
                    future.set_exception(exc)
        finally:
            if self._handles[slot] is not None:
                self._handles[slot].close()
