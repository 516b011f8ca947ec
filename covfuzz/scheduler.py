"""Seed scheduling (which corpus entry to mutate) and mutator selection (which mutators to stack).

Seed energy follows AFL++'s "rare" schedule and libFuzzer's entropic idea: a seed is worth
mutating in proportion to how rare its features are across *all executions so far*
(sum over its features of 1/hits^2), boosted when
it is "favored" (the smallest, then fastest, seed that owns some feature, as in AFL's top_rated)
and when it came close to a divergence (its best divergence bucket, issue 19: value and shape
mutations of such a seed can climb to a miscompile), and decayed by how often it has already
been chosen. Energies are recomputed in bulk with numpy
every `refresh_every` picks (AFL's cull_queue), not on every pick.

Mutator selection is a Thompson-sampling bandit: each mutator keeps Beta(1 + wins, 1 + losses),
where a win is a candidate that found a new feature or a new failure bucket.

`RateBandit` chooses between strategies whose payoff is a *rate* (new features per second of
execution): generation vs settings mutation vs graph mutation, and which compile setting to
change. Its statistics decay, because yields fall as a campaign saturates what it has found.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import numpy as np

from covfuzz.features import sorted_unique

# What one execution's new features count for at most, when learning which choice pays: the
# first executions of a campaign find thousands of features that any graph would have found,
# and uncapped they would credit whatever those cases happened to contain for hundreds of
# executions (covfuzz/traits.py uses the same cap).
GAIN_CAP = 300.0


def match(keys: np.ndarray, features) -> tuple[np.ndarray, np.ndarray]:
    """(position in `keys` (sorted, non-empty), whether the key there is the feature) per feature."""
    feats = np.asarray(features, dtype=np.uint64)
    pos = np.clip(np.searchsorted(keys, feats), 0, len(keys) - 1)
    return pos, keys[pos] == feats


def lookup(keys: np.ndarray, values: np.ndarray, features, missing: float) -> np.ndarray:
    """values[i] where keys[i] == feature (keys sorted), `missing` for features not in keys."""
    if not len(keys):
        return np.full(len(np.asarray(features)), missing, dtype=np.float64)
    pos, found = match(keys, features)
    return np.where(found, values[pos], missing)


RARE_PER_SEED = 512  # features a seed is judged by (libFuzzer keeps a similar rare subset)
# Energy x (1 + bucket * DIVERGENCE_BOOST) for a seed whose outputs reached divergence bucket
# `bucket` (harness/values.py: 1..8 for error ratios 1e-4..1 of the tolerance, 9 past it).
DIVERGENCE_BOOST = 0.5


@dataclass
class SeedInfo:
    seed_id: str
    features: np.ndarray  # sorted unique uint64: the seed's rarest features when it was added
    nodes: int
    exec_time: float
    times_chosen: int = 0


@dataclass
class MutatorStats:
    wins: int = 0
    tries: int = 0


class Scheduler:
    """Energy over seeds, computed from hit counts of the features the seeds are judged by.

    Memory stays bounded per seed: a seed keeps only its `RARE_PER_SEED` rarest features (and
    every feature it found first), and hit counts are tracked only for those features.
    """

    def __init__(self, rng: random.Random, refresh_every: int = 50):
        self.rng = rng
        self.seeds: list[SeedInfo] = []
        self.index: dict[str, int] = {}
        self.tracked = np.zeros(0, dtype=np.uint64)  # sorted feature ids
        self.counts = np.zeros(0, dtype=np.float64)  # executions that hit tracked[i]
        self.refresh_every = refresh_every
        self._weights: list[float] = []
        self._cum_weights: list[float] = []
        self._favored: set[int] = set()
        self._picks_since_refresh = refresh_every
        self._flat = None  # cache of _flat_features() (None: seeds were added since)
        self._best_cost = np.zeros(0, dtype=np.float64)  # per tracked feature: cheapest owner's cost
        self._best_owner = np.zeros(0, dtype=np.int64)  # ... and its seed index (-1: none)
        self._featureless: set[int] = set()
        self._divergence: dict[str, int] = {}  # seed id -> best divergence bucket (> 0)
        self.mutators: dict[str, MutatorStats] = {}

    # ----------------------------------------------------------------------------- seeds
    @staticmethod
    def rare_subset(features: np.ndarray, hits: np.ndarray, first_found: np.ndarray = None,
                    limit: int = RARE_PER_SEED) -> np.ndarray:
        """The `limit` features with the fewest hits, plus those the seed found first."""
        features = np.asarray(features, dtype=np.uint64)
        if len(features) > limit:
            keep = features[np.argsort(hits, kind="stable")[:limit]]
        else:
            keep = features
        if first_found is not None and len(first_found):
            keep = np.concatenate([keep, np.asarray(first_found, dtype=np.uint64)])
        return sorted_unique(keep)

    def add_seed(self, info: SeedInfo, hits_of=None) -> None:
        """Add a seed; `hits_of(features) -> counts` initializes newly tracked features."""
        self.add_seeds([info], hits_of)

    def add_seeds(self, infos: list[SeedInfo], hits_of=None) -> None:
        """Add seeds in one merge of the tracked features (a resume adds the whole corpus)."""
        added = []
        for info in infos:
            if info.seed_id not in self.index:  # known already, or twice in `infos`
                self.index[info.seed_id] = len(self.seeds)
                self.seeds.append(info)
                added.append(info)
        if not added:
            return
        incoming = sorted_unique(np.concatenate([i.features for i in added]))
        fresh = np.setdiff1d(incoming, self.tracked, assume_unique=True)
        if len(fresh):
            initial = (np.asarray(hits_of(fresh), dtype=np.float64) if hits_of is not None
                       else np.ones(len(fresh)))
            merged = np.concatenate([self.tracked, fresh])
            order = np.argsort(merged, kind="stable")
            self.tracked = merged[order]
            self.counts = np.concatenate([self.counts, np.maximum(initial, 1.0)])[order]
            self._best_cost = np.concatenate([self._best_cost, np.full(len(fresh), np.inf)])[order]
            self._best_owner = np.concatenate([self._best_owner,
                                               np.full(len(fresh), -1, dtype=np.int64)])[order]
        # Favored bookkeeping, incrementally: the cheapest owner of each tracked feature (ties go
        # to the older seed). Sizes and times of stored seeds never change.
        for info in added:
            i = self.index[info.seed_id]
            if not len(info.features):
                self._featureless.add(i)
                continue
            pos = np.searchsorted(self.tracked, info.features)
            cost = info.nodes * 10.0 + info.exec_time
            cheaper = pos[cost < self._best_cost[pos]]
            self._best_cost[cheaper] = cost
            self._best_owner[cheaper] = i
        self._flat = None
        self._picks_since_refresh = self.refresh_every  # new seeds deserve a fresh look

    def set_divergence(self, seed_id: str, bucket: int) -> None:
        """Note a seed's best divergence bucket (its energy grows with it)."""
        if bucket > self._divergence.get(seed_id, 0):
            self._divergence[seed_id] = int(bucket)
            self._picks_since_refresh = self.refresh_every

    def divergence(self, seed_id: str) -> int:
        return self._divergence.get(seed_id, 0)

    def record_hits(self, features) -> None:
        """Count one execution that hit `features` (only tracked features matter)."""
        if not len(self.tracked):
            return
        pos, found = match(self.tracked, features)
        np.add.at(self.counts, pos[found], 1.0)

    def hits_of(self, features) -> np.ndarray:
        return lookup(self.tracked, self.counts, features, 0.0)

    def _flat_features(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features of all seeds concatenated, owning seed index, position in `tracked`);
        rebuilt only when seeds were added (every seed feature is tracked)."""
        if self._flat is None:
            feats = [s.features for s in self.seeds]
            lengths = np.array([len(f) for f in feats], dtype=np.int64)
            flat = np.concatenate(feats) if feats else np.zeros(0, dtype=np.uint64)
            owner = np.repeat(np.arange(len(self.seeds), dtype=np.int32), lengths)
            self._flat = (flat, owner, np.searchsorted(self.tracked, flat).astype(np.int32))
        return self._flat

    def energies(self) -> list[float]:
        """One weight per seed (recomputed now, vectorized over all seeds' features)."""
        if not self.seeds:
            return []
        if self._flat is None:  # seeds' sizes and times never change: only new seeds matter
            self._favored = self._compute_favored()
        flat, owner, pos = self._flat_features()
        # Rarity: features hit by few executions dominate (1/hits^2), like AFL++ "rare";
        # the square keeps a seed's many common features from outweighing one rare one.
        hit = np.maximum(self.counts[pos], 1.0)
        rarity = np.bincount(owner, weights=1.0 / (hit * hit), minlength=len(self.seeds))
        favored = np.full(len(self.seeds), 0.15)
        favored[list(self._favored)] = 1.0
        nodes = np.fromiter((s.nodes for s in self.seeds), dtype=np.float64, count=len(self.seeds))
        exec_time = np.fromiter((s.exec_time for s in self.seeds), dtype=np.float64,
                                count=len(self.seeds))
        chosen = np.fromiter((s.times_chosen for s in self.seeds), dtype=np.float64,
                             count=len(self.seeds))
        near = np.fromiter((self._divergence.get(s.seed_id, 0) for s in self.seeds),
                           dtype=np.float64, count=len(self.seeds))
        weights = (np.maximum(rarity, 1e-3) * favored / (1.0 + nodes / 8.0) / (0.5 + exec_time)
                   * (1.0 + DIVERGENCE_BOOST * near) / np.sqrt(1.0 + chosen))
        return weights.tolist()

    def _compute_favored(self) -> set[int]:
        """Indices of seeds that are the cheapest owner of at least one feature (and seeds with
        no features at all, which nothing else can stand for)."""
        owners = np.unique(self._best_owner[self._best_owner >= 0])
        return set(owners.tolist()) | self._featureless

    def pick(self) -> tuple[SeedInfo, float]:
        """A seed chosen with probability proportional to its energy, and that energy."""
        if self._picks_since_refresh >= self.refresh_every or len(self._weights) != len(self.seeds):
            self._weights = self.energies()
            self._cum_weights = list(itertools.accumulate(self._weights))
            self._picks_since_refresh = 0
        self._picks_since_refresh += 1
        i = self.rng.choices(range(len(self.seeds)), cum_weights=self._cum_weights)[0]
        seed = self.seeds[i]
        seed.times_chosen += 1
        return seed, self._weights[i]

    def is_favored(self, seed_id: str) -> bool:
        """(As of the last energy refresh.)"""
        return self.index.get(seed_id) in self._favored

    # ----------------------------------------------------------------------------- mutators
    def choose_mutators(self, names: list[str], k: int) -> list[str]:
        """k mutator names, each drawn by Thompson sampling over past wins."""
        chosen = []
        for _ in range(k):
            best, best_draw = names[0], -1.0
            for name in names:
                stats = self.mutators.setdefault(name, MutatorStats())
                draw = self.rng.betavariate(1 + stats.wins, 1 + stats.tries - stats.wins)
                if draw > best_draw:
                    best, best_draw = name, draw
            chosen.append(best)
        return chosen

    def reward(self, names: list[str], won: bool) -> None:
        for name in set(names):
            stats = self.mutators.setdefault(name, MutatorStats())
            stats.tries += 1
            stats.wins += int(won)

    def mutator_table(self) -> dict[str, dict]:
        return {n: {"tries": s.tries, "wins": s.wins} for n, s in sorted(self.mutators.items())}

    def state(self) -> dict[str, dict]:
        """The mutator bandit's counts (the campaign state saves them; times chosen live on
        the seeds and are saved from there)."""
        return self.mutator_table()

    def load_state(self, table: dict[str, dict]) -> None:
        for name, row in table.items():
            self.mutators[name] = MutatorStats(int(row.get("wins", 0)), int(row.get("tries", 0)))


class RateBandit:
    """Thompson sampling over arms whose reward is new features per second of execution.

    Each arm keeps decayed totals `gain` (new features, capped per execution so one jackpot does
    not lock the choice for hundreds of executions) and `cost` (seconds). Its rate is drawn from
    the Gamma(PRIOR_GAIN + gain, prior cost + cost) posterior of a Poisson rate, where the prior
    says "as good as all arms together" (worth PRIOR_GAIN features); the arm with the largest
    draw wins. An `explore` share of choices is uniform, so no arm starves.
    """

    PRIOR_GAIN = 1.0

    def __init__(self, rng: random.Random, explore: float = 0.1, decay: float = 0.99,
                 gain_cap: float = GAIN_CAP):
        self.rng = rng
        self.explore = explore
        self.decay = decay
        self.gain_cap = gain_cap
        self.arms: dict[str, list[float]] = {}  # name -> [gain, cost, tries]

    def choose(self, names: list[str]) -> str:
        untried = [n for n in names if n not in self.arms]
        if untried:  # every arm is played once before the posterior decides (a sweep)
            return self.rng.choice(untried)
        if self.rng.random() < self.explore:
            return self.rng.choice(names)
        prior_cost = self.PRIOR_GAIN / self.pooled_rate()
        best, best_draw = names[0], -1.0
        for name in names:
            gain, cost, _ = self.arms[name]
            draw = self.rng.gammavariate(self.PRIOR_GAIN + gain, 1.0 / (prior_cost + cost))
            if draw > best_draw:
                best, best_draw = name, draw
        return best

    def pooled_rate(self) -> float:
        """New features per second over all arms (1.0 before anything is known)."""
        gain = sum(row[0] for row in self.arms.values())
        cost = sum(row[1] for row in self.arms.values())
        return (gain + 1.0) / (cost + 1.0)

    def reward(self, name: str, gain: float, seconds: float) -> None:
        for row in self.arms.values():
            row[0] *= self.decay
            row[1] *= self.decay
        row = self.arms.setdefault(name, [0.0, 0.0, 0])
        row[0] += min(max(gain, 0.0), self.gain_cap)
        row[1] += max(seconds, 0.01)
        row[2] += 1

    def credit(self, name: str, gain: float) -> None:
        """A late reward for an arm already played: `gain` more (capped), no time and no try
        (what it paid was learned after its execution was rewarded: a bucket's root cause,
        once triage names it). Unplayed arms are left alone."""
        row = self.arms.get(name)
        if row is not None:
            row[0] += min(max(gain, 0.0), self.gain_cap)

    def table(self) -> dict[str, dict]:
        prior_cost = self.PRIOR_GAIN / self.pooled_rate()
        return {n: {"gain": round(g, 3), "cost": round(c, 3), "tries": int(t),
                    "rate": round((self.PRIOR_GAIN + g) / (prior_cost + c), 3)}
                for n, (g, c, t) in sorted(self.arms.items())}

    def state(self) -> dict[str, dict]:
        """The arms unrounded (what a resume needs; `table()` is for people)."""
        return {n: {"gain": g, "cost": c, "tries": int(t)} for n, (g, c, t) in sorted(self.arms.items())}

    def load(self, table: dict) -> None:
        """Restore `state()` (or `table()`) output; rows that are not well-formed are skipped."""
        for name, row in (table.items() if isinstance(table, dict) else ()):
            try:
                self.arms[str(name)] = [max(float(row["gain"]), 0.0), max(float(row["cost"]), 0.0),
                                        max(int(row["tries"]), 0)]
            except (KeyError, TypeError, ValueError):
                continue


__all__ = ["Scheduler", "SeedInfo", "MutatorStats", "RateBandit"]
