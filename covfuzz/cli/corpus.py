"""Corpus commands: a campaign's seeds as a whole.

  covfuzz cmin DIR [-o OUT] [--rerun] [--timeout S]
  covfuzz merge A B -o C
  covfuzz export DIR -o FOLDER [--json]
  covfuzz import DIR FILE... [--run] [--timeout S]
  covfuzz salvage DIR -o NEW
  covfuzz coverage DIR --html OUT [--limit N] | --bucket SIG

Every func takes the parsed args and returns an exit code; bad input raises CovfuzzError
(`covfuzz.cli.main` prints it as one line and exits 2).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import stat
import sys
import time

import corpus
from corpus import open_campaign_store
from corpus.cmin import unit_counts
from covfuzz import lock, serialize, workdir
from covfuzz.cli.commands import summary
from corpus.salvage import salvage
from covfuzz.errors import CovfuzzError
from covfuzz.features import as_features
from covfuzz.outcomes import KEEP_OUTCOMES, is_failure
from covfuzz.status import repro_command
from covfuzz.text import printable
from covfuzz.triage import failures as F
from covfuzz.triage.resolve import CASE_ID, read_case_file
from covfuzz.triage.signature import check_of, signature_of
from harness.pool import WorkerHandle, WorkerSpec, start_worker

LOCK_HOLDER = "covfuzz campaign or cmin"  # what a second writer is told holds the directory
MAX_PLAIN_FILE = 16 << 20  # a reduced case or known-issues file copied by cmin -o / salvage


def _worker(directory: str, timeout: float, coverage: bool = False) -> WorkerHandle:
    """A worker for re-running seeds. One that measures coverage warms up first, as a
    campaign's workers do (`WorkerSpec.for_campaign`): a cold worker's first case would also
    count one-time initialisation, and its features would not compare with the campaign's.
    It uses the campaign's kernel cache (which only changes unmeasured lines, but saves time)."""
    spec = WorkerSpec.for_triage(timeout=timeout, coverage=coverage,
                                 cache_dir=workdir.inductor_cache(directory))
    return start_worker(dataclasses.replace(spec, warmup=coverage))


def _as_a_campaign_runs(case):
    """The case as a campaign hands it to a worker: propagated (every node's output spec
    filled in). A worker given a case without them propagates it itself, on meta tensors,
    before compiling: that warms caches the compile would otherwise fill, and the features
    differ from the campaign's (by an arc or so)."""
    if all(node.out is not None for node in case.graph.nodes):
        return case
    from covfuzz.errors import InvalidGraph
    from covfuzz.propagate import propagate  # imports torch: only when cases are run
    try:
        return propagate(case)
    except InvalidGraph:
        return case  # the worker reports it invalid


# ----------------------------------------------------------------------------- cmin / merge


def _rerun_order(store) -> list[str]:
    """Every seed id to re-measure: the ones cmin cannot judge first (featureless, then those
    with a damaged record), then the rest."""
    p = corpus.plan(store, errors=[])
    first = [k.decode("ascii", "replace") for k in p.featureless + p.damaged]
    seen = set(first)
    return first + [sid for sid in store.seed_ids() if sid not in seen]


def _rerun_features(directory: str, timeout: float) -> int:
    n = 0
    with corpus.open_campaign_store(directory, readonly=False, create=False) as store, \
            _worker(directory, timeout, coverage=True) as worker:
        for sid in _rerun_order(store):
            try:
                data = store.get_case_bytes(sid)
            except corpus.InvalidId:
                _warn(f"skipped seed {sid!r}: not a valid id")
                continue
            if data is None:
                continue
            try:
                meta = store.get_meta(sid) or {}
            except corpus.DamagedStore:
                raise
            except corpus.CorpusError:
                meta = {"meta_rebuilt_at": time.time()}  # damaged: measured afresh
            try:
                case = serialize.decode(data)
            except CovfuzzError as exc:
                _warn(f"skipped seed {sid}: {exc}")
                continue
            result = worker.run(_as_a_campaign_runs(case), timeout=timeout, coverage=True)
            meta.update(exec_time=result.timings.get("total", 0.0), outcome=result.outcome,
                        n_features=len(result.features), remeasured_at=time.time())
            store.add_seed(sid, data, meta, result.features, overwrite=True, count_hits=False)
            n += 1
    return n


