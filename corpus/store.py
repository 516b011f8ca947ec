"""The on-disk corpus of one campaign: seeds, their metadata and features, global feature hit
counts, failure buckets with replayable examples, and a stats time series, in one LMDB
environment.

Layout
------
`CorpusStore(dir)` keeps its LMDB environment in the *directory* `<dir>/corpus.lmdb/`
(subdir=True: `data.mdb` + `lock.mdb`). Passing a path whose last component is `corpus.lmdb`
opens that environment directly. Named sub-databases:

=============  ==========================================================================
`info`         `schema` -> ascii int (`STORE_SCHEMA`); `created` -> JSON {created_at,
               covfuzz_version, torch_version} written at creation (`store_info()`);
               `campaign` -> JSON object merged by `set_info` (`get_info()`, {} when new)
`testcases`    id (ascii) -> test-case stored form (`covfuzz.serialize.encode`)
`meta`         id -> canonical JSON object (see `META_FIELDS`, plus any extra keys)
`features`     id -> sorted unique uint64 array, little-endian `.tobytes()` (8 bytes a feature)
`hits`         feature (8-byte big-endian) -> executions that hit it (8-byte big-endian)
`failures`     signature (utf-8; `sha256:<hex>` when longer than 400 bytes) -> JSON
               {signature, kind, message, exc_type, count, first_seen, last_seen,
               example_ids (at most `max_examples`), extra}
`examples`     example id -> JSON {signature, case (base64 of the stored form), result,
               recorded_at}
`stats`        8-byte big-endian unix time in ms + 4-byte big-endian counter -> JSON object
=============  ==========================================================================

Guarantees and rules
--------------------
- Every write is one LMDB write transaction (sync=True, metasync=True): a kill at any instant
  loses at most the record in flight. A full map is grown (doubled) and the transaction retried.
- Readers use short read transactions (iteration reads chunks, each in its own transaction) so
  a long scan neither blocks the writer from reusing pages nor grows the file.
- `readonly=True` opens with lock=True, so `covfuzz status` can read while a campaign writes.
  When the writer grows the map, readers adopt the new size transparently.
- Stale reader slots left by killed processes are cleared at open (`reader_check`).
- One writer at a time (LMDB serializes writers across processes). Open a store *after* fork,
  never use one across fork (checked), never open the same store twice in one process (checked:
  LMDB's POSIX locks would be released by the second close). A `CorpusStore` is meant for one
  thread.
- Decoding never executes code (JSON, raw integers, numpy.frombuffer; no pickle). Every decoder
  validates and raises `CorpusError` naming the database and key; iteration skips corrupt
  records and reports them into an `errors` list (or logs them) so the others stay readable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import os
import struct
import threading
import time
from typing import Any, Callable, Iterable, Iterator

import lmdb
import numpy as np

from corpus.errors import CorpusError, InvalidId

log = logging.getLogger(__name__)

STORE_SCHEMA = 1
ENV_NAME = "corpus.lmdb"
DB_NAMES = ("info", "testcases", "meta", "features", "hits", "failures", "examples", "stats")
DEFAULT_MAP_SIZE = 64 << 20
MAX_MAP_SIZE = 1 << 40
MAX_DBS = 16
MAX_EXAMPLES = 8
MAX_CASE_BYTES = 1 << 20  # the limit covfuzz.serialize.decode enforces
MAX_ID_LEN = 128
MAX_SIG_KEY = 400  # LMDB keys are at most 511 bytes
SCAN_CHUNK = 1024
_U64 = struct.Struct(">Q")
_STATS_KEY = struct.Struct(">QI")
_MAX_COUNT = (1 << 64) - 1
_FEATURE_DTYPE = np.dtype("<u8")

# meta field -> (validator, default). `None` default factories are evaluated at add time.
META_FIELDS = ("parent", "mutators", "depth", "nodes", "exec_time", "features_found", "times_chosen",
               "found_at", "outcome")

# Environments open in this process, by real path (LMDB forbids opening one twice).
_OPEN: set[str] = set()
_OPEN_LOCK = threading.Lock()


# ----------------------------------------------------------------------------- helpers


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII only, no NaN/Inf."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"value is not JSON-serializable: {exc}") from None


def _reject_constant(name):
    raise ValueError(f"invalid JSON constant {name}")


def _key_text(key: bytes) -> str:
    try:
        text = key.decode("ascii")
        if text.isprintable():
            return text
    except UnicodeDecodeError:
        pass
    return "0x" + key.hex()


def _corrupt(db: str, key: bytes, why: str) -> CorpusError:
    kt = _key_text(key)
    return CorpusError(f"corrupt record in database {db!r}, key {kt!r}: {why}", db=db, key=kt)


def _load_object(db: str, key: bytes, raw: bytes | None) -> dict:
    if raw is None:
        raise _corrupt(db, key, "missing")
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _corrupt(db, key, f"not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(obj, dict):
        raise _corrupt(db, key, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v))


def _check_fields(obj: dict, checks: dict) -> str | None:
    """None when every field in `checks` is present and passes its check, else why not."""
    for name, ok in checks.items():
        if name not in obj:
            return f"field {name!r} missing"
        if not ok(obj[name]):
            return f"field {name!r} has a bad value {obj[name]!r:.60}"
    return None


def _check_meta(meta: dict) -> str | None:
    """None if the known meta fields have their types, else what is wrong."""
    checks = {
        "parent": lambda v: v is None or isinstance(v, str),
        "mutators": lambda v: isinstance(v, list) and all(isinstance(m, str) for m in v),
        "depth": lambda v: _is_int(v) and v >= 0,
        "nodes": lambda v: v is None or (_is_int(v) and v >= 0),
        "exec_time": lambda v: v is None or (_is_num(v) and v >= 0),
        "features_found": lambda v: _is_int(v) and v >= 0,
        "times_chosen": lambda v: _is_int(v) and v >= 0,
        "found_at": lambda v: _is_num(v),
        "outcome": lambda v: v is None or isinstance(v, str),
    }
    return _check_fields(meta, checks)


def _check_failure(rec: dict) -> str | None:
    checks = {
        "signature": lambda v: isinstance(v, str),
        "kind": lambda v: isinstance(v, str),
        "message": lambda v: isinstance(v, str),
        "exc_type": lambda v: v is None or isinstance(v, str),
        "count": lambda v: _is_int(v) and v >= 1,
        "first_seen": _is_num,
        "last_seen": _is_num,
        "example_ids": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "extra": lambda v: v is None or isinstance(v, dict),
    }
    return _check_fields(rec, checks)


def _id_key(case_id: str) -> bytes:
    if not isinstance(case_id, str) or not 0 < len(case_id) <= MAX_ID_LEN:
        raise InvalidId(f"id must be a non-empty str of at most {MAX_ID_LEN} characters, "
                         f"got {case_id!r:.80}")
    try:
        key = case_id.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidId(f"id must be ASCII, got {case_id!r:.80}") from None
    if not case_id.isprintable() or any(c.isspace() for c in case_id):
        raise InvalidId(f"id must be printable without whitespace, got {case_id!r:.80}")
    return key


def signature_key(signature: str) -> bytes:
    """The `failures` key of a signature (long signatures are hashed to fit an LMDB key)."""
    if not isinstance(signature, str) or not signature:
        raise InvalidId("signature must be a non-empty str")
    raw = signature.encode("utf-8", "surrogatepass")
    if len(raw) <= MAX_SIG_KEY and not raw.startswith(b"sha256:"):
        return raw
    return b"sha256:" + hashlib.sha256(raw).hexdigest().encode("ascii")


def sorted_unique(values) -> np.ndarray:
    """Sorted distinct uint64 values (sort-based: np.unique's hash path is slow on big uint64)."""
    arr = np.sort(np.asarray(values, dtype=np.uint64), kind="stable")
    if len(arr) < 2:
        return arr
    keep = np.empty(len(arr), dtype=bool)
    keep[0] = True
    np.not_equal(arr[1:], arr[:-1], out=keep[1:])
    return arr[keep]


def as_features(features: Iterable[int] | np.ndarray) -> np.ndarray:
    """Sorted unique uint64 array from ints in [0, 2**64) (ValueError otherwise)."""
    if isinstance(features, np.ndarray):
        if features.dtype.kind == "u":
            arr = features.astype(np.uint64, copy=False).ravel()
        elif features.dtype.kind == "i":
            if features.size and features.min() < 0:
                raise ValueError("feature ids must be in [0, 2**64)")
            arr = features.astype(np.uint64).ravel()
        else:
            raise ValueError(f"feature array must have an integer dtype, got {features.dtype}")
    else:
        items = list(features)
        for f in items:
            if not (_is_int(f) or isinstance(f, np.integer)) or not 0 <= int(f) <= _MAX_COUNT:
                raise ValueError(f"feature ids must be ints in [0, 2**64), got {f!r:.40}")
        arr = np.array([int(f) for f in items], dtype=np.uint64)
    return sorted_unique(arr)


def encode_features(arr: np.ndarray) -> bytes:
    return np.ascontiguousarray(arr, dtype=_FEATURE_DTYPE).tobytes()


def decode_features(raw: bytes, key: bytes = b"?", db: str = "features") -> np.ndarray:
    """Validated sorted unique uint64 array from a stored blob (CorpusError otherwise)."""
    if raw is None:
        raise _corrupt(db, key, "missing")
    if len(raw) % 8:
        raise _corrupt(db, key, f"length {len(raw)} is not a multiple of 8")
    arr = np.frombuffer(raw, dtype=_FEATURE_DTYPE).astype(np.uint64)
    if arr.size > 1 and not bool(np.all(arr[1:] > arr[:-1])):
        raise _corrupt(db, key, "feature ids are not sorted and unique")
    return arr


def _default_versions() -> dict:
    out = {}
    try:
        import covfuzz
        out["covfuzz_version"] = getattr(covfuzz, "__version__", None)
    except Exception:  # pragma: no cover - covfuzz is the parent package
        out["covfuzz_version"] = None
    try:
        from importlib.metadata import version, PackageNotFoundError
        try:
            out["torch_version"] = version("torch")
        except PackageNotFoundError:
            out["torch_version"] = None
    except Exception:  # pragma: no cover
        out["torch_version"] = None
    return out


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
    import shutil
    env = env_path(path)
    bak = env + ".bak"
    if not os.path.isdir(bak):
        return None
    if not os.path.exists(env):
        os.rename(bak, env)
        return "restored"
    shutil.rmtree(bak)
    return "removed-backup"


# ----------------------------------------------------------------------------- the store


class CorpusStore:
    """The corpus of one campaign; see the module docstring for layout and guarantees.

    path:      campaign directory (the environment is `<path>/corpus.lmdb/`) or the
               environment directory itself (a path ending in `corpus.lmdb`).
    readonly:  open for reading only (lock=True readonly=True: safe next to a live writer).
    create:    create the store if missing (ignored with readonly).
    map_size:  initial map size in bytes (grown by doubling as needed, up to `max_map_size`).
    sync:      fsync every commit (default True; bulk tools may pass False and call `sync()`).
    max_examples: example ids kept per failure signature.
    """

    def __init__(self, path: str, readonly: bool = False, create: bool = True,
                 map_size: int = DEFAULT_MAP_SIZE, sync: bool = True,
                 max_examples: int = MAX_EXAMPLES, max_map_size: int = MAX_MAP_SIZE):
        self.path = env_path(path)
        self.readonly = bool(readonly)
        self.max_examples = int(max_examples)
        self.max_map_size = int(max_map_size)
        self._pid = os.getpid()
        self._env = None
        self._dbs: dict[str, Any] = {}
        env_dir = self.path
        if not readonly:
            recover_swap(self.path)
        elif not os.path.isdir(env_dir) and os.path.isdir(env_dir + ".bak"):
            env_dir = env_dir + ".bak"  # an interrupted swap; read the backup, change nothing
        if not os.path.isdir(env_dir):
            if readonly or not create:
                raise CorpusError(f"no corpus at {self.path}")
            os.makedirs(env_dir, exist_ok=True)
        if not os.path.exists(os.path.join(env_dir, "data.mdb")) and (readonly or not create):
            raise CorpusError(f"no corpus at {self.path} (no data.mdb)")
        self._real = os.path.realpath(env_dir)
        with _OPEN_LOCK:
            if self._real in _OPEN:
                raise CorpusError(f"corpus {self.path} is already open in this process "
                                  "(LMDB forbids opening one environment twice; share the store)")
            _OPEN.add(self._real)
        try:
            self._open(env_dir, map_size, sync)
        except BaseException:
            self._release()
            raise

    # ------------------------------------------------------------------ open / close

    def _open(self, env_dir: str, map_size: int, sync: bool) -> None:
        try:
            self._env = lmdb.open(env_dir, subdir=True, map_size=int(map_size), max_dbs=MAX_DBS,
                                  readonly=self.readonly, lock=True, sync=sync, metasync=sync,
                                  create=not self.readonly, max_readers=254)
        except lmdb.Error as exc:
            raise CorpusError(f"cannot open corpus {self.path}: {exc}") from None
        try:
            self._env.reader_check()
        except lmdb.Error as exc:  # pragma: no cover - e.g. a lock file we cannot write
            log.warning("reader_check on %s failed: %s", self.path, exc)

        def probe(txn):
            stat = txn.stat()
            try:
                info = self._env.open_db(b"info", txn=txn, create=False)
            except lmdb.NotFoundError:
                return stat["entries"], None
            return stat["entries"], txn.get(b"schema", db=info)

        entries, schema = self._read_raw(probe)
        if schema is None:
            if entries:
                self._fail_open(f"{self.path} is not a covfuzz corpus (an LMDB environment "
                                "without covfuzz schema information)")
            if self.readonly:
                self._fail_open(f"corpus {self.path} is empty or not initialised")
            self._initialise()
        else:
            try:
                version = int(schema.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                self._fail_open(f"corpus {self.path} has an unreadable schema version "
                                f"{schema!r:.40}")
            if version != STORE_SCHEMA:
                self._fail_open(f"corpus {self.path} has store schema version {version}; "
                                f"this covfuzz reads store schema version {STORE_SCHEMA}")
        # Handles for every database (they exist: created by _initialise or a previous run).
        # Opened without an explicit transaction: py-lmdb then keeps the handles valid (a handle
        # opened inside a user read transaction dies with it).
        try:
            for _ in range(8):
                try:
                    self._dbs = {name: self._env.open_db(name.encode(), create=False)
                                 for name in DB_NAMES}
                    break
                except lmdb.MapResizedError:
                    self._env.set_mapsize(0)
        except lmdb.NotFoundError as exc:
            self._fail_open(f"corpus {self.path} lacks a database: {exc}")

    def _fail_open(self, message: str):
        if self._env is not None:
            self._env.close()
            self._env = None
        raise CorpusError(message)

    def _initialise(self) -> None:
        created = {"created_at": time.time(), **_default_versions()}

        def init(txn):
            dbs = {name: self._env.open_db(name.encode(), txn=txn, create=True)
                   for name in DB_NAMES}
            txn.put(b"schema", str(STORE_SCHEMA).encode("ascii"), db=dbs["info"])
            txn.put(b"created", canonical_json(created), db=dbs["info"], overwrite=False)
        self._write_raw(init)

    def _release(self) -> None:
        with _OPEN_LOCK:
            _OPEN.discard(getattr(self, "_real", None))

    def close(self) -> None:
        """Close the environment (idempotent). In a forked child it only drops the handle."""
        env, self._env = self._env, None
        if env is not None and os.getpid() == self._pid:
            env.close()
        self._release()

    def __enter__(self) -> "CorpusStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        try:
            if self._env is not None and os.getpid() == self._pid:
                self.close()
        except Exception:
            pass

    def sync(self) -> None:
        """Flush to disk (only needed when opened with sync=False)."""
        self._check().sync(True)

    def reader_check(self) -> int:
        """Clear reader slots of dead processes; returns how many were cleared."""
        return self._check().reader_check()

    def map_size(self) -> int:
        return self._check().info()["map_size"]

    # ------------------------------------------------------------------ transactions

    def _check(self):
        if self._env is None:
            raise CorpusError(f"corpus {self.path} is closed")
        if os.getpid() != self._pid:
            raise CorpusError("a CorpusStore cannot be used across fork; open it in the child")
        return self._env

    def _read_raw(self, fn: Callable):
        env = self._env
        for _ in range(8):
            try:
                with env.begin(write=False) as txn:
                    return fn(txn)
            except lmdb.MapResizedError:
                env.set_mapsize(0)  # adopt the size the writer grew the map to
        raise CorpusError(f"corpus {self.path}: map keeps being resized under this reader")

    def _write_raw(self, fn: Callable):
        env = self._env
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

    def _read(self, fn: Callable):
        self._check()
        return self._read_raw(fn)

    def _write(self, fn: Callable):
        self._check()
        if self.readonly:
            raise CorpusError(f"corpus {self.path} is open read-only")
        return self._write_raw(fn)

    def _scan(self, db: str, start: bytes = b"", chunk: int = SCAN_CHUNK,
              values: bool = True) -> Iterator[tuple[bytes, bytes | None]]:
        """(key, value) pairs in key order, read in chunks of short read transactions."""
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
            items, more = self._read(read)
            yield from items
            if not more or not items:
                return
            last = items[-1][0]

    def _entries(self, db: str) -> int:
        handle = self._dbs[db]
        return self._read(lambda txn: txn.stat(handle)["entries"])

    # ------------------------------------------------------------------ info

    def get_info(self) -> dict:
        """The campaign object merged by `set_info` ({} for a new store: callers use that to
        tell a new campaign from a resumed one)."""
        raw = self._read(lambda txn: txn.get(b"campaign", db=self._dbs["info"]))
        return _load_object("info", b"campaign", raw) if raw is not None else {}

    def store_info(self) -> dict:
        """What the store recorded at creation: schema_version, created_at, covfuzz_version,
        torch_version."""
        raw = self._read(lambda txn: txn.get(b"created", db=self._dbs["info"]))
        info = _load_object("info", b"created", raw) if raw is not None else {}
        info["schema_version"] = STORE_SCHEMA
        return info

    def set_info(self, info: dict) -> dict:
        """Merge `info` (JSON-serializable; e.g. settings, versions, resumable state) into the
        campaign object in one transaction; returns the result."""
        if not isinstance(info, dict):
            raise ValueError("info must be a dict")
        canonical_json(info)  # validate before the transaction

        def write(txn):
            raw = txn.get(b"campaign", db=self._dbs["info"])
            current = _load_object("info", b"campaign", raw) if raw is not None else {}
            current.update(info)
            txn.put(b"campaign", canonical_json(current), db=self._dbs["info"])
            return current
        return self._write(write)

    # ------------------------------------------------------------------ hits

    def _bump(self, txn, feats: np.ndarray, by=1) -> list[int]:
        """Add `by` (an int, or one count per feature) to the hits of `feats`."""
        db = self._dbs["hits"]
        new = []
        get, put = txn.get, txn.put
        bys = by.tolist() if isinstance(by, np.ndarray) else [by] * len(feats)
        for f, by in zip(feats.tolist(), bys):
            key = _U64.pack(f)
            raw = get(key, db=db)
            if raw is None:
                new.append(f)
                count = by
            else:
                count = min(_MAX_COUNT, (_U64.unpack(raw)[0] if len(raw) == 8 else 0) + by)
            put(key, _U64.pack(count), db=db)
        return new

    def bump_hits(self, features) -> list[int]:
        """Count one execution hitting `features` (one transaction); returns those never seen
        before, ascending."""
        feats = as_features(features)
        return self._write(lambda txn: self._bump(txn, feats))

    record_execution = bump_hits  # every execution, seed or not

    def add_hits(self, features, counts) -> list[int]:
        """Add `counts[i]` executions to `features[i]` (one transaction: a campaign flushes its
        accumulated hits this way); returns the features never seen before, ascending."""
        feats = np.asarray(features, dtype=np.uint64)
        counts = np.asarray(counts, dtype=np.uint64)
        if feats.shape != counts.shape:
            raise ValueError("features and counts differ in length")
        order = np.argsort(feats)
        return self._write(lambda txn: self._bump(txn, feats[order], counts[order]))

    def new_features(self, features) -> list[int]:
        """The features never seen before (read only, nothing counted)."""
        feats = as_features(features)
        db = self._dbs["hits"]
        return self._read(lambda txn: [f for f in feats.tolist()
                                       if txn.get(_U64.pack(f), db=db) is None])

    def hit_counts(self, features) -> np.ndarray:
        """Hit counts (uint64) of `features` in the order given (0 for unseen)."""
        items = [int(f) for f in features]
        db = self._dbs["hits"]

        def read(txn):
            out = np.zeros(len(items), dtype=np.uint64)
            for i, f in enumerate(items):
                raw = txn.get(_U64.pack(f), db=db)
                if raw is not None and len(raw) == 8:
                    out[i] = _U64.unpack(raw)[0]
            return out
        return self._read(read)

    def feature_counts(self, errors: list | None = None) -> dict[int, int]:
        """Every feature seen -> its hit count (streamed in short read transactions)."""
        out = {}
        for key, raw in self._scan("hits"):
            if len(key) != 8 or len(raw) != 8:
                self._report(errors, _corrupt("hits", key, "key and value must be 8 bytes"))
                continue
            out[_U64.unpack(key)[0]] = _U64.unpack(raw)[0]
        return out

    def num_features(self) -> int:
        """Distinct features seen (O(1): the entry count of `hits`)."""
        return self._entries("hits")

    # ------------------------------------------------------------------ seeds

    def _prepare_seed(self, case_id, data, meta, features):
        key = _id_key(case_id)
        if not isinstance(data, (bytes, bytearray, memoryview)) or not len(data):
            raise ValueError("test-case data must be non-empty bytes")
        data = bytes(data)
        if len(data) > MAX_CASE_BYTES:
            raise ValueError(f"test case too large ({len(data)} bytes > {MAX_CASE_BYTES})")
        meta = dict(meta or {})
        explicit_new = "features_found" in meta
        full = {"parent": None, "mutators": [], "depth": 0, "nodes": None, "exec_time": None,
                "features_found": 0, "times_chosen": 0, "found_at": time.time(),
                "outcome": None}
        full.update(meta)
        if isinstance(full.get("mutators"), tuple):
            full["mutators"] = list(full["mutators"])
        why = _check_meta(full)
        if why:
            raise ValueError(f"meta of {case_id}: {why}")
        canonical_json(full)
        return key, data, full, explicit_new, as_features(features)

    def _put_seed(self, txn, prepared, overwrite: bool, count_hits: bool) -> list[int]:
        key, data, meta, explicit_new, feats = prepared
        exists = txn.get(key, db=self._dbs["testcases"]) is not None
        if count_hits:
            new = self._bump(txn, feats)
        else:
            hits = self._dbs["hits"]
            new = [f for f in feats.tolist() if txn.get(_U64.pack(f), db=hits) is None]
            for f in new:
                txn.put(_U64.pack(f), _U64.pack(1), db=hits)
        if exists and not overwrite:
            return new
        if not explicit_new:
            meta = dict(meta, features_found=len(new))
        txn.put(key, data, db=self._dbs["testcases"])
        txn.put(key, canonical_json(meta), db=self._dbs["meta"])
        txn.put(key, encode_features(feats), db=self._dbs["features"])
        return new

    def add_seed(self, case_id: str, data: bytes, meta: dict | None, features,
                 overwrite: bool = False, count_hits: bool = True) -> list[int]:
        """Store a seed (test case, meta, features) and count its execution in `hits`, all in
        one transaction. Returns the features not seen before this call, ascending.

        meta: any of `META_FIELDS` (missing ones get defaults: parent None, mutators [],
        depth 0, nodes None, exec_time None, times_chosen 0, found_at now, outcome None) plus
        extra JSON-serializable keys. `features_found` is set to the number returned unless
        given.
        An id already stored is left unchanged unless `overwrite` (its hits are still counted).
        count_hits=False: the execution was already counted (e.g. by `record_execution`);
        features never seen are still registered with count 1.
        """
        prepared = self._prepare_seed(case_id, data, meta, features)
        return self._write(lambda txn: self._put_seed(txn, prepared, overwrite, count_hits))

    def add_seeds(self, seeds: Iterable[tuple], overwrite: bool = False,
                  count_hits: bool = True) -> list[list[int]]:
        """Bulk `add_seed` of (id, data, meta, features) tuples in ONE transaction (all or
        nothing); returns the new features of each."""
        prepared = [self._prepare_seed(*s) for s in seeds]
        return self._write(lambda txn: [self._put_seed(txn, p, overwrite, count_hits)
                                        for p in prepared])

    def has_seed(self, case_id: str) -> bool:
        key = _id_key(case_id)
        return self._read(lambda txn: txn.get(key, db=self._dbs["testcases"]) is not None)

    def get_case_bytes(self, case_id: str) -> bytes | None:
        """The stored form of a seed, or None if absent."""
        key = _id_key(case_id)
        return self._read(lambda txn: txn.get(key, db=self._dbs["testcases"]))

    def get_case(self, case_id: str):
        """The seed decoded as a TestCase (covfuzz.serialize.decode; imports torch), None if
        absent; CorpusError if the bytes do not decode."""
        from covfuzz.errors import TestCaseFormatError
        from covfuzz.serialize import decode
        raw = self.get_case_bytes(case_id)
        if raw is None:
            return None
        try:
            return decode(raw)
        except TestCaseFormatError as exc:
            raise _corrupt("testcases", _id_key(case_id), str(exc)) from None

    def get_meta(self, case_id: str) -> dict | None:
        """The validated meta object of a seed, None if absent."""
        key = _id_key(case_id)
        raw = self._read(lambda txn: txn.get(key, db=self._dbs["meta"]))
        return None if raw is None else self._decode_meta(key, raw)

    @staticmethod
    def _decode_meta(key: bytes, raw: bytes) -> dict:
        meta = _load_object("meta", key, raw)
        why = _check_meta(meta)
        if why:
            raise _corrupt("meta", key, why)
        return meta

    def update_meta(self, case_id: str, increment: dict | None = None, **changes) -> dict:
        """Change meta fields of a seed in one transaction; returns the new meta.
        `increment={"times_chosen": 1}` adds to integer fields atomically. KeyError if absent."""
        key = _id_key(case_id)
        increment = dict(increment or {})

        def write(txn):
            raw = txn.get(key, db=self._dbs["meta"])
            if raw is None:
                raise KeyError(case_id)
            meta = self._decode_meta(key, raw)
            meta.update(changes)
            for name, by in increment.items():
                meta[name] = meta.get(name, 0) + by
            why = _check_meta(meta)
            if why:
                raise ValueError(f"meta of {case_id}: {why}")
            txn.put(key, canonical_json(meta), db=self._dbs["meta"])
            return meta
        return self._write(write)

    def seed_ids(self) -> list[str]:
        """All seed ids, sorted."""
        return [k.decode("ascii", "replace") for k, _ in self._scan("testcases", values=False)]

    def num_seeds(self) -> int:
        """O(1): the entry count of `testcases`."""
        return self._entries("testcases")

    def get_features(self, case_id: str) -> np.ndarray | None:
        """The seed's sorted unique uint64 feature array, None if absent."""
        key = _id_key(case_id)
        raw = self._read(lambda txn: txn.get(key, db=self._dbs["features"]))
        return None if raw is None else decode_features(raw, key)

    def iter_seeds(self, errors: list | None = None, with_features: bool = False,
                   chunk: int = SCAN_CHUNK) -> Iterator[tuple]:
        """Stream (id, meta) — or (id, meta, features) — in id order using short read
        transactions. Corrupt records are skipped and their CorpusError appended to `errors`
        (logged as warnings when `errors` is None)."""
        feat_db = self._dbs["features"]
        for key, raw in self._scan("meta", chunk=chunk):
            try:
                meta = self._decode_meta(key, raw)
                sid = key.decode("ascii")
                if with_features:
                    fraw = self._read(lambda txn: txn.get(key, db=feat_db))
                    yield sid, meta, decode_features(fraw, key)
                else:
                    yield sid, meta
            except CorpusError as exc:
                self._report(errors, exc)
            except UnicodeDecodeError:
                self._report(errors, _corrupt("meta", key, "key is not ASCII"))

    def iter_features(self, errors: list | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """Stream (id, features) in id order (short read transactions; corrupt ones reported)."""
        for key, raw in self._scan("features"):
            try:
                yield key.decode("ascii"), decode_features(raw, key)
            except CorpusError as exc:
                self._report(errors, exc)
            except UnicodeDecodeError:
                self._report(errors, _corrupt("features", key, "key is not ASCII"))

    @staticmethod
    def _report(errors: list | None, exc: CorpusError) -> None:
        if errors is None:
            log.warning("%s (skipped)", exc)
        else:
            errors.append(exc)

    # ------------------------------------------------------------------ failures

    def record_failure(self, signature: str, kind: str, message: str, exc_type: str | None,
                       example_id: str, example_bytes: bytes, result: dict,
                       extra: dict | None = None) -> bool:
        """Count a failure in its signature's bucket and keep the example (test-case bytes and
        result) while the bucket has fewer than `max_examples`; one transaction. Returns True
        when the bucket is new."""
        skey = signature_key(signature)
        ekey = _id_key(example_id)
        if not isinstance(example_bytes, (bytes, bytearray, memoryview)):
            raise ValueError("example_bytes must be bytes")
        if not isinstance(result, dict):
            raise ValueError("result must be a dict")
        if extra is not None and not isinstance(extra, dict):
            raise ValueError("extra must be a dict or None")
        now = time.time()
        example = canonical_json({"signature": signature, "recorded_at": now,
                                  "case": base64.b64encode(bytes(example_bytes)).decode("ascii"),
                                  "result": result})
        kind, message = str(kind), str(message)
        canonical_json(extra)

        def write(txn):
            fdb, edb = self._dbs["failures"], self._dbs["examples"]
            raw = txn.get(skey, db=fdb)
            if raw is None:
                rec = {"signature": signature, "kind": kind, "message": message,
                       "exc_type": exc_type, "count": 0, "first_seen": now, "last_seen": now,
                       "example_ids": [], "extra": extra}
            else:
                rec = _load_object("failures", skey, raw)
                why = _check_failure(rec)
                if why:  # a corrupt bucket is rebuilt rather than blocking the campaign
                    log.warning("%s; rebuilding the bucket", _corrupt("failures", skey, why))
                    rec = {"signature": signature, "kind": kind, "message": message,
                           "exc_type": exc_type, "count": 0, "first_seen": now,
                           "last_seen": now, "example_ids": [], "extra": extra}
            rec["count"] += 1
            rec["last_seen"] = max(rec["last_seen"], now)
            if example_id not in rec["example_ids"] and len(rec["example_ids"]) < self.max_examples:
                rec["example_ids"].append(example_id)
                txn.put(ekey, example, db=edb, overwrite=False)
            txn.put(skey, canonical_json(rec), db=fdb)
            return raw is None
        return self._write(write)

    def _decode_failure(self, key: bytes, raw: bytes) -> dict:
        rec = _load_object("failures", key, raw)
        why = _check_failure(rec)
        if why:
            raise _corrupt("failures", key, why)
        return rec

    def failures(self, errors: list | None = None) -> list[dict]:
        """Every failure bucket (corrupt ones reported into `errors`)."""
        out = []
        for key, raw in self._scan("failures"):
            try:
                out.append(self._decode_failure(key, raw))
            except CorpusError as exc:
                self._report(errors, exc)
        return out

    def num_failures(self) -> int:
        return self._entries("failures")

    def get_failure(self, signature: str) -> dict | None:
        key = signature_key(signature)
        raw = self._read(lambda txn: txn.get(key, db=self._dbs["failures"]))
        return None if raw is None else self._decode_failure(key, raw)

    def get_example(self, example_id: str) -> dict | None:
        """{signature, recorded_at, case_bytes (bytes), result (dict)} or None."""
        key = _id_key(example_id)
        raw = self._read(lambda txn: txn.get(key, db=self._dbs["examples"]))
        if raw is None:
            return None
        rec = _load_object("examples", key, raw)
        if not isinstance(rec.get("case"), str) or not isinstance(rec.get("result"), dict):
            raise _corrupt("examples", key, "needs a base64 'case' and an object 'result'")
        try:
            case = base64.b64decode(rec.pop("case").encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise _corrupt("examples", key, "'case' is not valid base64") from None
        rec["case_bytes"] = case
        return rec

    # ------------------------------------------------------------------ stats

    def append_stats(self, record: dict, t: float | None = None) -> float:
        """Append a JSON-object record to the time series at unix time `t` (now); the record is
        stored with a `t` key. Returns the time used."""
        if not isinstance(record, dict):
            raise ValueError("a stats record must be a dict")
        t = time.time() if t is None else float(t)
        if not math.isfinite(t) or t < 0:
            raise ValueError("t must be a finite time >= 0")
        ms = int(t * 1000)
        value = canonical_json(dict(record, t=t))
        db = self._dbs["stats"]

        def write(txn):
            cur = txn.cursor(db=db)
            seq = 0
            if cur.set_range(_STATS_KEY.pack(ms + 1, 0)):
                ok = cur.prev()
            else:
                ok = cur.last()
            if ok and len(cur.key()) == 12:
                k_ms, k_seq = _STATS_KEY.unpack(cur.key())
                if k_ms == ms:
                    seq = k_seq + 1
            txn.put(_STATS_KEY.pack(ms, seq), value, db=db)
        self._write(write)
        return t

    def stats_series(self, since: float | None = None,
                     errors: list | None = None) -> list[tuple[float, dict]]:
        """(t, record) pairs in time order (t at or after `since`, unix seconds); each record
        also holds its `t`."""
        start = _STATS_KEY.pack(max(0, int(since * 1000)), 0) if since is not None else b""
        out = []
        for key, raw in self._scan("stats", start=start):
            try:
                if len(key) != 12:
                    raise _corrupt("stats", key, "key must be 12 bytes")
                rec = _load_object("stats", key, raw)
                t = rec.get("t")
                if not _is_num(t):
                    t = _STATS_KEY.unpack(key)[0] / 1000.0
                out.append((float(t), rec))
            except CorpusError as exc:
                self._report(errors, exc)
        return out

    # ------------------------------------------------------------------ maintenance

    def verify(self) -> list[CorpusError]:
        """Decode every record; returns the problems found (empty when all is well)."""
        errors: list[CorpusError] = []
        ids_tc = {k for k, _ in self._scan("testcases", values=False)}
        ids_meta = set()
        for key, raw in self._scan("meta"):
            ids_meta.add(key)
            try:
                self._decode_meta(key, raw)
            except CorpusError as exc:
                errors.append(exc)
        ids_feat = set()
        for key, raw in self._scan("features"):
            ids_feat.add(key)
            try:
                decode_features(raw, key)
            except CorpusError as exc:
                errors.append(exc)
        for key in sorted(ids_tc ^ ids_meta | ids_tc ^ ids_feat):
            errors.append(_corrupt("testcases", key, "seed lacks its testcase, meta or features"))
        self.feature_counts(errors)
        self.failures(errors)
        for key, _ in self._scan("examples", values=False):
            try:
                self.get_example(key.decode("ascii"))
            except (CorpusError, UnicodeDecodeError, ValueError) as exc:
                errors.append(exc if isinstance(exc, CorpusError)
                              else _corrupt("examples", key, str(exc)))
        self.stats_series(errors=errors)
        return errors

    def summary(self) -> dict:
        """Cheap aggregate for `covfuzz status` (entry counts; no scans)."""
        def read(txn):
            return {name: txn.stat(self._dbs[name])["entries"]
                    for name in ("testcases", "hits", "failures", "examples", "stats")}
        e = self._read(read)
        return {"seeds": e["testcases"], "features": e["hits"], "failures": e["failures"],
                "examples": e["examples"], "stats_records": e["stats"],
                "map_size": self.map_size()}

    def raw_items(self, db: str, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Raw (key, value) pairs of one database (copying tools); short read transactions."""
        if db not in self._dbs:
            raise ValueError(f"unknown database {db!r}")
        return self._scan(db, start=start)

    def get_raw(self, db: str, keys: list[bytes]) -> list[bytes | None]:
        """Raw values of `keys` in one database, in one short read transaction."""
        handle = self._dbs[db]
        return self._read(lambda txn: [txn.get(k, db=handle) for k in keys])

    def put_raw(self, items: list[tuple[str, bytes, bytes]]) -> None:
        """Write raw (database, key, value) triples in one transaction (copying tools only:
        nothing is validated)."""
        items = list(items)
        for db, _, _ in items:
            if db not in self._dbs:
                raise ValueError(f"unknown database {db!r}")

        def write(txn):
            for db, k, v in items:
                txn.put(k, v, db=self._dbs[db])
        self._write(write)
