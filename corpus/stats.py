"""The stats record store: the campaign's time series (`stats`), one JSON object a record,
keyed by its unix time in ms plus a counter for records within the same ms."""

from __future__ import annotations

import math
import time
from typing import Iterable

from corpus.errors import CorpusError, report_corrupt
from corpus.lmdb_env import LmdbEnv
from corpus.records import (MAX_TIME, STATS_KEY_LEN, decode_stats, encode_stats, stats_key,
                            stats_key_fields, stats_ms)

DB = "stats"


def _check_time(t: float | None) -> float:
    t = time.time() if t is None else float(t)
    if not math.isfinite(t) or not 0 <= t <= MAX_TIME:
        raise ValueError(f"t must be a unix time in [0, {MAX_TIME:g}]")
    return t


class StatsStore:
    def __init__(self, env: LmdbEnv):
        self._env = env
        self._db = env.db(DB)

    def _append_in(self, txn, t: float, value: bytes) -> None:
        """Store `value` after the records of the same ms."""
        ms = stats_ms(t)
        cur = txn.cursor(db=self._db)
        seq = 0
        ok = cur.prev() if cur.set_range(stats_key(ms + 1, 0)) else cur.last()
        if ok and len(cur.key()) == STATS_KEY_LEN:
            k_ms, k_seq = stats_key_fields(cur.key())
            if k_ms == ms:
                seq = k_seq + 1
        txn.put(stats_key(ms, seq), value, db=self._db)

    def append(self, record: dict, t: float | None = None) -> float:
        """Append a record at unix time `t` (now); it is stored with a `t` key. Returns t."""
        t = _check_time(t)
        value = encode_stats(t, record)
        self._env.write(lambda txn: self._append_in(txn, t, value), DB)
        return t

    def extend(self, series: Iterable[tuple[float, dict]]) -> int:
        """Append (t, record) pairs (e.g. another store's `series()`) in one transaction, each at
        its own time; returns how many."""
        items = []
        for t, record in series:
            t = _check_time(t)
            items.append((t, encode_stats(t, record)))

        def write(txn):
            for t, value in items:
                self._append_in(txn, t, value)
        self._env.write(write, DB)
        return len(items)

    def series(self, since: float | None = None,
               errors: list | None = None) -> list[tuple[float, dict]]:
        """(t, record) pairs in time order, t at or after `since` (unix seconds)."""
        if since is not None and not math.isfinite(since):
            raise ValueError("since must be a finite time")
        start = (stats_key(min(max(0, stats_ms(since)), stats_ms(MAX_TIME) + 1), 0)
                 if since is not None else b"")
        out = []
        for key, raw in self._env.scan(DB, start=start):
            try:
                out.append(decode_stats(key, raw))
            except CorpusError as exc:
                report_corrupt(errors, exc)
        return out
