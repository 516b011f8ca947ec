"""Reading a campaign: `covfuzz status` and `covfuzz plot`. Light on purpose (no torch, no
numpy, no LMDB), so that `covfuzz status` answers at once while a campaign runs, whatever the
corpus size: everything it shows comes from `DIR/fuzzer_stats.json`.

`read_status` returns the validated status record; what it holds came from a file in the
campaign directory, so every name and value is printed through `printable`.

`--since last` remembers when you last looked in `DIR/status_seen.json` (a small file of its
own, written only when that option is given; nothing of the campaign is changed or dropped).
`--watch` redraws a live view every `--interval` seconds (rich, on a terminal; plain text, once
per interval, when stdout is not a terminal); Ctrl-C leaves it.
"""

from __future__ import annotations

import json
import os
import sys
import time

from covfuzz import workdir
from covfuzz.cli.commands import summary
from covfuzz.errors import CovfuzzError
from covfuzz.outfile import check_output
from covfuzz.status import (parse_since, plot, read_seen, read_status, status_view,
                            time_line, write_seen)
from covfuzz.text import printable

PLOT_FILE = "progress.png"  # `covfuzz plot`'s default output, inside the campaign directory


def _since(args, now: float) -> float | None:
    """The `--since` time; for `last`, the previous look (never looked: the campaign's first
    history snapshot, i.e. everything is new), and this look is remembered."""
    if args.since is None:
        return None
    if args.since != "last":
        return parse_since(args.since, now)
    seen = read_seen(args.dir)
    if not write_seen(args.dir, now):
        print(f"note: {printable(args.dir)} is not writable: this look is not remembered",
              file=sys.stderr)
    return seen if seen is not None else 0.0


def cmd_status(args) -> int:
    if args.watch or args.once:
        from covfuzz.cli.status_watch import watch  # rich: only the live view imports it
        return watch(args.dir, interval=args.interval, iterations=1 if args.once else args.iterations)
    status = read_status(args.dir)
    if args.json:
        json.dump(status, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    now = time.time()
    for line in status_view(status, args.dir, since=_since(args, now), now=now):
        print(printable(line))
    return 0


def cmd_plot(args) -> int:
    out = args.out or os.path.join(args.dir, PLOT_FILE)
    check_output(out)  # a link planted in a shared campaign directory must not be written through
    print(printable(plot(args.dir, out, compare=args.compare or [])))
    for campaign in [args.dir, *(args.compare or [])]:
        try:
            line = time_line(read_status(campaign))
        except CovfuzzError:
            line = None
        print(printable(f"{campaign}: {line or 'no time split in its status file'}"))
    return 0


def _positive(text: str) -> float:
    value = float(text)
    if not 0.1 <= value <= 3600:
        raise ValueError(text)
    return value


def add_parsers(sub) -> None:
    status = sub.add_parser("status", help=summary("status"),
                            description=f"Read DIR/{workdir.STATS}; safe while a campaign runs, "
                                        "and fast (it never opens the corpus).")
    status.add_argument("dir", metavar="DIR", help="campaign directory")
    status.add_argument("--json", action="store_true",
                        help="the validated status record as JSON (every field)")
    status.add_argument("--since", metavar="WHEN",
                        help="also show what is new since WHEN: 30m, 2h, 1d ago, 07:00 today, "
                             "2026-11-30T07:00, or 'last' (the previous `--since last` look, "
                             "remembered in DIR/status_seen.json)")
    status.add_argument("--watch", action="store_true",
                        help="live view, redrawn every --interval seconds until Ctrl-C (plain "
                             "text once per interval when stdout is not a terminal)")
    status.add_argument("--once", action="store_true", help="draw the live view once and exit")
    status.add_argument("--interval", type=_positive, default=2.0, metavar="S",
                        help="seconds between redraws of --watch (default %(default)s)")
    status.add_argument("--iterations", type=int, default=None, metavar="N",
                        help="--watch: stop after N redraws (default: until Ctrl-C)")
    status.set_defaults(func=cmd_status)

    plot_cmd = sub.add_parser("plot", help=summary("plot"),
                              description="Plot features and unique failures over time.")
    plot_cmd.add_argument("dir", metavar="DIR", help="campaign directory")
    plot_cmd.add_argument("-o", "--out", help=f"PNG path (default DIR/{PLOT_FILE})")
    plot_cmd.add_argument("--compare", nargs="*", metavar="DIR", help="other campaigns on the same axes")
    plot_cmd.set_defaults(func=cmd_plot)
