"""The failure record store: one bucket per failure signature (`failures`) and the replayable
examples the buckets name (`examples`, at most `max_examples` a bucket).

A bucket counts every failure with its signature; the first `max_examples` distinct examples
(test-case bytes + result) are kept. A damaged bucket is rebuilt by the next write rather than
blocking the campaign.
"""

from __future__ import annotations

import logging
import time

from corpus.errors import CorpusError, report_corrupt
from corpus.lmdb_env import LmdbEnv
from corpus.records import (canonical_json, decode_example, decode_failure, encode_example,
                            encode_failure, id_key, signature_key)

log = logging.getLogger(__name__)


def _new_bucket(signature: str, kind: str, message: str, exc_type: str | None, now: float,
                extra: dict | None) -> dict:
    return {"signature": signature, "kind": kind, "message": message, "exc_type": exc_type,
            "count": 0, "first_seen": now, "last_seen": now, "example_ids": [], "extra": extra}


class FailureStore:
    def __init__(self, env: LmdbEnv, max_examples: int):
        self._env = env
        self.max_examples = int(max_examples)
        self._fdb, self._edb = env.db("failures"), env.db("examples")

    def _current(self, txn, skey: bytes) -> tuple[bool, dict | None]:
        """(whether a bucket is stored, the bucket; None when absent or damaged: a damaged
        one is rebuilt)."""
        raw = txn.get(skey, db=self._fdb)
        if raw is None:
            return False, None
        try:
            return True, decode_failure(skey, raw)
        except CorpusError as exc:
            log.warning("%s; rebuilding the bucket", exc)
            return True, None

    def _add_example(self, txn, bucket: dict, example_id: str, value: bytes | None) -> None:
        """Name the example in the bucket, and store it, while the bucket has room."""
        ids = bucket["example_ids"]
        if example_id in ids or len(ids) >= self.max_examples:
            return
        ids.append(example_id)
        if value is not None:
            txn.put(id_key(example_id), value, db=self._edb, overwrite=False)

    def record(self, signature: str, kind: str, message: str, exc_type: str | None,
               example_id: str, example_bytes: bytes, result: dict,
               extra: dict | None = None) -> bool:
        """Count a failure in its signature's bucket and keep the example while the bucket has
        room; one transaction. Returns True when the bucket is new."""
        skey = signature_key(signature)
        id_key(example_id)
        if not isinstance(example_bytes, (bytes, bytearray, memoryview)):
            raise ValueError("example_bytes must be bytes")
        if not isinstance(result, dict):
            raise ValueError("result must be a dict")
        if extra is not None and not isinstance(extra, dict):
            raise ValueError("extra must be a dict or None")
        now = time.time()
        example = encode_example({"signature": signature, "recorded_at": now,
                                  "case_bytes": bytes(example_bytes), "result": result})
        kind, message = str(kind), str(message)
        canonical_json(extra)

        def write(txn):
            stored, rec = self._current(txn, skey)
            if rec is None:
                rec = _new_bucket(signature, kind, message, exc_type, now, extra)
            rec["count"] += 1
            rec["last_seen"] = max(rec["last_seen"], now)
            self._add_example(txn, rec, example_id, example)
            txn.put(skey, encode_failure(rec), db=self._fdb)
            return not stored
        return self._env.write(write, "failures")

    def merge_bucket(self, bucket: dict, examples: dict[str, dict]) -> bool:
        """Merge a bucket (as `get`/`all` return it, from another store) into this store's bucket
        of the same signature: counts summed, first/last seen widened, `extra` kept unless
        missing here, example ids united up to `max_examples`; the examples given (as `example`
        returns them, by id) are stored for the ids that made it in, an example already stored
        is kept. One transaction; returns True when the bucket is new here."""
        encode_failure(bucket)  # validate before the transaction
        skey = signature_key(bucket["signature"])
        values = {eid: encode_example(ex) for eid, ex in examples.items()}
        for eid in bucket["example_ids"]:
            id_key(eid)

        def write(txn):
            stored, cur = self._current(txn, skey)
            if cur is None:
                cur = dict(bucket, example_ids=[])
            else:
                cur["count"] += bucket["count"]
                cur["first_seen"] = min(cur["first_seen"], bucket["first_seen"])
                cur["last_seen"] = max(cur["last_seen"], bucket["last_seen"])
                if cur.get("extra") is None:
                    cur["extra"] = bucket.get("extra")
            for eid in bucket["example_ids"]:
                self._add_example(txn, cur, eid, values.get(eid))
            txn.put(skey, encode_failure(cur), db=self._fdb)
            return not stored
        return self._env.write(write, "failures")

    def update_extra(self, signature: str, changes: dict) -> bool:
        """Set keys of bucket `signature`'s `extra` (what triage learned about it); one
        transaction. False when there is no such bucket (or it is damaged)."""
        skey = signature_key(signature)
        canonical_json(changes)  # validate before the transaction

        def write(txn):
            _, rec = self._current(txn, skey)
            if rec is None:
                return False
            rec["extra"] = {**(rec.get("extra") or {}), **changes}
            txn.put(skey, encode_failure(rec), db=self._fdb)
            return True
        return self._env.write(write, "failures")

    def all(self, errors: list | None = None) -> list[dict]:
        """Every bucket (damaged ones reported into `errors`)."""
        out = []
        for key, raw in self._env.scan("failures"):
            try:
                out.append(decode_failure(key, raw))
            except CorpusError as exc:
                report_corrupt(errors, exc)
        return out

    def count(self) -> int:
        return self._env.entries("failures")

    def get(self, signature: str) -> dict | None:
        key = signature_key(signature)
        raw = self._env.read(lambda txn: txn.get(key, db=self._fdb), "failures")
        return None if raw is None else decode_failure(key, raw)

    def example(self, example_id: str) -> dict | None:
        """{signature, recorded_at, case_bytes (bytes), result (dict)} or None."""
        key = id_key(example_id)
        raw = self._env.read(lambda txn: txn.get(key, db=self._edb), "examples")
        return None if raw is None else decode_example(key, raw)

    def verify(self, errors: list) -> None:
        """Decode every bucket and every example."""
        self.all(errors)
        for key, raw in self._env.scan("examples"):
            try:
                decode_example(key, raw)
            except CorpusError as exc:
                errors.append(exc)

