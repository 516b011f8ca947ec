"""Triage subcommands of `covfuzz` (wired in by `add_parsers(subparsers)`):

  covfuzz crashes DIR [--json] [--known-issues F] [--sort recent|count]
  covfuzz replay DIR|FILE [ID|SIGNATURE ...] [--reduced] [--timeout S] [--json]
  covfuzz repro ID|FILE -o repro.py [--dir DIR] [--report report.md]
  covfuzz export-tests DIR -o test_repros.py
  covfuzz reduce ID|FILE [--dir DIR] [--timeout S] [--max-steps N] [--budget S] [-o FILE]
  covfuzz cmin DIR [-o OUT] [--rerun] [--timeout S]
  covfuzz merge A B -o C
  covfuzz export DIR -o FOLDER [--json]
  covfuzz import DIR FILE... [--run] [--timeout S]

Every func takes the parsed args and returns an exit code; bad input raises CovfuzzError (the
main CLI prints it as one line and exits 2). Reduced examples live in DIR/reduced/ (see
covfuzz/triage/failures.py).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import time

from covfuzz import lock
from covfuzz.errors import CovfuzzError
from covfuzz.triage import failures as F


def _when(ts) -> str:
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _supervisor(timeout: float, coverage: bool = False):
    from harness.supervisor import Supervisor
    return Supervisor(timeout=timeout, warmup=False, coverage=coverage)


# ----------------------------------------------------------------------------- crashes


def cmd_crashes(args) -> int:
    from covfuzz.triage import known_issues
    known = known_issues.load(args.known_issues, args.dir)
    with F.open_store(args.dir) as store:
        rows = F.sort_rows(F.buckets(store, args.dir, known), args.sort)
    by_kind: dict[str, int] = {}
    for r in rows:
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + 1
    summary = {"dir": args.dir, "raw_failures": sum(r["count"] or 0 for r in rows),
               "buckets": len(rows), "known": sum(1 for r in rows if r["known"]),
               "new": sum(1 for r in rows if not r["known"]), "by_kind": by_kind,
               "failures": rows}
    if args.json:
        json.dump(summary, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    kinds = ", ".join(f"{k}={v}" for k, v in sorted(by_kind.items())) or "none"
    print(f"{args.dir}: {summary['raw_failures']} failures in {len(rows)} buckets ({kinds}); "
          f"{summary['known']} known, {summary['new']} new")
    for r in rows:
        mark = "known" if r["known"] else "NEW  "
        red = f"reduced {r['original_nodes'] or '?'}->{r['reduced_nodes']} nodes" if r["reduced"] else "not reduced"
        print(f"{mark} {r['kind']:<14} {r['signature_id']}  x{r['count']:<5} first {_when(r['first_seen'])}"
              f"  last {_when(r['last_seen'])}  example {r['example_id']}  {red}")
        print(f"      {r['signature'][:200]}")
        if r["known"]:
            print(f"      known issue: {r['known'].get('link') or ''} {r['known'].get('note') or ''}".rstrip())
    return 0


# ----------------------------------------------------------------------------- replay


def _replay_one(sup, target, timeout) -> dict:
    from covfuzz.triage.signature import FAILURE_KINDS, signature_of
    t0 = time.perf_counter()
    result = sup.run(target.case, timeout=timeout, coverage=False)
    sig, sid = signature_of(target.case, result)
    failed = result.outcome in FAILURE_KINDS
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
    targets = []
    if os.path.isdir(args.target):
        with F.open_store(args.target) as store:
            if args.ids:
                targets = [F.resolve(store, i, args.target, args.reduced) for i in args.ids]
            else:
                targets = [F.bucket_target(store, rec, args.target, args.reduced)
                           for rec in store.failures()]
    else:
        if args.ids:
            raise CovfuzzError(f"{args.target} is a test-case file: ids need a campaign directory")
        targets = [F.file_target(args.target)]
    if not targets:
        print(f"{args.target}: no failures to replay")
        return 0
    rows = []
    with _supervisor(args.timeout) as sup:
        for t in targets:
            row = _replay_one(sup, t, args.timeout)
            rows.append(row)
            if args.json:
                continue
            v = row["verdict"]
            if v == "changed":
                detail = f"{row['old_signature_id']} {row['old_signature'][:100]} -> {row['signature_id']} {row['signature'][:100]}"
            elif v in ("reproduces", "fails"):
                detail = f"{row['signature_id']} {row['signature'][:150]}"
            elif v == "fixed":
                detail = f"was {row['old_signature_id']} {row['old_signature'][:120]}"
            else:
                detail = f"outcome {row['outcome']}"
            print(f"{t.label}: {v.upper() if v in ('reproduces', 'fails', 'changed') else v}  {detail}",
                  flush=True)
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


def _target(ident: str, directory: str | None, prefer_reduced: bool = True):
    if os.path.isfile(ident):
        return F.file_target(ident)
    if directory is None:
        raise CovfuzzError(f"{ident}: no such file (an example or signature id needs --dir DIR)")
    with F.open_store(directory) as store:
        return F.resolve(store, ident, directory, prefer_reduced)


def cmd_repro(args) -> int:
    from covfuzz.triage import repro
    target = _target(args.id, args.dir, prefer_reduced=not args.original)
    if any(n.out is None for n in target.case.graph.nodes):
        raise CovfuzzError(f"{args.id}: the test case is invalid on this torch (propagation fails)")
    failure = dict(target.failure)
    script = repro.repro_script(target.case, failure or None)
    with open(args.out, "w") as handle:
        handle.write(script)
    print(f"wrote {args.out} (python {args.out})")
    if args.report:
        if not failure:
            failure = {"kind": "failure", "message": "(not recorded: run the reproducer)",
                       "signature": "?"}
        with open(args.report, "w") as handle:
            handle.write(repro.markdown_report(target.case, failure, script))
        print(f"wrote {args.report}")
    return 0


def cmd_export_tests(args) -> int:
    from covfuzz.triage import repro
    entries = []
    skipped = 0
    with F.open_store(args.dir) as store:
        rows = F.sort_rows(F.buckets(store, args.dir), "count")
        for row in rows:
            try:
                rec = store.get_failure(row["signature_id"]) or F.find_bucket(store, row["signature_id"])
                target = F.bucket_target(store, rec, args.dir, prefer_reduced=True)
            except CovfuzzError as exc:
                print(f"skipped {row['signature_id']}: {exc}", file=sys.stderr)
                skipped += 1
                continue
            if any(n.out is None for n in target.case.graph.nodes):
                print(f"skipped {row['signature_id']}: invalid on this torch", file=sys.stderr)
                skipped += 1
                continue
            entries.append({"sig_id": row["signature_id"], "kind": row["kind"],
                            "signature": row["signature"],
                            "script": repro.repro_script(target.case, target.failure)})
    with open(args.out, "w") as handle:
        handle.write(repro.pytest_file(entries))
    print(f"wrote {args.out}: {len(entries)} tests" + (f" ({skipped} buckets skipped)" if skipped else ""))
    return 0


# ----------------------------------------------------------------------------- reduce


def cmd_reduce(args) -> int:
    from covfuzz.triage.reduce import make_supervisor, Reducer
    target = _target(args.id, args.dir, prefer_reduced=False)
    if args.max_steps < 1 or args.budget <= 0 or args.timeout <= 0:
        raise CovfuzzError("--max-steps, --budget and --timeout must be positive")
    log = (lambda text: print(text, file=sys.stderr, flush=True)) if not args.quiet else None
    sup = make_supervisor(args.timeout)
    try:
        res = Reducer(sup, args.timeout, args.max_steps, args.budget, log).reduce(
            target.case, target.signature)
    finally:
        sup.close()
    from covfuzz import serialize
    from covfuzz.triage.signature import signature_id
    sig_id = target.sig_id or signature_id(res.signature)
    meta = dict(res.to_dict(), signature_id=sig_id, example_id=target.example_id)
    if args.out:
        out = args.out
        with open(out, "wb") as handle:
            handle.write(serialize.to_json(res.case).encode() if out.endswith(".json")
                         else serialize.encode(res.case))
    elif args.dir and not os.path.isfile(args.id):
        out = F.write_reduced(args.dir, sig_id, res.case, meta)
    else:
        out = f"{os.path.splitext(args.id)[0]}.reduced.cfz"
        with open(out, "wb") as handle:
            handle.write(serialize.encode(res.case))
    print(f"reduced {target.label}: {res.nodes_before} -> {res.nodes_after} nodes, "
          f"{len(res.original.graph.inputs)} -> {len(res.case.graph.inputs)} inputs in "
          f"{res.seconds:.1f}s ({res.runs} runs, {res.steps} steps, stopped: {res.stopped}); "
          f"signature {sig_id} kept -> {out}")
    return 0


# ----------------------------------------------------------------------------- cmin / merge


def _rerun_features(directory: str, timeout: float) -> int:
    from corpus import CorpusStore
    from covfuzz import serialize
    n = 0
    with CorpusStore(os.path.join(directory, "corpus.lmdb"), create=False) as store, \
            _supervisor(timeout, coverage=True) as sup:
        for sid in store.seed_ids():
            data = store.get_case_bytes(sid)
            meta = store.get_meta(sid) or {}
            if data is None:
                continue
            try:
                case = serialize.decode(data)
            except CovfuzzError as exc:
                print(f"skipped seed {sid}: {exc}", file=sys.stderr)
                continue
            result = sup.run(case, timeout=timeout, coverage=True)
            meta.update(exec_time=result.timings.get("total", 0.0), outcome=result.outcome,
                        n_features=len(result.features), remeasured_at=time.time())
            store.add_seed(sid, data, meta, result.features, overwrite=True, count_hits=False)
            n += 1
    return n


def _report_line(rep: dict) -> str:
    return (f"seeds {rep['seeds_before']} -> {rep['seeds_after']}, "
            f"features {rep['features_before']} -> {rep['features_after']}")


def cmd_cmin(args) -> int:
    import corpus
    from corpus import CorpusStore
    if not F.is_campaign_dir(args.dir):
        raise CovfuzzError(f"{args.dir}: not a campaign directory (no corpus.lmdb/)")
    held = lock.acquire(args.dir, holder="covfuzz campaign or cmin")
    try:
        if args.rerun:
            n = _rerun_features(args.dir, args.timeout)
            print(f"re-measured {n} seeds")
        if args.out:
            if os.path.exists(os.path.join(args.out, "corpus.lmdb")):
                raise CovfuzzError(f"{args.out} already holds a corpus")
            os.makedirs(args.out, exist_ok=True)
            with CorpusStore(os.path.join(args.dir, "corpus.lmdb"), readonly=True) as src:
                ids = corpus.minimize(src)
                rep = corpus.write_minimized(src, ids, os.path.join(args.out, "corpus.lmdb"))
            red = os.path.join(args.dir, F.REDUCED_DIR)
            if os.path.isdir(red) and not os.path.exists(os.path.join(args.out, F.REDUCED_DIR)):
                shutil.copytree(red, os.path.join(args.out, F.REDUCED_DIR))
            print(f"cmin {args.dir} -> {args.out}: {_report_line(rep)}")
        else:
            rep = corpus.minimize_in_place(args.dir)
            print(f"cmin {args.dir} (in place): {_report_line(rep)}")
    finally:
        held.close()
    return 0


def cmd_merge(args) -> int:
    import corpus
    for d in (args.a, args.b):
        if not F.is_campaign_dir(d):
            raise CovfuzzError(f"{d}: not a campaign directory (no corpus.lmdb/)")
    if os.path.exists(os.path.join(args.out, "corpus.lmdb")):
        raise CovfuzzError(f"{args.out} already holds a corpus")
    os.makedirs(args.out, exist_ok=True)
    rep = corpus.merge(os.path.join(args.a, "corpus.lmdb"), os.path.join(args.b, "corpus.lmdb"),
                       os.path.join(args.out, "corpus.lmdb"))
    print(f"merged {args.a} ({rep['seeds_a']} seeds) + {args.b} ({rep['seeds_b']} seeds) -> "
          f"{args.out}: {_report_line(rep)}, {rep['failures']} failure buckets")
    return 0


# ----------------------------------------------------------------------------- export / import


def cmd_export(args) -> int:
    from covfuzz import serialize
    os.makedirs(args.out, exist_ok=True)
    n = bad = 0
    with F.open_store(args.dir) as store:
        for sid in store.seed_ids():
            data = store.get_case_bytes(sid)
            if data is None:
                continue
            if args.json:
                try:
                    text = serialize.to_json(serialize.decode(data)).encode()
                except CovfuzzError as exc:
                    print(f"skipped seed {sid}: {exc}", file=sys.stderr)
                    bad += 1
                    continue
                path, payload = os.path.join(args.out, f"{sid}.json"), text
            else:
                path, payload = os.path.join(args.out, f"{sid}.cfz"), data
            with open(path, "wb") as handle:
                handle.write(payload)
            n += 1
    print(f"exported {n} seeds to {args.out}" + (f" ({bad} unreadable)" if bad else ""))
    return 0


def cmd_import(args) -> int:
    from corpus import CorpusStore
    from covfuzz import serialize
    cases = []
    for path in args.files:
        case = F.load_case_file(path, propagated=False)
        cases.append((path, case))
    os.makedirs(args.dir, exist_ok=True)
    held = lock.acquire(args.dir, holder="covfuzz campaign or cmin")
    added = 0
    try:
        sup = _supervisor(args.timeout, coverage=True) if args.run else None
        try:
            with CorpusStore(os.path.join(args.dir, "corpus.lmdb")) as store:
                for path, case in cases:
                    cid = serialize.case_id(case)
                    meta = {"parent": None, "mutators": ["import"], "depth": 0,
                            "nodes": len(case.graph.nodes), "imported_from": os.path.basename(path)[:200]}
                    features = []
                    if sup is not None:
                        result = sup.run(case, timeout=args.timeout, coverage=True)
                        features = result.features
                        meta.update(exec_time=result.timings.get("total", 0.0),
                                    outcome=result.outcome, n_features=len(features))
                    if store.has_seed(cid):
                        print(f"{path}: already in the corpus as {cid}")
                        continue
                    store.add_seed(cid, serialize.encode(case), meta, features)
                    added += 1
                    print(f"{path}: added as {cid} ({len(features)} features)")
        finally:
            if sup is not None:
                sup.close()
    finally:
        held.close()
    print(f"imported {added} of {len(cases)} test cases into {args.dir}")
    return 0


# ----------------------------------------------------------------------------- parsers


def add_parsers(sub) -> None:
    p = sub.add_parser("crashes", help="list distinct failures (buckets) of a campaign",
                       description="Distinct failures of DIR, newest (or most frequent) first, with "
                                   "kind, signature, count, first/last seen, example id, and whether a "
                                   "reduced example exists. Failures matching the known-issues file "
                                   "(DIR/known_issues.json or --known-issues) are marked known.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.add_argument("--known-issues", metavar="FILE", help="JSON or TOML known-issues file")
    p.add_argument("--sort", choices=("recent", "count"), default="recent")
    p.set_defaults(func=cmd_crashes)

    p = sub.add_parser("replay", help="re-run stored failures on the current torch",
                       description="Re-run failing inputs in an isolated worker: an example id, a "
                                   "bucket (signature id or signature), or every bucket's first "
                                   "example; or a test-case FILE alone. Says per input: reproduces, "
                                   "fixed, or changed signature. Exit 0 if nothing still fails, 1 if "
                                   "something does, 2 on bad input.")
    p.add_argument("target", metavar="DIR|FILE")
    p.add_argument("ids", nargs="*", metavar="ID|SIGNATURE")
    p.add_argument("--reduced", action="store_true", help="replay the reduced example where one exists")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("repro", help="write a standalone reproducer (and a markdown report)",
                       description="ID is an example id or signature id of --dir DIR (the reduced "
                                   "example is preferred), or a test-case FILE.")
    p.add_argument("id", metavar="ID|FILE")
    p.add_argument("-o", "--out", required=True, metavar="repro.py")
    p.add_argument("--dir", metavar="DIR")
    p.add_argument("--report", metavar="report.md")
    p.add_argument("--original", action="store_true", help="use the original example, not the reduced one")
    p.set_defaults(func=cmd_repro)

    p = sub.add_parser("export-tests", help="write a pytest file with one test per failure bucket")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("-o", "--out", required=True, metavar="test_repros.py")
    p.set_defaults(func=cmd_export_tests)

    p = sub.add_parser("reduce", help="shrink a failing test case, keeping its signature",
                       description="Reduce a failing case (example id / signature id of --dir DIR, or a "
                                   "FILE) while the same signature reproduces. With DIR the result is "
                                   "stored as DIR/reduced/<signature id>.cfz (+ .json).")
    p.add_argument("id", metavar="ID|FILE")
    p.add_argument("--dir", metavar="DIR")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="per-run timeout (default 60)")
    p.add_argument("--max-steps", type=int, default=300, metavar="N", help="at most N runs (default 300)")
    p.add_argument("--budget", type=float, default=900.0, metavar="S",
                   help="wall-clock budget of the reduction (default 900)")
    p.add_argument("-o", "--out", metavar="FILE", help="write the reduced case here instead")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_reduce)

    p = sub.add_parser("cmin", help="minimize a campaign's corpus (keeps every feature)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("-o", "--out", metavar="OUT", help="write a new campaign dir instead of rewriting DIR")
    p.add_argument("--rerun", action="store_true", help="re-measure every seed's features first")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S")
    p.set_defaults(func=cmd_cmin)

    p = sub.add_parser("merge", help="merge two campaigns' corpora into a new one")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("-o", "--out", required=True, metavar="C")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("export", help="write every seed as a test-case file")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("-o", "--out", required=True, metavar="FOLDER")
    p.add_argument("--json", action="store_true", help="JSON form instead of the stored form")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="add test-case files to a campaign's corpus as seeds")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--run", action="store_true", help="measure their features (else empty)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S")
    p.set_defaults(func=cmd_import)


def main(argv: list[str] | None = None) -> int:
    """Run a covfuzz subcommand (kept for callers of this module; same as `covfuzz.cli.main`)."""
    from covfuzz.cli import main as cli_main
    return cli_main(argv)
