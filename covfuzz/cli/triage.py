"""Triage commands: what a campaign found, and what to do with it.

  covfuzz crashes DIR [--json] [--known-issues F] [--sort recent|count]
  covfuzz replay DIR|FILE [ID|SIGNATURE ...] [--original] [--timeout S] [--json]
  covfuzz repro ID|FILE -o repro.py [--dir DIR] [--original] [--report report.md] [--no-run]
  covfuzz export-tests DIR -o test_repros.py
  covfuzz reduce ID|FILE [--dir DIR] [--original] [--timeout S] [--max-steps N] [--budget S] [-o FILE]

`show`, `run`, `replay`, `repro` and `reduce` name cases alike (covfuzz.triage.resolve): a file,
DIR/reduced/<signature id>.json (or .cfz), or with a campaign directory a seed, example,
reduced-case or signature id or a unique prefix of one; a signature means the bucket's reduced
case when there is one (`--original`: its first example). Each says on stderr which it picked.

Every func takes the parsed args and returns an exit code; bad input raises CovfuzzError
(`covfuzz.cli.main` prints it as one line and exits 2). Ids are resolved by
`covfuzz.triage.resolve`; reduced cases live in DIR/reduced/ (see covfuzz/triage/failures.py).
Everything read from a campaign (kinds, signatures, messages, ids, labels) is printed through
`printable`, and output files are written by `covfuzz.outfile` (never through a symlink).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from typing import TYPE_CHECKING

from corpus import open_campaign_store
from covfuzz.cli.commands import summary
from covfuzz.errors import CovfuzzError, one_line
from covfuzz.outcomes import is_failure
from covfuzz.outfile import check_output, write_output
from covfuzz.text import printable
from covfuzz.triage import failures as F
from covfuzz.triage import known_issues
from covfuzz.triage.signature import signature_id, signature_of

# What loads a test case imports torch and the op catalog (seconds): imported inside the
# commands that need it, so that `crashes` and every refusal of bad arguments answer at once.
if TYPE_CHECKING:
    from harness.pool import WorkerHandle


def _when(ts) -> str:
    if not ts:
        return "-"
    try:
        return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError, TypeError):  # a damaged timestamp (1e20, -1e20)
        return "?"


def _worker(timeout: float, coverage: bool = False) -> WorkerHandle:
    from harness.pool import WorkerSpec, start_worker
    return start_worker(WorkerSpec.for_triage(timeout=timeout, coverage=coverage))


# ----------------------------------------------------------------------------- crashes


def cmd_crashes(args) -> int:
    known = known_issues.load(args.known_issues, args.dir)
    with open_campaign_store(args.dir) as store:
        rows = F.sort_rows(F.buckets(store, args.dir, known), args.sort)
    causes = F.sort_rows(F.root_causes(rows), args.sort)
    hidden = F.hidden_rows(rows)
    by_kind: dict[str, int] = {}
    for c in causes:
        by_kind[c["kind"]] = by_kind.get(c["kind"], 0) + 1
    hidden_by: dict[str, int] = {}
    for r in hidden:
        t = r["triage"]
        name = t.get("label") if t["state"] == "not_a_bug" and t.get("label") else t["state"]
        hidden_by[name] = hidden_by.get(name, 0) + 1
    summary = {"dir": args.dir, "raw_failures": sum(r["count"] or 0 for r in rows),
               "buckets": len(rows), "root_causes": len(causes),
               "untriaged": sum(1 for c in causes if c["state"] == "untriaged"),
               "known": sum(1 for c in causes if c["known"]),
               "new": sum(1 for c in causes if not c["known"]), "by_kind": by_kind,
               "hidden": hidden_by, "causes": causes, "failures": rows}
    if args.json:
        json.dump(summary, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    kinds = ", ".join(f"{printable(k)}={v}" for k, v in sorted(by_kind.items(), key=str)) or "none"
    print(f"{printable(args.dir)}: {summary['raw_failures']} failures in {len(rows)} buckets, "
          f"{len(causes)} root causes ({kinds}); {summary['known']} known, {summary['new']} new, "
          f"{summary['untriaged']} not triaged yet")
    if hidden_by:
        print("not reported: " + ", ".join(f"{printable(k)} {v}" for k, v in sorted(hidden_by.items()))
              + ("" if args.all else " (--all lists them)"))
    for c in causes:
        mark = "known" if c["known"] else "NEW  "
        red = (f"reduced to {c['reduced_nodes']} nodes" if c["reduced_nodes"] is not None
               else ("not reduced" if c["state"] == "confirmed" else "not triaged yet"))
        culprit = f"  culprit {printable(c['culprit_op'])}" if c["culprit_op"] else ""
        detail = f"\n      culprit: {printable(c['culprit'])}" if c.get("culprit") else ""
        check = c.get("check") or {}
        if check.get("source") or check.get("root_type"):
            detail += (f"\n      check: {printable(check.get('where', '?'))}: "
                       f"{printable(check.get('source', ''))}"
                       f"\n      raised: {printable(check.get('root_type', ''))}: "
                       f"{printable(check.get('root_message', '')[:200])}")
        print(f"{mark} {printable(str(c['kind'])[:40]):<14} {c['root_id']}  x{c['count']:<5} "
              f"first {_when(c['first_seen'])}  last {_when(c['last_seen'])}  {red}{culprit}")
        print(f"      {printable(c['root'][:200])}{detail}")
        print(f"      buckets {', '.join(c['buckets'][:8])}"
              + (f" (+{len(c['buckets']) - 8})" if len(c["buckets"]) > 8 else "")
              + f"  example {printable(str(c['example_id'])[:40])}")
        if c["known"]:
            note = f"{c['known'].get('link') or ''} {c['known'].get('note') or ''}"
            print(f"      known issue: {printable(note[:300])}".rstrip())
    if args.all:
        for r in hidden:
            t = r["triage"]
            why = (f"not a bug: {t.get('label')} ({t.get('label_reason') or ''})"
                   if t["state"] == "not_a_bug" else
                   f"{t['state']}: fresh process gave {t.get('fresh_outcome') or '?'}")
            print(f"hidden {printable(str(r['kind'])[:40]):<14} {r['signature_id']}  x{r['count']:<5} "
                  f"{printable(why[:200])}")
            print(f"      {printable(r['signature'][:200])}")
    return 0


# ----------------------------------------------------------------------------- replay


def _replay_one(worker: WorkerHandle, target, timeout) -> dict:
    t0 = time.perf_counter()
    result = worker.run(target.case, timeout=timeout, coverage=False)
    sig, sid = signature_of(target.case, result)
    failed = is_failure(result.outcome)
    if target.signature is None:
        verdict = "fails" if failed else ("invalid" if result.outcome == "invalid" else "passes")
    elif failed:
        verdict = "reproduces" if sig == target.signature else "changed"
    else:
        verdict = "invalid" if result.outcome == "invalid" else "fixed"
    return {"input": target.label, "example_id": target.example_id, "verdict": verdict,
            "outcome": result.outcome, "old_signature": target.signature,
            "old_signature_id": target.sig_id, "signature": sig if failed else None,
            "signature_id": sid if failed else None, "message": (result.message or "")[:500],
            "seconds": round(time.perf_counter() - t0, 3)}


def cmd_replay(args) -> int:
    from covfuzz.triage.resolve import bucket_case, load_case
    targets = []
    reduced = not args.original  # a signature means the reduced case, as in every command
    if os.path.isdir(args.target) and args.ids:  # ids, or files (DIR/reduced/<signature id>.json)
        targets = [load_case(i, args.target, reduced) for i in args.ids]
    elif os.path.isdir(args.target):
        with open_campaign_store(args.target) as store:
            targets = [bucket_case(store, rec, args.target, reduced) for rec in store.failures()]
    else:
        if args.ids:
            raise CovfuzzError(f"{args.target} is a test-case file: ids need a campaign directory")
        targets = [load_case(args.target, prefer_reduced=reduced)]
    for t in targets:
        print(f"picked {t.describe()}", file=sys.stderr)
    if not targets:
        print(f"{printable(args.target)}: no failures to replay")
        return 0
    rows = []
    with _worker(args.timeout) as worker:
        for t in targets:
            row = _replay_one(worker, t, args.timeout)
            rows.append(row)
            if args.json:
                continue
            v = row["verdict"]
            if v == "changed":
                detail = (f"{row['old_signature_id']} {row['old_signature'][:100]} -> "
                          f"{row['signature_id']} {row['signature'][:100]}")
            elif v in ("reproduces", "fails"):
                detail = f"{row['signature_id']} {row['signature'][:150]}"
            elif v == "fixed":
                detail = f"was {row['old_signature_id']} {row['old_signature'][:120]}"
            else:
                detail = f"outcome {row['outcome']}"
            verdict = v.upper() if v in ("reproduces", "fails", "changed") else v
            print(printable(f"{t.label}: {verdict}  {detail}"), flush=True)
    still = sum(1 for r in rows if r["verdict"] in ("reproduces", "changed", "fails"))
    if args.json:
        json.dump({"replayed": rows, "still_failing": still}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(f"{len(rows)} replayed: {still} still failing, "
              f"{sum(r['verdict'] == 'fixed' for r in rows)} fixed, "
              f"{sum(r['verdict'] == 'changed' for r in rows)} changed signature")
    return 1 if still else 0


# ----------------------------------------------------------------------------- repro / export-tests


def cmd_repro(args) -> int:
    if args.run_timeout <= 0:
        raise CovfuzzError("--run-timeout must be positive")
    for out in (args.out, args.report):
        if out:
            check_output(out)  # before loading torch and the case: refuse a link at once
    from covfuzz.triage import repro
    from covfuzz.triage.resolve import load_case
    target = load_case(args.id, args.dir, prefer_reduced=not args.original)
    print(f"picked {target.describe()}", file=sys.stderr)
    if any(n.out is None for n in target.case.graph.nodes):
        raise CovfuzzError(f"{args.id}: the test case is invalid on this torch (propagation fails)")
    failure = dict(target.failure)
    script = repro.repro_script(target.case, failure or None, reduced=target.kind == "reduced")
    write_output(args.out, script)
    print(printable(f"wrote {args.out} (python {args.out})"))
    if args.report:
        run = None
        if not args.no_run:
            print(f"running the repro for the report (at most {args.run_timeout:.0f} s; --no-run "
                  "skips this)...", file=sys.stderr, flush=True)
            run = repro.run_repro(script, timeout=args.run_timeout)
        write_output(args.report, repro.markdown_report(target.case, failure, script,
                                                        target.triage, run))
        print(printable(f"wrote {args.report}"))
    return 0


def cmd_export_tests(args) -> int:
    check_output(args.out)
    from covfuzz.triage import repro
    from covfuzz.triage.resolve import bucket_case, find_bucket
    entries = []
    skipped = 0
    with open_campaign_store(args.dir) as store:
        # no `directory`: a bad reduced case raises in bucket_case below, skipping its bucket only
        rows = F.sort_rows(F.buckets(store), "count")
        hidden = {r["signature_id"] for r in F.hidden_rows(rows)}  # triaged flaky or not a bug
        for row in rows:
            if row["signature_id"] in hidden:
                continue
            try:
                rec = store.get_failure(row["signature_id"]) or find_bucket(store, row["signature_id"])
                target = bucket_case(store, rec, args.dir, prefer_reduced=True)
            except CovfuzzError as exc:
                print(f"skipped {row['signature_id']}: {one_line(exc)}", file=sys.stderr)
                skipped += 1
                continue
            if any(n.out is None for n in target.case.graph.nodes):
                print(f"skipped {row['signature_id']}: invalid on this torch", file=sys.stderr)
                skipped += 1
                continue
            entries.append({"sig_id": row["signature_id"], "kind": row["kind"],
                            "signature": row["signature"], "exc_type": row["exc_type"],
                            "script": repro.repro_script(target.case, target.failure,
                                                         reduced=target.kind == "reduced")})
    write_output(args.out, repro.pytest_file(entries))
    print(printable(f"wrote {args.out}: {len(entries)} tests")
          + (f" ({skipped} buckets skipped)" if skipped else "")
          + (f"; {len(hidden)} buckets triaged flaky or not a bug left out" if hidden else ""))
    return 0


# ----------------------------------------------------------------------------- reduce


def _reduce_output(args, target) -> str | None:
    """Where `reduce` writes: the file the user named; None (DIR/reduced/) for a case of a
    campaign's bucket; else FILE.reduced.cfz beside a plain file."""
    if args.out:
        return args.out
    if target.directory is not None and F.is_signature_id(target.sig_id):
        return None
    if os.path.isfile(args.id):
        return f"{os.path.splitext(args.id)[0]}.reduced.cfz"
    raise CovfuzzError(f"{args.id}: {target.describe()} belongs to no bucket: name the output with -o")


