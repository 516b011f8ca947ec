"""A persistent child process for work that can crash the process doing it.

Checking a graph on real tensors (covfuzz/propagate.py: data-dependent ops, ops without meta
kernels) runs torch's CPU kernels on the case's own inputs, edge values included, and some
kernels do not survive them: `torch.div(INT64_MIN, -1, rounding_mode="trunc")` traps with
SIGFPE. In a worker that is a finding; in the campaign's own process (generation, mutation,
reduction check every candidate) it would end the campaign. So those checks run here: a child
started once with the *spawn* method (never fork: the parent may hold LMDB handles and
threads), fed one request at a time over a pipe, bytes in and bytes out. When the child dies
or does not answer in time, the call raises `SandboxCrashed` naming the signal, and the next
call starts a fresh child.

The child is started from one long-lived launcher thread (PR_SET_PDEATHSIG, which kills it
with its parent, fires when the *thread* that created it exits) and with the parent's
`__main__` script hidden from spawn (a script without a __main__ guard would run again).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing as mp
import signal
import sys
import threading
from typing import Callable

START_TIMEOUT_S = 120.0  # the child's start: importing torch on a busy machine


class SandboxCrashed(Exception):
    """The child died (a signal, an exit) or did not answer in time."""


@contextlib.contextmanager
def main_module_hidden():
    """Keep spawn from re-running the parent's __main__ script in the child."""
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if hasattr(main, k)}
    try:
        for k in saved:
            if k == "__spec__":
                main.__spec__ = None
            else:
                delattr(main, k)
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


_LAUNCHER: concurrent.futures.ThreadPoolExecutor | None = None
_LAUNCHER_LOCK = threading.Lock()


def _start_hidden(proc) -> None:
    with main_module_hidden():
        proc.start()


def launch(proc) -> None:
    """Start `proc` from one long-lived launcher thread (see the module's docstring)."""
    global _LAUNCHER
    with _LAUNCHER_LOCK:
        if _LAUNCHER is None:
            _LAUNCHER = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="covfuzz-launcher")
        launcher = _LAUNCHER
    launcher.submit(_start_hidden, proc).result()


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux; elsewhere nothing)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _child_main(serve: Callable, conn) -> None:
    die_with_parent()
    serve(conn)


def signal_name(exitcode: int) -> str:
    """The signal a negative exit code stands for ("SIGFPE"; "signal 77" for one Python can't name)."""
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


def exit_text(exitcode) -> str:
    """How a child ended, in words ("killed by SIGFPE", "exited with status 1")."""
    if exitcode is None:
        return "did not answer in time"
    if exitcode < 0:
        return f"killed by {signal_name(exitcode)}"
    return f"exited with status {exitcode}"


class Sandbox:
    """`call(request, timeout) -> reply` in a child running `serve(conn)` (a module-level
    function: it loops `conn.recv_bytes()` -> `conn.send_bytes(reply)`). Thread-safe: one
    request at a time."""

    def __init__(self, serve: Callable, name: str):
        self._serve, self._name = serve, name
        self._proc = None
        self._conn = None
        self._lock = threading.Lock()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_child_main, args=(self._serve, child), daemon=True,
                           name=self._name)
        launch(proc)
        child.close()
        self._proc, self._conn = proc, parent

    def _discard(self) -> str:
        """Kill and forget the child; how it ended."""
        proc, self._proc = self._proc, None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        if proc is None:
            return "was not running"
        proc.join(0.5)
        ended = proc.exitcode
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        return exit_text(ended)

    def call(self, request: bytes, timeout: float) -> bytes:
        with self._lock:
            first = self._proc is None or not self._proc.is_alive()
            if first:
                if self._proc is not None:
                    self._discard()
                self._start()
            try:
                self._conn.send_bytes(request)
                if not self._conn.poll(timeout + (START_TIMEOUT_S if first else 0.0)):
                    self._discard()
                    raise SandboxCrashed(f"{self._name} did not answer in {timeout:.0f} s")
                return self._conn.recv_bytes()
            except (EOFError, OSError):
                raise SandboxCrashed(f"{self._name} {self._discard()}") from None

    def close(self) -> None:
        with self._lock:
            self._discard()
