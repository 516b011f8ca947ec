"""`covfuzz status DIR --watch`: a live view of a campaign, in the spirit of AFL++'s status
screen (process timing, overall results, triage, workers, the newest buckets), drawn with
`rich` and redrawn every interval from `DIR/fuzzer_stats.json` (never the corpus: a redraw
costs milliseconds). When stdout is not a terminal (a pipe, a log file, a test) each interval
prints the plain-text view instead; `--once` draws one frame. Ctrl-C leaves cleanly.
"""

from __future__ import annotations

import signal
import threading
import time

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from covfuzz.errors import CovfuzzError, one_line
from covfuzz.status import (ago, duration, read_status, restarts_text, status_view,
                            time_left, time_line)
from covfuzz.text import printable


def _pairs(title: str, rows: list[tuple[str, str]]) -> Panel:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold cyan", justify="right")
    grid.add_column()
    for name, value in rows:
        grid.add_row(name, Text(printable(value)))
    return Panel(grid, title=title, title_align="left")


BUCKET_ROWS = 10  # buckets the live view lists (the newest)


def _bucket_table(rows: list[dict], total: int):
    """The newest buckets, one line each (the last column cut to the screen width)."""
    if not rows:
        return Text("no failure yet" if not total else
                    f"{total} bucket(s): covfuzz crashes DIR lists them (this status file has "
                    "no bucket rows: its campaign runs an older covfuzz)")
    table = Table(box=None, pad_edge=False, expand=True, show_edge=False)
    for name in ("bucket", "kind", "state", "reduced", "first seen"):
        table.add_column(name, no_wrap=True)
    table.add_column("culprit: failing check or divergence", no_wrap=True, overflow="ellipsis",
                     ratio=1)
    for r in sorted(rows, key=lambda r: -(r["first_seen"] or 0))[:BUCKET_ROWS]:
        reduced = f"{r['reduced_nodes']} nodes" if r["reduced_nodes"] is not None else "no"
        what = (f"{r['culprit']}: " if r["culprit"] else "") + (r["check"] or r["divergence"])
        table.add_row(*(Text(printable(v)) for v in (
            r["id"], r["kind"], r["state"].replace("_", " "), reduced,
            time.strftime("%m-%d %H:%M", time.localtime(r["first_seen"] or 0)), what)))
    if total > BUCKET_ROWS:
        table.add_row(Text(f"... {total - BUCKET_ROWS} more"), "", "", "", "", "")
    return table


def frame(s: dict, directory: str, now: float | None = None):
    """One frame of the live view (a rich renderable) of status record `s`."""
    now = time.time() if now is None else now
    state = "running" if s.get("running") else "stopped"
    head = f"covfuzz {directory}: {state} ({s.get('mode')}, {s.get('device')})"
    if s.get("running") and s.get("pid"):
        head += f" | pid {s['pid']}, stop: kill -INT {s['pid']}"
    timing = [("run time", duration(s["elapsed"])),
              ("this run", duration(now - s["run_started"]) if s.get("run_started")
               and s.get("running") else "-"),
              ("time left", time_left(s, now) or "-"),
              ("last new feature", ago(s.get("last_new_feature"))),
              ("last new failure", ago(s.get("last_new_failure"))),
              ("status written", ago(s.get("updated")))]
    speed = (f"warming {s['warming']} worker(s)" if s.get("warming")
             else f"{s['execs_per_s']:.2f}/s")
    t = s.get("triage") or {}
    states = t.get("states") or {}
    results = [("execs", f"{s['execs']} ({speed})"), ("corpus", f"{s['corpus']} seeds"),
               ("features", f"{s['features']} (lines {s.get('lines', 0)})"),
               ("buckets", f"{s['unique_failures']}, root causes {t.get('root_causes', 0)}"),
               ("validity", "n/a" if s.get("validity") is None
                else f"{100 * s['validity']:.0f}% of mutants")]
    triage = [("confirmed", str(states.get("confirmed", 0))),
              ("flaky / not a bug", f"{states.get('flaky', 0)} / {states.get('not_a_bug', 0)}"),
              ("not triaged yet", f"{t.get('untriaged', 0)} (queue {s.get('triage_queue') or 0})"),
              ("triaging now", s.get("triage_current") or "-")]
    workers = [("workers", f"{s.get('workers')}" + (f", warming {s['warming']}"
                                                     if s.get("warming") else "")),
               ("restarts", restarts_text(s).removeprefix("restarts ")),
               ("supervisor RSS", f"{s.get('supervisor_rss_mb')} MiB")]
    top = Table.grid(expand=True)
    top.add_column(ratio=1)
    top.add_column(ratio=1)
    top.add_row(_pairs("process timing", timing), _pairs("overall results", results))
    top.add_row(_pairs("triage", triage), _pairs("workers", workers))
    buckets = Panel(_bucket_table(s.get("buckets") or [], s["unique_failures"]),
                    title="newest buckets (covfuzz crashes DIR; covfuzz repro ID --dir DIR)",
                    title_align="left")
    parts = [top, buckets]
    where = time_line(s)  # where worker time goes (status files without the split: none)
    if where:
        parts.insert(1, Text(printable(where)))
    if s.get("note"):
        parts.insert(0, Text(printable("note: " + s["note"]), style="yellow"))
    return Panel(Group(*parts), title=Text(printable(head), style="bold"), title_align="left")


def _read(directory: str):
    """(status, None) or (None, the one-line error): a campaign being set up, or a status file
    rewritten at the wrong moment, must not end the view."""
    try:
        return read_status(directory), None
    except CovfuzzError as exc:
        return None, one_line(exc)


def watch(directory: str, interval: float = 2.0, iterations: int | None = None,
          console: Console | None = None) -> int:
    """Redraw the view every `interval` seconds, `iterations` times (None: until Ctrl-C)."""
    console = console or Console()
    done = 0
    previous = None
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C must end the view even when the process started with SIGINT ignored (a
        # background job of a script, a test runner's worker): Python then installs no handler.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if not console.is_terminal:
            while iterations is None or done < iterations:
                status, error = _read(directory)
                lines = status_view(status, directory) if status else [f"status: {error}"]
                print("\n".join(printable(line) for line in lines), flush=True)
                done += 1
                if iterations is None or done < iterations:
                    print("-" * 40, flush=True)
                    time.sleep(interval)
            return 0
        with Live(console=console, auto_refresh=False, screen=False) as live:
            while iterations is None or done < iterations:
                status, error = _read(directory)
                live.update(frame(status, directory) if status else Text(f"status: {error}"),
                            refresh=True)
                done += 1
                if iterations is None or done < iterations:
                    time.sleep(interval)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how one leaves the view
    finally:
        if previous is not None:  # the caller's handler again (an in-process caller's)
            signal.signal(signal.SIGINT, previous)
    return 0