def _report_line(rep: dict) -> str:
    """Seeds and features (the one coverage unit: arcs; covered lines beside) before -> after."""
    line = (f"seeds {rep['seeds_before']} -> {rep['seeds_after']}, "
            f"features {rep['arcs_before']} -> {rep['arcs_after']} "
            f"(lines {rep['lines_before']} -> {rep['lines_after']})")
    unjudged = rep.get("featureless", 0) + rep.get("damaged", 0)
    if unjudged:
        line += (f"; kept {unjudged} seeds it could not judge: {rep['featureless']} without "
                 f"features, {rep['damaged']} with damaged records; `--rerun` measures them")
    return line


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
            try:
                with corpus.open_campaign_store(args.dir, readonly=True, create=False) as src:
                    rep = corpus.minimize_into(src, workdir.corpus_path(args.out))
            except BaseException:
                shutil.rmtree(workdir.corpus_path(args.out), ignore_errors=True)
                raise
            _copy_reduced(args.dir, args.out)
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


def _open_out_dir(out: str) -> int:
    """A directory fd of OUT (created if missing); CovfuzzError when OUT is a symlink or not a
    directory. Every file is then written relative to this fd, so a symlink swapped in for OUT
    later cannot redirect the writes."""
    os.makedirs(out, exist_ok=True)
    try:
        return os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise CovfuzzError(f"{out}: is a symbolic link or not a directory; covfuzz writes "
                               "only into a real directory") from None
        raise


def _write_in(dir_fd: int, name: str, payload: bytes) -> None:
    """Write `name` inside the directory `dir_fd`: into a new temporary file (O_EXCL,
    O_NOFOLLOW), then renamed over `name`, so a symlink planted at `name` is replaced, never
    followed."""
    tmp = f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                 dir_fd=dir_fd)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.close(fd)
    os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def cmd_export(args) -> int:
    n = bad = 0
    with open_campaign_store(args.dir) as store:
        dir_fd = _open_out_dir(args.out)
        try:
            for sid in store.seed_ids():
                if not CASE_ID.fullmatch(sid):  # ids become file names: only real ids do
                    _warn(f"skipped seed {sid!r}: not a test-case id (16 hex digits)")
                    bad += 1
                    continue
                data = store.get_case_bytes(sid)
                if data is None:
                    continue
                try:
                    case = serialize.decode(data)
                except CovfuzzError as exc:
                    _warn(f"skipped seed {sid}: {exc}")
                    bad += 1
                    continue
                if args.json:
                    _write_in(dir_fd, f"{sid}.json", serialize.to_json(case).encode())
                else:
                    _write_in(dir_fd, f"{sid}.cfz", bytes(data))
                n += 1
        finally:
            os.close(dir_fd)
    print(f"exported {n} seeds to {printable(args.out)}" + (f" ({bad} skipped)" if bad else ""))
    return 0


def _record_failure(store, store_dir: str, case, data: bytes, result) -> str:
    """Put a failing import into its failure bucket, as a campaign's FailureObjective does
    (the same signature, failing check and example), so `covfuzz crashes` lists it."""
    sig, sig_id = signature_of(case, result)
    extra = {"signature": sig}
    check = check_of(result)
    if check:
        extra["check"] = check
    new = store.record_failure(sig_id, result.outcome, result.message or "",
                               result.exc_type or "", serialize.case_id(case), data,
                               result.to_dict(), extra=extra)
    return (f"{'new' if new else 'known'} failure bucket {sig_id} "
            f"(reproduce: {repro_command(store_dir, sig_id)})")


