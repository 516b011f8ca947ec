"""Coverage feature ids and the arrays that hold them (one definition for every layer).

A feature is a 64-bit id: an arc of a measured file hashed to 62 bits, or a covered line with
`LINE_BIT` set (`harness.coverage` computes them). Sets of features travel as sorted unique
uint64 numpy arrays; `FeatureSet` answers "have we seen this feature" for a campaign.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

LINE_BIT = 1 << 62  # set on line features, clear on arc features
_MAX_ID = (1 << 64) - 1


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
