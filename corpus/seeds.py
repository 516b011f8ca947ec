"""The seed record store: for each seed id, its test case (`testcases`), its metadata (`meta`)
and its sorted feature set (`features`), always written together in one transaction.

Methods whose first argument is `txn` run inside the caller's write transaction (the store
counts a new seed's hits in the same one); the others open their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from corpus.errors import CorpusError, report_corrupt
from corpus.lmdb_env import SCAN_CHUNK, DamagedStore, LmdbEnv
from corpus.records import (MAX_SIG_KEY, check_case_bytes, corrupt, decode_features, decode_meta,
                            encode_features, encode_meta, id_key, key_text, seed_meta)
from covfuzz.errors import TestCaseFormatError
from covfuzz.features import as_features

DBS = ("testcases", "meta", "features")


@dataclass(frozen=True, eq=False)
class SeedRecord:
    """One stored seed, as `CorpusStore.get_seed_records` reads it and `put_seed_records`
    writes it back unchanged."""
    id: str
    data: bytes          # the test case's stored form (covfuzz.serialize.encode)
    meta: dict           # validated meta (see corpus.records.seed_meta)
    features: np.ndarray  # sorted unique uint64


@dataclass(frozen=True, eq=False)
class SeedCopy:
    """A seed's three records exactly as stored, not decoded (None where one is missing): how
    cmin and merge keep a seed they cannot judge (damaged or unreadable records) unchanged."""
    key: bytes
    data: bytes | None
    meta: bytes | None
    features: bytes | None

    @property
    def id(self) -> str:
        return key_text(self.key)


@dataclass(frozen=True, eq=False)
class NewSeed:
    """A validated `add_seed` argument set, ready to be written."""
    key: bytes
    data: bytes
    meta: dict
    features: np.ndarray
    explicit_found: bool  # the caller gave features_found (else it is set to the new features)


class SeedStore:
    def __init__(self, env: LmdbEnv):
        self._env = env
        self._tc, self._meta, self._feat = (env.db(name) for name in DBS)

    # ------------------------------------------------------------------ writing

    @staticmethod
    def prepare(case_id: str, data: bytes, meta: dict | None, features) -> NewSeed:
        """Validate an `add_seed` argument set (no I/O): ValueError / InvalidId when bad."""
        key = id_key(case_id)
        data = check_case_bytes(data)
        meta = dict(meta or {})
        if not all(isinstance(name, str) for name in meta):
            raise ValueError(f"meta of {case_id}: keys must be str")
        try:
            full = seed_meta(**meta)
        except ValueError as exc:
            raise ValueError(f"meta of {case_id}: {exc}") from None
        return NewSeed(key, data, full, as_features(features), "features_found" in meta)

    def put_in(self, txn, seed: NewSeed, features_found: int, overwrite: bool) -> None:
        """Write a prepared seed unless its id is stored already (and not `overwrite`);
        `features_found` fills that meta field unless the caller gave it."""
        if not overwrite and txn.get(seed.key, db=self._tc) is not None:
            return
        meta = seed.meta if seed.explicit_found else dict(seed.meta, features_found=features_found)
        txn.put(seed.key, seed.data, db=self._tc)
        txn.put(seed.key, encode_meta(meta), db=self._meta)
        txn.put(seed.key, encode_features(seed.features), db=self._feat)

    def update_meta(self, case_id: str, increment: dict | None = None, **changes) -> dict:
        """Change meta fields in one transaction (`increment` adds to integer fields); returns
        the new meta. KeyError if absent, ValueError if the result is invalid."""
        key = id_key(case_id)
        increment = dict(increment or {})

        def write(txn):
            raw = txn.get(key, db=self._meta)
            if raw is None:
                raise KeyError(case_id)
            meta = decode_meta(key, raw)
            meta.update(changes)
            for name, by in increment.items():
                meta[name] = meta.get(name, 0) + by
            try:
                value = encode_meta(meta)
            except ValueError as exc:
                raise ValueError(f"meta of {case_id}: {exc}") from None
            txn.put(key, value, db=self._meta)
            return meta
        return self._env.write(write, "meta")

    def put_records(self, records: Iterable[SeedRecord]) -> None:
        """Write whole seed records as they are, in one transaction; hits are not touched."""
        items = [(id_key(r.id), check_case_bytes(r.data), encode_meta(r.meta),
                  encode_features(as_features(r.features))) for r in records]

        def write(txn):
            for key, data, meta, feats in items:
                txn.put(key, data, db=self._tc)
                txn.put(key, meta, db=self._meta)
                txn.put(key, feats, db=self._feat)
        self._env.write(write, "testcases")

    # ------------------------------------------------------------------ reading

    def has(self, case_id: str) -> bool:
        key = id_key(case_id)
        return self._env.read(lambda txn: txn.get(key, db=self._tc) is not None, "testcases")

    def case_bytes(self, case_id: str) -> bytes | None:
        key = id_key(case_id)
        return self._env.read(lambda txn: txn.get(key, db=self._tc), "testcases")

    def case(self, case_id: str):
        """The seed decoded as a TestCase, None if absent; CorpusError if it does not decode."""
        # covfuzz.serialize imports torch: loaded here so that opening a store stays fast.
        from covfuzz.serialize import decode
        raw = self.case_bytes(case_id)
        if raw is None:
            return None
        try:
            return decode(raw)
        except TestCaseFormatError as exc:
            raise corrupt("testcases", id_key(case_id), str(exc)) from None

    def meta(self, case_id: str) -> dict | None:
        key = id_key(case_id)
        raw = self._env.read(lambda txn: txn.get(key, db=self._meta), "meta")
        return None if raw is None else decode_meta(key, raw)

    def features(self, case_id: str) -> np.ndarray | None:
        key = id_key(case_id)
        raw = self._env.read(lambda txn: txn.get(key, db=self._feat), "features")
        return None if raw is None else decode_features(raw, key)

    def records(self, case_ids: Iterable[str]) -> list[SeedRecord | None]:
        """Whole seed records in one read transaction; None for an absent id, CorpusError for a
        seed lacking part of its records or with damaged meta or features."""
        keys = [(cid, id_key(cid)) for cid in case_ids]

        def read(txn):
            out = []
            for cid, key in keys:
                data = txn.get(key, db=self._tc)
                if data is None:
                    out.append(None)
                    continue
                meta, feats = txn.get(key, db=self._meta), txn.get(key, db=self._feat)
                if meta is None or feats is None:
                    raise corrupt("testcases", key, "seed lacks its meta or features")
                out.append(SeedRecord(cid, bytes(data), decode_meta(key, meta),
                                      decode_features(feats, key)))
            return out
        return self._env.read(read, "testcases")

    def copies(self, keys: Iterable[bytes]) -> list[SeedCopy]:
        """The stored records of seeds `keys`, undecoded, in one read transaction."""
        keys = list(keys)

        def value(txn, key, db):
            raw = txn.get(key, db=db)
            return None if raw is None else bytes(raw)

        def read(txn):
            return [SeedCopy(key, value(txn, key, self._tc), value(txn, key, self._meta),
                             value(txn, key, self._feat)) for key in keys]
        return self._env.read(read, "testcases")

    def put_copies(self, copies: Iterable[SeedCopy]) -> None:
        """Write seeds read by `copies` back exactly as they were, in one transaction (only
        the key is checked: LMDB's limit)."""
        copies = list(copies)
        for c in copies:
            if not 0 < len(c.key) <= MAX_SIG_KEY:
                raise ValueError(f"seed key {c.id!r:.80} has a bad length")

        def write(txn):
            for c in copies:
                for value, db in ((c.data, self._tc), (c.meta, self._meta),
                                  (c.features, self._feat)):
                    if value is not None:
                        txn.put(c.key, value, db=db)
        self._env.write(write, "testcases")

    def key_sets(self) -> dict[str, set[bytes]]:
        """The keys of each seed database ({"testcases": ..., "meta": ..., "features": ...})."""
        return {db: {k for k, _ in self._env.scan(db, values=False)} for db in DBS}

    def ids(self) -> list[str]:
        """All seed ids, sorted."""
        return [k.decode("ascii", "replace") for k, _ in self._env.scan("testcases", values=False)]

    def count(self) -> int:
        """O(1): the entry count of `testcases`."""
        return self._env.entries("testcases")

    def iter(self, errors: list | None = None, with_features: bool = False,
             chunk: int = SCAN_CHUNK) -> Iterator[tuple]:
        """Stream (id, meta) or (id, meta, features) in id order (short read transactions);
        damaged records are skipped and reported into `errors`."""
        feat_db = self._feat
        for key, raw in self._env.scan("meta", chunk=chunk):
            try:
                meta = decode_meta(key, raw)
                sid = key.decode("ascii")
                if with_features:
                    fraw = self._env.read(lambda txn: txn.get(key, db=feat_db), "features")
                    yield sid, meta, decode_features(fraw, key)
                else:
                    yield sid, meta
            except DamagedStore:
                raise  # the file, not one record: nothing more can be trusted
            except CorpusError as exc:
                report_corrupt(errors, exc)
            except UnicodeDecodeError:
                report_corrupt(errors, corrupt("meta", key, "key is not ASCII"))

    def iter_features(self, errors: list | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """Stream (id, features) in id order (short read transactions; damaged ones reported)."""
        for key, raw in self._env.scan("features"):
            try:
                yield key.decode("ascii"), decode_features(raw, key)
            except CorpusError as exc:
                report_corrupt(errors, exc)
            except UnicodeDecodeError:
                report_corrupt(errors, corrupt("features", key, "key is not ASCII"))

    def _decode_all(self, db: str, decode, errors: list) -> set:
        """Decode every record of `db` (errors into `errors`); returns the keys seen."""
        keys = set()
        for key, raw in self._env.scan(db):
            keys.add(key)
            try:
                decode(key, raw)
            except CorpusError as exc:
                errors.append(exc)
        return keys

    def verify(self, errors: list) -> None:
        """Decode every meta and features record and check that each seed has all three."""
        ids_tc = {k for k, _ in self._env.scan("testcases", values=False)}
        ids_meta = self._decode_all("meta", decode_meta, errors)
        ids_feat = self._decode_all("features", lambda key, raw: decode_features(raw, key), errors)
        for key in sorted(ids_tc ^ ids_meta | ids_tc ^ ids_feat):
            errors.append(corrupt("testcases", key, "seed lacks its testcase, meta or features"))
