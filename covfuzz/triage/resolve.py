"""Loading a test case from what a user names: a file, or an id in a campaign directory.

The one definition behind `covfuzz show`, `run`, `repro`, `replay` and `reduce`, so that the
same argument picks the same case in every command:

- a file in stored (`.cfz`) or JSON form; its size is checked before it is read. A file of a
  campaign's `reduced/` folder (`DIR/reduced/<signature id>.cfz`, or its metadata `.json`) is
  that bucket's reduced case, with what the campaign knows of the bucket's failure;
- with a campaign directory: a seed id or failure-example id (16 hex digits): that case; a
  reduced case's id: that reduced case; a signature id (12 hex digits) or a full signature: the
  bucket's reduced case when `covfuzz reduce` or triage wrote one, else its first example
  (`original=True`, the commands' `--original`: always the first example); or a unique prefix of
  any of those ids (at least `MIN_PREFIX` hex digits), as git takes commit prefixes. An exact id
  wins; a prefix matching several ids is an error listing a few of them.

Every loader returns a `Resolved`: the case (propagated when its graph is valid, so specs are
filled; an invalid graph is returned as decoded, to be shown or reported as invalid), a label and
a one-line `describe()` naming the case it picked, and what the campaign knows of its failure.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from corpus import CorpusError, open_campaign_store
from covfuzz import serialize, workdir
from covfuzz.errors import CampaignDataError, CovfuzzError, TestCaseFormatError
from covfuzz.ir import TestCase
from covfuzz.propagate import propagate
from covfuzz.text import printable
from covfuzz.triage.failures import (SIGNATURE_ID, bucket_id, bucket_signature, is_case_id,
                                     reduced_info, reduced_paths, triage_record)
from covfuzz.triage.signature import check_of, signature_id

MIN_PREFIX = 4        # shortest id prefix looked up (git's minimum abbreviation)
SHOWN_CANDIDATES = 5  # candidates an ambiguous-prefix error lists
MAX_REDUCED_FILES = 10_000  # DIR/reduced/*.json files scanned for reduced-case ids
CASE_ID = re.compile(r"^[0-9a-f]{16}\Z")  # seed and example ids (`serialize.case_id`)
_ID_PREFIX = re.compile(r"^[0-9a-f]{%d,16}\Z" % MIN_PREFIX)
_REDUCED_NAME = re.compile(r"^([0-9a-f]{12})\.(cfz|json)\Z")


@dataclass
class Resolved:
    """A loaded case. `kind`: "file", "seed", "example", "reduced" (a bucket's reduced case) or
    "bucket example" (a bucket's first stored example); `label` names it in one short word (a
    path, an id, "<signature id> (reduced)"); the rest is what is known of its failure (None /
    {} if none). `asked` is what the user typed, when it was a prefix of the id it picked."""

    label: str
    case: TestCase
    signature: str | None = None
    sig_id: str | None = None
    failure: dict = field(default_factory=dict)
    example_id: str | None = None
    kind: str = "file"
    asked: str | None = None
    triage: dict | None = None  # the bucket's validated triage record (failures.triage_record)
    original_id: str | None = None  # a reduced case's bucket's first example (`--original`)
    directory: str | None = None  # the campaign the case came from (None for a plain file)

    def describe(self) -> str:
        """One line saying which case was picked, and how to get the other one of a bucket."""
        cid = serialize.case_id(self.case)
        if self.kind == "reduced":
            text = f"reduced case {cid} of bucket {self.sig_id}"
            if self.original_id:
                text += f" (--original: example {self.original_id})"
        elif self.kind == "bucket example":
            text = f"example {self.example_id} of bucket {self.sig_id}"
        elif self.kind == "example":
            text = f"example {cid}" + (f" of bucket {self.sig_id}" if self.sig_id else "")
        elif self.kind == "seed":
            text = f"seed {cid}"
        else:
            text = f"file {self.label} (test case {cid})"
        if self.asked and self.asked not in text:
            text = f"{self.asked} -> {text}"
        return printable(text)


def load_case(ident: str, directory: str | None = None, prefer_reduced: bool = True) -> Resolved:
    """The case a command-line argument names: a file, else an id of campaign `directory`.
    `prefer_reduced=False` (`--original`): a signature names its bucket's first example, never
    its reduced case."""
    reduced_file = _reduced_file(ident)
    if reduced_file is not None:
        found = reduced_file_case(*reduced_file, prefer_reduced=prefer_reduced)
        found.directory = reduced_file[0] if found.sig_id else None
        return found
    if os.path.isfile(ident):
        return file_case(ident)
    if os.path.exists(ident):
        raise TestCaseFormatError(f"{ident}: not a regular file")
    if directory is None:
        raise TestCaseFormatError(f"{ident}: no such file (for an id, name its campaign with --dir DIR)")
    with open_campaign_store(directory) as store:
        found = campaign_case(store, ident, directory, prefer_reduced)
    found.directory = directory
    return found


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


def _reduced_file(path: str) -> tuple[str, str, str] | None:
    """(campaign directory, signature id, extension) when `path` names a file of a campaign's
    reduced/ folder (DIR/reduced/<signature id>.cfz or .json) and DIR is a campaign."""
    match = _REDUCED_NAME.match(os.path.basename(path))
    folder = os.path.dirname(os.path.abspath(path))
    if match is None or os.path.basename(folder) != workdir.REDUCED:
        return None
    directory = os.path.dirname(folder)
    if not workdir.is_campaign_dir(directory) or not os.path.lexists(path):
        return None
    return directory, match.group(1), match.group(2)


def reduced_file_case(directory: str, sig_id: str, ext: str,
                      prefer_reduced: bool = True) -> Resolved:
    """A file of DIR/reduced/ as its bucket's reduced case (the metadata `.json` names the same
    case as its `.cfz`). A reduced case whose bucket is not in the store is loaded as a file."""
    case_path, meta_path = reduced_paths(directory, sig_id)
    with open_campaign_store(directory) as store:
        rec = store.get_failure(sig_id)
        if rec is not None:
            found = bucket_case(store, rec, directory, prefer_reduced)
            if found.kind == "reduced" or not prefer_reduced:
                return found
    if not os.path.isfile(case_path):
        raise CovfuzzError(f"{meta_path if ext == 'json' else case_path}: bucket {sig_id} has no "
                           f"reduced case ({case_path} is missing)")
    return file_case(case_path)


# ----------------------------------------------------------------------------- campaign ids


def campaign_case(store, ident: str, directory: str | None = None,
                  prefer_reduced: bool = True) -> Resolved:
    """The case `ident` names in an open campaign store: an exact id or signature first, else
    the one id it is a prefix of (CovfuzzError when none or several)."""
    found = _exact_case(store, ident, directory, prefer_reduced)
    if found is not None:
        return found
    roots = root_buckets(store)
    if ident in roots:  # a root-cause id as `covfuzz crashes` lists it: its first bucket
        found = _exact_case(store, roots[ident], directory, prefer_reduced)
        if found is not None:
            found.asked = ident
            return found
    matches = prefix_matches(store, ident, directory)
    if len(matches) == 1:
        full = next(iter(matches))
        found = _exact_case(store, roots.get(full, full), directory, prefer_reduced)
        if found is not None:
            found.asked = ident
            return found
    where = f" in {directory}" if directory else ""
    if not matches:
        raise CovfuzzError(f"{ident}: not a seed, example or signature id (nor a reduced "
                           f"case's id){where}")
    shown = ", ".join(f"{kind} {full}" for full, kind in list(matches.items())[:SHOWN_CANDIDATES])
    more = len(matches) - SHOWN_CANDIDATES
    raise CovfuzzError(f"{ident}: ambiguous id prefix{where}: {shown}"
                       + (f" and {more} more" if more > 0 else ""))


def root_buckets(store) -> dict[str, str]:
    """{root-cause id: signature id of its first bucket} over the confirmed buckets whose root
    id is not a bucket's own id (`covfuzz crashes` lists a merged root cause by its root id)."""
    out: dict[str, tuple[float, str]] = {}
    for rec in store.failures():
        t = triage_record(rec)
        root = t.get("root_id") if t and t.get("state") == "confirmed" else None
        if not root:
            continue
        first = rec.get("first_seen") if isinstance(rec.get("first_seen"), (int, float)) else 0.0
        if root not in out or first < out[root][0]:
            out[root] = (first, bucket_id(rec))
    return {root: sid for root, (_, sid) in out.items()}


