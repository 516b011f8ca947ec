"""The outcome vocabulary: what one execution of a test case can end in (one definition).

`pass` and `invalid` are not failures (`invalid`: eager itself refused the program, so the
compiler is not to blame); every other outcome is a failure and goes to a bucket.
"""

from __future__ import annotations

OUTCOMES = ("pass", "invalid", "compile_crash", "runtime_crash", "mismatch", "grad_mismatch",
            "timeout", "process_crash", "oom")
FAILURE_KINDS = ("compile_crash", "runtime_crash", "mismatch", "grad_mismatch", "timeout",
                 "process_crash", "oom")
# Outcomes whose case ran to the end, so its coverage is trustworthy and it may become a seed.
KEEP_OUTCOMES = ("pass", "mismatch", "grad_mismatch")


def is_failure(outcome: str | None) -> bool:
    return outcome in FAILURE_KINDS
