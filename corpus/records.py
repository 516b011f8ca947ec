"""Typed record codecs of the corpus store: the validated boundary between bytes on disk and
values in memory (the layout table is in `corpus/store.py`).

One encode/decode pair per record kind. Encoders validate what they are given and raise
ValueError (a programming error of the caller); decoders validate what they read and raise
`CorpusError` naming the database and the key (a damaged or hostile file). Decoding never
executes code: JSON, raw integers and numpy.frombuffer, no pickle.

`seed_meta` is the one builder of seed metadata (the store's default, the campaign and
`covfuzz import` all call it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import struct
import time
from typing import Any

import numpy as np

from corpus.errors import CorpusError, InvalidId
from covfuzz import jsondata

MAX_CASE_BYTES = 1 << 20  # the limit covfuzz.serialize.decode enforces
MAX_ID_LEN = 128
MAX_SIG_KEY = 400  # LMDB keys are at most 511 bytes
MAX_COUNT = (1 << 64) - 1
STATS_KEY_LEN = 12
MAX_RECORD_BYTES = 16 << 20  # a JSON record (an example holds a case of up to 1 MiB, base64)
MAX_TIME = 1e11  # unix seconds (the year 5138): a larger or negative timestamp is damage
MAX_STAT = 1 << 62  # counts and sizes in a stats record

# The meta fields every seed has (seed_meta fills them in); `n_features` is optional (set when
# known); any other JSON-serializable key is kept as it is.
META_FIELDS = ("parent", "mutators", "depth", "nodes", "exec_time", "features_found", "times_chosen",
               "found_at", "outcome")

_U64 = struct.Struct(">Q")
_STATS_KEY = struct.Struct(">QI")
_FEATURE_DTYPE = np.dtype("<u8")


# ----------------------------------------------------------------------------- shared helpers


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII only, no NaN/Inf (ValueError otherwise)."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"value is not JSON-serializable: {exc}") from None


def key_text(key: bytes) -> str:
    """A key as printable text (ASCII when it is, else `0x<hex>`)."""
    try:
        text = key.decode("ascii")
        if text.isprintable():
            return text
    except UnicodeDecodeError:
        pass
    return "0x" + key.hex()


def corrupt(db: str, key: bytes, why: str) -> CorpusError:
    """The CorpusError of a damaged record."""
    kt = key_text(key)
    return CorpusError(f"corrupt record in database {db!r}, key {kt!r}: {why}", db=db, key=kt)


class _BadJson(Exception):
    """What `jsondata.loads` raises here; turned into a CorpusError naming db and key."""


def _load_object(db: str, key: bytes, raw: bytes | None) -> dict:
    if raw is None:
        raise corrupt(db, key, "missing")
    try:  # bounded: size, nesting depth (no RecursionError), UTF-8, no NaN
        obj = jsondata.loads(bytes(raw), "value", _BadJson, max_bytes=MAX_RECORD_BYTES)
    except _BadJson as exc:
        raise corrupt(db, key, str(exc)[:160]) from None
    if not isinstance(obj, dict):
        raise corrupt(db, key, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_time(v) -> bool:
    """A unix timestamp in seconds, within 0..MAX_TIME."""
    return _is_num(v) and 0 <= v <= MAX_TIME


def _is_count(v) -> bool:
    return _is_int(v) and 0 <= v <= MAX_STAT


def _is_amount(v) -> bool:
    """A non-negative finite number (seconds, rates, MiB) no larger than MAX_STAT."""
    return _is_num(v) and 0 <= v <= MAX_STAT


def _problem(obj: dict, checks: dict, optional: dict | None = None) -> str | None:
    """None when every field of `checks` is present and passes, and every field of `optional`
    that is present passes; else what is wrong."""
    for name, ok in checks.items():
        if name not in obj:
            return f"field {name!r} missing"
        if not ok(obj[name]):
            return f"field {name!r} has a bad value {obj[name]!r:.60}"
    for name, ok in (optional or {}).items():
        if name in obj and not ok(obj[name]):
            return f"field {name!r} has a bad value {obj[name]!r:.60}"
    return None


# ----------------------------------------------------------------------------- keys


def id_key(case_id: str) -> bytes:
    """The key of a test-case or example id (InvalidId when malformed)."""
    if not isinstance(case_id, str) or not 0 < len(case_id) <= MAX_ID_LEN:
        raise InvalidId(f"id must be a non-empty str of at most {MAX_ID_LEN} characters, "
                        f"got {case_id!r:.80}")
    try:
        key = case_id.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidId(f"id must be ASCII, got {case_id!r:.80}") from None
    if not case_id.isprintable() or any(c.isspace() for c in case_id):
        raise InvalidId(f"id must be printable without whitespace, got {case_id!r:.80}")
    return key


def signature_key(signature: str) -> bytes:
    """The `failures` key of a signature (long signatures are hashed to fit an LMDB key)."""
    if not isinstance(signature, str) or not signature:
        raise InvalidId("signature must be a non-empty str")
    raw = signature.encode("utf-8", "surrogatepass")
    if len(raw) <= MAX_SIG_KEY and not raw.startswith(b"sha256:"):
        return raw
    return b"sha256:" + hashlib.sha256(raw).hexdigest().encode("ascii")


def hit_key(feature: int) -> bytes:
    """The `hits` key of a feature: 8 bytes big-endian (so keys sort by feature id)."""
    return _U64.pack(feature)


def stats_key(ms: int, seq: int) -> bytes:
    """The `stats` key: unix time in ms (8 bytes) + a counter within that ms (4 bytes)."""
    return _STATS_KEY.pack(ms, seq)


def stats_key_fields(key: bytes) -> tuple[int, int]:
    """(ms, seq) of a `stats` key (CorpusError when it is not 12 bytes)."""
    if len(key) != STATS_KEY_LEN:
        raise corrupt("stats", key, f"key must be {STATS_KEY_LEN} bytes")
    return _STATS_KEY.unpack(key)


def stats_ms(t: float) -> int:
    """The ms part of the key of a record appended at unix time `t`."""
    return int(t * 1000)


# ----------------------------------------------------------------------------- seeds


def _meta_problem(meta: dict) -> str | None:
    """None if the known meta fields have their types, else what is wrong."""
    checks = {
        "parent": lambda v: v is None or isinstance(v, str),
        "mutators": lambda v: isinstance(v, list) and all(isinstance(m, str) for m in v),
        "depth": _is_count,
        "nodes": lambda v: v is None or _is_count(v),
        "exec_time": lambda v: v is None or _is_amount(v),
        "features_found": _is_count,
        "times_chosen": _is_count,
        "found_at": _is_time,
        "outcome": lambda v: v is None or isinstance(v, str),
    }
    optional = {"n_features": lambda v: v is None or _is_count(v)}
    return _problem(meta, checks, optional)


def seed_meta(*, parent: str | None = None, mutators=(), depth: int = 0, nodes: int | None = None,
              exec_time: float | None = None, features_found: int = 0,
              n_features: int | None = None, outcome: str | None = None, times_chosen: int = 0,
              found_at: float | None = None, **extra) -> dict:
    """The metadata of a seed: every field of `META_FIELDS`, `n_features` (the size of its
    feature set; left out when unknown, as records written before it existed lack it) and any
    extra JSON-serializable keys. found_at defaults to now. ValueError when a field has a bad
    type or value."""
    meta = {"parent": parent, "mutators": list(mutators) if isinstance(mutators, (list, tuple))
            else mutators, "depth": depth, "nodes": nodes, "exec_time": exec_time,
            "features_found": features_found, "outcome": outcome, "times_chosen": times_chosen,
            "found_at": time.time() if found_at is None else found_at}
    if n_features is not None:
        meta["n_features"] = n_features
    meta.update(extra)
    why = _meta_problem(meta)
    if why:
        raise ValueError(f"seed meta: {why}")
    canonical_json(meta)
    return meta


def encode_meta(meta: dict) -> bytes:
    """Stored form of a seed's meta (ValueError when a known field is missing or bad)."""
    why = _meta_problem(meta)
    if why:
        raise ValueError(f"seed meta: {why}")
    return canonical_json(meta)