def cmd_import(args) -> int:
    cases = [(path, read_case_file(path)) for path in args.files]  # stored as written
    os.makedirs(args.dir, exist_ok=True)
    held = lock.acquire(args.dir, holder=LOCK_HOLDER)
    added = failed = 0
    try:
        worker = _worker(args.dir, args.timeout, coverage=True) if args.run else None
        try:
            with corpus.open_campaign_store(args.dir, readonly=False, create=True) as store:
                for path, case in cases:
                    cid = serialize.case_id(case)
                    data = serialize.encode(case)
                    measured = {}
                    features = []
                    note = ""
                    if worker is not None:
                        result = worker.run(_as_a_campaign_runs(case), timeout=args.timeout,
                                            coverage=True)
                        features = result.features
                        arcs, lines = unit_counts(as_features(features))
                        measured = dict(exec_time=result.timings.get("total", 0.0),
                                        outcome=result.outcome, n_features=len(features))
                        note = f"{result.outcome}, {arcs} features ({lines} lines)"
                        if is_failure(result.outcome):
                            failed += 1
                            note += "; " + _record_failure(store, args.dir, case, data, result)
                        if result.outcome not in KEEP_OUTCOMES:
                            # A campaign keeps no seed of a crash or an invalid case either.
                            print(printable(f"{path}: {note}; not added as a seed"))
                            continue
                    # Fields of corpus.seed_meta; the store builds the meta with it and fills
                    # in features_found (the features no other seed had).
                    meta = dict(mutators=["import"], nodes=len(case.graph.nodes),
                                imported_from=os.path.basename(path)[:200], **measured)
                    if store.has_seed(cid):
                        print(printable(f"{path}: already in the corpus as {cid}"
                                        + (f" ({note})" if note else "")))
                        continue
                    store.add_seed(cid, data, meta, features)
                    added += 1
                    print(printable(f"{path}: added as {cid}" + (f" ({note})" if note else "")))
        finally:
            if worker is not None:
                worker.close()
    finally:
        held.close()
    print(f"imported {added} of {len(cases)} test cases into {printable(args.dir)}"
          + (f"; {failed} failed (see covfuzz crashes {printable(args.dir)})" if failed else ""))
    return 0


# ----------------------------------------------------------------------------- salvage


def _warn(text: str) -> None:
    print(f"warning: {printable(text)}", file=sys.stderr)


