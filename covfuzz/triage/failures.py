"""A campaign's failure buckets, and the reduced examples beside them.

A campaign directory DIR holds `corpus.lmdb/` whose `failures` database is keyed by
`signature_id(signature)` (12 hex digits) with the full signature in `extra["signature"]`, and
whose `examples` database maps a test-case id (16 hex digits) to the stored example. Turning an
id into a case is `covfuzz.triage.resolve`.

Reduced examples (written by `covfuzz reduce`) are plain files beside the store:
  DIR/reduced/<sig_id>.cfz    the reduced test case (stored form; `covfuzz show` reads it)
  DIR/reduced/<sig_id>.json   {signature, signature_id, example_id, reduced_id, nodes_before,
                               nodes_after, steps, runs, seconds, reduced_at, ...}
They are inspectable, survive `cmin`/`merge` untouched and never change the store. Which file
is loaded depends only on the validated signature id, never on the metadata; the metadata is
read through `reduced_meta`, the validated boundary (`CampaignDataError` when it is malformed).
"""

from __future__ import annotations

import json
import os
import re
import stat
import time

from covfuzz import jsondata, workdir
from covfuzz.errors import CampaignDataError
from covfuzz.outfile import write_output
from covfuzz.triage.signature import check_of, signature_id

# `\Z`, not `$`: `$` also matches before a trailing newline.
SIGNATURE_ID = re.compile(r"^[0-9a-f]{12}\Z")  # a bucket key: `signature_id(signature)`
CASE_ID = re.compile(r"^[0-9a-f]{16}\Z")  # a test-case / example id: `serialize.case_id(case)`
MAX_REDUCED_META = 1 << 20  # bytes of a reduced case's .json (covfuzz writes a few hundred)
MAX_COUNT = 10 ** 9  # node counts


def is_signature_id(value) -> bool:
    return isinstance(value, str) and SIGNATURE_ID.match(value) is not None


def is_case_id(value) -> bool:
    return isinstance(value, str) and CASE_ID.match(value) is not None


def _count(v) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_COUNT)


# ----------------------------------------------------------------------------- triage records

TRIAGE_STATES = ("confirmed", "flaky", "not_a_bug", "gone", "error")
MAX_TRIAGE_TEXT = 1000


def _text(v) -> bool:
    return isinstance(v, str) and len(v) <= MAX_TRIAGE_TEXT


def _opt_text(v) -> bool:
    return v is None or _text(v)


# The fields of a bucket's triage record (extra["triage"], written by the campaign's triage
# stage) that covfuzz reads, with their checks: a stored record is untrusted input.
_TRIAGE_FIELDS = {
    "state": lambda v: v in TRIAGE_STATES,
    "root": _text,
    "root_id": lambda v: v is None or is_signature_id(v),
    "label": _opt_text,
    "label_reason": _opt_text,
    "culprit_op": _opt_text,
    "culprit": _opt_text,
    "fresh_outcome": _opt_text,
    "fresh_message": _opt_text,
    "error": _opt_text,
    "reduced_nodes": _count,
    "version": _count,  # pipeline.TRIAGE_VERSION of the triage that wrote it (absent: 1)
}


def triage_record(rec: dict) -> dict | None:
    """The validated triage record of bucket `rec` (the fields that pass their checks), or None
    when the bucket has not been triaged (or its record is not an object with a valid state)."""
    extra = rec.get("extra") or {}
    raw = extra.get("triage") if isinstance(extra, dict) else None
    if not isinstance(raw, dict) or raw.get("state") not in TRIAGE_STATES:
        return None
    out = {k: raw[k] for k, ok in _TRIAGE_FIELDS.items() if k in raw and ok(raw[k])}
    seconds = raw.get("seconds")
    if isinstance(seconds, dict):
        out["seconds"] = {k: float(v) for k, v in list(seconds.items())[:8]
                          if k in ("confirm", "localize", "reduce")
                          and isinstance(v, (int, float)) and not isinstance(v, bool)
                          and 0 <= v < 1e7}
    return out