def prefix_matches(store, prefix: str, directory: str | None = None) -> dict[str, str]:
    """{full id: "example" / "seed" / "signature" / "reduced"} of the ids starting with
    `prefix`, sorted by id (a case that is both an example and a seed is listed once, as the
    example)."""
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
    if directory is not None:
        for rid in reduced_ids(directory):
            if rid.startswith(prefix):
                found.setdefault(rid, "reduced")
    for root in root_buckets(store):
        if root.startswith(prefix):
            found.setdefault(root, "root cause")
    return dict(sorted(found.items()))


def reduced_ids(directory: str) -> dict[str, str]:
    """{reduced case id: signature id} of DIR/reduced/, from each case's validated metadata
    (a file whose metadata is damaged or has no id is left out: `crashes` names it)."""
    folder = workdir.reduced_dir(directory)
    try:
        names = sorted(os.listdir(folder))[:MAX_REDUCED_FILES]
    except OSError:
        return {}
    out = {}
    for name in names:
        match = _REDUCED_NAME.match(name)
        if match is None or match.group(2) != "json":
            continue
        try:
            info = reduced_info(directory, match.group(1))
        except CampaignDataError:
            continue
        if info is not None and is_case_id(info.get("reduced_id")):
            out[info["reduced_id"]] = match.group(1)
    return out


