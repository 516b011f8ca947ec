"""The `hits` record store: how many executions hit each feature (8-byte big-endian feature ->
8-byte big-endian count). Its keys are every feature the campaign has seen.

Methods whose first argument is `txn` run inside the caller's write transaction (adding a seed
counts its hits in the same transaction); the others open their own.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from corpus.errors import CorpusError, report_corrupt
from corpus.lmdb_env import LmdbEnv
from corpus.records import decode_hit, encode_hit, hit_count_or_zero, hit_key
from covfuzz.features import as_features

DB = "hits"


class HitStore:
    def __init__(self, env: LmdbEnv):
        self._env = env
        self._db = env.db(DB)

    # ------------------------------------------------------------------ in a transaction

    def bump_in(self, txn, feats: np.ndarray, by=1) -> list[int]:
        """Add `by` (an int, or one count per feature) to the hits of `feats` (sorted unique);
        returns the features that had no record, ascending."""
        db = self._db
        new = []
        get, put = txn.get, txn.put
        bys = by.tolist() if isinstance(by, np.ndarray) else [by] * len(feats)
        for f, n in zip(feats.tolist(), bys):
            key = hit_key(f)
            raw = get(key, db=db)
            if raw is None:
                new.append(f)
            put(key, encode_hit(hit_count_or_zero(raw) + n), db=db)
        return new

    def register_in(self, txn, feats: np.ndarray) -> list[int]:
        """Give the features of `feats` without a record a count of 1 (their execution was
        counted elsewhere); returns them, ascending."""
        db = self._db
        new = [f for f in feats.tolist() if txn.get(hit_key(f), db=db) is None]
        for f in new:
            txn.put(hit_key(f), encode_hit(1), db=db)
        return new

    # ------------------------------------------------------------------ own transactions

    def bump(self, features) -> list[int]:
        """Count one execution hitting `features`; returns those never seen before."""
        feats = as_features(features)
        return self._env.write(lambda txn: self.bump_in(txn, feats), DB)

    def add(self, features, counts) -> list[int]:
        """Add `counts[i]` executions to `features[i]` in one transaction; returns the features
        never seen before, ascending."""
        feats = np.asarray(features, dtype=np.uint64)
        counts = np.asarray(counts, dtype=np.uint64)
        if feats.shape != counts.shape:
            raise ValueError("features and counts differ in length")
        order = np.argsort(feats)
        return self._env.write(lambda txn: self.bump_in(txn, feats[order], counts[order]), DB)

    def counts_of(self, features) -> np.ndarray:
        """Hit counts (uint64) of `features` in the order given (0 for unseen)."""
        items = [int(f) for f in features]
        db = self._db

        def read(txn):
            out = np.zeros(len(items), dtype=np.uint64)
            for i, f in enumerate(items):
                out[i] = hit_count_or_zero(txn.get(hit_key(f), db=db))
            return out
        return self._env.read(read, DB)

    def items(self, errors: list | None = None) -> Iterator[tuple[int, int]]:
        """Stream (feature, count) in feature order (short read transactions; damaged records
        are skipped and reported into `errors`)."""
        for key, raw in self._env.scan(DB):
            try:
                yield decode_hit(key, raw)
            except CorpusError as exc:
                report_corrupt(errors, exc)

    def count(self) -> int:
        """Distinct features seen (O(1): the entry count)."""
        return self._env.entries(DB)
