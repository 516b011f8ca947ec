"""LMDB plumbing of the corpus store: one environment directory, its transactions and scans.

`LmdbEnv` knows nothing of record kinds: it opens an environment (subdir layout: `data.mdb` +
`lock.mdb` in a directory named `corpus.lmdb`), hands out named-database handles, runs read and
write transactions (growing the map when a write finds it full), scans a database in chunks of
short read transactions, and counts entries. The record stores (`corpus/seeds.py`, ...) run
their encoders and decoders inside these transactions.

Rules it enforces:
- one open per environment per process (LMDB's POSIX locks would be released by a second
  close), and no use across fork (open it in the child);
- stale reader slots of killed processes are cleared at open (`reader_check`);
- an interrupted directory swap (see `corpus.cmin.minimize_in_place`) is finished or undone by
  the next read-write open (`recover_swap`); a read-only open reads the backup meanwhile;
- a damaged data file is refused before LMDB reads a page of it (`corpus.lmdb_check`: a
  truncated file would kill the process with SIGBUS, a zeroed page reached by a cursor with
  SIGABRT): its meta pages and file size are checked before LMDB maps it, the page headers of
  every tree once a read transaction pins the snapshot; every `lmdb.Error` met later (damage
  the header walk cannot see gives `lmdb.CorruptedError` deep inside a read) becomes
  `DamagedStore`, naming the file, the database and `covfuzz salvage`.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from typing import Any, Callable, Iterable, Iterator

import lmdb

from corpus.errors import CorpusError
from corpus.lmdb_check import data_file_problem, open_data_file, read_metas, tree_problem
from covfuzz.errors import one_line
from covfuzz.workdir import CORPUS

log = logging.getLogger(__name__)

ENV_NAME = CORPUS  # the environment directory inside a campaign directory
DEFAULT_MAP_SIZE = 64 << 20
MAX_MAP_SIZE = 1 << 40
MAX_DBS = 16
MAX_READERS = 254
SCAN_CHUNK = 1024

# Environments open in this process, by real path (LMDB forbids opening one twice).
_OPEN: set[str] = set()
_OPEN_LOCK = threading.Lock()


class DamagedStore(CorpusError):
    """The LMDB file itself is damaged (truncated, a bad header, an unreadable page): no record
    of the affected database can be trusted; `covfuzz salvage` copies what is still readable.
    Scans that skip a damaged *record* let this one through."""


def salvage_hint(env: str) -> str:
    """What to do about a damaged environment `env` (a `.../corpus.lmdb` path)."""
    campaign = os.path.dirname(env) if os.path.basename(env) == ENV_NAME else env
    return (f"run `covfuzz salvage {one_line(campaign or '.')} -o NEW` to copy what is still "
            "readable into a new campaign directory")


def _damaged_file(env_dir: str, problem: str) -> DamagedStore:
    data = os.path.join(env_dir, "data.mdb")
    return DamagedStore(f"corpus file {one_line(data)} {problem}; {salvage_hint(env_dir)}")


def check_data_file(env_dir: str) -> None:
    """DamagedStore unless `env_dir/data.mdb` holds both meta pages and every page they name."""
    data = os.path.join(env_dir, "data.mdb")
    problem = data_file_problem(data)
    if problem is not None:
        time.sleep(0.05)  # a meta page being rewritten by a live writer: look once more
        problem = data_file_problem(data)
    if problem is not None:
        raise _damaged_file(env_dir, problem)


def check_pages(lmdb_env, env_dir: str) -> None:
    """DamagedStore unless every branch and leaf page of the snapshot a read transaction of
    `lmdb_env` sees has a sound header (`corpus.lmdb_check.tree_problem`). The transaction
    keeps a live writer from reusing those pages during the walk."""
    fd = open_data_file(os.path.join(env_dir, "data.mdb"))
    try:
        seen = None  # (snapshot id, problem) of the last walk that found one
        for _ in range(5):
            with lmdb_env.begin(write=False) as txn:
                metas = [m for m in read_metas(fd) if not isinstance(m, str)
                         and m.txn_id == txn.id()]
                if metas:  # else a writer committed twice since: its meta page is gone
                    problem = tree_problem(fd, metas[0])
                    if problem is None:
                        return
                    # A live writer may recycle pages the snapshot's free list names while
                    # they are read: damage is believed when a second walk of the same
                    # snapshot (no commit in between) finds it again.
                    if seen == (txn.id(), problem):
                        raise _damaged_file(env_dir, f"is damaged: {problem}")
                    seen = (txn.id(), problem)
            time.sleep(0.05)
        log.warning("corpus %s: pages not checked (a writer keeps committing)", env_dir)
    finally:
        os.close(fd)


def env_path(path: str) -> str:
    """`<dir>/corpus.lmdb` for a campaign directory; a `.../corpus.lmdb` path unchanged."""
    path = os.fspath(path)
    if os.path.basename(os.path.normpath(path)) == ENV_NAME:
        return os.path.normpath(path)
    return os.path.join(path, ENV_NAME)


def recover_swap(path: str) -> str | None:
    """Finish or undo an interrupted in-place rewrite (see corpus.cmin.minimize_in_place).

    `<env>.bak` alone -> the swap stopped between its two renames: restore it.
    `<env>` and `<env>.bak` -> the swap completed: remove the backup.
    Returns what was done, or None.
    """
    env = env_path(path)
    bak = env + ".bak"
    if not os.path.isdir(bak):
        return None
    if not os.path.exists(env):
        os.rename(bak, env)
        return "restored"
    shutil.rmtree(bak)
    return "removed-backup"


class LmdbEnv:
    """One LMDB environment opened by this process (see the module docstring).

    path:      campaign directory or the environment directory itself (`env_path`).
    readonly:  lock=True readonly=True: safe next to a live writer in another process.
    create:    create the directory when missing (ignored with readonly).
    map_size:  initial map size; a full map is doubled, up to `max_map_size`.
    sync:      fsync every commit (sync and metasync).
    """

    def __init__(self, path: str, *, readonly: bool = False, create: bool = True,
                 map_size: int = DEFAULT_MAP_SIZE, sync: bool = True,
                 max_map_size: int = MAX_MAP_SIZE):
        self.path = env_path(path)
        self.readonly = bool(readonly)
        self.max_map_size = int(max_map_size)
        self._pid = os.getpid()
        self._env = None
        self._dbs: dict[str, Any] = {}
        self._real: str | None = None
        env_dir = self.path
        if not readonly:
            recover_swap(self.path)
        elif not os.path.isdir(env_dir) and os.path.isdir(env_dir + ".bak"):
            env_dir = env_dir + ".bak"  # an interrupted swap; read the backup, change nothing
        if not os.path.isdir(env_dir):
            if readonly or not create:
                raise CorpusError(f"no corpus at {self.path}")
            os.makedirs(env_dir, exist_ok=True)
        if os.path.lexists(os.path.join(env_dir, "data.mdb")):
            check_data_file(env_dir)
        elif readonly or not create:
            raise CorpusError(f"no corpus at {self.path} (no data.mdb)")
        real = os.path.realpath(env_dir)
        with _OPEN_LOCK:
            if real in _OPEN:
                raise CorpusError(f"corpus {self.path} is already open in this process "
                                  "(LMDB forbids opening one environment twice; share the store)")
            _OPEN.add(real)
        self._real = real
        try:
            self._env = lmdb.open(env_dir, subdir=True, map_size=int(map_size), max_dbs=MAX_DBS,
                                  readonly=self.readonly, lock=True, sync=sync, metasync=sync,
                                  create=not self.readonly, max_readers=MAX_READERS)
            check_pages(self._env, env_dir)
        except lmdb.Error as exc:
            self.close()
            raise self.damaged(exc, None) from None
        except BaseException:
            self.close()
            raise
        try:
            self._env.reader_check()
        except lmdb.Error as exc:  # pragma: no cover - e.g. a lock file we cannot write
            log.warning("reader_check on %s failed: %s", self.path, exc)

    # ------------------------------------------------------------------ named databases

    def probe(self, db: str, key: bytes) -> tuple[int, bytes | None]:
        """(entries of the main database, value of `key` in the named database `db`, None when
        the database or the key is missing), without creating anything."""
        lmdb_env = self._env

        def read(txn):
            entries = txn.stat()["entries"]
            try:
                handle = lmdb_env.open_db(db.encode(), txn=txn, create=False)
            except lmdb.NotFoundError:
                return entries, None
            return entries, txn.get(key, db=handle)
        return self.read(read, db)

    def create_dbs(self, names: Iterable[str], init: Callable[[Any, dict], None]) -> None:
        """Create the named databases and call `init(txn, handles)` in the same write
        transaction (a kill leaves either nothing or all of it)."""
        lmdb_env = self._env

        def write(txn):
            handles = {name: lmdb_env.open_db(name.encode(), txn=txn, create=True)
                       for name in names}
            init(txn, handles)
        self.write(write, "main")

    def open_dbs(self, names: Iterable[str]) -> None:
        """Open handles of existing named databases (CorpusError if one is missing)."""
        self.check()
        # Without an explicit transaction: py-lmdb then keeps the handles valid (a handle opened
        # inside a user read transaction dies with it).
        try:
            for _ in range(8):
                try:
                    self._dbs = {name: self._env.open_db(name.encode(), create=False)
                                 for name in names}
                    return
                except lmdb.MapResizedError:
                    self._env.set_mapsize(0)
        except lmdb.NotFoundError as exc:
            raise CorpusError(f"corpus {self.path} lacks a database: {exc}") from None
        except lmdb.Error as exc:
            raise self.damaged(exc, "main") from None
        raise CorpusError(f"corpus {self.path}: map keeps being resized while opening")

    def db(self, name: str):
        """The handle of an opened named database (for `txn.get(key, db=...)`)."""
        return self._dbs[name]

    # ------------------------------------------------------------------ transactions

    def damaged(self, exc: lmdb.Error, db: str | None) -> DamagedStore:
        """The DamagedStore of an lmdb error met in database `db` (None: opening)."""
        where = f"database {db!r}" if db else "the environment"
        data = os.path.join(self.path, "data.mdb")
        return DamagedStore(f"corpus file {one_line(data)}: LMDB error in {where} "
                            f"({type(exc).__name__}: {one_line(exc)}); {salvage_hint(self.path)}",
                            db=db)

    def check(self):
        """The lmdb environment, or CorpusError when closed or used across fork."""
        if self._env is None:
            raise CorpusError(f"corpus {self.path} is closed")
        if os.getpid() != self._pid:
            raise CorpusError("a CorpusStore cannot be used across fork; open it in the child")
        return self._env

    def read(self, fn: Callable, db: str | None = None):
        """`fn(txn)` in a short read transaction; adopts a map grown by another process.
        `db`: the database `fn` reads, named when LMDB fails (DamagedStore)."""
        env = self.check()
        for _ in range(8):
            try:
                with env.begin(write=False) as txn:
                    return fn(txn)
            except lmdb.MapResizedError:
                env.set_mapsize(0)  # adopt the size the writer grew the map to
            except lmdb.Error as exc:
                raise self.damaged(exc, db) from None
        raise CorpusError(f"corpus {self.path}: map keeps being resized under this reader")

    def write(self, fn: Callable, db: str | None = None):
        """`fn(txn)` in one write transaction; a full map is doubled and `fn` run again.
        `db`: the database `fn` writes, named when LMDB fails (DamagedStore)."""
        env = self.check()
        if self.readonly:
            raise CorpusError(f"corpus {self.path} is open read-only")
        while True:
            try:
                with env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapResizedError:
                env.set_mapsize(0)
            except lmdb.MapFullError:
                size = env.info()["map_size"]
                if size * 2 > self.max_map_size:
                    raise CorpusError(f"corpus {self.path} is full: map size {size} bytes "
                                      f"cannot double within {self.max_map_size}") from None
                env.set_mapsize(size * 2)
                log.info("corpus %s: map grown to %d bytes", self.path, size * 2)
            except lmdb.Error as exc:
                raise self.damaged(exc, db) from None

    def scan(self, db: str, start: bytes = b"", chunk: int = SCAN_CHUNK,
             values: bool = True) -> Iterator[tuple[bytes, bytes | None]]:
        """(key, value) pairs of `db` in key order from `start`, read in chunks, each chunk in
        its own short read transaction (a long scan neither blocks page reuse nor grows the
        file). values=False yields (key, None)."""
        handle = self._dbs[db]
        last: bytes | None = None
        while True:
            def read(txn):
                cur = txn.cursor(db=handle)
                if last is None:
                    ok = cur.set_range(start) if start else cur.first()
                else:
                    ok = cur.set_range(last)
                    if ok and cur.key() == last:
                        ok = cur.next()
                items = []
                while ok and len(items) < chunk:
                    items.append((cur.key(), cur.value() if values else None))
                    ok = cur.next()
                return items, ok
            items, more = self.read(read, db)
            yield from items
            if not more or not items:
                return
            last = items[-1][0]

    def entries(self, db: str) -> int:
        """O(1): the entry count of one database."""
        handle = self._dbs[db]
        return self.read(lambda txn: txn.stat(handle)["entries"], db)

    def entry_counts(self, names: Iterable[str]) -> dict[str, int]:
        """Entry counts of several databases, read in one transaction."""
        handles = {name: self._dbs[name] for name in names}
        return self.read(lambda txn: {name: txn.stat(h)["entries"] for name, h in handles.items()},
                         "main")

    # ------------------------------------------------------------------ environment

    def sync(self) -> None:
        """Flush to disk (only needed when opened with sync=False)."""
        try:
            self.check().sync(True)
        except lmdb.Error as exc:
            raise self.damaged(exc, None) from None

    def reader_check(self) -> int:
        """Clear reader slots of dead processes; returns how many were cleared."""
        return self.check().reader_check()

    def map_size(self) -> int:
        return self.check().info()["map_size"]

    def _release(self) -> None:
        with _OPEN_LOCK:
            _OPEN.discard(self._real)

    def close(self) -> None:
        """Close the environment (idempotent). In a forked child it only drops the handle."""
        env, self._env = self._env, None
        if env is not None and os.getpid() == self._pid:
            env.close()
        self._release()

    def __del__(self):  # pragma: no cover - best effort
        try:
            if self._env is not None and os.getpid() == self._pid:
                self.close()
        except Exception:
            pass
