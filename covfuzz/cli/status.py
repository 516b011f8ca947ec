"""Reading a campaign: `covfuzz status` and `covfuzz plot`. Light on purpose (no torch), so
that `covfuzz status` answers at once while a campaign runs.

`read_status` returns the validated status record; what it holds came from a file in the
campaign directory, so every name and value is printed through `printable`.
"""

from __future__ import annotations

import json
import os
import sys

from covfuzz import workdir
from covfuzz.cli.commands import summary
from covfuzz.outfile import check_output
from covfuzz.status import plot, read_status, status_line, triage_line
from covfuzz.text import printable

PLOT_FILE = "progress.png"  # `covfuzz plot`'s default output, inside the campaign directory


def cmd_status(args) -> int:
    status = read_status(args.dir)
    if args.json:
        json.dump(status, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    state = "running" if status.get("running") else "stopped"
    print(printable(f"{args.dir}: {state} ({status.get('mode')}, {status.get('workers')} workers, "
                    f"{status.get('device')})"))
    print(printable(status_line(status)))
    triage = triage_line(status)
    if triage:
        print(printable(triage))
    outcomes = status.get("outcomes") or {}
    if outcomes:
        print(printable("outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))))
    rows = status.get("mutators") or {}
    if rows:
        print("mutators (proposals / valid / executed / ran eagerly / wins):")
        for name, row in sorted(rows.items()):
            print(printable(f"  {name:<18} {row.get('proposals', 0):>6} {row.get('valid', 0):>6} "
                            f"{row.get('executed', 0):>6} {row.get('ran', 0):>6} "
                            f"{row.get('wins', 0):>5}"))
    for title, key in (("strategies", "strategies"), ("best settings moves", "settings_moves")):
        table = status.get(key) or {}
        if table:
            print(f"{title} (tries, new features per second, decayed):")
            for name, row in sorted(table.items(), key=lambda kv: -kv[1].get("rate", 0)):
                print(printable(f"  {name:<34} {row.get('tries', 0):>6} {row.get('rate', 0):>10.3f}"))
    rss = status.get("supervisor_rss_mb")
    if rss is not None:
        print(printable(f"supervisor RSS: {rss} MiB"))
    return 0


def cmd_plot(args) -> int:
    out = args.out or os.path.join(args.dir, PLOT_FILE)
    check_output(out)  # a link planted in a shared campaign directory must not be written through
    print(printable(plot(args.dir, out, compare=args.compare or [])))
    return 0


def add_parsers(sub) -> None:
    status = sub.add_parser("status", help=summary("status"),
                            description=f"Read DIR/{workdir.STATS}; safe while a campaign runs.")
    status.add_argument("dir", metavar="DIR")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    plot_cmd = sub.add_parser("plot", help=summary("plot"),
                              description="Plot features and unique failures over time.")
    plot_cmd.add_argument("dir", metavar="DIR")
    plot_cmd.add_argument("-o", "--out", help=f"PNG path (default DIR/{PLOT_FILE})")
    plot_cmd.add_argument("--compare", nargs="*", metavar="DIR", help="other campaigns on the same axes")
    plot_cmd.set_defaults(func=cmd_plot)
