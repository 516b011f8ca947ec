"""Isolation: a `WorkerHandle` runs test cases in one worker process and survives its death.

    handle = harness.pool.start_worker(WorkerSpec(cache_dir=..., timeout=60))
    result = handle.run(case_or_encoded_bytes)   # -> RunResult
    handle.stats                                 # cases, restarts, crashes, timeouts, ...
    handle.close()

`WorkerSpec` says how to start the worker (harness.pool has the presets of the roles that start
workers, and `start_worker`, the one way to create a handle; `LocalPool` runs several). The
child-process side is harness.worker. One handle drives one worker at a time:
- per-case timeout: the worker is SIGKILLed, outcome "timeout";
- memory: the worker's RSS (/proc/<pid>/status VmRSS) is polled while waiting; over
  `memory_limit` bytes it is SIGKILLed, outcome "oom" (MemoryError inside the worker is "oom"
  too). RLIMIT_AS is not used: torch reserves large virtual ranges;
- worker death (segfault, abort, os._exit, kernel OOM kill): outcome "process_crash" with the
  signal or exit code; the next run() starts a fresh worker (lazily);
- a fatal CUDA error inside the worker (illegal memory access, device-side assert: the result
  has details["cuda_context_lost"]): the worker is killed after it reported, since its CUDA
  context cannot be trusted; the next run() starts a fresh one;
- recycling: after `recycle_after` cases that compiled (a case run on the previous case's
  compiled program adds no compiler state, and a sweep's steps would otherwise restart the
  worker every few dozen compiles), or when the worker's RSS after a case exceeds `recycle_rss`,
  the worker is replaced.
The per-case timeout starts when the case is sent, after the worker has imported torch
(worker start-up has its own `startup_timeout`).

Workers are started from one long-lived launcher thread (PR_SET_PDEATHSIG is tied to the
thread that created the child), so a handle may be used from any thread, one at a time.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import tempfile
import time
from array import array
from dataclasses import dataclass, field

from covfuzz import serialize
from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.sandbox import launch, signal_name
from harness.result import REUSE_ENV, RunResult, empty_timings
from harness.worker import rss_bytes, worker_main

GiB = 1 << 30
DEFAULT_TIMEOUT = 120.0
DEFAULT_RECYCLE_AFTER = 200
DEFAULT_RECYCLE_RSS = 6 * GiB
MEASURED = ("eager", "compile", "run", "backward", "coverage")


def default_cache_dir() -> str:
    """Shared default TORCHINDUCTOR_CACHE_DIR for covfuzz (campaigns pass their own)."""
    return os.environ.get("COVFUZZ_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), f"covfuzz-inductor-{os.getuid()}")


class WorkerStartError(RuntimeError):
    """The worker process could not be started (it died or did not report ready in time)."""


def _exit_text(exitcode) -> tuple[str, dict]:
    if exitcode is None:
        return "worker died (exit status unknown)", {"exitcode": None}
    if exitcode < 0:
        name = signal_name(exitcode)
        return f"worker killed by {name}", {"exitcode": exitcode, "signal": name}
    return f"worker exited with code {exitcode}", {"exitcode": exitcode, "signal": None}


# Campaign and reducer workers reuse a compiled program for a case that differs from the
# previous one only in values (harness/execute.py); workers that re-measure a case's features or
# time it (`covfuzz run`, replay, cmin --rerun) compile each case, since a rerun must show what
# the case itself costs and covers.
_NO_REUSE = {REUSE_ENV: "0"}


@dataclass(frozen=True)
class WorkerSpec:
    """How to start and drive one worker (the presets of harness.pool name the roles).

    - device / reference: defaults of `run()` (the case's own device; where the float64
      reference runs, or "cpu-eager": harness.oracle.REFERENCE_CHOICES; None: auto);
    - cache_dir: TORCHINDUCTOR_CACHE_DIR of the worker (None: `default_cache_dir()`);
    - timeout: per-case seconds; memory_limit: RSS bytes (None: no limit);
    - coverage / coverage_groups: measure coverage of these torch parts by default;
    - warmup: run one small case (no coverage) on every fresh worker;
    - env: extra environment of the worker (e.g. COVFUZZ_FAULT_INJECTION=1);
    - recycle_after / recycle_rss: replace the worker after so many cases that compiled /
      above this RSS;
    - worker_output: the worker's stdout/stderr: None (/dev/null), "inherit" or a file path.
    """

    device: str | None = None
    cache_dir: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    memory_limit: int | None = None
    coverage: bool = True
    coverage_groups: tuple[str, ...] = ("inductor", "dynamo")
    warmup: bool = False
    env: dict = field(default_factory=dict)
    reference: str | None = None
    recycle_after: int = DEFAULT_RECYCLE_AFTER
    recycle_rss: int | None = DEFAULT_RECYCLE_RSS
    startup_timeout: float = 300.0
    poll_interval: float = 0.05
    worker_output: str | None = None

    @classmethod
    def for_campaign(cls, device: str | None = None, cache_dir: str | None = None,
                     timeout: float = DEFAULT_TIMEOUT, memory_limit: int | None = None,
                     env: dict | None = None, reference: str | None = None) -> "WorkerSpec":
        """A campaign's workers: coverage on, and a warm-up case on every fresh worker so that
        one-time initialisation is not counted as the next case's coverage. `reference`: see
        harness.oracle.REFERENCE_CHOICES (None: auto)."""
        return cls(device=device, cache_dir=cache_dir, timeout=timeout, memory_limit=memory_limit,
                   env=dict(env or {}), coverage=True, warmup=True, reference=reference)

    @classmethod
    def for_triage(cls, timeout: float = DEFAULT_TIMEOUT, coverage: bool = False,
                   cache_dir: str | None = None, env: dict | None = None) -> "WorkerSpec":
        """Triage and replay (re-running stored failures or seeds): no warm-up; coverage only
        when re-measuring seeds."""
        return cls(timeout=timeout, coverage=coverage, cache_dir=cache_dir,
                   env={**_NO_REUSE, **(env or {})}, warmup=False)

    @classmethod
    def for_reducer(cls, timeout: float = 60.0, cache_dir: str | None = None,
                    env: dict | None = None) -> "WorkerSpec":
        """The reducer's worker: no coverage (only the failure signature matters), no warm-up."""
        return cls(timeout=timeout, cache_dir=cache_dir, env=dict(env or {}), coverage=False,
                   warmup=False)

    @classmethod
    def for_run(cls, timeout: float = DEFAULT_TIMEOUT, coverage: bool = True) -> "WorkerSpec":
        """`covfuzz run`: one worker for the command's cases, coverage unless asked not to."""
        return cls(timeout=timeout, coverage=coverage, warmup=False, env=dict(_NO_REUSE))


