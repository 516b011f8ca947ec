"""Creating workers, and pools of them.

- `WorkerSpec` (defined next to `WorkerHandle` in harness.worker_handle) says how to start a
  worker; its presets name the roles that start workers: `for_campaign` (warm-up, coverage),
  `for_triage` (replaying stored cases: no warm-up), `for_reducer` (no coverage), `for_run`
  (`covfuzz run`);
- `start_worker(spec)` is the one way to create a `WorkerHandle` (one worker process, started);
- `WorkerPool` is the interface a campaign runs its cases on: `submit(case_bytes)` returns a
  future of the `RunResult`; `LocalPool(spec, n)` implements it with n local workers, and a
  remote pool (e.g. on Ray) implements the same four members.

GPU placement: a `LocalPool` whose spec's device is "cuda" pins each worker to one GPU
(`CUDA_VISIBLE_DEVICES` in the worker's environment when it is spawned, so "cuda" in the worker
is that GPU), slot i on GPU i mod g: n = N * g workers put N on each GPU.
`default_workers(gpu_count, gpu_mem_bytes, cpu_count)` is the default n: per GPU, as many as
its memory holds at WORKER_GPU_BYTES each and the host's cores feed (a worker compiles on the
CPU); `default_workers_here(device)` asks this machine.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import Future

from harness.result import RunResult
from harness.worker_handle import WorkerHandle, WorkerSpec

__all__ = ["LocalPool", "WorkerHandle", "WorkerPool", "WorkerSpec", "default_workers",
           "default_workers_here", "gpu_of_slot", "start_worker", "visible_gpus"]

GiB = 1 << 30
# GPU memory one worker is given by the default: its CUDA context (~0.5 GiB), the caching
# allocator's pool for cases of up to 2^22 elements per tensor (float64 reference included),
# and max-autotune's benchmarking buffers.
WORKER_GPU_BYTES = 8 * GiB


def default_workers_per_gpu(gpu_count: int, gpu_mem_bytes: int, cpu_count: int) -> int:
    """Workers per GPU by default: as many as one GPU's memory holds at WORKER_GPU_BYTES each,
    and no more than the host's cores shared among the GPUs (a worker spends most of its time
    compiling on the CPU); at least one."""
    by_memory = max(gpu_mem_bytes, 0) // WORKER_GPU_BYTES
    by_cores = max(cpu_count, 1) // max(gpu_count, 1)
    return max(1, min(by_memory, by_cores))


def default_workers(gpu_count: int, gpu_mem_bytes: int, cpu_count: int,
                    per_gpu: int | None = None) -> int:
    """The default number of workers of a GPU campaign: `per_gpu` (or the default per GPU)
    times the GPUs; with no GPU, one per core (a CPU campaign)."""
    if gpu_count < 1:
        return max(cpu_count, 1)
    return gpu_count * (per_gpu or default_workers_per_gpu(gpu_count, gpu_mem_bytes, cpu_count))


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries: the entries of its own
    CUDA_VISIBLE_DEVICES when set, else 0..count-1 (torch's count; no CUDA context is made)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    import torch
    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_of_slot(slot: int, gpus: list[str]) -> str:
    """The GPU of pool slot `slot`: round robin, so n = N * len(gpus) slots put N on each."""
    return gpus[slot % len(gpus)]


def _gpu_memory_bytes() -> int:
    """The smallest total memory among this machine's GPUs (nvidia-smi, else torch; 0 when
    neither answers). nvidia-smi first: asking torch makes a CUDA context in this process."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=30, check=True).stdout
            sizes = [int(float(line)) << 20 for line in out.split() if line.strip()]
            if sizes:
                return min(sizes)
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    import torch
    if torch.cuda.is_available():
        return min(torch.cuda.get_device_properties(i).total_memory
                   for i in range(torch.cuda.device_count()))
    return 0


def default_workers_here(device: str, per_gpu: int | None = None) -> int:
    """`default_workers` for this machine: its visible GPUs (for device "cuda"), their memory
    and its cores."""
    cores = os.cpu_count() or 1
    if device != "cuda":
        return max(cores, 1)
    gpus = visible_gpus()
    if not gpus:
        return 1
    return default_workers(len(gpus), _gpu_memory_bytes(), cores, per_gpu)


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