def _copy_plain_file(src: str, dst: str) -> bool:
    """Copy the regular file `src` to the new file `dst`; never follows a symlink at either,
    never blocks on a FIFO. False (and a warning) when `src` is not a small regular file."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        why = "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        _warn(f"{src}: not copied ({why})")
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_PLAIN_FILE:
            _warn(f"{src}: not copied (not a regular file of at most {MAX_PLAIN_FILE} bytes)")
            return False
        data = os.pread(fd, MAX_PLAIN_FILE + 1, 0)
    finally:
        os.close(fd)
    out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(out, view):]
    finally:
        os.close(out)
    return True


def _copy_reduced(src_dir: str, out_dir: str) -> int:
    """Copy DIR/reduced/<signature id>.cfz|.json into OUT/reduced/ (other names are skipped
    with a warning: they are not covfuzz's); returns how many were copied."""
    red = workdir.reduced_dir(src_dir)
    try:
        if not stat.S_ISDIR(os.lstat(red).st_mode):
            _warn(f"{red}: not copied (not a directory)")
            return 0
    except FileNotFoundError:
        return 0
    os.makedirs(workdir.reduced_dir(out_dir), exist_ok=True)
    n = 0
    for name in sorted(os.listdir(red)):
        stem, ext = os.path.splitext(name)
        if ext not in (".cfz", ".json") or not F.SIGNATURE_ID.fullmatch(stem):
            _warn(f"{os.path.join(red, name)}: not copied (not a reduced case's file name)")
            continue
        dst = os.path.join(workdir.reduced_dir(out_dir), name)
        if not os.path.lexists(dst):
            n += _copy_plain_file(os.path.join(red, name), dst)
    return n


def _print_salvage(args, rep) -> None:
    c = rep.copied
    print(f"salvaged {printable(args.dir)} -> {printable(args.out)}: {c.get('testcases', 0)} "
          f"seeds, {c.get('failures', 0)} failure buckets ({c.get('examples', 0)} examples), "
          f"{c.get('hits', 0)} hit counts, {c.get('stats', 0)} stats records")
    for note in rep.notes:
        print(f"note: {printable(note)}")
    if not rep.lost:
        print("every record was read")
    for db, loss in sorted(rep.lost.items()):
        keys = ", ".join(printable(k) for k in loss.keys)
        count = "every record (the database is unreadable)" if loss.whole else \
            f"{loss.count} record(s)"
        print(f"could not read from {db!r}: {count}"
              + (f", first keys: {keys}" if keys else " on damaged pages" * (not loss.whole)))


def cmd_salvage(args) -> int:
    if not workdir.is_campaign_dir(args.dir) and not os.path.isdir(
            workdir.corpus_path(args.dir) + ".bak"):
        raise CovfuzzError(f"{args.dir}: not a campaign directory (no {workdir.CORPUS}/)")
    _check_no_corpus(args.out)
    os.makedirs(args.out, exist_ok=True)
    held = lock.acquire(args.out, holder=LOCK_HOLDER)
    try:
        rep = salvage(args.dir, workdir.corpus_path(args.out))
        _print_salvage(args, rep)
        n = _copy_reduced(args.dir, args.out)
        for known, copy in zip(workdir.known_issues_paths(args.dir),
                               workdir.known_issues_paths(args.out)):
            if os.path.lexists(known) and not os.path.lexists(copy):
                n += _copy_plain_file(known, copy)
        if n:
            print(f"copied {n} file(s): reduced cases and known issues")
    finally:
        held.close()
    return 0


# ----------------------------------------------------------------------------- coverage


def cmd_coverage(args) -> int:
    from covfuzz.triage import compiler_view  # imports the harness: only this command pays
    _check_campaign_dir(args.dir)
    if args.bucket:
        with open_campaign_store(args.dir) as store:
            for line in compiler_view.bucket_view(store, args.bucket, limit=args.top):
                print(printable(line))
        return 0
    if os.path.lexists(args.html) and not os.path.isdir(args.html):
        raise CovfuzzError(f"{args.html}: exists and is not a directory")
    rep = compiler_view.corpus_html(args.dir, args.html, limit=args.limit, timeout=args.timeout,
                                    progress=lambda text: print(printable(text), flush=True))
    print(printable(f"{rep['ran']} seeds re-run ({rep['failed']} did not pass), "
                    f"{rep['percent']:.1f}% of torch/_inductor + torch/_dynamo covered: "
                    f"{rep['index']}"))
    return 0


# ----------------------------------------------------------------------------- parsers


def add_parsers(sub) -> None:
    p = sub.add_parser("cmin", help=summary("cmin"))
    p.add_argument("dir", metavar="DIR", help="campaign directory (not while a campaign runs in it)")
    p.add_argument("-o", "--out", metavar="OUT", help="write a new campaign dir instead of rewriting DIR")
    p.add_argument("--rerun", action="store_true",
                   help="re-measure every seed's features first (a warm worker, as a campaign's)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="per-case timeout of --rerun in seconds (default %(default)s)")
    p.set_defaults(func=cmd_cmin)

    p = sub.add_parser("merge", help=summary("merge"))
    p.add_argument("a", metavar="A", help="first campaign directory (only read)")
    p.add_argument("b", metavar="B", help="second campaign directory (only read)")
    p.add_argument("-o", "--out", required=True, metavar="C", help="new campaign directory")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("export", help=summary("export"))
    p.add_argument("dir", metavar="DIR", help="campaign directory")
    p.add_argument("-o", "--out", required=True, metavar="FOLDER",
                   help="folder for the files (<seed id>.cfz, or .json)")
    p.add_argument("--json", action="store_true", help="JSON form instead of the stored form")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help=summary("import"))
    p.add_argument("dir", metavar="DIR", help="campaign directory (created if missing)")
    p.add_argument("files", nargs="+", metavar="FILE", help="test-case files (.cfz or .json)")
    p.add_argument("--run", action="store_true",
                   help="run each case in a warm worker: measure its features as a campaign "
                        "does, and put a failing case into its failure bucket (not a seed)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="per-case timeout of --run in seconds (default %(default)s)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("coverage", help=summary("coverage"),
                       description="--html: re-run the corpus seeds under coverage.py and write "
                                   "its HTML report of torch/_inductor and torch/_dynamo. "
                                   "--bucket: the compiler functions and files a bucket's "
                                   "example reaches that few executions reach (from stored "
                                   "features and hit counts; nothing is re-run).")
    p.add_argument("dir", metavar="DIR", help="campaign directory (only read)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--html", metavar="OUT", help="folder for the HTML report (index.html)")
    what.add_argument("--bucket", metavar="SIG", help="a bucket's signature id (covfuzz crashes)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="--html: re-run at most N seeds (default: all)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="--html: per-seed timeout in seconds (default %(default)s)")
    p.add_argument("--top", type=int, default=20, metavar="N",
                   help="--bucket: list at most N functions (default %(default)s)")
    p.set_defaults(func=cmd_coverage)

    p = sub.add_parser("salvage", help=summary("salvage"))
    p.add_argument("dir", metavar="DIR", help="the damaged campaign directory (only read)")
    p.add_argument("-o", "--out", required=True, metavar="NEW", help="a new campaign directory")
    p.set_defaults(func=cmd_salvage)