def decode_meta(key: bytes, raw: bytes) -> dict:
    """The validated meta object of seed `key` (CorpusError otherwise)."""
    meta = _load_object("meta", key, raw)
    why = _meta_problem(meta)
    if why:
        raise corrupt("meta", key, why)
    return meta


def encode_features(arr: np.ndarray) -> bytes:
    """Stored form of a sorted unique uint64 array: little-endian, 8 bytes a feature."""
    return np.ascontiguousarray(arr, dtype=_FEATURE_DTYPE).tobytes()


def decode_features(raw: bytes, key: bytes = b"?") -> np.ndarray:
    """Validated sorted unique uint64 array from a stored blob (CorpusError otherwise)."""
    if raw is None:
        raise corrupt("features", key, "missing")
    if len(raw) % 8:
        raise corrupt("features", key, f"length {len(raw)} is not a multiple of 8")
    arr = np.frombuffer(raw, dtype=_FEATURE_DTYPE).astype(np.uint64)
    if arr.size > 1 and not bool(np.all(arr[1:] > arr[:-1])):
        raise corrupt("features", key, "feature ids are not sorted and unique")
    return arr


def check_case_bytes(data) -> bytes:
    """A test case's stored form as bytes (ValueError when empty or over `MAX_CASE_BYTES`);
    the store keeps it opaque (`covfuzz.serialize.decode` validates it when loaded)."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or not len(data):
        raise ValueError("test-case data must be non-empty bytes")
    data = bytes(data)
    if len(data) > MAX_CASE_BYTES:
        raise ValueError(f"test case too large ({len(data)} bytes > {MAX_CASE_BYTES})")
    return data


# ----------------------------------------------------------------------------- hits


def encode_hit(count: int) -> bytes:
    """Stored form of a hit count: 8 bytes big-endian, saturating at 2**64 - 1."""
    return _U64.pack(min(MAX_COUNT, int(count)))


def decode_hit(key: bytes, raw: bytes) -> tuple[int, int]:
    """(feature, executions that hit it) of a `hits` record (CorpusError otherwise)."""
    if len(key) != 8 or raw is None or len(raw) != 8:
        raise corrupt("hits", key, "key and value must be 8 bytes")
    return _U64.unpack(key)[0], _U64.unpack(raw)[0]


def hit_count_or_zero(raw: bytes | None) -> int:
    """The count of a `hits` value, 0 when absent or malformed (the write path resets a damaged
    counter rather than blocking the campaign)."""
    return _U64.unpack(raw)[0] if raw is not None and len(raw) == 8 else 0


# ----------------------------------------------------------------------------- failures


def _failure_problem(rec: dict) -> str | None:
    checks = {
        "signature": lambda v: isinstance(v, str),
        "kind": lambda v: isinstance(v, str),
        "message": lambda v: isinstance(v, str),
        "exc_type": lambda v: v is None or isinstance(v, str),
        "count": lambda v: _is_count(v) and v >= 1,
        "first_seen": _is_time,
        "last_seen": _is_time,
        "example_ids": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "extra": lambda v: v is None or isinstance(v, dict),
    }
    return _problem(rec, checks)


def encode_failure(rec: dict) -> bytes:
    """Stored form of a failure bucket {signature, kind, message, exc_type, count, first_seen,
    last_seen, example_ids, extra} (ValueError when a field is missing or bad)."""
    why = _failure_problem(rec)
    if why:
        raise ValueError(f"failure bucket: {why}")
    return canonical_json(rec)


def decode_failure(key: bytes, raw: bytes) -> dict:
    """The validated failure bucket stored under `key` (CorpusError otherwise)."""
    rec = _load_object("failures", key, raw)
    why = _failure_problem(rec)
    if why:
        raise corrupt("failures", key, why)
    return rec


def encode_example(example: dict) -> bytes:
    """Stored form of an example as `decode_example` returns it: {signature, recorded_at,
    case_bytes (bytes), result (dict)}; the case is kept as base64 under `case`."""
    case = example.get("case_bytes")
    if not isinstance(case, (bytes, bytearray, memoryview)):
        raise ValueError("example case_bytes must be bytes")
    if not isinstance(example.get("result"), dict):
        raise ValueError("example result must be a dict")
    rec = {k: v for k, v in example.items() if k != "case_bytes"}
    rec["case"] = base64.b64encode(bytes(case)).decode("ascii")
    return canonical_json(rec)


def decode_example(key: bytes, raw: bytes) -> dict:
    """{signature, recorded_at, case_bytes (bytes), result (dict)} of an example record
    (CorpusError when damaged)."""
    rec = _load_object("examples", key, raw)
    if not isinstance(rec.get("case"), str) or not isinstance(rec.get("result"), dict):
        raise corrupt("examples", key, "needs a base64 'case' and an object 'result'")
    why = _problem(rec, {}, {"signature": lambda v: isinstance(v, str), "recorded_at": _is_time})
    if why:
        raise corrupt("examples", key, why)
    try:
        case = base64.b64decode(rec.pop("case").encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise corrupt("examples", key, "'case' is not valid base64") from None
    rec["case_bytes"] = case
    return rec


# ----------------------------------------------------------------------------- stats


# The fields of a stats record that readers use (`covfuzz plot`, merge), each optional (records
# of older campaigns lack some) but checked when present; any other key is kept as it is.
_STATS_FIELDS = {
    "t": _is_time, "elapsed": _is_amount, "execs": _is_count, "corpus": _is_count,
    "features": _is_count, "lines": _is_count, "unique_failures": _is_count,
    "worker_restarts": _is_count, "execs_per_s": _is_amount,
    "supervisor_rss_mb": lambda v: v is None or _is_amount(v),
    "validity": lambda v: v is None or (_is_num(v) and 0 <= v <= 1),
    "failures_by_kind": lambda v: isinstance(v, dict) and all(_is_count(n) for n in v.values()),
    # Features seen per feedback family (issue 19): coverage, gencode, values, divergence.
    "families": lambda v: isinstance(v, dict) and len(v) <= 16 and all(
        isinstance(k, str) and len(k) <= 32 and _is_count(n) for k, n in v.items()),
}


def encode_stats(t: float, record: dict) -> bytes:
    """Stored form of a stats record appended at unix time `t` (kept in it as `t`)."""
    if not isinstance(record, dict):
        raise ValueError("a stats record must be a dict")
    record = dict(record, t=t)
    why = _problem(record, {}, _STATS_FIELDS)  # never write what decode_stats refuses
    if why:
        raise ValueError(f"stats record: {why}")
    return canonical_json(record)


def decode_stats(key: bytes, raw: bytes) -> tuple[float, dict]:
    """(t, record) of a stats record; t is the record's own `t`, else the key's time
    (CorpusError when the key, the JSON or a field readers use is malformed or out of range)."""
    ms, _ = stats_key_fields(key)
    if ms / 1000.0 > MAX_TIME:
        raise corrupt("stats", key, "key time out of range")
    rec = _load_object("stats", key, raw)
    why = _problem(rec, {}, _STATS_FIELDS)
    if why:
        raise corrupt("stats", key, why)
    return float(rec.get("t", ms / 1000.0)), rec


# ----------------------------------------------------------------------------- info


def encode_info(obj: dict) -> bytes:
    """Stored form of an `info` object (`campaign` or `created`)."""
    if not isinstance(obj, dict):
        raise ValueError("info must be a dict")
    return canonical_json(obj)


def decode_info(key: bytes, raw: bytes) -> dict:
    """The JSON object stored under `campaign` or `created` in `info` (CorpusError otherwise;
    its timestamps `created`, `created_at` must be in range when present). The campaign state
    inside is validated by `covfuzz.campaign.state.CampaignState.from_info`."""
    info = _load_object("info", key, raw)
    why = _problem(info, {}, {"created": _is_time, "created_at": _is_time})
    if why:
        raise corrupt("info", key, why)
    return info


def encode_schema(version: int) -> bytes:
    """Stored form of the store schema version: an ASCII int."""
    return str(int(version)).encode("ascii")


def decode_schema(raw: bytes) -> int:
    """The store schema version (CorpusError when unreadable)."""
    try:
        return int(bytes(raw).decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise corrupt("info", b"schema", f"unreadable schema version {raw!r:.40}") from None
