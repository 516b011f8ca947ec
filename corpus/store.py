"""The on-disk corpus of one campaign: seeds, their metadata and features, global feature hit
counts, failure buckets with replayable examples, and a stats time series, in one LMDB
environment.

Modules
-------
`corpus/lmdb_env.py`  LMDB plumbing: opening the environment, transactions, map growth, scans
`corpus/lmdb_check.py` checking `data.mdb` before LMDB touches it (meta pages, size, page headers)
`corpus/records.py`   the typed record codecs (keys, encoders, validating decoders, `seed_meta`)
`corpus/seeds.py`     seeds: `testcases` + `meta` + `features`
`corpus/hits.py`      `hits`
`corpus/failures.py`  `failures` + `examples`
`corpus/stats.py`     `stats`
`corpus/info.py`      `info`
`corpus/store.py`     `CorpusStore`: opening, the schema check, and the record stores composed
`corpus/cmin.py`      minimization and merging, on the public API of `CorpusStore`
`corpus/salvage.py`   copying what is still readable from a damaged store into a new one

Layout
------
`CorpusStore(dir)` keeps its LMDB environment in the *directory* `<dir>/corpus.lmdb/`
(subdir=True: `data.mdb` + `lock.mdb`). Passing a path whose last component is `corpus.lmdb`
opens that environment directly (`open_campaign_store(dir)` opens the one of a campaign
directory and says so when there is none). Named sub-databases:

=============  ==========================================================================
`info`         `schema` -> ascii int (`STORE_SCHEMA`); `created` -> JSON {created_at,
               covfuzz_version, torch_version} written at creation (`store_info()`);
               `campaign` -> JSON object merged by `set_info` (`get_info()`, {} when new)
`testcases`    id (ascii) -> test-case stored form (`covfuzz.serialize.encode`)
`meta`         id -> canonical JSON object (see `corpus.records.seed_meta`: `META_FIELDS`,
               `n_features`, plus any extra keys)
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
- A damaged file is refused at open, before LMDB reads a page (`DamagedStore`, one line naming
  `data.mdb` and `covfuzz salvage`): a file shorter than its meta page names (LMDB would die of
  SIGBUS), a bad meta page, a branch or leaf page whose header is wrong (a zeroed page: LMDB
  would abort on an assertion). Any `lmdb.Error` met later becomes `DamagedStore` too, naming
  the database. The check reads every page header once: about 0.5 s for a 400 MB store.
- Decoding never executes code (JSON, raw integers, numpy.frombuffer; no pickle). Every decoder
  validates and raises `CorpusError` naming the database and key; iteration skips corrupt
  records and reports them into an `errors` list (or logs them) so the others stay readable.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator

import numpy as np

from corpus.errors import CorpusError
from corpus.failures import FailureStore
from corpus.hits import HitStore
from corpus.info import InfoStore, SCHEMA_KEY, initialise_in
from corpus.lmdb_env import DEFAULT_MAP_SIZE, MAX_MAP_SIZE, SCAN_CHUNK, LmdbEnv
from corpus.records import decode_schema
from corpus.seeds import SeedCopy, SeedRecord, SeedStore
from corpus.stats import StatsStore
from covfuzz.errors import one_line
from covfuzz.workdir import CORPUS, corpus_path

STORE_SCHEMA = 1
DB_NAMES = ("info", "testcases", "meta", "features", "hits", "failures", "examples", "stats")
MAX_EXAMPLES = 8


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
        self._env = LmdbEnv(path, readonly=readonly, create=create, map_size=map_size, sync=sync,
                            max_map_size=max_map_size)
        self.path = self._env.path
        self.readonly = self._env.readonly
        self.max_examples = int(max_examples)
        try:
            self._check_schema()
            self._env.open_dbs(DB_NAMES)
        except BaseException:
            self._env.close()
            raise
        self._seeds = SeedStore(self._env)
        self._hits = HitStore(self._env)
        self._failures = FailureStore(self._env, self.max_examples)
        self._stats = StatsStore(self._env)
        self._info = InfoStore(self._env)

    def _check_schema(self) -> None:
        """Refuse an environment of another schema or another program; initialise a new one."""
        entries, schema = self._env.probe("info", SCHEMA_KEY)
        if schema is None:
            if entries:
                raise CorpusError(f"{self.path} is not a covfuzz corpus (an LMDB environment "
                                  "without covfuzz schema information)")
            if self.readonly:
                raise CorpusError(f"corpus {self.path} is empty or not initialised")
            self._env.create_dbs(DB_NAMES, lambda txn, dbs: initialise_in(txn, dbs["info"],
                                                                            STORE_SCHEMA))
            return
        try:
            version = decode_schema(schema)
        except CorpusError as exc:
            raise CorpusError(f"corpus {self.path}: {exc}") from None
        if version != STORE_SCHEMA:
            raise CorpusError(f"corpus {self.path} has store schema version {version}; "
                              f"this covfuzz reads store schema version {STORE_SCHEMA}")

    # ------------------------------------------------------------------ environment

    def close(self) -> None:
        """Close the environment (idempotent). In a forked child it only drops the handle."""
        self._env.close()

    def __enter__(self) -> "CorpusStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def sync(self) -> None:
        """Flush to disk (only needed when opened with sync=False)."""
        self._env.sync()

    def reader_check(self) -> int:
        """Clear reader slots of dead processes; returns how many were cleared."""
        return self._env.reader_check()

    def map_size(self) -> int:
        return self._env.map_size()

    # ------------------------------------------------------------------ info

    def get_info(self) -> dict:
        """The campaign object merged by `set_info` ({} for a new store: callers use that to
        tell a new campaign from a resumed one)."""
        return self._info.campaign()

    def store_info(self) -> dict:
        """What the store recorded at creation: schema_version, created_at, covfuzz_version,
        torch_version."""
        return dict(self._info.created(), schema_version=STORE_SCHEMA)

    def set_info(self, info: dict, remove=()) -> dict:
        """Merge `info` (JSON-serializable; e.g. settings, versions, resumable state) into the
        campaign object, dropping the keys in `remove`, in one transaction; returns the result."""
        return self._info.merge(info, remove)

    def get_info_record(self, name: str) -> dict | None:
        """A named info record kept apart from the campaign object (None when absent)."""
        return self._info.record(name)

    def set_info_record(self, name: str, obj: dict) -> None:
        """Write a named info record whole (large state that changes less often than the
        campaign object, e.g. the trait table)."""
        self._info.put_record(name, obj)

    # ------------------------------------------------------------------ hits

    def bump_hits(self, features) -> list[int]:
        """Count one execution hitting `features` (one transaction); returns those never seen
        before, ascending."""
        return self._hits.bump(features)

    record_execution = bump_hits  # every execution, seed or not

    def add_hits(self, features, counts) -> list[int]:
        """Add `counts[i]` executions to `features[i]` (one transaction: a campaign flushes its
        accumulated hits this way, copying tools copy counts this way); returns the features
        never seen before, ascending."""
        return self._hits.add(features, counts)

    def hit_counts(self, features) -> np.ndarray:
        """Hit counts (uint64) of `features` in the order given (0 for unseen)."""
        return self._hits.counts_of(features)

    def iter_hits(self, errors: list | None = None) -> Iterator[tuple[int, int]]:
        """Stream (feature, hit count) in feature order (short read transactions)."""
        return self._hits.items(errors)

    def feature_counts(self, errors: list | None = None) -> dict[int, int]:
        """Every feature seen -> its hit count (streamed in short read transactions)."""
        return dict(self._hits.items(errors))

    def num_features(self) -> int:
        """Distinct features seen (O(1): the entry count of `hits`)."""
        return self._hits.count()

    # ------------------------------------------------------------------ seeds

    def add_seed(self, case_id: str, data: bytes, meta: dict | None, features,
                 overwrite: bool = False, count_hits: bool = True) -> list[int]:
        """Store a seed (test case, meta, features) and count its execution in `hits`, all in
        one transaction. Returns the features not seen before this call, ascending.

        meta: keyword arguments of `corpus.records.seed_meta` (missing fields get its defaults:
        parent None, mutators [], depth 0, nodes None, exec_time None, times_chosen 0,
        found_at now, outcome None; n_features only when given) plus extra JSON-serializable
        keys.
        `features_found` is set to the number returned unless given.
        An id already stored is left unchanged unless `overwrite` (its hits are still counted).
        count_hits=False: the execution was already counted (e.g. by `record_execution`);
        features never seen are still registered with count 1.
        """
        seed = self._seeds.prepare(case_id, data, meta, features)
        return self._env.write(lambda txn: self._add_seed_in(txn, seed, overwrite, count_hits), "testcases")

    def add_seeds(self, seeds: Iterable[tuple], overwrite: bool = False,
                  count_hits: bool = True) -> list[list[int]]:
        """Bulk `add_seed` of (id, data, meta, features) tuples in ONE transaction (all or
        nothing); returns the new features of each."""
        prepared = [self._seeds.prepare(*s) for s in seeds]
        return self._env.write(lambda txn: [self._add_seed_in(txn, p, overwrite, count_hits)
                                            for p in prepared], "testcases")

    def _add_seed_in(self, txn, seed, overwrite: bool, count_hits: bool) -> list[int]:
        if count_hits:
            new = self._hits.bump_in(txn, seed.features)
        else:
            new = self._hits.register_in(txn, seed.features)
        self._seeds.put_in(txn, seed, features_found=len(new), overwrite=overwrite)
        return new

    def has_seed(self, case_id: str) -> bool:
        return self._seeds.has(case_id)

    def get_case_bytes(self, case_id: str) -> bytes | None:
        """The stored form of a seed, or None if absent."""
        return self._seeds.case_bytes(case_id)

    def get_case(self, case_id: str):
        """The seed decoded as a TestCase (covfuzz.serialize.decode; imports torch), None if
        absent; CorpusError if the bytes do not decode."""
        return self._seeds.case(case_id)

    def get_meta(self, case_id: str) -> dict | None:
        """The validated meta object of a seed, None if absent."""
        return self._seeds.meta(case_id)

    def update_meta(self, case_id: str, increment: dict | None = None, **changes) -> dict:
        """Change meta fields of a seed in one transaction; returns the new meta.
        `increment={"times_chosen": 1}` adds to integer fields atomically. KeyError if absent."""
        return self._seeds.update_meta(case_id, increment, **changes)

    def seed_ids(self) -> list[str]:
        """All seed ids, sorted."""
        return self._seeds.ids()

    def num_seeds(self) -> int:
        """O(1): the entry count of `testcases`."""
        return self._seeds.count()

    def get_features(self, case_id: str) -> np.ndarray | None:
        """The seed's sorted unique uint64 feature array, None if absent."""
        return self._seeds.features(case_id)

    def iter_seeds(self, errors: list | None = None, with_features: bool = False,
                   chunk: int = SCAN_CHUNK) -> Iterator[tuple]:
        """Stream (id, meta) — or (id, meta, features) — in id order using short read
        transactions. Corrupt records are skipped and their CorpusError appended to `errors`
        (logged as warnings when `errors` is None)."""
        return self._seeds.iter(errors, with_features, chunk)

    def iter_features(self, errors: list | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """Stream (id, features) in id order (short read transactions; corrupt ones reported)."""
        return self._seeds.iter_features(errors)

    def get_seed_records(self, case_ids: Iterable[str]) -> list[SeedRecord | None]:
        """Whole seeds (test case, meta, features) in one read transaction, for copying into
        another store with `put_seed_records`; None for an absent id."""
        return self._seeds.records(case_ids)

    def put_seed_records(self, records: Iterable[SeedRecord]) -> None:
        """Write seeds read by `get_seed_records` as they are (meta and features unchanged), in
        one transaction; `hits` is not touched (copy the counts with `add_hits`)."""
        self._seeds.put_records(records)

    def seed_key_sets(self) -> dict[str, set[bytes]]:
        """The keys of `testcases`, `meta` and `features` (a seed is complete when its key is
        in all three): the seeds present, readable or not."""
        return self._seeds.key_sets()

    def get_seed_copies(self, keys: Iterable[bytes]) -> list[SeedCopy]:
        """Seeds' records exactly as stored, not decoded (see `SeedCopy`): cmin and merge keep
        a seed they cannot judge this way rather than drop it."""
        return self._seeds.copies(keys)

    def put_seed_copies(self, copies: Iterable[SeedCopy]) -> None:
        """Write `get_seed_copies` results unchanged, in one transaction; `hits` untouched."""
        self._seeds.put_copies(copies)

    # ------------------------------------------------------------------ failures

    def record_failure(self, signature: str, kind: str, message: str, exc_type: str | None,
                       example_id: str, example_bytes: bytes, result: dict,
                       extra: dict | None = None) -> bool:
        """Count a failure in its signature's bucket and keep the example (test-case bytes and
        result) while the bucket has fewer than `max_examples`; one transaction. Returns True
        when the bucket is new."""
        return self._failures.record(signature, kind, message, exc_type, example_id,
                                     example_bytes, result, extra)

    def merge_failure_bucket(self, bucket: dict, examples: dict[str, dict]) -> bool:
        """Merge a failure bucket of another store (as `get_failure` returns it) with its
        examples ({example id: `get_example` of it}) into this store's bucket of the same
        signature (counts summed, first/last seen widened, examples united up to
        `max_examples`); one transaction. Returns True when the bucket is new here."""
        return self._failures.merge_bucket(bucket, examples)

    def update_failure_extra(self, signature: str, changes: dict) -> bool:
        return self._failures.update_extra(signature, changes)

    def failures(self, errors: list | None = None) -> list[dict]:
        """Every failure bucket (corrupt ones reported into `errors`)."""
        return self._failures.all(errors)

    def num_failures(self) -> int:
        return self._failures.count()

    def get_failure(self, signature: str) -> dict | None:
        return self._failures.get(signature)

    def get_example(self, example_id: str) -> dict | None:
        """{signature, recorded_at, case_bytes (bytes), result (dict)} or None."""
        return self._failures.example(example_id)

    # ------------------------------------------------------------------ stats

    def append_stats(self, record: dict, t: float | None = None) -> float:
        """Append a JSON-object record to the time series at unix time `t` (now); the record is
        stored with a `t` key. Returns the time used."""
        return self._stats.append(record, t)

    def extend_stats(self, series: Iterable[tuple[float, dict]]) -> int:
        """Append (t, record) pairs (e.g. another store's `stats_series()`), each at its own
        time, in one transaction; returns how many."""
        return self._stats.extend(series)

    def stats_series(self, since: float | None = None,
                     errors: list | None = None) -> list[tuple[float, dict]]:
        """(t, record) pairs in time order (t at or after `since`, unix seconds); each record
        also holds its `t`."""
        return self._stats.series(since, errors)

    # ------------------------------------------------------------------ maintenance

    def verify(self) -> list[CorpusError]:
        """Decode every record; returns the problems found (empty when all is well)."""
        errors: list[CorpusError] = []
        self._seeds.verify(errors)
        self.feature_counts(errors)
        self._failures.verify(errors)
        self.stats_series(errors=errors)
        return errors

    def summary(self) -> dict:
        """Cheap aggregate for `covfuzz status` (entry counts; no scans)."""
        e = self._env.entry_counts(("testcases", "hits", "failures", "examples", "stats"))
        return {"seeds": e["testcases"], "features": e["hits"], "failures": e["failures"],
                "examples": e["examples"], "stats_records": e["stats"],
                "map_size": self.map_size()}


def open_campaign_store(directory: str, readonly: bool = True, create: bool = False) -> CorpusStore:
    """The store of campaign directory `directory` (`covfuzz.workdir.corpus_path`). Without
    `create`, a directory that has none raises CorpusError "DIR: not a campaign directory"."""
    path = corpus_path(directory)
    if not create and not os.path.isdir(directory):
        raise CorpusError(f"{one_line(directory)}: no such campaign directory")
    # `.bak` alone: an interrupted cmin swap, which opening the store recovers or reads
    if not create and not (os.path.isdir(path) or os.path.isdir(path + ".bak")):
        raise CorpusError(f"{one_line(directory)}: not a campaign directory (no {CORPUS}/)")
    return CorpusStore(path, readonly=readonly, create=create)