class WorkerHandle:
    """Runs test cases one at a time in an isolated, restartable worker process."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.warmup = spec.warmup
        self.cache_dir = spec.cache_dir or default_cache_dir()
        self.timeout = spec.timeout
        self.memory_limit = spec.memory_limit
        self.recycle_after = spec.recycle_after
        self.recycle_rss = spec.recycle_rss
        self.coverage = spec.coverage
        self.coverage_groups = tuple(spec.coverage_groups)
        self.device = spec.device
        self.reference = spec.reference
        self.env = dict(spec.env)
        self.startup_timeout = spec.startup_timeout
        self.poll_interval = spec.poll_interval
        self.worker_output = spec.worker_output
        self._ctx = multiprocessing.get_context("spawn")
        self._proc = None
        self._conn = None
        self._compiles_on_worker = 0
        self.baseline_rss = 0
        self.stats = {"cases": 0, "starts": 0, "restarts": 0, "recycles": 0, "crashes": 0,
                      "timeouts": 0, "ooms": 0, "context_losses": 0, "start_time": 0.0}

    # ------------------------------------------------------------------ lifecycle
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def start(self) -> int:
        """Start the worker if none is running; returns its pid."""
        if self.alive():
            return self._proc.pid
        self._discard()
        t0 = time.perf_counter()
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        options = {"cache_dir": self.cache_dir, "env": self.env,
                   "coverage": self.coverage, "groups": list(self.coverage_groups),
                   "output": self.worker_output}
        proc = self._ctx.Process(target=worker_main, args=(child_conn, options),
                                 name="covfuzz-worker", daemon=True)
        launch(proc)  # one long-lived launcher thread, __main__ hidden from spawn
        child_conn.close()
        self._proc, self._conn = proc, parent_conn
        deadline = time.monotonic() + self.startup_timeout
        while not parent_conn.poll(0.1):
            if not proc.is_alive() or time.monotonic() > deadline:
                self._kill()
                raise WorkerStartError("covfuzz worker did not start: "
                                       + _exit_text(proc.exitcode)[0])
        try:
            hello = json.loads(parent_conn.recv_bytes())
        except (EOFError, OSError):
            self._kill()
            raise WorkerStartError("covfuzz worker died during start-up") from None
        self.baseline_rss = int(hello.get("rss", 0))
        self._compiles_on_worker = 0
        if self.stats["starts"]:
            self.stats["restarts"] += 1
        self.stats["starts"] += 1
        if self.warmup:
            self._warm_up()
        self.stats["start_time"] += time.perf_counter() - t0
        return proc.pid

    def _warm_up(self) -> None:
        """Compile one tiny forward+backward case without coverage, so one-time initialisation
        (lazy imports, first-compile set-up) is not counted as the next case's features."""
        header = {"cmd": "run", "device": self.device, "reference": None, "coverage": False}
        self._conn.send_bytes(json.dumps(header).encode())
        self._conn.send_bytes(warmup_case_bytes())
        if not self._conn.poll(self.startup_timeout):
            self._kill()
            raise WorkerStartError("covfuzz worker did not finish its warm-up case")
        self._conn.recv_bytes()
        self._conn.recv_bytes()

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.is_alive():
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc is not None:
            proc.join(10)
        self._discard()

    def _discard(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
        if self._proc is not None and not self._proc.is_alive():
            self._proc.join(0)
            try:
                self._proc.close()
            except ValueError:
                pass
        self._proc, self._conn = None, None

    def recycle(self) -> None:
        """Replace the worker with a fresh one at the next run()."""
        if self.alive():
            try:
                self._conn.send_bytes(json.dumps({"cmd": "exit"}).encode())
                self._proc.join(5)
            except (OSError, BrokenPipeError):
                pass
        self._kill()

    def close(self) -> None:
        self.recycle()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self._kill()
        except Exception:
            pass

    # ------------------------------------------------------------------ running
    def run(self, case, timeout: float | None = None, device: str | None = None,
            coverage: bool | None = None, reference: str | None = None) -> RunResult:
        """Run one test case (a TestCase or its encoded bytes); never raises for what the
        case does. Worker start-up failures raise WorkerStartError."""
        if not isinstance(case, (bytes, bytearray)):
            case = serialize.encode(case)
        timeout = self.timeout if timeout is None else timeout
        coverage = self.coverage if coverage is None else coverage
        self.start()
        self.stats["cases"] += 1
        header = {"cmd": "run", "device": device or self.device,
                  "reference": reference or self.reference, "coverage": coverage}
        t0 = time.perf_counter()
        try:
            self._conn.send_bytes(json.dumps(header).encode())
            self._conn.send_bytes(bytes(case))
        except (OSError, BrokenPipeError):
            return self._crashed(t0)
        deadline = time.monotonic() + timeout
        peak = 0
        pid = self._proc.pid
        while True:
            if self._conn.poll(self.poll_interval):
                break
            if not self._proc.is_alive():
                return self._crashed(t0)
            rss = rss_bytes(pid)
            peak = max(peak, rss)
            if self.memory_limit is not None and rss > self.memory_limit:
                self._kill()
                self.stats["ooms"] += 1
                return self._synthetic("oom", t0, f"worker RSS {rss / GiB:.2f} GiB exceeded the "
                                       f"memory limit {self.memory_limit / GiB:.2f} GiB "
                                       "(killed worker)", {"rss": rss, "limit": self.memory_limit})
            if time.monotonic() > deadline:
                self._kill()
                self.stats["timeouts"] += 1
                return self._synthetic("timeout", t0, f"timed out after {timeout:g} s "
                                       "(killed worker)", {"timeout": timeout})
        try:
            payload = json.loads(self._conn.recv_bytes())
            raw = self._conn.recv_bytes()
        except (EOFError, OSError):
            return self._crashed(t0)
        features = array("Q")
        features.frombytes(raw)
        payload["features"] = features.tolist()
        rss = int(payload.pop("rss", 0))
        result = RunResult.from_dict(payload)
        if not result.details.get("reused_compile"):
            self._compiles_on_worker += 1
        t = result.timings
        t["worker_total"] = t.get("total", 0.0)
        t["total"] = time.perf_counter() - t0
        t["overhead"] = max(0.0, t["total"] - sum(t.get(k, 0.0) for k in MEASURED))
        if result.outcome == "oom":
            self.stats["ooms"] += 1
        if result.details.get("cuda_context_lost"):
            self.stats["context_losses"] += 1
            if result.outcome == "process_crash":
                self.stats["crashes"] += 1
            self._kill()  # every later CUDA call would fail: the next run() starts afresh
            return result
        if (self._compiles_on_worker >= self.recycle_after
                or (self.recycle_rss is not None and rss > self.recycle_rss)):
            self.stats["recycles"] += 1
            self.recycle()
        return result

    def ping(self) -> dict:
        """The worker's {"pid", "rss", "cuda_visible_devices"} (starting it if needed)."""
        self.start()
        self._conn.send_bytes(json.dumps({"cmd": "ping"}).encode())
        if not self._conn.poll(self.startup_timeout):
            self._kill()
            raise WorkerStartError("covfuzz worker did not answer a ping")
        return json.loads(self._conn.recv_bytes())

    def localize(self, case, kind: str, output: int | None, budget: float = 180.0,
                 device: str | None = None) -> dict:
        """The culprit of a mismatch (harness.localize.localize, run in the worker); on a
        worker crash or timeout {"found": False, "why": ...} (the worker is restarted)."""
        if not isinstance(case, (bytes, bytearray)):
            case = serialize.encode(case)
        self.start()
        header = {"cmd": "localize", "kind": kind, "output": output, "budget": budget,
                  "device": device or self.device}
        try:
            self._conn.send_bytes(json.dumps(header).encode())
            self._conn.send_bytes(bytes(case))
        except (OSError, BrokenPipeError):
            self._kill()
            return {"found": False, "why": "worker died"}
        # The worker stops itself at `budget`; one more compile may be running then.
        if not self._conn.poll(budget + self.timeout):
            self._kill()
            return {"found": False, "why": f"localization timed out after {budget:g} s"}
        try:
            answer = json.loads(self._conn.recv_bytes())
        except (EOFError, OSError, ValueError):
            self._kill()
            return {"found": False, "why": "worker died during localization"}
        return answer if isinstance(answer, dict) else {"found": False, "why": "bad answer"}

    def _synthetic(self, outcome: str, t0: float, message: str, details: dict) -> RunResult:
        timings = empty_timings()
        timings["total"] = timings["overhead"] = time.perf_counter() - t0
        return RunResult(outcome=outcome, message=message, timings=timings, details=details)

    def _crashed(self, t0: float) -> RunResult:
        proc = self._proc
        exitcode = None
        if proc is not None:
            proc.join(10)
            exitcode = proc.exitcode
        self._kill()
        self.stats["crashes"] += 1
        text, details = _exit_text(exitcode)
        return self._synthetic("process_crash", t0, text, details)


def warmup_case_bytes() -> bytes:
    """A tiny forward+backward case (two inputs, add, sum) that every fresh worker compiles once."""
    x = TensorSpec.contiguous((4, 8), requires_grad=True)
    graph = Graph((Input(x), Input(x)), (Node("torch.add", (0, 1), {"alpha": 1}),
                                         Node("torch.sum", (2,), {"dim": (1,), "keepdim": False})),
                  (3,))
    return serialize.encode(TestCase(graph, CompileSettings(backward=True), seed=0))
