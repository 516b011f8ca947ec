"""Feature ids and the arrays that hold them (one definition for every layer).

A coverage feature is a 64-bit id: an arc of a measured file hashed to 62 bits, or a covered
line with `LINE_BIT` (bit 62) set (`harness.coverage` computes them). Bit 63 is never set on a
coverage id: it marks the other feature *families* (issue 19), whose ids are

    FAMILY_BIT | family << FAMILY_SHIFT | (56-bit blake2b of the feature's text)

with `family` in bits 59..61 (`FAMILIES`: 1 generated code, 2 values, 3 divergence) and bit 62
clear, so a family id never equals a coverage id and `is_line` stays true only for lines.
Every family travels in the same arrays and is stored with the seed beside coverage; each
campaign feedback picks its own family out (`family_mask`). Sets of features travel as sorted
unique uint64 numpy arrays; `FeatureSet` answers "have we seen this feature" for a campaign.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np

LINE_BIT = 1 << 62  # set on line features, clear on arc features
_MAX_ID = (1 << 64) - 1

FAMILY_BIT = 1 << 63  # set on every non-coverage feature id
FAMILY_SHIFT = 59  # the family number sits in bits 59..61
HASH_BITS = 56  # bits of a family feature's text hash (bits 0..55; 56..58 stay clear)
COVERAGE = "coverage"
FAMILIES = {"gencode": 1, "values": 2, "divergence": 3}  # family name -> number (1..7)
FEEDBACK_FAMILIES = (COVERAGE, *FAMILIES)  # every family a campaign may judge by
# The worker's environment names the families its executions compute (comma-separated);
# unset or empty: coverage only, as before issue 19 (triage and tests run that way).
FAMILY_ENV = "COVFUZZ_FEATURE_FAMILIES"


def family_id(family: str, text: str) -> int:
    """The feature id of `text` in family `family` (a FAMILIES name): stable across processes."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    low = int.from_bytes(digest, "little") & ((1 << HASH_BITS) - 1)
    return FAMILY_BIT | FAMILIES[family] << FAMILY_SHIFT | low


def family_codes(features) -> np.ndarray:
    """Per feature id: 0 for coverage, else its family number."""
    arr = np.asarray(features, dtype=np.uint64)
    tagged = (arr & np.uint64(FAMILY_BIT)) != 0
    codes = (arr >> np.uint64(FAMILY_SHIFT)) & np.uint64(7)
    return np.where(tagged, codes, np.uint64(0)).astype(np.int64)


def family_mask(features, family: str) -> np.ndarray:
    """Boolean mask of the ids of `family` (COVERAGE or a FAMILIES name) in a uint64 array."""
    return family_codes(features) == (0 if family == COVERAGE else FAMILIES[family])


def family_count(features) -> dict[str, int]:
    """How many ids of each family (FEEDBACK_FAMILIES order) an array holds."""
    codes = family_codes(features)
    return {name: int((codes == (0 if name == COVERAGE else FAMILIES[name])).sum())
            for name in FEEDBACK_FAMILIES}


def parse_families(text: str | None) -> tuple[str, ...]:
    """Family names from a comma-separated list (ValueError naming an unknown one)."""
    names = tuple(dict.fromkeys(n.strip() for n in (text or "").split(",") if n.strip()))
    unknown = [n for n in names if n not in FEEDBACK_FAMILIES]
    if unknown:
        raise ValueError(f"unknown feature family {unknown[0]!r:.40} "
                         f"(known: {', '.join(FEEDBACK_FAMILIES)})")
    return names


def sorted_unique(values) -> np.ndarray:
    """Sorted distinct uint64 values (sort-based: np.unique's hash path is slow on big uint64)."""
    arr = np.sort(np.asarray(values, dtype=np.uint64), kind="stable")
    if len(arr) < 2:
        return arr
    keep = np.empty(len(arr), dtype=bool)
    keep[0] = True
    np.not_equal(arr[1:], arr[:-1], out=keep[1:])
    return arr[keep]


def as_features(features: Iterable[int] | np.ndarray) -> np.ndarray:
    """Sorted unique uint64 array from ints in [0, 2**64) (ValueError otherwise)."""
    if isinstance(features, np.ndarray):
        if features.dtype.kind == "u":
            arr = features.astype(np.uint64, copy=False).ravel()
        elif features.dtype.kind == "i":
            if features.size and features.min() < 0:
                raise ValueError("feature ids must be in [0, 2**64)")
            arr = features.astype(np.uint64).ravel()
        else:
            raise ValueError(f"feature array must have an integer dtype, got {features.dtype}")
    else:
        items = list(features)
        for f in items:
            if (isinstance(f, bool) or not isinstance(f, (int, np.integer))
                    or not 0 <= int(f) <= _MAX_ID):
                raise ValueError(f"feature ids must be ints in [0, 2**64), got {f!r:.40}")
        arr = np.array([int(f) for f in items], dtype=np.uint64)
    return sorted_unique(arr)


def is_line(features: np.ndarray) -> np.ndarray:
    """Boolean mask of the line features in a uint64 array."""
    return (np.asarray(features, dtype=np.uint64) & np.uint64(LINE_BIT)) != 0


class FeatureSet:
    """The features seen so far (e.g. every feature of a campaign's stored seeds), with counts
    of arcs and lines. `unseen(features)` is the one novelty test the campaign uses."""

    def __init__(self) -> None:
        self._ids: set[int] = set()
        self.arcs = 0
        self.lines = 0

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, feature: int) -> bool:
        return int(feature) in self._ids

    def unseen(self, features: np.ndarray) -> np.ndarray:
        """The features of a sorted unique array that are not in the set yet (same order)."""
        arr = np.asarray(features, dtype=np.uint64)
        if not len(arr):
            return arr
        mask = np.fromiter((f not in self._ids for f in arr.tolist()), dtype=bool, count=len(arr))
        return arr[mask]

    def add(self, features: np.ndarray) -> int:
        """Add features (any uint64 array); returns how many were new."""
        new = self.unseen(sorted_unique(features))
        self._ids.update(new.tolist())
        lines = int(is_line(new).sum())
        self.lines += lines
        self.arcs += len(new) - lines
        return len(new)

    def add_all(self, arrays: Iterable[np.ndarray], chunk: int = 256) -> int:
        """Add many arrays (a resume adds every seed's), merged in numpy chunks first: a
        Python-level membership test per feature and seed would take minutes on a big corpus."""
        merged, pending = np.zeros(0, dtype=np.uint64), []
        for arr in arrays:
            pending.append(np.asarray(arr, dtype=np.uint64))
            if len(pending) >= chunk:
                merged = sorted_unique(np.concatenate([merged, *pending]))
                pending = []
        if pending:
            merged = sorted_unique(np.concatenate([merged, *pending]))
        return self.add(merged)
