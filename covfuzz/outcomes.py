"""The outcome vocabulary: what one execution of a test case can end in (one definition).

`pass` and `invalid` are not failures (`invalid`: eager itself refused the program, so the
compiler is not to blame); every other outcome is a failure and goes to a bucket.
`metamorphic` (issue 19): the case passed, but compiled again under a metamorphic variant of
its settings (`CompileSettings.metamorphic`) it gave a different result on an output eager
cannot judge (no float64 reference), so the two compiled results disagree with no referee.
"""

from __future__ import annotations

OUTCOMES = ("pass", "invalid", "compile_crash", "runtime_crash", "mismatch", "grad_mismatch",
            "metamorphic", "timeout", "process_crash", "oom")
FAILURE_KINDS = ("compile_crash", "runtime_crash", "mismatch", "grad_mismatch", "metamorphic",
                 "timeout", "process_crash", "oom")
# Outcomes whose case ran to the end, so its coverage is trustworthy and it may become a seed.
KEEP_OUTCOMES = ("pass", "mismatch", "grad_mismatch", "metamorphic")


def is_failure(outcome: str | None) -> bool:
    return outcome in FAILURE_KINDS
