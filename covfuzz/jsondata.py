"""JSON from outside, parsed with bounds: size, nesting depth, no NaN/Infinity.

Python's json module recurses once per nesting level, so a few hundred bytes of `[[[[...` raise
RecursionError (a traceback, not the documented error). `loads` measures the nesting first, on
the raw text, and refuses what is too deep or too large with the caller's error type, naming
`what` was being read.
"""

from __future__ import annotations

import json

MAX_DEPTH = 32  # deeper than any record covfuzz writes (test cases nest about 6 levels)
DEFAULT_MAX_BYTES = 16 << 20


def nesting_depth(text: str) -> int:
    """The deepest nesting of [ and { in JSON text, not counting brackets inside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def loads(data: bytes | str, what: str, error: type[Exception], max_bytes: int = DEFAULT_MAX_BYTES,
          max_depth: int = MAX_DEPTH):
    """The JSON value in `data`, or `error("WHAT: why")` when it is too large, too deeply
    nested, not UTF-8 or not JSON (NaN and Infinity are not JSON)."""
    if len(data) > max_bytes:
        raise error(f"{what}: {len(data)} bytes, more than the {max_bytes} allowed")
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else data
    except UnicodeDecodeError as exc:
        raise error(f"{what}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if nesting_depth(text) > max_depth:
        raise error(f"{what}: nested more than {max_depth} levels deep")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise error(f"{what}: not valid JSON ({exc})") from None
