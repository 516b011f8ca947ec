"""The worker process: imports torch once, then runs test cases sent to it one at a time.

Started by its parent-side handle (harness.worker_handle.WorkerHandle) with the multiprocessing
*spawn* context (never fork) through `worker_main(conn, options)`. Before importing torch it sets
TORCHINDUCTOR_CACHE_DIR to the campaign's directory and turns the FX-graph and AOT-autograd
caches off (each case must really compile), and arranges to die with the process that started
it: prctl(PR_SET_PDEATHSIG, SIGKILL) on Linux plus a watchdog thread that exits when the parent
pid changes.

Protocol (multiprocessing Connection, bytes only, no pickle):
- worker -> handle, once: JSON {"ready": true, "pid": .., "rss": ..}
- handle -> worker: JSON {"cmd": "run", "device": .., "reference": .., "coverage": bool}
  followed by one message with the encoded test case (covfuzz.serialize.encode bytes);
  worker -> handle: JSON result (RunResult fields without features, plus "rss": the worker's
  RSS after the case) followed by one message with the features as uint64 array bytes.
- {"cmd": "localize", "kind": .., "output": .., "device": .., "budget": ..} followed by the
  encoded test case: worker -> handle JSON, the culprit of the mismatch (harness.localize).
- {"cmd": "ping"}: worker -> handle JSON {"pid": .., "rss": .., "cuda_visible_devices": the
  worker's CUDA_VISIBLE_DEVICES (None when unset): the GPU its pool pinned it to}.
- {"cmd": "exit"}: the worker leaves its loop.

Fault injection (tests only): with COVFUZZ_FAULT_INJECTION=1 in the worker's environment,
cases whose seed is a key of harness.faults.FAULT_SEEDS crash, hang, blow up memory or raise
on purpose (0xFA017001 segfault, ...02 abort, ...03 hang, ...04 memory, ...05 raise in
compile, ...06 raise in eager). Without the variable those seeds are ordinary.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from array import array

PR_SET_PDEATHSIG = 1


def die_with_parent(poll_s: float = 0.5) -> None:
    """Exit when the parent dies (even by SIGKILL): PDEATHSIG plus a polling watchdog."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except Exception:
            pass
    if os.getppid() != parent or parent == 1:  # the parent already went away
        os._exit(1)

    def watch():
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="covfuzz-parent-watchdog", daemon=True).start()


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process from /proc (0 when unknown)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _setup_env(options: dict) -> None:
    cache_dir = options.get("cache_dir")
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
    os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "0"
    os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "0"
    # A worker checks graphs on real tensors itself (covfuzz.propagate.INLINE_ENV; set before
    # torch is imported, hence the literal): a kernel that crashes here is already contained.
    os.environ["COVFUZZ_REAL_CHECKS_INLINE"] = "1"
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # no compile subprocesses
    for key, value in (options.get("env") or {}).items():
        os.environ[key] = value


def _redirect_output(target: str | None) -> None:
    """Send the worker's stdout/stderr (torch's logging, C++ warnings) to `target`:
    a file path, "inherit" (keep the parent's), or None (/dev/null)."""
    if target == "inherit":
        return
    fd = os.open(target or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _localize(header: dict, case_bytes: bytes) -> dict:
    """The culprit of a mismatch; never raises (a localization that fails says why)."""
    from harness.localize import localize  # imports torch: only after the environment is set
    from covfuzz.propagate import propagate
    from covfuzz.serialize import decode
    try:
        case = propagate(decode(case_bytes))
        output = header.get("output")
        return localize(case, str(header.get("kind")),
                        output if isinstance(output, int) else None, header.get("device"),
                        float(header.get("budget") or 180.0))
    except Exception as exc:  # noqa: BLE001 - reported, the worker carries on
        return {"found": False, "why": f"localization failed: {type(exc).__name__}: {exc}"[:500]}


def worker_main(conn, options: dict) -> None:
    """Entry point of the spawned worker process (`options` is a dict of plain data)."""
    die_with_parent()
    _redirect_output(options.get("output"))
    _setup_env(options)

    import torch  # noqa: F401 - imported once, after the environment is set
    import torch._functorch.config
    import torch._inductor.config
    torch._inductor.config.fx_graph_cache = False
    torch._functorch.config.enable_autograd_cache = False
    torch._inductor.config.compile_threads = 1

    # These import torch: only now, after the environment is set (hence not at module top).
    from harness.execute import execute
    collector = None
    if options.get("coverage", True):
        from harness.coverage import Collector
        collector = Collector(tuple(options.get("groups") or ("inductor", "dynamo")))

    conn.send_bytes(json.dumps({"ready": True, "pid": os.getpid(),
                                "rss": rss_bytes()}).encode())
    while True:
        try:
            header = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        cmd = header.get("cmd")
        if cmd == "exit":
            return
        if cmd == "ping":
            conn.send_bytes(json.dumps({
                "pid": os.getpid(), "rss": rss_bytes(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}).encode())
            continue
        if cmd == "localize":
            conn.send_bytes(json.dumps(_localize(header, conn.recv_bytes())).encode())
            continue
        if cmd != "run":
            conn.send_bytes(json.dumps({"error": f"unknown command {cmd!r}"}).encode())
            continue
        case_bytes = conn.recv_bytes()
        use_cov = collector if header.get("coverage", True) else None
        result = execute(case_bytes, header.get("device"), header.get("reference"), use_cov)
        features = result.pop("features")
        result["rss"] = rss_bytes()
        conn.send_bytes(json.dumps(result).encode())
        conn.send_bytes(array("Q", features).tobytes())
