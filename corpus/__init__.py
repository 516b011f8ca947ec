"""covfuzz corpus storage: an LMDB-backed, crash-safe store of seeds, features, hit counts,
failure buckets and stats (`CorpusStore`), plus afl-cmin-style minimization and merging."""

from corpus.errors import CorpusError, InvalidId
from corpus.store import STORE_SCHEMA, CorpusStore
from corpus.cmin import merge, minimize, minimize_in_place, write_minimized

__all__ = ["CorpusStore", "CorpusError", "InvalidId", "STORE_SCHEMA", "minimize", "minimize_in_place",
           "write_minimized", "merge"]