def cmd_reduce(args) -> int:
    if args.max_steps < 1 or args.budget <= 0 or args.timeout <= 0:
        raise CovfuzzError("--max-steps, --budget and --timeout must be positive")
    if args.out:
        check_output(args.out)  # before loading torch, and minutes of reduction
    from covfuzz import serialize
    from covfuzz.triage.reduce import reduce_case
    from covfuzz.triage.resolve import load_case
    target = load_case(args.id, args.dir, prefer_reduced=not args.original)
    print(f"picked {target.describe()}", file=sys.stderr)
    out = _reduce_output(args, target)
    if out is not None:
        check_output(out)
    log = ((lambda text: print(printable(text), file=sys.stderr, flush=True))
           if not args.quiet else None)
    res = reduce_case(target.case, target.signature, timeout=args.timeout,
                      max_steps=args.max_steps, budget=args.budget, log=log)
    sig_id = target.sig_id if F.is_signature_id(target.sig_id) else signature_id(res.signature)
    # the metadata names the campaign's example the reduction started from
    example_id = target.original_id if target.kind == "reduced" else target.example_id
    meta = dict(res.to_dict(), signature_id=sig_id,
                example_id=example_id if F.is_case_id(example_id) else None)
    if out is None:
        out = F.write_reduced(target.directory, sig_id, res.case, meta)
    else:
        write_output(out, serialize.to_json(res.case).encode() if out.endswith(".json")
                     else serialize.encode(res.case))
    print(printable(f"reduced {target.label}: {res.nodes_before} -> {res.nodes_after} nodes, "
                    f"{len(res.original.graph.inputs)} -> {len(res.case.graph.inputs)} inputs in "
                    f"{res.seconds:.1f}s ({res.runs} runs, {res.steps} steps, stopped: "
                    f"{res.stopped}); signature {sig_id} kept -> {out}"))
    return 0


