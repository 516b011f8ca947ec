"""`covfuzz run FILE_OR_ID... [--dir DIR] [--original] [--device cpu|cuda] [--timeout S] [--json] [--no-coverage]`.

Runs test cases through the harness and prints the outcome, the time split and the coverage
feature count (or, with --json, one JSON object per case). A case is a stored (b"CFZT"...) or
JSON test-case file (DIR/reduced/<signature id>.json names its reduced case), or, with
--dir DIR, the id of a seed, failure example, reduced case or signature of that campaign (or a
unique prefix of one; a signature id means the reduced case when there is one, --original its
first example). Which case each argument picked is said on stderr. Exit status: 0 all passed
(or were invalid), 1 some failure outcome, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys

from covfuzz.cli.commands import summary
from covfuzz.errors import CovfuzzError, InvalidGraph, one_line
from covfuzz.features import is_line
from covfuzz.outcomes import is_failure
from covfuzz.propagate import propagate
from covfuzz.serialize import encode
from covfuzz.text import printable
from covfuzz.triage.resolve import load_case
from harness.pool import WorkerSpec, start_worker
from harness.result import RunResult

TIME_LABELS = (("eager", "eager"), ("compile", "compile"), ("run", "compiled run"),
               ("backward", "backward"), ("coverage", "coverage"), ("overhead", "overhead"))


def add_parsers(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("run", help=summary("run"),
                              description=__doc__.split("\n\n")[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cases", nargs="+", metavar="FILE_OR_ID",
                   help="test-case file (stored or JSON form), or an id of the campaign --dir")
    p.add_argument("--dir", metavar="DIR", default=None,
                   help="campaign directory the ids name (seed, example, reduced-case or "
                        "signature ids, or unique prefixes; a signature id means the bucket's "
                        "reduced case when there is one)")
    p.add_argument("--original", action="store_true",
                   help="for a signature id, the bucket's first example instead of its reduced case")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="device to run on (default: the case's own device)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="per-case timeout in seconds (default 120)")
    p.add_argument("--json", action="store_true", help="one JSON object per case on stdout")
    p.add_argument("--no-coverage", action="store_true", help="do not measure coverage")
    p.set_defaults(func=main)
    return p


def _human(name: str, r: RunResult) -> str:
    t = r.timings
    split = ", ".join(f"{label} {t.get(key, 0.0):.3f}s" for key, label in TIME_LABELS)
    n_arcs = int((~is_line(r.features)).sum())
    lines = [printable(f"{name}: {r.outcome}" + (f" ({r.case_id})" if r.case_id else "")),
             f"  time {t.get('total', 0.0):.3f}s: {split}",
             f"  coverage: {n_arcs} arc features, {r.n_lines} lines"]
    note = r.details.get("note")
    if note:
        lines.append(f"  note: {printable(note)}")
    if r.message and r.outcome != "pass":
        lines.extend("  | " + printable(line) for line in r.message.splitlines()[:15])
    if r.frames:
        lines.append("  frames (innermost last):")
        lines.extend(f"    {printable(f)}" for f in r.frames)
    return "\n".join(lines)


def main(args) -> int:
    loaded = []
    for arg in args.cases:  # every case loads before any runs: bad input fails fast
        try:
            target = load_case(arg, args.dir, prefer_reduced=not args.original)
        except CovfuzzError as exc:
            print(f"covfuzz run: {one_line(exc)}", file=sys.stderr)
            return 2
        print(f"picked {target.describe()}", file=sys.stderr)
        loaded.append((arg, target.case))

    status = 0
    worker = None  # started on the first valid case
    try:
        for name, case in loaded:
            try:
                case = propagate(case)
            except InvalidGraph as exc:
                result = RunResult(outcome="invalid", message=f"InvalidGraph: {exc}",
                                   exc_type="covfuzz.errors.InvalidGraph")
            else:
                if worker is None:
                    # Measured as a campaign measures (a warm-up case first): one coverage unit.
                    worker = start_worker(
                        WorkerSpec.for_run(timeout=args.timeout, coverage=False)
                        if args.no_coverage else WorkerSpec.for_campaign(timeout=args.timeout))
                result = worker.run(encode(case), device=args.device)
            if is_failure(result.outcome):
                status = 1
            if args.json:
                obj = {"file": name, "case_id": result.case_id, "outcome": result.outcome,
                       "message": result.message, "exc_type": result.exc_type,
                       "frames": result.frames, "timings": result.timings,
                       "n_features": len(result.features), "features": result.features,
                       "n_lines": result.n_lines, "details": result.details}
                print(json.dumps(obj), flush=True)
            else:
                print(_human(name, result), flush=True)
    finally:
        if worker is not None:
            worker.close()
    return status
