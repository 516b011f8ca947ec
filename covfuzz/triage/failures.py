"""Reading a campaign's failure buckets, resolving ids, and the reduced examples beside them.

A campaign directory DIR holds `corpus.lmdb/` whose `failures` database is keyed by
`signature_id(signature)` (12 hex digits) with the full signature in `extra["signature"]`, and
whose `examples` database maps a test-case id (16 hex digits) to the stored example.

Reduced examples (written by `covfuzz reduce`) are plain files beside the store:
  DIR/reduced/<sig_id>.cfz    the reduced test case (stored form; `covfuzz show` reads it)
  DIR/reduced/<sig_id>.json   {signature, signature_id, example_id, reduced_id, nodes_before,
                               nodes_after, steps, runs, seconds, reduced_at}
They are inspectable, survive `cmin`/`merge` untouched and never change the store.
"""

from __future__ import annotations

import json
import os
import re
import time

from covfuzz.errors import CovfuzzError, TestCaseFormatError
from covfuzz.triage.signature import signature_id

REDUCED_DIR = "reduced"
_SIG_ID = re.compile(r"^[0-9a-f]{12}$")
_CASE_ID = re.compile(r"^[0-9a-f]{16}$")


def is_campaign_dir(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "corpus.lmdb"))


def open_store(directory: str, readonly: bool = True):
    from corpus import CorpusStore
    if not os.path.isdir(directory):
        raise CovfuzzError(f"{directory}: no such campaign directory")
    if not is_campaign_dir(directory):
        raise CovfuzzError(f"{directory}: not a campaign directory (no corpus.lmdb/)")
    return CorpusStore(os.path.join(directory, "corpus.lmdb"), readonly=readonly, create=False)


def load_case_file(path: str, propagated: bool = True):
    """A test case from a file in stored or JSON form (propagated when possible)."""
    from covfuzz import serialize
    from covfuzz.propagate import propagate
    if not os.path.isfile(path):
        raise TestCaseFormatError(f"{path}: no such file")
    with open(path, "rb") as handle:
        data = handle.read(serialize.MAX_ENCODED_BYTES + 1)
    case = serialize.decode(data)
    if propagated:
        try:
            case = propagate(case)
        except CovfuzzError:
            pass  # an invalid graph can still be run (the harness reports it as invalid)
    return case


def decode_case(data: bytes, where: str = "example"):
    from covfuzz import serialize
    from covfuzz.propagate import propagate
    try:
        case = serialize.decode(data)
    except TestCaseFormatError as exc:
        raise CovfuzzError(f"{where}: {exc}") from None
    try:
        return propagate(case)
    except CovfuzzError:
        return case


# ----------------------------------------------------------------------------- buckets


def bucket_signature(rec: dict) -> str:
    extra = rec.get("extra") or {}
    sig = extra.get("signature") if isinstance(extra, dict) else None
    return sig if isinstance(sig, str) else rec.get("signature", "")


def bucket_id(rec: dict) -> str:
    key = rec.get("signature", "")
    return key if _SIG_ID.match(key or "") else signature_id(bucket_signature(rec))


def reduced_paths(directory: str, sig_id: str) -> tuple[str, str]:
    base = os.path.join(directory, REDUCED_DIR, sig_id)
    return base + ".cfz", base + ".json"


def reduced_info(directory: str, sig_id: str) -> dict | None:
    case_path, meta_path = reduced_paths(directory, sig_id)
    if not os.path.isfile(case_path):
        return None
    info = {"path": case_path}
    try:
        with open(meta_path) as handle:
            meta = json.load(handle)
        if isinstance(meta, dict):
            info.update(meta)
    except (OSError, ValueError):
        pass
    return info


def write_reduced(directory: str, sig_id: str, case, meta: dict) -> str:
    from covfuzz import serialize
    case_path, meta_path = reduced_paths(directory, sig_id)
    os.makedirs(os.path.dirname(case_path), exist_ok=True)
    for path, data in ((case_path, serialize.encode(case)),
                       (meta_path, (json.dumps(dict(meta, reduced_at=time.time()), indent=1,
                                               sort_keys=True) + "\n").encode())):
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    return case_path