def cancel(future: Future) -> None:
    """Cancel a future nobody runs yet, so that `concurrent.futures.wait` sees it done too
    (`Future.cancel` alone wakes only `result()` callers and callbacks)."""
    if not future.cancelled() and future.cancel():
        future.set_running_or_notify_cancel()


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

    def submit_group(self, cases: list[bytes],
                     keep_going: Callable[[RunResult], bool]) -> list[Future[RunResult]]:
        """Queue `cases` to run one after the other, each only while the result before it
        passes `keep_going`; a case not run ends cancelled. A sweep: a case, then value
        variants that can reuse its compiled program only on the worker that compiled it
        (harness/execute.py). This version runs them in order on any worker as each result
        comes (a pool that can keep a group on one worker, `LocalPool`, does so)."""
        futures: list[Future] = [Future() for _ in cases]

        def run(i: int) -> None:
            if i == len(cases):
                return
            try:
                inner = self.submit(cases[i])
            except RuntimeError:  # a closed pool: said at once, or (later) the rest not run
                if i == 0:
                    raise
                for rest in futures[i:]:
                    cancel(rest)
                return
            inner.add_done_callback(lambda done: settle(i, done))

        def settle(i: int, inner: Future) -> None:
            outer = futures[i]
            if inner.cancelled():
                cancel(outer)
                result = None
            elif inner.exception() is not None:
                outer.set_exception(inner.exception())
                result = None
            else:
                result = inner.result()
                outer.set_result(result)
            if result is not None and keep_going(result):
                run(i + 1)
            else:
                for rest in futures[i + 1:]:
                    cancel(rest)

        run(0)
        return futures

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
    first case (the threads start theirs in parallel). With a "cuda" spec each worker is pinned
    to one of `gpus` (default: `visible_gpus()`), slot i to `gpu_of_slot(i, gpus)`."""

    def __init__(self, spec: WorkerSpec, n: int, gpus: list[str] | None = None):
        if n < 1:
            raise ValueError(f"a pool needs at least one worker, got {n}")
        self.spec = spec
        self.gpus = list(gpus if gpus is not None else
                         visible_gpus() if spec.device == "cuda" else [])
        if spec.device == "cuda" and not self.gpus:
            raise ValueError("a cuda pool needs at least one visible GPU")
        # (futures, case bytes, keep_going) groups, or None: stop
        self._cases: queue.SimpleQueue = queue.SimpleQueue()
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
        return self.submit_group([case_bytes], lambda result: False)[0]

    def submit_group(self, cases: list[bytes],
                     keep_going: Callable[[RunResult], bool]) -> list[Future[RunResult]]:
        """The group runs whole on the worker that takes it, in order (see WorkerPool)."""
        if self._closed:
            raise RuntimeError("submit on a closed pool")
        futures: list[Future] = [Future() for _ in cases]
        self._cases.put((futures, [bytes(c) for c in cases], keep_going))
        return futures

    def restarts(self) -> int:
        return sum(h.stats["restarts"] for h in self._handles if h is not None)

    def slot_spec(self, slot: int) -> WorkerSpec:
        """How the worker of `slot` is started: the pool's spec, pinned to its GPU when the
        spec's device is cuda."""
        if self.spec.device != "cuda":
            return self.spec
        env = {**self.spec.env, "CUDA_VISIBLE_DEVICES": gpu_of_slot(slot, self.gpus)}
        return dataclasses.replace(self.spec, env=env)

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
                for future in item[0]:
                    cancel(future)
        for _ in self._threads:
            self._cases.put(None)
        for thread in self._threads:
            thread.join()

    def _serve(self, slot: int) -> None:
        """One worker's thread: run groups of cases from the queue until told to stop."""
        try:
            while True:
                item = self._cases.get()
                if item is None:
                    return
                futures, cases, keep_going = item
                for i, (future, case_bytes) in enumerate(zip(futures, cases)):
                    if not self._run_one(slot, future, case_bytes, keep_going):
                        for rest in futures[i + 1:]:
                            cancel(rest)
                        break
        finally:
            if self._handles[slot] is not None:
                self._handles[slot].close()

    def _run_one(self, slot: int, future: Future, case_bytes: bytes,
                 keep_going: Callable[[RunResult], bool]) -> bool:
        """Run one case of a group on `slot`'s worker; whether the group goes on."""
        if self._closed:
            cancel(future)
            return False
        if not future.set_running_or_notify_cancel():
            return False  # the pool is closing: the rest of the group is not run
        try:
            if self._handles[slot] is None:
                self._handles[slot] = start_worker(self.slot_spec(slot))
            result = self._handles[slot].run(case_bytes)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on it
            future.set_exception(exc)
            return False
        future.set_result(result)
        return bool(keep_going(result))
