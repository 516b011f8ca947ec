"""The known-issues file: failures already reported upstream, matched by regex.

Format (JSON, or TOML when the file name ends in `.toml`); by default `DIR/known_issues.json`:

    {"issues": [
      {"pattern": "compile_crash\\\\|.*LoweringException", "link": "https://github.com/pytorch/pytorch/issues/1",
       "note": "lowering of foo"}
    ]}

    # TOML
    [[issues]]
    pattern = 'mismatch\\|torch\\.cumsum'
    link = "https://github.com/pytorch/pytorch/issues/2"

A bare JSON list of entries is accepted too. Each `pattern` is a Python regex searched (not
anchored) in `signature + "\\n" + message`; `link` and `note` are free text (optional). Matching
failures are still listed, marked as known and counted separately; nothing is hidden.

Loading never executes code (json / tomllib only). Anything malformed raises `CovfuzzError`
with a one-line message naming the file and the entry. Patterns are limited in length
(`MAX_PATTERN`) and count (`MAX_ENTRIES`), and the matched text is capped (`MAX_TEXT`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from covfuzz.errors import CovfuzzError

DEFAULT_NAME = "known_issues.json"
MAX_FILE_BYTES = 1 << 20
MAX_ENTRIES = 1000
MAX_PATTERN = 1000
MAX_FIELD = 2000
MAX_TEXT = 4000


@dataclass(frozen=True)
class KnownIssue:
    pattern: str
    regex: re.Pattern
    link: str = ""
    note: str = ""

    def to_dict(self) -> dict:
        return {"pattern": self.pattern, "link": self.link, "note": self.note}


class KnownIssues:
    def __init__(self, issues: list[KnownIssue] | None = None, path: str | None = None):
        self.issues = list(issues or [])
        self.path = path

    def __len__(self) -> int:
        return len(self.issues)

    def match(self, signature: str, message: str = "") -> KnownIssue | None:
        """The first entry whose pattern occurs in the signature or message, else None."""
        text = f"{signature or ''}\n{message or ''}"[:MAX_TEXT]
        for issue in self.issues:
            if issue.regex.search(text):
                return issue
        return None


def _fail(path: str, why: str):
    raise CovfuzzError(f"known-issues file {path}: {why}")


# A quantified group that itself ends in a quantifier: the classic catastrophic-backtracking shape.
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}?]\)\s*[+*{]")


def parse(data: bytes, path: str = "<known issues>") -> KnownIssues:
    if len(data) > MAX_FILE_BYTES:
        _fail(path, f"larger than {MAX_FILE_BYTES} bytes")
    if path.endswith(".toml"):
        import tomllib
        try:
            obj = tomllib.loads(data.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            _fail(path, f"malformed TOML: {str(exc).splitlines()[0] if str(exc) else exc}")
    else:
        try:
            obj = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            _fail(path, f"malformed JSON: {str(exc).splitlines()[0] if str(exc) else exc}")
    if isinstance(obj, dict):
        extra = set(obj) - {"issues"}
        if extra:
            _fail(path, f"unexpected top-level key(s) {sorted(extra)} (expected 'issues')")
        obj = obj.get("issues", [])
    if not isinstance(obj, list):
        _fail(path, "expected a list of entries (or an object with an 'issues' list)")
    if len(obj) > MAX_ENTRIES:
        _fail(path, f"{len(obj)} entries, at most {MAX_ENTRIES}")
    issues = []
    for i, entry in enumerate(obj):
        where = f"entry {i}"
        if not isinstance(entry, dict):
            _fail(path, f"{where}: expected an object with 'pattern'")
        extra = set(entry) - {"pattern", "link", "note"}
        if extra:
            _fail(path, f"{where}: unexpected key(s) {sorted(map(str, extra))}")
        pattern = entry.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            _fail(path, f"{where}: 'pattern' must be a non-empty string")
        if len(pattern) > MAX_PATTERN:
            _fail(path, f"{where}: pattern longer than {MAX_PATTERN} characters")
        for key in ("link", "note"):
            value = entry.get(key, "")
            if not isinstance(value, str) or len(value) > MAX_FIELD:
                _fail(path, f"{where}: {key!r} must be a string of at most {MAX_FIELD} characters")
        if _NESTED_QUANTIFIER.search(pattern):
            _fail(path, f"{where}: nested quantifiers such as (a+)+ can take exponential time; "
                        "rewrite the pattern")
        try:
            regex = re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as exc:
            _fail(path, f"{where}: bad regex {pattern[:60]!r}: {exc}")
        issues.append(KnownIssue(pattern, regex, entry.get("link", ""), entry.get("note", "")))
    return KnownIssues(issues, path)


def load(path: str | None, directory: str | None = None) -> KnownIssues:
    """The known issues of `path`, or of `directory/known_issues.json` when `path` is None
    (an absent default file is no error: no known issues)."""
    if path is None:
        if directory is None:
            return KnownIssues()
        path = os.path.join(directory, DEFAULT_NAME)
        if not os.path.exists(path):
            toml = os.path.join(directory, "known_issues.toml")
            if not os.path.exists(toml):
                return KnownIssues()
            path = toml
    if not os.path.isfile(path):
        _fail(path, "no such file")
    with open(path, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    return parse(data, path)
