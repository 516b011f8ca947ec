"""covfuzz corpus storage: an LMDB-backed, crash-safe store of seeds, features, hit counts,
failure buckets and stats (`CorpusStore`, `open_campaign_store`), plus afl-cmin-style
minimization and merging, and salvage of a damaged store (`corpus.salvage`). See `corpus/store.py` for the layout and the modules."""

from corpus.errors import CorpusError, InvalidId
from corpus.lmdb_env import DamagedStore
from corpus.records import seed_meta
from corpus.seeds import SeedCopy, SeedRecord
from corpus.store import STORE_SCHEMA, CorpusStore, open_campaign_store
from corpus.cmin import (Plan, merge, minimize, minimize_in_place, minimize_into, plan,
                         write_minimized)

__all__ = ["CorpusStore", "CorpusError", "DamagedStore", "InvalidId", "Plan", "STORE_SCHEMA",
           "SeedCopy", "SeedRecord", "merge", "minimize", "minimize_in_place", "minimize_into",
           "open_campaign_store", "plan", "seed_meta", "write_minimized"]
