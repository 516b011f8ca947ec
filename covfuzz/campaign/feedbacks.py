"""Feedbacks: components that decide whether an execution is interesting, that is, whether it
found something new that deserves a place in the corpus (LibAFL's feedbacks).

A feedback has a `name`, `judge(ex)` (the feature ids `ex` found that are new to it: an empty
array means nothing), `commit(features)` (they were kept with a seed: remember them, so the
next execution that finds the same is not new) and `restore(arrays)` (a resume: the features of
the stored seeds). Every family's features share one id space and are stored together with the
seed (issue 19's generated-code and value features are families of their own ids), so each
feedback picks its own family out of what it is given. An execution is kept when any feedback
found something; the bandits learn from the total. A new feedback family is a new class here,
added to the campaign's list.

Issue 19's families (ids tagged by `covfuzz.features.FAMILY_BIT`): `GencodeFeedback` (what
Inductor generated), `ValueFeedback` (op x dtypes x value classes x element regime per node) and
`DivergenceFeedback` (how close an output came to the tolerance, per op and dtype); the worker
computes them when its environment names them (`FAMILY_ENV`, set by the campaign). Each keeps
a running mean of what one execution finds (`mean_gain`), so the bandits can weigh a new
divergence bucket against thousands of new coverage arcs (`normalized_gain`).
"""

from __future__ import annotations

from typing import Iterable, Protocol

import numpy as np

from covfuzz.campaign.execution import Execution
from covfuzz.features import COVERAGE, FeatureSet, family_mask, parse_families
from covfuzz.outcomes import KEEP_OUTCOMES

GAIN_DECAY = 0.995  # weight of the past in a family's mean gain per execution
MAX_FAMILY_CREDIT = 10.0  # one execution counts for at most this many average ones per family


class Feedback(Protocol):
    name: str

    def judge(self, ex: Execution) -> np.ndarray: ...

    def commit(self, features: np.ndarray) -> None: ...

    def restore(self, arrays: Iterable[np.ndarray]) -> None: ...


class FamilyFeedback:
    """The features of one family (`family`) that no stored seed has, for executions whose
    outcome is in `outcomes`; and the running mean of how many one execution finds."""

    name = COVERAGE
    family = COVERAGE
    outcomes: tuple[str, ...] = KEEP_OUTCOMES

    def __init__(self) -> None:
        self.seen = FeatureSet()  # every feature of this family in the stored seeds
        self.mean_gain = 0.0  # decayed mean of new features per judged execution
        self._weight = 0.0

    def own(self, features: np.ndarray) -> np.ndarray:
        arr = np.asarray(features, dtype=np.uint64)
        return arr[family_mask(arr, self.family)] if len(arr) else arr

    def restore(self, arrays: Iterable[np.ndarray]) -> None:
        self.seen.add_all(self.own(a) for a in arrays)

    def judge(self, ex: Execution) -> np.ndarray:
        if ex.outcome not in self.outcomes:
            return np.zeros(0, dtype=np.uint64)
        new = self.seen.unseen(self.own(ex.features))
        self._weight = self._weight * GAIN_DECAY + 1.0
        self.mean_gain += (len(new) - self.mean_gain) / self._weight
        return new

    def commit(self, features: np.ndarray) -> None:
        self.seen.add(features)

    def credit(self, found: int) -> float:
        """`found` new features in units of this family's average execution (capped)."""
        if found <= 0:
            return 0.0
        return min(found / max(self.mean_gain, 1.0), MAX_FAMILY_CREDIT)

    def count(self) -> int:
        return len(self.seen)


class CoverageFeedback(FamilyFeedback):
    """Python coverage of torch/_inductor and torch/_dynamo: an execution that ran to the end
    (an outcome in KEEP_OUTCOMES) and covered an arc or a line no seed covers is new."""

    @property
    def arcs(self) -> int:
        return self.seen.arcs

    @property
    def lines(self) -> int:
        return self.seen.lines


class GencodeFeedback(FamilyFeedback):
    """The code Inductor generated (harness/gencode.py): a normalized line, loop structure,
    helper call, reduction init or index shape no seed's kernels had."""

    name = family = "gencode"


class ValueFeedback(FamilyFeedback):
    """Per node, op x dtypes x value classes of its inputs and output x element-count regime
    (harness/values.py) never seen before."""

    name = family = "values"


class DivergenceFeedback(FamilyFeedback):
    """An output that came closer to the oracle's tolerance, for its op and dtype, than any
    stored seed's (a passing run only: a mismatch is an objective, not a step toward one).
    `judge` notes the run's best bucket in the candidate's origin, so the seed's metadata
    records it and the scheduler favours seeds near a divergence."""

    name = family = "divergence"
    outcomes = ("pass",)

    def judge(self, ex: Execution) -> np.ndarray:
        bucket = (ex.result.details or {}).get("divergence")
        if (ex.outcome in self.outcomes and isinstance(bucket, int)
                and not isinstance(bucket, bool) and bucket > 0):
            ex.origin["divergence"] = bucket
        return super().judge(ex)


FEEDBACK_CLASSES = {cls.name: cls for cls in (CoverageFeedback, GencodeFeedback, ValueFeedback,
                                              DivergenceFeedback)}


def make_feedbacks(names: str | Iterable[str]) -> list[FamilyFeedback]:
    """The feedbacks for family names (a comma-separated string or names), coverage first
    whether named or not (the campaign's status counts its features)."""
    if isinstance(names, str):
        names = parse_families(names)
    wanted = [COVERAGE, *(n for n in names if n != COVERAGE)]
    for name in wanted:
        if name not in FEEDBACK_CLASSES:
            raise ValueError(f"unknown feature family {name!r:.40}")
    return [FEEDBACK_CLASSES[n]() for n in dict.fromkeys(wanted)]


def family_counts(feedbacks: Iterable) -> dict[str, int]:
    """Features seen per family (feedback name -> stored features of its family)."""
    return {fb.name: fb.count() for fb in feedbacks if hasattr(fb, "count")}


def normalized_gain(feedbacks: Iterable, novelty: dict[str, int]) -> float:
    """What an execution found, each family in units of its own average execution (capped),
    summed: a new divergence bucket weighs as much as an average coverage find."""
    return sum(fb.credit(novelty.get(fb.name, 0)) for fb in feedbacks if hasattr(fb, "credit"))
