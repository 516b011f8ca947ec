"""Objectives: components that decide what is a failure and which bucket it goes to (LibAFL's
objectives). A bucket is a failure signature (covfuzz/triage/signature.py); the store keeps one
record per bucket with a few replayable examples.

An objective's `judge(ex) -> bool` says whether it claimed `ex` as a failure; it notes the
bucket on `ex` (`bucket`, `signature`, and `new_bucket` when the bucket is new). Objectives are
asked in order and the first that claims an execution decides its bucket. A new way of judging
(a confirmation in a fresh process, say) is a new class here, added to the
campaign's list.
"""

from __future__ import annotations

from typing import Callable, Protocol

from covfuzz.campaign.execution import Execution
from covfuzz.outcomes import is_failure
from covfuzz.triage.signature import check_of, signature_of


class Objective(Protocol):
    def judge(self, ex: Execution) -> bool: ...


class FailureObjective:
    """Every failing outcome (crash, mismatch, timeout, ...) goes to the bucket of its signature."""

    def __init__(self, store, log: Callable[[str], None]):
        self.store = store
        self.log = log

    def judge(self, ex: Execution) -> bool:
        if not is_failure(ex.outcome):
            return False
        ex.bucket, ex.signature, ex.new_bucket = record_failure(
            self.store, ex.case, ex.case_id, ex.data, ex.result)
        if ex.new_bucket:
            self.log(f"[new failure] {ex.outcome} {ex.bucket} {ex.signature[:150]}")
        return True


def record_failure(store, case, case_id: str, data: bytes, result) -> tuple[str, str, bool]:
    """Count a failing run (`result`: a RunResult) in the bucket of its signature, keeping the
    example: (bucket id, signature, whether the bucket is new)."""
    sig, sig_id = signature_of(case, result)
    extra = {"signature": sig}
    check = check_of(result)
    if check:
        extra["check"] = check  # the failing check, shown by `crashes`
    new = store.record_failure(sig_id, result.outcome, result.message or "",
                               result.exc_type or "", case_id, data, result.to_dict(),
                               extra=extra)
    return sig_id, sig, new
