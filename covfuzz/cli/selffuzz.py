"""`covfuzz selffuzz TARGET|all|list [--runs N] [--seconds S] [--in-process] ...`: fuzz covfuzz's
own parsers of outside data (the engine and targets are `covfuzz.selffuzz`)."""

from __future__ import annotations

import argparse
import os

from covfuzz import selffuzz
from covfuzz.cli.commands import summary

ARTIFACTS = "selffuzz-artifacts"  # default artifact directory (per target inside), in the cwd


def add_parsers(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("selffuzz", help=summary("selffuzz"),
        description="Fuzz covfuzz's parsers of outside data; any input must load or raise the "
                    "documented error type.")
    parser.add_argument("target", choices=sorted(selffuzz.TARGETS) + ["all", "list"],
                        help="what to fuzz ('all': each target in turn, in-process or subprocess)")
    parser.add_argument("--runs", type=int, default=None, help="inputs to run (default: 100000)")
    parser.add_argument("--seconds", type=int, default=None, help="stop after this many seconds")
    parser.add_argument("--in-process", action="store_true",
                        help="use the built-in structure-aware driver instead of atheris")
    parser.add_argument("--corpus", help="libFuzzer corpus directory (kept; default: a temp dir)")
    parser.add_argument("--artifacts", default=None, help="where findings are written "
                        f"(default: ./{ARTIFACTS}/TARGET)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strict", action="store_true",
                        help="selectors: report plain ValueError from id lookups (finding SF-1)")
    parser.add_argument("libfuzzer_args", nargs="*", help="extra libFuzzer flags after --")
    parser.set_defaults(func=main_args)
    return parser


def main_args(args) -> int:
    if args.target == "list":
        for t in selffuzz.TARGETS.values():
            print(f"{t.name:<13} {t.doc}")
        return 0
    runs = args.runs if args.runs is not None else (None if args.seconds else 100_000)
    names = sorted(selffuzz.TARGETS) if args.target == "all" else [args.target]
    attached = args.target != "all" and not args.in_process and os.environ.get("_SELFFUZZ_CHILD") != "0"
    if attached:  # libFuzzer's own output and exit status, as if this process were libFuzzer
        artifacts = args.artifacts or os.path.join(ARTIFACTS, args.target)
        proc = selffuzz.atheris_process(args.target, runs, args.seconds, artifacts, args.corpus,
                                        args.seed, args.strict, args.libfuzzer_args, capture=False)
        return proc.returncode
    status = 0
    for name in names:
        if args.in_process:
            report = selffuzz.fuzz_in_process(name, runs or 10 ** 9, args.seconds, seed=args.seed,
                                              strict=args.strict)
        else:
            report = selffuzz.run_target(name, runs or 0, args.seconds, seed=args.seed,
                                         strict=args.strict,
                                         artifacts=os.path.join(args.artifacts or ARTIFACTS, name))
        print(report.line(), flush=True)
        for finding in report.findings:
            print(f"  {finding}")
            if finding.detail:
                print("    " + finding.detail.strip().splitlines()[-1][:300])
        status |= 0 if report.ok else 1
    return status
