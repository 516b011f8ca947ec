"""Corpus commands: a campaign's seeds as a whole.

  covfuzz cmin DIR [-o OUT] [--rerun] [--timeout S]
  covfuzz merge A B -o C
  covfuzz export DIR -o FOLDER [--json]
  covfuzz import DIR FILE... [--run] [--timeout S]

Every func takes the parsed args and returns an exit code; bad input raises CovfuzzError
(`covfuzz.cli.main` prints it as one line and exits 2).
"""

from __future__ import annotations

import os
import shutil
import sys
import time

import corpus
from covfuzz import lock, serialize, workdir
from covfuzz.cli.commands import summary
from covfuzz.errors import CovfuzzError
from covfuzz.triage import failures as F
from covfuzz.triage.resolve import read_case_file
from harness.pool import WorkerHandle, WorkerSpec, start_worker

LOCK_HOLDER = "covfuzz campaign or cmin"  # what a second writer is told holds the directory


def _worker(timeout: float, coverage: bool = False) -> WorkerHandle:
    return start_worker(WorkerSpec.for_triage(timeout=timeout, coverage=coverage))


# ----------------------------------------------------------------------------- cmin / merge


def _rerun_features(directory: str, timeout: float) -> int:
    n = 0
    with corpus.open_campaign_store(directory, readonly=False, create=False) as store, \
            _worker(timeout, coverage=True) as worker:
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
            result = worker.run(case, timeout=timeout, coverage=True)
            meta.update(exec_time=result.timings.get("total", 0.0), outcome=result.outcome,
                        n_features=len(result.features), remeasured_at=time.time())
            store.add_seed(sid, data, meta, result.features, overwrite=True, count_hits=False)
            n += 1
    return n


def _report_line(rep: dict) -> str:
    return (f"seeds {rep['seeds_before']} -> {rep['seeds_after']}, "
            f"features {rep['features_before']} -> {rep['features_after']}")


def cmd_cmin(args) -> int:
    _check_campaign_dir(args.dir)
    held = lock.acquire(args.dir, holder=LOCK_HOLDER)
    try:
        if args.rerun:
            n = _rerun_features(args.dir, args.timeout)
            print(f"re-measured {n} seeds")
        if args.out:
            _check_no_corpus(args.out)
            os.makedirs(args.out, exist_ok=True)
            with corpus.open_campaign_store(args.dir, readonly=True, create=False) as src:
                ids = corpus.minimize(src)
                rep = corpus.write_minimized(src, ids, workdir.corpus_path(args.out))
            red = workdir.reduced_dir(args.dir)
            if os.path.isdir(red) and not os.path.exists(workdir.reduced_dir(args.out)):
                shutil.copytree(red, workdir.reduced_dir(args.out))
            print(f"cmin {args.dir} -> {args.out}: {_report_line(rep)}")
        else:
            rep = corpus.minimize_in_place(args.dir)
            print(f"cmin {args.dir} (in place): {_report_line(rep)}")
    finally:
        held.close()
    return 0


def _check_campaign_dir(directory: str) -> None:
    if not workdir.is_campaign_dir(directory):
        raise CovfuzzError(f"{directory}: not a campaign directory (no {workdir.CORPUS}/)")


def _check_no_corpus(directory: str) -> None:
    if os.path.exists(workdir.corpus_path(directory)):
        raise CovfuzzError(f"{directory} already holds a corpus")


def cmd_merge(args) -> int:
    for d in (args.a, args.b):
        _check_campaign_dir(d)
    _check_no_corpus(args.out)
    os.makedirs(args.out, exist_ok=True)
    rep = corpus.merge(workdir.corpus_path(args.a), workdir.corpus_path(args.b),
                       workdir.corpus_path(args.out))
    print(f"merged {args.a} ({rep['seeds_a']} seeds) + {args.b} ({rep['seeds_b']} seeds) -> "
          f"{args.out}: {_report_line(rep)}, {rep['failures']} failure buckets")
    return 0


# ----------------------------------------------------------------------------- export / import


def cmd_export(args) -> int:
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
    cases = [(path, read_case_file(path)) for path in args.files]  # stored as written
    os.makedirs(args.dir, exist_ok=True)
    held = lock.acquire(args.dir, holder=LOCK_HOLDER)
    added = 0
    try:
        worker = _worker(args.timeout, coverage=True) if args.run else None
        try:
            with corpus.open_campaign_store(args.dir, readonly=False, create=True) as store:
                for path, case in cases:
                    cid = serialize.case_id(case)
                    measured = {}
                    features = []
                    if worker is not None:
                        result = worker.run(case, timeout=args.timeout, coverage=True)
                        features = result.features
                        measured = dict(exec_time=result.timings.get("total", 0.0),
                                        outcome=result.outcome, n_features=len(features))
                    meta = corpus.seed_meta(mutators=["import"], nodes=len(case.graph.nodes),
                                            imported_from=os.path.basename(path)[:200], **measured)
                    if store.has_seed(cid):
                        print(f"{path}: already in the corpus as {cid}")
                        continue
                    store.add_seed(cid, serialize.encode(case), meta, features)
                    added += 1
                    print(f"{path}: added as {cid} ({len(features)} features)")
        finally:
            if worker is not None:
                worker.close()
    finally:
        held.close()
    print(f"imported {added} of {len(cases)} test cases into {args.dir}")
    return 0


# ----------------------------------------------------------------------------- parsers


def add_parsers(sub) -> None:
    p = sub.add_parser("cmin", help=summary("cmin"))
    p.add_argument("dir", metavar="DIR")
    p.add_argument("-o", "--out", metavar="OUT", help="write a new campaign dir instead of rewriting DIR")
    p.add_argument("--rerun", action="store_true", help="re-measure every seed's features first")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S")
    p.set_defaults(func=cmd_cmin)

    p = sub.add_parser("merge", help=summary("merge"))
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("-o", "--out", required=True, metavar="C")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("export", help=summary("export"))
    p.add_argument("dir", metavar="DIR")
    p.add_argument("-o", "--out", required=True, metavar="FOLDER")
    p.add_argument("--json", action="store_true", help="JSON form instead of the stored form")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help=summary("import"))
    p.add_argument("dir", metavar="DIR")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--run", action="store_true", help="measure their features (else empty)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S")
    p.set_defaults(func=cmd_import)