def triage_summary(rows: list[dict]) -> dict:
    """Counts for the status: buckets per triage state, root causes among confirmed buckets,
    labels of non-bugs, and the worker seconds triage recorded (per step: confirm, localize,
    reduce)."""
    states: dict[str, int] = {}
    labels: dict[str, int] = {}
    roots: set[str] = set()
    by_step: dict[str, float] = {}
    pending = 0
    for rec in rows:
        t = triage_record(rec)
        if t is None:
            pending += 1
            continue
        states[t["state"]] = states.get(t["state"], 0) + 1
        if t["state"] == "confirmed":
            roots.add(t.get("root_id") or bucket_id(rec))
        if t["state"] == "not_a_bug" and t.get("label"):
            labels[t["label"]] = labels.get(t["label"], 0) + 1
        for step, spent in (t.get("seconds") or {}).items():
            by_step[step] = by_step.get(step, 0.0) + spent
    return {"untriaged": pending, "states": states, "root_causes": len(roots),
            "labels": labels, "recorded_seconds": round(sum(by_step.values()), 1),
            "seconds_by_step": {k: round(v, 1) for k, v in sorted(by_step.items())}}


# ----------------------------------------------------------------------------- buckets


def bucket_signature(rec: dict) -> str:
    extra = rec.get("extra") or {}
    sig = extra.get("signature") if isinstance(extra, dict) else None
    return sig if isinstance(sig, str) else rec.get("signature", "")


def bucket_id(rec: dict) -> str:
    key = rec.get("signature", "")
    return key if SIGNATURE_ID.match(key or "") else signature_id(bucket_signature(rec))


def reduced_paths(directory: str, sig_id: str) -> tuple[str, str]:
    """DIR/reduced/<sig_id>.cfz and .json (ValueError unless `sig_id` is a signature id)."""
    if not is_signature_id(sig_id):
        raise ValueError(f"not a signature id: {sig_id!r:.40}")
    base = os.path.join(workdir.reduced_dir(directory), sig_id)
    return base + ".cfz", base + ".json"



# The fields of a reduced case's metadata that covfuzz reads, with their checks; other keys are
# ignored (never copied into what `reduced_meta` returns).
_META_FIELDS = {
    "signature_id": lambda v: v is None or is_signature_id(v),
    "root_id": lambda v: v is None or is_signature_id(v),
    "reduced_id": lambda v: v is None or is_case_id(v),
    "nodes_before": _count,
    "nodes_after": _count,
}


_FIX = " (remove it, or re-run covfuzz reduce)"