# ----------------------------------------------------------------------------- parsers


def add_parsers(sub) -> None:
    p = sub.add_parser("crashes", help=summary("crashes"),
                       description="Root causes of DIR's failures, newest (or most frequent) first: "
                                   "buckets that triage found to share a root cause are listed "
                                   "together (counts summed), with kind, root signature, count, "
                                   "first/last seen, buckets, example id and reduced size. Buckets "
                                   "triaged as flaky or not a bug are counted, not listed (--all). "
                                   "Failures matching the known-issues file (DIR/known_issues.json "
                                   "or --known-issues) are marked known.")
    p.add_argument("dir", metavar="DIR", help="campaign directory")
    p.add_argument("--json", action="store_true", help="the summary, causes and buckets as JSON")
    p.add_argument("--known-issues", metavar="FILE", help="JSON or TOML known-issues file")
    p.add_argument("--sort", choices=("recent", "count"), default="recent",
                   help="newest last-seen first (default), or most frequent first")
    p.add_argument("--all", action="store_true",
                   help="also list buckets triage found flaky or not a bug")
    p.set_defaults(func=cmd_crashes)

    p = sub.add_parser("replay", help=summary("replay"),
                       description="Re-run failing inputs in an isolated worker: an example id, a "
                                   "bucket (signature id or signature), or every bucket's first "
                                   "example; or a test-case FILE alone. Says per input: reproduces, "
                                   "fixed, or changed signature. Exit 0 if nothing still fails, 1 if "
                                   "something does, 2 on bad input.")
    p.add_argument("target", metavar="DIR|FILE", help="campaign directory, or a test-case file")
    p.add_argument("ids", nargs="*", metavar="ID|SIGNATURE",
                   help="seed, example, reduced-case or signature ids (or unique prefixes) of DIR; "
                        "default: every bucket")
    p.add_argument("--original", action="store_true",
                   help="replay each bucket's first example, not its reduced case")
    p.add_argument("--reduced", action="store_true",
                   help="replay the reduced case where one exists (the default; kept for old scripts)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="per-case timeout in seconds (default 120)")
    p.add_argument("--json", action="store_true", help="one JSON object with every verdict")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("repro", help=summary("repro"),
                       description="Write a standalone repro.py (it imports only torch) for a "
                                   "case: ID is a seed, example, reduced-case or signature id (or "
                                   "a unique prefix) of --dir DIR, or a test-case FILE (e.g. "
                                   "DIR/reduced/<signature id>.json); a signature id means the "
                                   "reduced case when there is one. --report also writes an "
                                   "upstream-ready markdown report: it runs the repro (TORCH_LOGS="
                                   "output_code) to record what happens on this torch and the "
                                   "culprit's Inductor kernel.")
    p.add_argument("id", metavar="ID|FILE", help="case id or test-case file")
    p.add_argument("-o", "--out", required=True, metavar="repro.py", help="the script to write")
    p.add_argument("--dir", metavar="DIR", help="campaign directory the id names")
    p.add_argument("--report", metavar="report.md", help="also write a markdown bug report")
    p.add_argument("--no-run", action="store_true",
                   help="write the report from stored data only: do not run the repro (no "
                        "observed values from this torch, no Inductor output code)")
    p.add_argument("--run-timeout", type=float, default=600.0, metavar="S",
                   help="limit on the report's run of the repro (default 600)")
    p.add_argument("--original", action="store_true", help="use the original example, not the reduced one")
    p.set_defaults(func=cmd_repro)

    p = sub.add_parser("export-tests", help=summary("export-tests"),
                       description="One pytest test per bucket of DIR, running its repro (the "
                                   "reduced case when there is one) as __main__; each test is "
                                   "xfail(raises=<the error the repro raises>, strict=True): a "
                                   "broken script fails, a fixed bug XPASSes and fails strictly.")
    p.add_argument("dir", metavar="DIR", help="campaign directory")
    p.add_argument("-o", "--out", required=True, metavar="test_repros.py", help="the file to write")
    p.set_defaults(func=cmd_export_tests)

    p = sub.add_parser("reduce", help=summary("reduce"),
                       description="Reduce a failing case (a seed, example, reduced-case or "
                                   "signature id of --dir DIR, or a FILE; a signature id means the "
                                   "reduced case when there is one) while the same signature "
                                   "reproduces. A case of a bucket is stored as DIR/reduced/"
                                   "<signature id>.cfz (+ .json); a FILE's as FILE.reduced.cfz.")
    p.add_argument("id", metavar="ID|FILE", help="case id or test-case file")
    p.add_argument("--dir", metavar="DIR", help="campaign directory the id names")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="per-run timeout (default 60)")
    p.add_argument("--max-steps", type=int, default=300, metavar="N", help="at most N runs (default 300)")
    p.add_argument("--budget", type=float, default=900.0, metavar="S",
                   help="wall-clock budget of the reduction (default 900)")
    p.add_argument("--original", action="store_true",
                   help="for a signature id, reduce the bucket's first example, not its reduced case")
    p.add_argument("-o", "--out", metavar="FILE", help="write the reduced case here instead")
    p.add_argument("-q", "--quiet", action="store_true", help="do not log each reduction step")
    p.set_defaults(func=cmd_reduce)
