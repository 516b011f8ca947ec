"""The campaign's seeds: the store's seed records and the scheduler's view of them, kept in step.

Adding a seed writes it to the store (case, metadata, features; one transaction that also counts
the execution's hits) and gives the scheduler its rare features. Executions that are not kept
still count in the store's hit counts, in one transaction per status tick (`flush_hits`).
"""

from __future__ import annotations

import random

import numpy as np

from corpus import CorpusError, seed_meta
from covfuzz.campaign.execution import Execution
from covfuzz.campaign.feedbacks import Feedback
from covfuzz.errors import CovfuzzError
from covfuzz.features import is_line
from covfuzz.ir import TestCase
from covfuzz.propagate import propagate
from covfuzz.scheduler import Scheduler, SeedInfo, lookup

LOAD_CHUNK = 256  # seeds whose features are merged at once on a resume


def seed_info(seed_id: str, meta: dict, features: np.ndarray, hits: np.ndarray,
              first_found: np.ndarray | None = None, times_chosen: int = 0) -> SeedInfo:
    """The scheduler's view of a seed: judged by its rarest arcs (and the ones it found first)."""
    arcs = ~is_line(features)
    rare = Scheduler.rare_subset(features[arcs], hits[arcs], first_found)
    return SeedInfo(seed_id, rare, int(meta.get("nodes") or 1), float(meta.get("exec_time") or 1.0),
                    times_chosen)


class SeedCorpus:
    def __init__(self, store, scheduler: Scheduler, feedbacks: list[Feedback]):
        self.store = store
        self.scheduler = scheduler
        self.feedbacks = feedbacks
        self.pending_hits: list[np.ndarray] = []  # executions not yet counted in the store
        self.compiled_seconds = [0.0, 0]  # seconds and count of the seeds kept that compiled

    def __len__(self) -> int:
        return len(self.scheduler.seeds)

    def load(self, times_chosen: dict[str, int]) -> None:
        """Resume: every stored seed to the scheduler (with the times it was chosen) and its
        features to the feedbacks, reading the store once."""
        counts = self.store.feature_counts()
        keys = np.fromiter(counts.keys(), dtype=np.uint64, count=len(counts))
        values = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        order = np.argsort(keys)
        keys, values = keys[order], values[order]

        def stored_hits(features):
            return lookup(keys, values, features, 1.0)

        infos, pending = [], []
        for seed_id, meta, features in self.store.iter_seeds(with_features=True):
            features = np.asarray(features, dtype=np.uint64)
            pending.append(features)
            if len(pending) >= LOAD_CHUNK:
                self._restore(pending)
                pending = []
            infos.append(seed_info(seed_id, meta, features, stored_hits(features),
                                   times_chosen=times_chosen.get(seed_id, 0)))
        self._restore(pending)
        self.scheduler.add_seeds(infos, stored_hits)

    def _restore(self, arrays: list[np.ndarray]) -> None:
        for feedback in self.feedbacks:
            feedback.restore(arrays)

    def count(self, ex: Execution) -> np.ndarray:
        """Count `ex`'s hits in the scheduler; returns the hit counts from before it."""
        before = self.scheduler.hits_of(ex.features)
        self.scheduler.record_hits(ex.features)
        return before

    def exec_time(self, ex: Execution) -> float:
        """What running `ex`'s case costs, as the scheduler weighs a seed. An execution that
        ran on its predecessor's compiled program (a sweep step) took a fraction of what the
        case or its mutants cost on their own: it counts as the mean kept seed that compiled."""
        if not ex.result.details.get("reused_compile"):
            return ex.seconds
        total, n = self.compiled_seconds
        return max(ex.seconds, total / n if n else 1.0)

    def count_cost(self, ex: Execution) -> None:
        """Count a kept execution that compiled in the mean that `exec_time` gives sweep steps."""
        if not ex.result.details.get("reused_compile"):
            self.compiled_seconds[0] += ex.seconds
            self.compiled_seconds[1] += 1

    def add(self, ex: Execution, hits_before: np.ndarray, found_at: float) -> None:
        origin = ex.origin
        self.count_cost(ex)
        meta = seed_meta(parent=origin.get("parent"), mutators=list(origin["mutators"]),
                         depth=int(origin.get("depth", 0)), nodes=len(ex.case.graph.nodes),
                         exec_time=self.exec_time(ex), features_found=len(ex.new_features),
                         n_features=int(len(ex.features)), outcome=ex.outcome, found_at=found_at,
                         **{k: v for k, v in origin.items()
                            if k not in ("parent", "mutators", "depth")})
        self.store.add_seed(ex.case_id, ex.data, meta, ex.features)  # counts this execution's hits
        self.scheduler.add_seed(seed_info(ex.case_id, meta, ex.features, hits_before,
                                          ex.new_features), self.scheduler.hits_of)
        ex.kept = True

    def defer_hits(self, ex: Execution) -> None:
        self.pending_hits.append(ex.features)

    def flush_hits(self) -> None:
        """Count the executions since the last flush in the store's hits (one transaction)."""
        if self.pending_hits:
            keys, counts = np.unique(np.concatenate(self.pending_hits), return_counts=True)
            self.store.add_hits(keys, counts)
            self.pending_hits = []

    def case(self, seed_id: str) -> TestCase:
        case = self.store.get_case(seed_id)
        if case is None:
            raise CorpusError(f"seed {seed_id} is gone from the store", db="testcases", key=seed_id)
        return propagate(case)

    def depth(self, seed_id: str) -> int:
        return int((self.store.get_meta(seed_id) or {}).get("depth", 0))

    def random_case(self, rng: random.Random) -> TestCase | None:
        """Any seed (for splicing), or None."""
        if not self.scheduler.seeds:
            return None
        other = rng.choice(self.scheduler.seeds)
        try:
            return self.case(other.seed_id)
        except CovfuzzError:
            return None

    def times_chosen(self) -> dict[str, int]:
        return {s.seed_id: s.times_chosen for s in self.scheduler.seeds if s.times_chosen}
