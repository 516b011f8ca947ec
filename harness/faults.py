"""Test-only fault injection: what a worker does on purpose, so covfuzz's own fault handling can
be tested (`covfuzz fuzz --inject-faults RATE`, benchmarks/fault_campaign.py).

Active only when COVFUZZ_FAULT_INJECTION=1 in the worker's environment: a case whose seed is
one of these keys misbehaves (harness/execute.py triggers it). Kept apart from execute.py,
which imports torch's compiler, so a campaign can draw fault seeds without importing it.
"""

from __future__ import annotations

import os

FAULT_SEEDS = {
    0xFA017001: "segfault",       # ctypes.string_at(0) during the compiled stage
    0xFA017002: "abort",          # os.abort() during the compiled stage
    0xFA017003: "hang",           # `while True: pass` during the compiled stage
    0xFA017004: "memory",         # allocate 256 MiB chunks until killed
    0xFA017005: "raise_compile",  # compile with a backend that raises RuntimeError
    0xFA017006: "raise_eager",    # raise RuntimeError in the eager run
}


def fault_injection_enabled() -> bool:
    return os.environ.get("COVFUZZ_FAULT_INJECTION") == "1"