def buckets(store, directory: str | None = None, known=None) -> list[dict]:
    """One row per failure bucket (see `covfuzz crashes --json`)."""
    rows = []
    for rec in store.failures():
        sig = bucket_signature(rec)
        sid = bucket_id(rec)
        row = {"signature_id": sid, "signature": sig, "kind": rec.get("kind"),
               "exc_type": rec.get("exc_type") or "", "message": rec.get("message") or "",
               "count": rec.get("count", 0), "first_seen": rec.get("first_seen"),
               "last_seen": rec.get("last_seen"), "example_ids": list(rec.get("example_ids") or []),
               "example_id": (rec.get("example_ids") or [None])[0], "reduced": False,
               "reduced_nodes": None, "known": None}
        if directory is not None:
            info = reduced_info(directory, sid)
            if info is not None:
                row["reduced"] = True
                row["reduced_path"] = info["path"]
                row["reduced_nodes"] = info.get("nodes_after")
                row["original_nodes"] = info.get("nodes_before")
        if known is not None:
            issue = known.match(sig, row["message"])
            if issue is not None:
                row["known"] = issue.to_dict()
        rows.append(row)
    return rows


def sort_rows(rows: list[dict], key: str = "recent") -> list[dict]:
    if key == "count":
        return sorted(rows, key=lambda r: (-(r["count"] or 0), -(r["last_seen"] or 0), r["signature_id"]))
    return sorted(rows, key=lambda r: (-(r["last_seen"] or 0), -(r["count"] or 0), r["signature_id"]))


# ----------------------------------------------------------------------------- resolving ids


class Target:
    """One failing input to act on: the case plus what is known about its failure."""

    def __init__(self, label: str, case, signature: str | None = None, sig_id: str | None = None,
                 failure: dict | None = None, example_id: str | None = None):
        self.label, self.case = label, case
        self.signature, self.sig_id = signature, sig_id
        self.failure = failure or {}
        self.example_id = example_id


def _failure_dict(rec: dict, sig: str) -> dict:
    return {"kind": rec.get("kind"), "message": rec.get("message") or "",
            "exc_type": rec.get("exc_type") or "", "signature": sig}


def find_bucket(store, ident: str) -> dict | None:
    """The bucket named by a signature id (12 hex), a full signature, or None."""
    if _SIG_ID.match(ident):
        rec = store.get_failure(ident)
        if rec is not None:
            return rec
    for rec in store.failures():
        if bucket_id(rec) == ident or bucket_signature(rec) == ident:
            return rec
    return None


def bucket_target(store, rec: dict, directory: str | None = None, prefer_reduced: bool = False) -> Target:
    sig, sid = bucket_signature(rec), bucket_id(rec)
    if prefer_reduced and directory is not None:
        info = reduced_info(directory, sid)
        if info is not None:
            case = load_case_file(info["path"])
            return Target(f"{sid} (reduced)", case, sig, sid, _failure_dict(rec, sig),
                          info.get("reduced_id"))
    for eid in rec.get("example_ids") or []:
        ex = store.get_example(eid)
        if ex is None:
            continue
        failure = _failure_dict(rec, sig)
        result = ex.get("result") or {}
        if result.get("message"):
            failure["message"] = result["message"]
        return Target(eid, decode_case(ex["case_bytes"], f"example {eid}"), sig, sid, failure, eid)
    raise CovfuzzError(f"bucket {sid} has no stored example")


def example_target(store, eid: str) -> Target | None:
    ex = store.get_example(eid)
    if ex is None:
        return None
    sid = ex.get("signature") or ""
    rec = store.get_failure(sid) if sid else None
    if rec is not None:
        sig = bucket_signature(rec)
        failure = _failure_dict(rec, sig)
        sid = bucket_id(rec)
    else:
        sig = sid
        result = ex.get("result") or {}
        failure = {"kind": result.get("outcome"), "message": result.get("message", ""),
                   "exc_type": result.get("exc_type", ""), "signature": sig}
        sid = sid if _SIG_ID.match(sid) else signature_id(sig)
    result = ex.get("result") or {}
    if result.get("message"):
        failure["message"] = result["message"]
    return Target(eid, decode_case(ex["case_bytes"], f"example {eid}"), sig, sid, failure, eid)


def is_case_id(ident: str) -> bool:
    """16 lowercase hex digits: the form of test-case (seed, example) ids."""
    return bool(_CASE_ID.match(ident))


def resolve(store, ident: str, directory: str | None = None, prefer_reduced: bool = False) -> Target:
    """An example id, a signature id or a full signature -> Target (CovfuzzError if unknown)."""
    if _CASE_ID.match(ident):
        target = example_target(store, ident)
        if target is not None:
            return target
    rec = find_bucket(store, ident)
    if rec is not None:
        return bucket_target(store, rec, directory, prefer_reduced)
    raise CovfuzzError(f"{ident!r} is neither an example id nor a signature (id) in this campaign")


def file_target(path: str) -> Target:
    from covfuzz import serialize
    case = load_case_file(path)
    return Target(path, case, None, None, {}, serialize.case_id(case))
