"""covfuzz corpus storage: an LMDB-backed, crash-safe store of seeds, features, hit counts,
failure buckets and stats (`CorpusStore`, `open_campaign_store`), plus afl-cmin-style
minimization and merging. See `corpus/store.py` for the layout and the modules."""

from corpus.errors import CorpusError, InvalidId
from corpus.records import seed_meta
from corpus.seeds import SeedRecord
from corpus.store import STORE_SCHEMA, CorpusStore, open_campaign_store
from corpus.cmin import merge, minimize, minimize_in_place, write_minimized

__all__ = ["CorpusStore", "CorpusError", "InvalidId", "STORE_SCHEMA", "SeedRecord", "merge",
           "minimize", "minimize_in_place", "open_campaign_store", "seed_meta", "write_minimized"]