def _exact_case(store, ident: str, directory: str | None, prefer_reduced: bool) -> Resolved | None:
    if CASE_ID.match(ident):
        found = example_case(store, ident)
        if found is not None:
            return found
        data = store.get_case_bytes(ident)
        if data is not None:
            return Resolved(ident, decode_case(data, "testcases", ident), kind="seed")
        sid = reduced_ids(directory).get(ident) if directory is not None else None
        rec = store.get_failure(sid) if sid else None
        if rec is not None:  # a reduced case's own id: that case, whatever `prefer_reduced` says
            return bucket_case(store, rec, directory, prefer_reduced=True)
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
    triage = triage_record(rec)
    first = next(iter(rec.get("example_ids") or []), None)
    if prefer_reduced and directory is not None:
        info = reduced_info(directory, sid)
        if info is not None:
            case = _propagated(read_case_file(info["path"]))
            return Resolved(f"{sid} (reduced)", case, sig, sid, _failure_dict(rec, sig),
                            info.get("reduced_id"), kind="reduced", triage=triage,
                            original_id=first)
    for eid in rec.get("example_ids") or []:
        ex = store.get_example(eid)
        if ex is None:
            continue
        failure = _failure_dict(rec, sig)
        message = (ex.get("result") or {}).get("message")
        if message:
            failure["message"] = message
        return Resolved(eid, decode_case(ex["case_bytes"], "examples", eid), sig, sid, failure,
                        eid, kind="bucket example", triage=triage)
    raise CovfuzzError(f"bucket {sid} has no stored example")


def example_case(store, eid: str) -> Resolved | None:
    """A stored failure example with its bucket's failure, or None if there is no such example."""
    ex = store.get_example(eid)
    if ex is None:
        return None
    result = ex.get("result") or {}
    sid = ex.get("signature") or ""
    rec = store.get_failure(sid) if sid else None
    triage = None
    if rec is not None:
        sig = bucket_signature(rec)
        failure = _failure_dict(rec, sig)
        sid = bucket_id(rec)
        triage = triage_record(rec)
    else:
        sig = sid
        failure = {"kind": result.get("outcome"), "message": result.get("message", ""),
                   "exc_type": result.get("exc_type", ""), "signature": sig}
        sid = sid if SIGNATURE_ID.match(sid) else signature_id(sig)
    if result.get("message"):
        failure["message"] = result["message"]
    return Resolved(eid, decode_case(ex["case_bytes"], "examples", eid), sig, sid, failure, eid,
                    kind="example", triage=triage)


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
