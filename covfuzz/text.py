"""Text read from outside (a store, a stats file, a test-case file) made safe to print.

`printable(text)` escapes control characters (C0, DEL, C1: ANSI escape sequences, carriage
returns, bells) the way Python's `repr` would, so stored text can never move the cursor, clear
the screen or set the window title of the terminal it is printed to. Newlines and tabs are
escaped too unless `keep_newlines`.
"""

from __future__ import annotations


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _unsafe(ch: str, keep_newlines: bool) -> bool:
    if keep_newlines and ch in "\n\t":
        return False
    code = ord(ch)
    return (code < 0x20 or 0x7F <= code < 0xA0 or code in (0x2028, 0x2029)
            or 0xD800 <= code < 0xE000)  # lone surrogates cannot be written to a terminal


def printable(text: object, keep_newlines: bool = False) -> str:
    s = text if isinstance(text, str) else str(text)
    if not any(_unsafe(ch, keep_newlines) for ch in s):
        return s
    return "".join(_escape(ch) if _unsafe(ch, keep_newlines) else ch for ch in s)
