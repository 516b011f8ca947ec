"""The info record store: the store's schema version (`schema`), what it recorded at creation
(`created`) and the campaign object that `set_info` merges into (`campaign`)."""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version

import covfuzz
from corpus.lmdb_env import LmdbEnv
from corpus.records import canonical_json, decode_info, encode_info, encode_schema

DB = "info"
SCHEMA_KEY, CREATED_KEY, CAMPAIGN_KEY = b"schema", b"created", b"campaign"
# Named records beside the campaign object (`record:<name>`), each written whole: a large one
# (the trait table) is not re-encoded every time the small campaign object changes.
RECORD_PREFIX = b"record:"
MAX_RECORD_NAME = 64


def _torch_version() -> str | None:
    try:
        return version("torch")
    except PackageNotFoundError:
        return None


def initialise_in(txn, db, schema: int) -> None:
    """The info records of a new store: the schema version and what created it."""
    created = {"created_at": time.time(), "covfuzz_version": covfuzz.__version__,
               "torch_version": _torch_version()}
    txn.put(SCHEMA_KEY, encode_schema(schema), db=db)
    txn.put(CREATED_KEY, encode_info(created), db=db, overwrite=False)


class InfoStore:
    def __init__(self, env: LmdbEnv):
        self._env = env
        self._db = env.db(DB)

    def _get_in(self, txn, key: bytes) -> dict:
        raw = txn.get(key, db=self._db)
        return decode_info(key, raw) if raw is not None else {}

    def campaign(self) -> dict:
        """The campaign object ({} for a new store)."""
        return self._env.read(lambda txn: self._get_in(txn, CAMPAIGN_KEY), DB)

    def created(self) -> dict:
        """What the store recorded at creation ({} when missing)."""
        return self._env.read(lambda txn: self._get_in(txn, CREATED_KEY), DB)

    def merge(self, info: dict, remove=()) -> dict:
        """Merge `info` into the campaign object (and drop the keys in `remove`) in one
        transaction; returns the result."""
        if not isinstance(info, dict):
            raise ValueError("info must be a dict")
        canonical_json(info)  # validate before the transaction

        def write(txn):
            current = self._get_in(txn, CAMPAIGN_KEY)
            for key in remove:
                current.pop(key, None)
            current.update(info)
            txn.put(CAMPAIGN_KEY, encode_info(current), db=self._db)
            return current
        return self._env.write(write, DB)

    @staticmethod
    def _record_key(name: str) -> bytes:
        if not (isinstance(name, str) and name.isidentifier() and len(name) <= MAX_RECORD_NAME):
            raise ValueError(f"info record name must be an identifier, got {name!r:.40}")
        return RECORD_PREFIX + name.encode("ascii")

    def record(self, name: str) -> dict | None:
        """The named record (None when absent; CorpusError when damaged)."""
        key = self._record_key(name)
        return self._env.read(lambda txn: self._get_in(txn, key) if txn.get(key, db=self._db)
                              is not None else None, DB)

    def put_record(self, name: str, obj: dict) -> None:
        """Write the named record whole (one transaction)."""
        key, data = self._record_key(name), encode_info(obj)
        self._env.write(lambda txn: txn.put(key, data, db=self._db), DB)
