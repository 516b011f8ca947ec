"""Salvage: copy every record still readable from a damaged store into a fresh one.

A damaged `data.mdb` (truncated by a full disk, pages zeroed by a crash, garbage) cannot be
opened by the store: a page beyond the end of the file kills the process with SIGBUS, a zeroed
page stops every scan with `lmdb.CorruptedError`. Salvage reads it another way:

1. The data file is copied to a private temporary directory, padded with zeros up to the size
   its current meta page names (`corpus.lmdb_check`), so that no page LMDB can address lies
   beyond the end of the file. A damaged meta page is replaced by the other one in the copy;
   when both are gone there is nothing to read (CorpusError).
2. Each database is scanned in a forked child process that writes what it reads to a file. An
   unreadable page makes LMDB raise: the child skips ahead past the last key it read (the next
   key up, then ever shorter prefixes incremented) and carries on. A garbage page that makes
   LMDB crash kills only the child; the parent starts another one past that point. So damage
   costs the records on the damaged pages, never the process.
3. The records read are decoded with the store's validating decoders (`corpus.records`) and
   written through `CorpusStore`'s API into a new store; every record that does not decode is
   counted and its key listed. A seed whose meta record is lost keeps its test case and
   features (with fresh meta noting the loss); one whose features are lost keeps an empty
   feature set (`covfuzz cmin` keeps such seeds; `cmin --rerun` measures them).
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import struct
import tempfile
import time
from dataclasses import dataclass, field

import lmdb
import numpy as np

from corpus.errors import CorpusError
from corpus.lmdb_env import MAX_DBS, env_path
from corpus.lmdb_check import MetaPage, current, open_data_file, read_metas
from corpus.records import (check_case_bytes, decode_example, decode_failure, decode_features,
                            decode_hit, decode_info, decode_meta, decode_schema, decode_stats,
                            key_text, seed_meta)
from corpus.seeds import SeedRecord
from corpus.store import DB_NAMES, MAX_EXAMPLES, STORE_SCHEMA, CorpusStore
from covfuzz.errors import one_line

CHILD_SECONDS = 60.0  # one child's scan; past it the child is killed and the scan moves on
MAX_CHILDREN = 64  # children per database (each one that crashes costs one)
MAX_STARTS = 4096  # start keys one child tries past damaged pages
FIRST_KEYS = 5  # keys listed per database in the report
BATCH = 512
COPY_CHUNK = 1 << 20

_FRAME = struct.Struct("<cII")  # kind, key length, value length
# R record (key, value); T trying a start key; E an lmdb error (message as key);
# N the entry count the database claims; D done; X gave up (no start key left)


@dataclass
class Loss:
    """What could not be read from one database."""
    unread: int = 0       # records the database counts that no scan reached (damaged pages)
    undecodable: int = 0  # records read that do not decode
    missing: int = 0      # records a seed should have and lacks (most lie on damaged pages)
    keys: list[str] = field(default_factory=list)  # the first keys known lost
    whole: bool = False   # the database itself could not be opened: how many is unknown

    @property
    def count(self) -> int:
        return self.undecodable + max(self.unread, self.missing)

    def add(self, key: bytes | str, missing: bool = False) -> None:
        if missing:
            self.missing += 1
        else:
            self.undecodable += 1
        if len(self.keys) < FIRST_KEYS:
            self.keys.append(key if isinstance(key, str) else key_text(key))


@dataclass
class SalvageReport:
    copied: dict[str, int] = field(default_factory=dict)  # records written, per database
    lost: dict[str, Loss] = field(default_factory=dict)   # records not read or not decodable
    notes: list[str] = field(default_factory=list)        # meta pages used, scans cut short

    def loss(self, db: str) -> Loss:
        return self.lost.setdefault(db, Loss())


# ----------------------------------------------------------------------------- the padded copy


def _padded_copy(data_path: str, tmp: str, report: SalvageReport) -> int:
    """Copy `data_path` into `tmp/data.mdb`, both meta pages valid, padded with zeros to the
    size its current meta page names; returns that size (the map size to open it with)."""
    try:
        fd = open_data_file(data_path)
    except OSError as exc:
        raise CorpusError(f"{one_line(data_path)}: cannot be read ({exc.strerror})") from None
    try:
        size = os.fstat(fd).st_size
        metas = read_metas(fd)
        meta = current(metas)
        if meta is None:
            raise CorpusError(f"{one_line(data_path)}: both LMDB meta pages are damaged "
                              f"({metas[0]}; {metas[1]}): nothing can be salvaged")
        page = os.pread(fd, meta.page_size, meta.index * meta.page_size)
        need = max(meta.needed_bytes, -(-size // meta.page_size) * meta.page_size)
        out = os.open(os.path.join(tmp, "data.mdb"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            offset = 0
            while offset < min(size, need):
                chunk = os.pread(fd, min(COPY_CHUNK, need - offset), offset)
                if not chunk:
                    break
                os.pwrite(out, chunk, offset)
                offset += len(chunk)
            for index, other in enumerate(metas):
                if not isinstance(other, MetaPage) or other.page_size != meta.page_size:
                    report.notes.append(f"meta page {index} is damaged ({other}); "
                                        f"used meta page {meta.index}")
                    os.pwrite(out, struct.pack("<Q", index) + page[8:], index * meta.page_size)
            os.ftruncate(out, need)
        finally:
            os.close(out)
    finally:
        os.close(fd)
    if size < meta.needed_bytes:
        report.notes.append(f"data.mdb is truncated: {size} of {meta.needed_bytes} bytes; "
                            "the missing pages read as unreadable")
    return need


# ----------------------------------------------------------------------------- scanning


def _ladder(base: bytes, with_next: bool) -> list[bytes]:
    """Keys above `base` in increasing order: the next key up (`with_next`), then `base`'s
    prefixes with their last byte incremented, ever larger jumps."""
    out = [base + b"\x00"] if with_next else []
    return out + [base[:i] + bytes([base[i] + 1])
                  for i in range(len(base) - 1, -1, -1) if base[i] < 255]


def _next_starts(after: bytes | None, tried: bytes | None) -> list[bytes]:
    """Start keys to try past a damaged page, all above `tried` (the start that failed): the
    ladder above `after` (the last key read; every single byte when none was), then, when it is
    used up, the ladder above `tried` itself."""
    ladder = _ladder(after, True) if after is not None else [bytes([b]) for b in range(1, 256)]
    out = [k for k in ladder if tried is None or k > tried]
    return out if out or not tried else _ladder(tried, False)


def _frame(fd: int, kind: bytes, key: bytes = b"", value: bytes = b"") -> None:
    data = _FRAME.pack(kind, len(key), len(value)) + key + value
    while data:
        data = data[os.write(fd, data):]


def _child_scan(env_dir: str, map_size: int, db: str, starts: list[bytes],
                after: bytes | None, fd: int) -> None:
    """In the child: scan `db` from each start key in turn, writing frames to `fd`."""
    env = lmdb.open(env_dir, readonly=True, lock=False, max_dbs=MAX_DBS, map_size=map_size,
                    subdir=True)
    try:
        handle = env.open_db(db.encode(), create=False)
        with env.begin() as txn:
            _frame(fd, b"N", str(txn.stat(handle)["entries"]).encode())
    except lmdb.Error as exc:
        _frame(fd, b"E", f"{type(exc).__name__}: {exc}".encode())
        return
    pending = list(starts)
    for _ in range(MAX_STARTS):
        if not pending:
            break
        start = pending.pop(0)
        _frame(fd, b"T", start)
        try:
            with env.begin() as txn:
                cur = txn.cursor(db=handle)
                ok = cur.set_range(start)
                while ok:
                    key = cur.key()
                    if after is None or key > after:
                        _frame(fd, b"R", key, cur.value())
                        after = key
                    ok = cur.next()
            _frame(fd, b"D")
            return
        except lmdb.Error as exc:
            _frame(fd, b"E", f"{type(exc).__name__}: {exc}".encode())
            pending = _next_starts(after, start)
    _frame(fd, b"X")


def _run_child(env_dir: str, map_size: int, db: str, starts: list[bytes],
               after: bytes | None, tmp: str) -> tuple[list[tuple[bytes, bytes, bytes]], str]:
    """Frames written by one child scan, and how it ended ('' normally, else why not)."""
    path = os.path.join(tmp, f"frames-{db}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's code
            code = 0
            try:
                faulthandler.disable()  # a crash here is expected: the parent reports it
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)  # LMDB's assertion messages, likewise
                _child_scan(env_dir, map_size, db, starts, after, fd)
            except BaseException:
                code = 1
            os._exit(code)
        ended = _wait(pid)
        data = os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)
        os.unlink(path)
    frames, pos = [], 0
    while pos + _FRAME.size <= len(data):
        kind, klen, vlen = _FRAME.unpack_from(data, pos)
        end = pos + _FRAME.size + klen + vlen
        if end > len(data):
            break  # a frame cut short by the child's death
        key = data[pos + _FRAME.size:pos + _FRAME.size + klen]
        frames.append((kind, key, data[pos + _FRAME.size + klen:end]))
        pos = end
    return frames, ended


def _wait(pid: int) -> str:
    deadline = time.monotonic() + CHILD_SECONDS
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFSIGNALED(status):
                return f"the reader died of signal {os.WTERMSIG(status)}"
            return "" if os.WEXITSTATUS(status) == 0 else "the reader failed"
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return f"the reader took over {CHILD_SECONDS:.0f} s"
        time.sleep(0.005)


def scan_database(env_dir: str, map_size: int, db: str, tmp: str,
                  report: SalvageReport) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of `db` that LMDB can still read, in key order."""
    records: list[tuple[bytes, bytes]] = []
    claimed = None
    starts, after = [b""], None
    problems: list[str] = []
    for _ in range(MAX_CHILDREN):
        frames, ended = _run_child(env_dir, map_size, db, starts, after, tmp)
        tried, finished = None, False
        for kind, key, value in frames:
            if kind == b"R":
                records.append((key, value))
                after = key
            elif kind == b"T":
                tried = key
            elif kind == b"N":
                claimed = int(key)
            elif kind == b"E":
                problems.append(one_line(key.decode("utf-8", "replace"))
                                + (f" after key {key_text(after)!r}" if after else ""))
            elif kind in (b"D", b"X"):
                finished = True
        if finished or tried is None:
            break
        problems.append(ended or "the reader stopped")
        starts = _next_starts(after, tried)  # past the start that crashed it
        if not starts:
            break
    if problems:
        report.notes.append(f"database {db!r}: {problems[0]}"
                            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    if claimed is None:
        report.loss(db).whole = True
    elif claimed > len(records):
        report.loss(db).unread = claimed - len(records)  # their keys are unknown
    return records


# ----------------------------------------------------------------------------- writing


def _guarded(report: SalvageReport, db: str, key: bytes, decode):
    """decode() or None, counting the record as lost when it does not decode."""
    try:
        return decode()
    except (CorpusError, ValueError, TypeError, OverflowError, RecursionError,
            UnicodeDecodeError):
        report.loss(db).add(key)
        return None


def _copy_seeds(raw: dict[str, list], out: CorpusStore, report: SalvageReport) -> None:
    metas, feats = dict(raw["meta"]), dict(raw["features"])
    batch: list[SeedRecord] = []
    copied = 0
    for key, data in raw["testcases"]:
        sid = _guarded(report, "testcases", key, lambda: key.decode("ascii"))
        data = _guarded(report, "testcases", key, lambda: check_case_bytes(data)) if sid else None
        if data is None:
            continue
        meta = None
        if key in metas:
            meta = _guarded(report, "meta", key, lambda: decode_meta(key, metas[key]))
        else:
            report.loss("meta").add(key, missing=True)
        if meta is None:
            meta = seed_meta(salvaged="meta record unreadable")
        fs = None
        if key in feats:
            fs = _guarded(report, "features", key, lambda: decode_features(feats[key], key))
        else:
            report.loss("features").add(key, missing=True)
        if fs is None:
            fs = np.zeros(0, dtype=np.uint64)
        batch.append(SeedRecord(sid, data, meta, fs))
        if len(batch) >= BATCH:
            copied += _put_seeds(out, batch, report)
            batch = []
    copied += _put_seeds(out, batch, report)
    report.copied["testcases"] = copied
    seeds = {key for key, _ in raw["testcases"]}
    orphans: set[bytes] = set()
    for db in ("meta", "features"):
        for key, _ in raw[db]:
            if key not in seeds and key not in orphans:
                orphans.add(key)
                report.loss("testcases").add(key, missing=True)  # nothing left to keep


def _put_seeds(out: CorpusStore, batch: list[SeedRecord], report: SalvageReport) -> int:
    try:
        out.put_seed_records(batch)
        return len(batch)
    except (ValueError, CorpusError):  # one bad record: write them one by one
        n = 0
        for rec in batch:
            try:
                out.put_seed_records([rec])
                n += 1
            except (ValueError, CorpusError):
                report.loss("testcases").add(rec.id)
        return n


def _copy_hits(raw: list, out: CorpusStore, report: SalvageReport) -> None:
    feats, counts = [], []
    for key, value in raw:
        hit = _guarded(report, "hits", key, lambda: decode_hit(key, value))
        if hit is not None:
            feats.append(hit[0])
            counts.append(hit[1])
    for i in range(0, len(feats), 4096):
        out.add_hits(feats[i:i + 4096], counts[i:i + 4096])
    report.copied["hits"] = len(feats)


def _copy_failures(raw: dict[str, list], out: CorpusStore, report: SalvageReport) -> None:
    examples = {}
    for key, value in raw["examples"]:
        ex = _guarded(report, "examples", key, lambda: decode_example(key, value))
        eid = _guarded(report, "examples", key, lambda: key.decode("ascii")) if ex else None
        if eid is not None:
            examples[eid] = ex
    named: set[str] = set()
    buckets = 0
    for key, value in raw["failures"]:
        bucket = _guarded(report, "failures", key, lambda: decode_failure(key, value))
        if bucket is None:
            continue
        ids = [e for e in bucket["example_ids"] if e in examples]
        bucket = dict(bucket, example_ids=ids)
        if _guarded(report, "failures", key, lambda: out.merge_failure_bucket(
                bucket, {e: examples[e] for e in ids})) is not None:
            buckets += 1
            named.update(ids)
    for eid in sorted(set(examples) - named):
        report.loss("examples").add(eid)  # its bucket is unreadable
    report.copied["failures"] = buckets
    report.copied["examples"] = len(named)


def _copy_stats(raw: list, out: CorpusStore, report: SalvageReport) -> None:
    n = 0
    for key, value in raw:
        rec = _guarded(report, "stats", key, lambda: decode_stats(key, value))
        if rec is not None and _guarded(report, "stats", key,
                                        lambda: out.append_stats(rec[1], t=rec[0])) is not None:
            n += 1
    report.copied["stats"] = n


def _copy_info(raw: list, out: CorpusStore, source: str, report: SalvageReport) -> None:
    info = dict(raw)
    if b"schema" in info:
        version = _guarded(report, "info", b"schema", lambda: decode_schema(info[b"schema"]))
        if version is not None and version != STORE_SCHEMA:
            raise CorpusError(f"{one_line(source)} has store schema version {version}; this "
                              f"covfuzz salvages store schema version {STORE_SCHEMA}")
    campaign = {}
    if b"campaign" in info:
        campaign = _guarded(report, "info", b"campaign",
                            lambda: decode_info(b"campaign", info[b"campaign"])) or {}
    campaign["salvaged_from"] = source
    if _guarded(report, "info", b"campaign", lambda: out.set_info(campaign)) is None:
        out.set_info({"salvaged_from": source})
    report.copied["info"] = int(len(campaign) > 1)


# ----------------------------------------------------------------------------- salvage


def salvage(source: str, out_path: str) -> SalvageReport:
    """Copy every readable record of the store at `source` (a campaign directory or its
    `corpus.lmdb`) into a new store at `out_path` (which must not hold one). Returns what was
    copied and what was lost; CorpusError when nothing can be read."""
    env = env_path(source)
    if not os.path.isdir(env) and os.path.isdir(env + ".bak"):
        env += ".bak"  # an interrupted cmin swap: the backup is the store
    data = os.path.join(env, "data.mdb")
    if not os.path.lexists(data):
        raise CorpusError(f"{one_line(source)}: no corpus to salvage (no {one_line(data)})")
    if os.path.lexists(os.path.join(env_path(out_path), "data.mdb")):
        raise CorpusError(f"refusing to write into an existing corpus at {env_path(out_path)}")
    report = SalvageReport()
    tmp = tempfile.mkdtemp(prefix="covfuzz-salvage-")
    try:
        map_size = _padded_copy(data, tmp, report)
        raw = {db: scan_database(tmp, map_size, db, tmp, report) for db in DB_NAMES}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with CorpusStore(out_path, sync=False, max_examples=MAX_EXAMPLES) as out:
        _copy_info(raw["info"], out, os.path.abspath(source), report)
        _copy_seeds(raw, out, report)
        _copy_hits(raw["hits"], out, report)
        _copy_failures(raw, out, report)
        _copy_stats(raw["stats"], out, report)
        out.sync()
    return report
