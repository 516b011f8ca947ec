"""Feedbacks: components that decide whether an execution is interesting, that is, whether it
found something new that deserves a place in the corpus (LibAFL's feedbacks).

A feedback has a `name`, `judge(ex) -> int` (how many new things `ex` found: 0 means nothing;
it may also note them on `ex`) and `commit(ex)` (called when `ex` became a seed: remember what
it found, so the next execution that finds the same is not new). An execution is kept when any
feedback found something; the bandits learn from the sum. A new feedback family (generated
code, values, divergence) is a new class here, added to the campaign's list.
"""

from __future__ import annotations

from typing import Iterable, Protocol

import numpy as np

from covfuzz.campaign.execution import Execution
from covfuzz.features import FeatureSet
from covfuzz.outcomes import KEEP_OUTCOMES


class Feedback(Protocol):
    name: str

    def judge(self, ex: Execution) -> int: ...

    def commit(self, ex: Execution) -> None: ...


class CoverageFeedback:
    """Python coverage of torch/_inductor and torch/_dynamo: an execution that ran to the end
    (an outcome in KEEP_OUTCOMES) and covered an arc or a line no seed covers is new."""

    name = "coverage"

    def __init__(self) -> None:
        self.seen = FeatureSet()  # every feature of the stored seeds

    def load(self, features: Iterable[np.ndarray]) -> None:
        """Add the features of the seeds already stored (a resume)."""
        self.seen.add_all(features)

    def judge(self, ex: Execution) -> int:
        if ex.outcome not in KEEP_OUTCOMES:
            return 0
        ex.new_features = self.seen.unseen(ex.features)
        return len(ex.new_features)

    def commit(self, ex: Execution) -> None:
        self.seen.add(ex.new_features)

    @property
    def arcs(self) -> int:
        return self.seen.arcs

    @property
    def lines(self) -> int:
        return self.seen.lines
