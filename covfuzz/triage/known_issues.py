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

A bare JSON list of entries is accepted too. Each `pattern` is an RE2 regular expression
(https://github.com/google/re2/wiki/Syntax: Python's syntax without backreferences and
lookaround) searched (not anchored) in `signature + "\\n" + message`; `link` and `note` are free
text (optional). Matching failures are still listed, marked as known and counted separately;
nothing is hidden.

The file may come with a campaign directory from someone else, so it is untrusted input:
loading never executes code (bounded JSON parsing, tomllib after a nesting check); matching
uses RE2, which runs in time linear in the text (no backtracking, so no pattern can hang it);
patterns RE2 cannot compile are refused at load. Sizes are bounded: the file (`MAX_FILE_BYTES`),
entries (`MAX_ENTRIES`), a pattern's length (`MAX_PATTERN`) and compiled size (`MAX_PROGRAM`),
the compiled size of all patterns together (`MAX_TOTAL_PROGRAM`, which bounds the time to match
one failure against the whole file), and the matched text (`MAX_TEXT`). Anything malformed
raises `CampaignDataError` with a one-line message naming the file and the entry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import re2

from covfuzz import jsondata, workdir
from covfuzz.errors import CampaignDataError

MAX_FILE_BYTES = 1 << 20
MAX_ENTRIES = 1000
MAX_PATTERN = 1000
MAX_FIELD = 2000
MAX_TEXT = 4000
MAX_DEPTH = 16  # nesting of arrays/objects (tables); the format itself needs 3
# RE2 program sizes (instructions): matching costs up to about text length x program size, so
# these bound the time one failure takes against the whole file (well under a second).
MAX_PROGRAM = 2000
MAX_TOTAL_PROGRAM = 20000
RE2_MAX_MEM = 256 << 10  # per pattern: RE2's budget for its program and DFA cache


def _re2_options():
    options = re2.Options()
    options.log_errors = False     # a refused pattern is our one-line error, not a stderr log
    options.never_capture = True   # we only ask whether it matches: no submatch engine
    options.max_mem = RE2_MAX_MEM
    return options


_OPTIONS = _re2_options()


@dataclass(frozen=True)
class KnownIssue:
    pattern: str
    regex: object  # a compiled re2 pattern
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
        data = text.encode("utf-8", "replace")  # lone surrogates of odd messages become '?'
        for issue in self.issues:
            if issue.regex.search(data):
                return issue
        return None


def _fail(path: str, why: str):
    raise CampaignDataError(f"known-issues file {path}: {why}")


def toml_depth(text: str) -> int:
    """The deepest nesting of [ and { in TOML text, outside strings and comments (tomllib
    recurses once per level, so a deep file would raise RecursionError)."""
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch in "\"'":
            quote = ch * 3 if text.startswith(ch * 3, i) else ch
            i += len(quote)
            while i < n and not text.startswith(quote, i):
                if len(quote) == 1 and text[i] == "\n":  # one-line strings end at the line
                    break
                i += 2 if ch == '"' and text[i] == "\\" else 1
            i += len(quote)
            continue
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
        i += 1
    return deepest


def _first_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _parse_toml(data: bytes, path: str):
    import tomllib  # lazily: only TOML files need it
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(path, f"malformed TOML: not UTF-8 ({exc.reason} at byte {exc.start})")
    if toml_depth(text) > MAX_DEPTH:
        _fail(path, f"malformed TOML: nested more than {MAX_DEPTH} levels deep")
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:  # RecursionError: a last defence
        _fail(path, f"malformed TOML: {_first_line(exc)}")


def _compile(pattern: str, path: str, where: str):
    try:
        regex = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        why = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(
            exc.args[0], bytes) else _first_line(exc)
        _fail(path, f"{where}: pattern {pattern[:60]!r} is not a valid RE2 regular expression "
                    f"({why[:100]}; backreferences and lookaround are not supported)")
    except (UnicodeEncodeError, TypeError, ValueError) as exc:  # a lone surrogate, a NUL...
        _fail(path, f"{where}: pattern {pattern[:60]!r} cannot be compiled ({_first_line(exc)})")
    if regex.programsize > MAX_PROGRAM:
        _fail(path, f"{where}: pattern {pattern[:60]!r} is too complex (compiled size "
                    f"{regex.programsize}, at most {MAX_PROGRAM}); simplify its repetitions")
    return regex


def parse(data: bytes, path: str = "<known issues>") -> KnownIssues:
    if len(data) > MAX_FILE_BYTES:
        _fail(path, f"larger than {MAX_FILE_BYTES} bytes")
    if path.endswith(".toml"):
        obj = _parse_toml(data, path)
    else:
        obj = jsondata.loads(data, f"known-issues file {path}", CampaignDataError,
                             max_bytes=MAX_FILE_BYTES, max_depth=MAX_DEPTH)
    if isinstance(obj, dict):
        extra = set(obj) - {"issues"}
        if extra:
            _fail(path, f"unexpected top-level key(s) {sorted(extra)[:5]} (expected 'issues')")
        obj = obj.get("issues", [])
    if not isinstance(obj, list):
        _fail(path, "expected a list of entries (or an object with an 'issues' list)")
    if len(obj) > MAX_ENTRIES:
        _fail(path, f"{len(obj)} entries, at most {MAX_ENTRIES}")
    issues = []
    total_program = 0
    for i, entry in enumerate(obj):
        where = f"entry {i}"
        if not isinstance(entry, dict):
            _fail(path, f"{where}: expected an object with 'pattern'")
        extra = set(entry) - {"pattern", "link", "note"}
        if extra:
            _fail(path, f"{where}: unexpected key(s) {sorted(map(str, extra))[:5]}")
        pattern = entry.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            _fail(path, f"{where}: 'pattern' must be a non-empty string")
        if len(pattern) > MAX_PATTERN:
            _fail(path, f"{where}: pattern longer than {MAX_PATTERN} characters")
        for key in ("link", "note"):
            value = entry.get(key, "")
            if not isinstance(value, str) or len(value) > MAX_FIELD:
                _fail(path, f"{where}: {key!r} must be a string of at most {MAX_FIELD} characters")
        regex = _compile(pattern, path, where)
        total_program += regex.programsize
        if total_program > MAX_TOTAL_PROGRAM:
            _fail(path, f"{where}: the patterns together are too complex (compiled size over "
                        f"{MAX_TOTAL_PROGRAM}); merge or simplify them")
        issues.append(KnownIssue(pattern, regex, entry.get("link", ""), entry.get("note", "")))
    return KnownIssues(issues, path)


def load(path: str | None, directory: str | None = None) -> KnownIssues:
    """The known issues of `path`, or of `directory/known_issues.json` when `path` is None
    (an absent default file is no error: no known issues)."""
    if path is None:
        if directory is None:
            return KnownIssues()
        path = next((p for p in workdir.known_issues_paths(directory) if os.path.exists(p)), None)
        if path is None:
            return KnownIssues()
    if not os.path.exists(path):
        _fail(path, "no such file")
    if not os.path.isfile(path):  # a FIFO or a device would block or never end
        _fail(path, "not a regular file")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)  # bounded: the size check is in parse
    except OSError as exc:
        _fail(path, f"unreadable: {exc.strerror or exc}")
    return parse(data, path)
