"""The data that flows through one turn of the loop: a candidate, then its execution.

A `Candidate` is a test case with its origin (how it was made). An `Execution` is a candidate
with the worker's result; the campaign's components fill in what they decide about it
(feedbacks: what it found that is new; objectives: which failure bucket it belongs to; the
corpus: whether it was kept as a seed), and later components read those decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from covfuzz import serialize
from covfuzz.features import sorted_unique
from covfuzz.ir import TestCase

# Names in an origin's `mutators` that mark where a case came from rather than a change made to
# it: none of them is a bandit arm, and only `generate` (a strategy of its own) counts wins.
MARKERS = ("seed-file", "inject-fault", "sync")
NOT_MUTATORS = (*MARKERS, "generate")


@dataclass
class Candidate:
    """A test case about to run, and how it was made: `origin` holds `parent` (a seed id or
    None), `mutators` (names applied, or ["generate"]), `depth`, and where they apply
    `strategy`, `settings` (settings moves made), `energy` (of the parent) and `fault`."""

    case: TestCase
    origin: dict


@dataclass
class Execution:
    candidate: Candidate
    result: object  # harness.result.RunResult
    case_id: str
    data: bytes  # the stored form of the case
    features: np.ndarray  # sorted unique feature ids the execution covered
    novelty: dict[str, int] = field(default_factory=dict)  # feedback name -> new features found
    new_features: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))  # all families
    bucket: str | None = None  # failure signature id, when an objective bucketed it
    signature: str | None = None
    new_bucket: bool = False
    kept: bool = False  # added to the corpus as a seed

    @classmethod
    def of(cls, candidate: Candidate, result, data: bytes | None = None) -> "Execution":
        return cls(candidate=candidate, result=result, case_id=serialize.case_id(candidate.case),
                   data=data if data is not None else serialize.encode(candidate.case),
                   features=sorted_unique(result.features))

    @property
    def case(self) -> TestCase:
        return self.candidate.case

    @property
    def origin(self) -> dict:
        return self.candidate.origin

    @property
    def outcome(self) -> str:
        return self.result.outcome

    @property
    def seconds(self) -> float:
        return float(self.result.timings.get("total") or 0.0)

    @property
    def gain(self) -> int:
        """New things found, over every feedback (what the bandits learn from)."""
        return sum(self.novelty.values())

    @property
    def won(self) -> bool:
        return self.kept or self.new_bucket

    def mutator_names(self) -> list[str]:
        """The mutators applied (the bandit's arms)."""
        return [n for n in self.origin["mutators"] if n not in NOT_MUTATORS]

    def credited_names(self) -> list[str]:
        """The mutators and strategies credited with a win (`wins` in the status)."""
        return [n for n in self.origin["mutators"] if n not in MARKERS]