def _read_regular(path: str, max_bytes: int) -> bytes | None:
    """The bytes of regular file `path` (None when absent); a symlink, FIFO or device, or a
    file over `max_bytes`, is refused (CampaignDataError) without blocking or reading it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: a symlink
        raise CampaignDataError(f"{path}: not a regular file ({exc.strerror}){_FIX}") from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CampaignDataError(f"{path}: not a regular file{_FIX}")
        if st.st_size > max_bytes:
            raise CampaignDataError(f"{path}: {st.st_size} bytes, more than the {max_bytes} "
                                    f"allowed{_FIX}")
        return handle.read(max_bytes + 1)


def reduced_meta(directory: str, sig_id: str) -> dict:
    """The validated metadata of bucket `sig_id`'s reduced case: the fields of `_META_FIELDS`
    that are present ({} when there is no .json); CampaignDataError naming the file when it is
    not a JSON object of those types (too large, too deeply nested, wrong types, out of range)."""
    _, path = reduced_paths(directory, sig_id)
    data = _read_regular(path, MAX_REDUCED_META)
    if data is None:
        return {}
    try:
        meta = jsondata.loads(data, path, CampaignDataError, max_bytes=MAX_REDUCED_META,
                              max_depth=4)
    except CampaignDataError as exc:
        raise CampaignDataError(f"{exc}{_FIX}") from None
    if not isinstance(meta, dict):
        raise CampaignDataError(f"{path}: not a JSON object{_FIX}")
    out = {}
    for name, ok in _META_FIELDS.items():
        if name in meta:
            if not ok(meta[name]):
                raise CampaignDataError(f"{path}: field {name!r} has a bad value "
                                        f"{meta[name]!r:.60}{_FIX}")
            out[name] = meta[name]
    if out.get("signature_id", sig_id) != sig_id:
        raise CampaignDataError(f"{path}: names signature id {out['signature_id']}, not "
                                f"{sig_id}{_FIX}")
    return out


def reduced_info(directory: str, sig_id: str) -> dict | None:
    """{path, and the validated metadata} of bucket `sig_id`'s reduced case, or None when
    there is none. `path` is always DIR/reduced/<sig_id>.cfz (a regular file, not a link)."""
    case_path, _ = reduced_paths(directory, sig_id)
    try:
        st = os.lstat(case_path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise CampaignDataError(f"{case_path}: not a regular file{_FIX}")
    return dict(reduced_meta(directory, sig_id), path=case_path)


def write_reduced(directory: str, sig_id: str, case, meta: dict) -> str:
    """Write bucket `sig_id`'s reduced case and its metadata into DIR/reduced/, each through a
    fresh temporary file renamed into place (never through a symlink, never outside the folder)."""
    from covfuzz import serialize  # imports torch: not needed to list buckets (`covfuzz crashes`)
    case_path, meta_path = reduced_paths(directory, sig_id)
    folder = os.path.dirname(case_path)
    if os.path.islink(folder):
        raise CampaignDataError(f"{folder}: is a symbolic link: covfuzz never writes through one "
                                "(remove it)")
    os.makedirs(folder, exist_ok=True)
    for path, data in ((case_path, serialize.encode(case)),
                       (meta_path, (json.dumps(dict(meta, reduced_at=time.time()), indent=1,
                                               sort_keys=True) + "\n").encode())):
        tmp = f"{path}.tmp{os.getpid()}"
        if os.path.lexists(tmp):
            os.unlink(tmp)  # a leftover of a killed run (or a planted link: unlink never follows)
        write_output(tmp, data, exclusive=True)
        os.replace(tmp, path)  # replaces a link at `path` itself, never its target
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
               "reduced_nodes": None, "known": None, "triage": triage_record(rec),
               "check": check_of({"details": rec.get("extra") or {}})}
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


HIDDEN_STATES = ("flaky", "not_a_bug", "gone")  # triaged and found not to be a bug here


def root_causes(rows: list[dict]) -> list[dict]:
    """Bucket rows (`buckets`) grouped by root cause: confirmed buckets with the same root id
    are one cause (counts summed, every bucket listed); an untriaged bucket is a cause of its
    own until triage names its root. Buckets triaged as flaky, not a bug or gone are left out
    (`hidden_rows`)."""
    groups: dict[str, dict] = {}
    for r in rows:
        t = r.get("triage") or {}
        state = t.get("state", "untriaged")
        if state in HIDDEN_STATES:
            continue
        key = t.get("root_id") if state == "confirmed" and t.get("root_id") else r["signature_id"]
        g = groups.get(key)
        if g is None:
            g = groups[key] = {"root_id": key, "root": t.get("root") or r["signature"],
                               "state": state, "kind": r["kind"], "count": 0, "buckets": [],
                               "first_seen": r["first_seen"], "last_seen": r["last_seen"],
                               "culprit_op": t.get("culprit_op"), "culprit": t.get("culprit"),
                               "reduced_nodes": None,
                               "reduced_bucket": None, "example_id": r["example_id"],
                               "known": r["known"], "message": r["message"],
                               "check": r.get("check") or {}}
        g["count"] += r["count"] or 0
        g["buckets"].append(r["signature_id"])
        g["first_seen"] = min(x for x in (g["first_seen"], r["first_seen"]) if x is not None) \
            if r["first_seen"] is not None else g["first_seen"]
        g["last_seen"] = max(g["last_seen"] or 0, r["last_seen"] or 0)
        g["known"] = g["known"] or r["known"]
        if r["reduced"] and (g["reduced_nodes"] is None
                             or (r["reduced_nodes"] or 0) < g["reduced_nodes"]):
            g["reduced_nodes"], g["reduced_bucket"] = r["reduced_nodes"], r["signature_id"]
    return list(groups.values())


def hidden_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if (r.get("triage") or {}).get("state") in HIDDEN_STATES]


def sort_rows(rows: list[dict], key: str = "recent") -> list[dict]:
    if key == "count":
        return sorted(rows, key=lambda r: (-(r["count"] or 0), -(r["last_seen"] or 0), _row_id(r)))
    return sorted(rows, key=lambda r: (-(r["last_seen"] or 0), -(r["count"] or 0), _row_id(r)))


def _row_id(row: dict) -> str:
    return row.get("signature_id") or row.get("root_id") or ""
