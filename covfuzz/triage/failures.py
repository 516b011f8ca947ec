"""A campaign's failure buckets, and the reduced examples beside them.

A campaign directory DIR holds `corpus.lmdb/` whose `failures` database is keyed by
`signature_id(signature)` (12 hex digits) with the full signature in `extra["signature"]`, and
whose `examples` database maps a test-case id (16 hex digits) to the stored example. Turning an
id into a case is `covfuzz.triage.resolve`.

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

import corpus
from covfuzz import serialize, workdir
from covfuzz.errors import CovfuzzError
from covfuzz.triage.signature import signature_id

SIGNATURE_ID = re.compile(r"^[0-9a-f]{12}$")  # a bucket key: `signature_id(signature)`


def open_store(directory: str, readonly: bool = True):
    """The corpus store of an existing campaign directory (CovfuzzError naming what is wrong)."""
    if not os.path.isdir(directory):
        raise CovfuzzError(f"{directory}: no such campaign directory")
    return corpus.open_campaign_store(directory, readonly=readonly, create=False)


# ----------------------------------------------------------------------------- buckets


def bucket_signature(rec: dict) -> str:
    extra = rec.get("extra") or {}
    sig = extra.get("signature") if isinstance(extra, dict) else None
    return sig if isinstance(sig, str) else rec.get("signature", "")


def bucket_id(rec: dict) -> str:
    key = rec.get("signature", "")
    return key if SIGNATURE_ID.match(key or "") else signature_id(bucket_signature(rec))


def reduced_paths(directory: str, sig_id: str) -> tuple[str, str]:
    base = os.path.join(workdir.reduced_dir(directory), sig_id)
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
