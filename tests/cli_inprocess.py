"""Run a `covfuzz` command inside the test process, as `python -m covfuzz ARGS` would run it.

Why: a real `covfuzz` process imports torch first (about 5 s, more on a loaded CI), and most
CLI checks only want the refusal: the exit code and the one line on stderr. `covfuzz.cli.main`
is the whole command (`python -m covfuzz` is `sys.exit(main())`), so calling it here proves the
same thing for the cost of the command itself. A few tests per command family keep a real
subprocess, so that the entry point, torch's import and cross-process behaviour stay covered.

What a separate process would give for free is recreated or checked here:
- stdout and stderr are captured (`print`, `sys.stdout.write`), with what a fresh interpreter
  would add to stderr: warnings under Python's default filters, and `logging` records of level
  WARNING and above as `logging.lastResort` prints them (pytest's own log handler would
  otherwise swallow them, and a test counting stderr lines would miss one);
- an exception escaping `main` becomes exit 1 with its traceback on stderr, SystemExit its code;
- the command must leave the test process as it found it: no file under the temp folder left
  open (an LMDB environment, a lock file), no signal handler, environment variable, logging
  handler, working directory or thread left behind. A leak fails the test that caused it
  (handlers, environment and working directory are also put back, so that it does not spread
  to the next test): in a real process it would be harmless, but a leaked LMDB handle makes
  the next open of that store in the same process fail.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from dataclasses import dataclass

from covfuzz import cli

# The signals a command could take over (campaigns handle SIGINT and SIGTERM).
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE,
            signal.SIGALRM, signal.SIGUSR1, signal.SIGUSR2)
# Threads meant to live as long as the process: the harness starts every worker from one
# launcher thread (harness/worker_handle.py: PR_SET_PDEATHSIG is tied to the starting thread).
_PROCESS_LIFETIME_THREADS = ("covfuzz-worker-launcher",)
# Python's default warning filters when started without -W or -X dev (DeprecationWarning is
# shown only for __main__, which a command never is).
_IGNORED_BY_DEFAULT = (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                       ResourceWarning)


@dataclass
class Ran:
    """What a finished command left: the fields of subprocess.CompletedProcess the tests read,
    and how long it took (for hang guards)."""
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


# What libraries keep open on purpose, wherever the checkout lives (a CI clone under /tmp):
# the interpreter's and the virtual environment's own files (matplotlib caches its fonts open).
_LIBRARY_ROOTS = tuple(os.path.realpath(p) + os.sep
                       for p in {sys.prefix, sys.base_prefix, sys.exec_prefix})


def _open_temp_files() -> dict[int, str]:
    """The descriptors of this process that point under the temp folder (where every test's
    campaign and output folders live), library files aside: what a command may not leave open."""
    temp = os.path.realpath(tempfile.gettempdir()) + os.sep
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
        if target.startswith(temp) and not target.startswith(_LIBRARY_ROOTS):
            out[int(name)] = target
    return out


def _state() -> dict:
    root = logging.getLogger()
    return {"signal handlers": {s: signal.getsignal(s) for s in _SIGNALS},
            "environment": dict(os.environ),
            "root logging handlers": list(root.handlers),
            "working directory": os.getcwd(),
            "threads": {t.ident for t in threading.enumerate()}}


def _restore(before: dict) -> None:
    for sig, handler in before["signal handlers"].items():
        if handler is not None:
            signal.signal(sig, handler)
    os.environ.clear()
    os.environ.update(before["environment"])
    logging.getLogger().handlers[:] = before["root logging handlers"]
    os.chdir(before["working directory"])


def _leaks(before: dict, files_before: dict[int, str]) -> list[str]:
    after = _state()
    leaks = [f"{what} changed" for what in ("signal handlers", "environment",
                                            "root logging handlers", "working directory")
             if after[what] != before[what]]
    threads = [t.name for t in threading.enumerate()
               if t.ident not in before["threads"] and t.is_alive()
               and not t.name.startswith(_PROCESS_LIFETIME_THREADS)]
    if threads:
        leaks.append(f"threads left running: {threads}")
    files = {fd: path for fd, path in _open_temp_files().items()
             if files_before.get(fd) != path}
    if files:
        leaks.append(f"files left open: {sorted(files.values())}")
    return leaks


def run_covfuzz(*args, cwd=None) -> Ran:
    """Run `covfuzz ARGS` in this process (in `cwd` if given) and return what it printed and
    its exit code; fails the calling test if the command leaked process state."""
    argv = [str(a) for a in args]
    caller_cwd = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    before = _state()
    files_before = _open_temp_files()
    out, err = io.StringIO(), io.StringIO()
    last_resort = logging.StreamHandler(err)  # as logging.lastResort: level WARNING, message only
    last_resort.setLevel(logging.WARNING)
    started = time.monotonic()
    try:
        logging.getLogger().addHandler(last_resort)
        with warnings.catch_warnings(record=True) as caught, \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.resetwarnings()
            for category in _IGNORED_BY_DEFAULT:
                warnings.filterwarnings("ignore", category=category)
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse: --help, --version, a usage error
                code = exc.code
                if code is not None and not isinstance(code, int):
                    print(code, file=sys.stderr)
                    code = 1
            except Exception:  # what the interpreter prints for an uncaught exception
                traceback.print_exc()
                code = 1
        for w in caught:
            err.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))
    finally:
        seconds = time.monotonic() - started
        logging.getLogger().removeHandler(last_resort)
        leaks = _leaks(before, files_before)
        _restore(before)
        os.chdir(caller_cwd)
    assert not leaks, f"covfuzz {' '.join(argv)}: {'; '.join(leaks)}"
    return Ran(argv, 0 if code is None else code, out.getvalue(), err.getvalue(), seconds)
