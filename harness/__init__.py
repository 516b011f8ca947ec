"""The execution harness: run test cases in isolated workers and judge them.

- `run_case(case, device="cpu", timeout=..., coverage=True) -> RunResult` uses a module-level
  `Supervisor` (started lazily, closed at exit);
- `Supervisor` (harness.supervisor): isolated worker process with timeout, memory limit,
  crash recovery and recycling;
- `RunResult` (harness.result): outcome, message, exc_type, frames, timings, features, n_lines,
  details; `to_json()` / `from_json()`;
- `harness.oracle`: pure comparison functions; `harness.coverage`: feature ids.
"""

from __future__ import annotations

import atexit

from harness.result import FAILURES, OUTCOMES, RunResult
from harness.supervisor import Supervisor, WorkerPool

__all__ = ["FAILURES", "OUTCOMES", "RunResult", "Supervisor", "WorkerPool", "run_case",
           "default_supervisor", "shutdown"]

_DEFAULT: Supervisor | None = None


def default_supervisor() -> Supervisor:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Supervisor()
        atexit.register(shutdown)
    return _DEFAULT


def shutdown() -> None:
    """Close the module-level supervisor (its worker exits)."""
    global _DEFAULT
    if _DEFAULT is not None:
        _DEFAULT.close()
        _DEFAULT = None


def run_case(case, device: str = "cpu", timeout: float | None = None, coverage: bool = True,
             reference: str | None = None) -> RunResult:
    """Run one test case (TestCase or encoded bytes) on the module-level Supervisor."""
    return default_supervisor().run(case, timeout=timeout, device=device, coverage=coverage,
                                    reference=reference)
