"""Loading a test case from what a user names: a file, or an id in a campaign directory.

The one definition behind `covfuzz show`, `run`, `repro`, `replay` and `reduce`:

- a file in stored (`.cfz`) or JSON form; its size is checked before it is read;
- with a campaign directory, a seed id or failure-example id (16 hex digits), a signature id
  (12 hex digits) or a full signature, or a unique prefix of one of those ids (at least
  `MIN_PREFIX` hex digits), as git takes commit prefixes: an exact id wins, a prefix matching
  several ids is an error listing a few of them.

Every loader returns a `Resolved`: the case (propagated when its graph is valid, so specs are
filled; an invalid graph is returned as decoded, to be shown or reported as invalid), a short
label naming the case it picked, and what the campaign knows of the case's failure.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from corpus import CorpusError, open_campaign_store
from covfuzz import serialize
from covfuzz.errors import CovfuzzError, TestCaseFormatError
from covfuzz.ir import TestCase
from covfuzz.propagate import propagate
from covfuzz.triage.failures import (SIGNATURE_ID, bucket_id, bucket_signature,
                                     reduced_info)
from covfuzz.triage.signature import check_of, signature_id

MIN_PREFIX = 4        # shortest id prefix looked up (git's minimum abbreviation)
SHOWN_CANDIDATES = 5  # candidates an ambiguous-prefix error lists
CASE_ID = re.compile(r"^[0-9a-f]{16}\Z")  # seed and example ids (`serialize.case_id`)
_ID_PREFIX = re.compile(r"^[0-9a-f]{%d,16}\Z" % MIN_PREFIX)


@dataclass
class Resolved:
    """A loaded case: `label` says which one (a file path, an example or seed id, or
    "<signature id> (reduced)"); the rest is what is known of its failure (None / {} if none)."""

    label: str
    case: TestCase
    signature: str | None = None
    sig_id: str | None = None
    failure: dict = field(default_factory=dict)
    example_id: str | None = None


def load_case(ident: str, directory: str | None = None, prefer_reduced: bool = False) -> Resolved:
    """The case a command-line argument names: a file, else an id of campaign `directory`.
    `prefer_reduced`: a signature id gives its reduced case where `covfuzz reduce` wrote one."""
    if os.path.isfile(ident):
        return file_case(ident)
    if os.path.exists(ident):
        raise TestCaseFormatError(f"{ident}: not a regular file")
    if directory is None:
        raise TestCaseFormatError(f"{ident}: no such file (for an id, name its campaign with --dir DIR)")
    with open_campaign_store(directory) as store:
        return campaign_case(store, ident, directory, prefer_reduced)


# ----------------------------------------------------------------------------- files


def read_case_file(path: str) -> TestCase:
    """A test case file decoded as written (not propagated)."""
    if not os.path.isfile(path):
        raise TestCaseFormatError(f"{path}: no such file")
    try:
        size = os.path.getsize(path)
        if size > serialize.MAX_ENCODED_BYTES:
            raise TestCaseFormatError(
                f"{path}: test case too large ({size} bytes > {serialize.MAX_ENCODED_BYTES})")
        with open(path, "rb") as handle:
            data = handle.read(serialize.MAX_ENCODED_BYTES + 1)  # the file may grow meanwhile
    except OSError as exc:
        raise CovfuzzError(f"{path}: {exc.strerror or exc}") from None
    try:
        return serialize.decode(data)
    except TestCaseFormatError as exc:
        raise TestCaseFormatError(f"{path}: {exc}") from None


def file_case(path: str) -> Resolved:
    case = _propagated(read_case_file(path))
    return Resolved(path, case, example_id=serialize.case_id(case))


# ----------------------------------------------------------------------------- campaign ids


def campaign_case(store, ident: str, directory: str | None = None,
                  prefer_reduced: bool = False) -> Resolved:
    """The case `ident` names in an open campaign store: an exact id or signature first, else
    the one id it is a prefix of (CovfuzzError when none or several)."""
    found = _exact_case(store, ident, directory, prefer_reduced)
    if found is not None:
        return found
    matches = prefix_matches(store, ident)
    if len(matches) == 1:
        return _exact_case(store, next(iter(matches)), directory, prefer_reduced)
    where = f" in {directory}" if directory else ""
    if not matches:
        raise CovfuzzError(f"{ident}: not a seed, example or signature id{where}")
    shown = ", ".join(f"{kind} {full}" for full, kind in list(matches.items())[:SHOWN_CANDIDATES])
    more = len(matches) - SHOWN_CANDIDATES
    raise CovfuzzError(f"{ident}: ambiguous id prefix{where}: {shown}"
                       + (f" and {more} more" if more > 0 else ""))


def prefix_matches(store, prefix: str) -> dict[str, str]:
    """{full id: "example" / "seed" / "signature"} of the ids starting with `prefix`, sorted
    by id (a case that is both an example and a seed is listed once, as the example)."""
    if not _ID_PREFIX.match(prefix):
        return {}
    found: dict[str, str] = {}
    for rec in store.failures():
        for eid in rec.get("example_ids") or []:
            if eid.startswith(prefix):
                found.setdefault(eid, "example")
        sid = bucket_id(rec)
        if sid.startswith(prefix):
            found.setdefault(sid, "signature")
    for seed in store.seed_ids():
        if seed.startswith(prefix):
            found.setdefault(seed, "seed")
    return dict(sorted(found.items()))


def _exact_case(store, ident: str, directory: str | None, prefer_reduced: bool) -> Resolved | None:
    if CASE_ID.match(ident):
        found = example_case(store, ident)
        if found is not None:
            return found
        data = store.get_case_bytes(ident)
        if data is not None:
            return Resolved(ident, decode_case(data, "testcases", ident))
    rec = find_bucket(store, ident)
    if rec is not None:
        return bucket_case(store, rec, directory, prefer_reduced)
    return None


def find_bucket(store, ident: str) -> dict | None:
    """The failure bucket named by a signature id (12 hex digits) or a full signature."""
    if SIGNATURE_ID.match(ident):
        rec = store.get_failure(ident)
        if rec is not None:
            return rec
    for rec in store.failures():
        if bucket_id(rec) == ident or bucket_signature(rec) == ident:
            return rec
    return None


def bucket_case(store, rec: dict, directory: str | None = None,
                prefer_reduced: bool = False) -> Resolved:
    """A bucket's reduced case (when preferred and present in `directory`), else its first
    stored example."""
    sig, sid = bucket_signature(rec), bucket_id(rec)
    if prefer_reduced and directory is not None:
        info = reduced_info(directory, sid)
        if info is not None:
            case = _propagated(read_case_file(info["path"]))
            return Resolved(f"{sid} (reduced)", case, sig, sid, _failure_dict(rec, sig),
                            info.get("reduced_id"))
    for eid in rec.get("example_ids") or []:
        ex = store.get_example(eid)
        if ex is None:
            continue
        failure = _failure_dict(rec, sig)
        message = (ex.get("result") or {}).get("message")
        if message:
            failure["message"] = message
        return Resolved(eid, decode_case(ex["case_bytes"], "examples", eid), sig, sid, failure, eid)
    raise CovfuzzError(f"bucket {sid} has no stored example")


def example_case(store, eid: str) -> Resolved | None:
    """A stored failure example with its bucket's failure, or None if there is no such example."""
    ex = store.get_example(eid)
    if ex is None:
        return None
    result = ex.get("result") or {}
    sid = ex.get("signature") or ""
    rec = store.get_failure(sid) if sid else None
    if rec is not None:
        sig = bucket_signature(rec)
        failure = _failure_dict(rec, sig)
        sid = bucket_id(rec)
    else:
        sig = sid
        failure = {"kind": result.get("outcome"), "message": result.get("message", ""),
                   "exc_type": result.get("exc_type", ""), "signature": sig}
        sid = sid if SIGNATURE_ID.match(sid) else signature_id(sig)
    if result.get("message"):
        failure["message"] = result["message"]
    return Resolved(eid, decode_case(ex["case_bytes"], "examples", eid), sig, sid, failure, eid)


# ----------------------------------------------------------------------------- helpers


def decode_case(data: bytes, db: str, key: str) -> TestCase:
    """Stored bytes -> case (propagated when valid); errors name the store's database and key."""
    try:
        case = serialize.decode(data)
    except TestCaseFormatError as exc:
        raise CorpusError(f"{db} record {key}: {exc}", db=db, key=key) from None
    return _propagated(case)


def _propagated(case: TestCase) -> TestCase:
    try:
        return propagate(case)
    except CovfuzzError:
        return case  # an invalid graph can still be shown, and run (the harness reports it invalid)


def _failure_dict(rec: dict, sig: str) -> dict:
    out = {"kind": rec.get("kind"), "message": rec.get("message") or "",
           "exc_type": rec.get("exc_type") or "", "signature": sig}
    check = check_of({"details": rec.get("extra") or {}})  # validated: an untrusted record
    if check:
        out["check"] = check
    return out
