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
"""

from __future__ import annotations

from typing import Iterable, Protocol

import numpy as np

from covfuzz.campaign.execution import Execution
from covfuzz.features import FeatureSet
from covfuzz.outcomes import KEEP_OUTCOMES


class Feedback(Protocol):
    name: str

    def judge(self, ex: Execution) -> np.ndarray: ...

    def commit(self, features: np.ndarray) -> None: ...

    def restore(self, arrays: Iterable[np.ndarray]) -> None: ...


class CoverageFeedback:
    """Python coverage of torch/_inductor and torch/_dynamo: an execution that ran to the end
    (an outcome in KEEP_OUTCOMES) and covered an arc or a line no seed covers is new."""

    name = "coverage"

    def __init__(self) -> None:
        self.seen = FeatureSet()  # every feature of the stored seeds

    def restore(self, arrays: Iterable[np.ndarray]) -> None:
        self.seen.add_all(arrays)

    def judge(self, ex: Execution) -> np.ndarray:
        if ex.outcome not in KEEP_OUTCOMES:
            return np.zeros(0, dtype=np.uint64)
        return self.seen.unseen(ex.features)

    def commit(self, features: np.ndarray) -> None:
        self.seen.add(features)

    @property
    def arcs(self) -> int:
        return self.seen.arcs

    @property
    def lines(self) -> int:
        return self.seen.lines
