"""Fuzzing covfuzz's own parsers of outside data (atheris / libFuzzer): the engine and targets.

Targets (`TARGETS`):

  testcase      `covfuzz.serialize.decode` on raw bytes (stored form and JSON form)
  json          `covfuzz.serialize.from_json_text` on text
  records       the typed record decoders of `corpus.records`: meta, features, failure buckets,
                examples, stats, info and hits records (pure functions of key and value bytes);
                what decodes must also be in range (timestamps, counts)
  state         the campaign state record: `decode_info` then `CampaignState.from_info`
  status        `fuzzer_stats.json`: `covfuzz.status.decode_status`, then the status line
  reduced_meta  a reduced case's metadata file (`covfuzz.triage.failures.reduced_meta`)
  known_issues  the known-issues file loader (`covfuzz.triage.known_issues`, JSON and TOML)
  matcher       known-issue patterns (one a line) matched against a message: loading refuses
                or accepts, and matching must take less than `SLOW_INPUT_S`
  selectors     user-given ids and selectors (test-case, example and signature ids, prefixes,
                file paths) through `covfuzz.triage.resolve` and the store's public lookups, on a
                small real campaign directory

Contract of every target: an input either loads or raises the documented error type
(`TestCaseFormatError` for test cases, `CampaignDataError` for what is read from a campaign
directory: `CorpusError`, `CampaignStateError`, status, reduced metadata, known issues). Anything else is a finding: another
exception type, a hang (an input slower than `SLOW_INPUT_S`, or libFuzzer's -timeout), or an
unbounded allocation (libFuzzer's -rss_limit_mb / -malloc_limit_mb).

Two engines: `run_target(name, runs=N, max_seconds=S)` runs libFuzzer (atheris) in a child
process, which stops at the first finding and writes the input as `crash-*` / `timeout-*` /
`oom-*` into the artifact directory; `fuzz_in_process(name, ...)` drives the target with a small
structure-aware mutator instead (no atheris needed; collects every finding). The command line is
`covfuzz selffuzz` (covfuzz/cli/selffuzz.py).
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import zlib

import corpus
from corpus import records
from corpus.errors import CorpusError
from covfuzz import serialize, status
from covfuzz.campaign.state import CampaignState, rng_state
from covfuzz.errors import CampaignDataError, CovfuzzError, TestCaseFormatError
from covfuzz.features import as_features
from covfuzz.generator import GenOptions, generate
from covfuzz.triage import failures, known_issues, resolve
from covfuzz.triage.signature import signature_id

SLOW_INPUT_S = 2.0       # one input taking longer than this is a (hang) finding
MAX_INPUT_LEN = 1 << 16  # libFuzzer -max_len
RSS_LIMIT_MB = 3072      # libFuzzer -rss_limit_mb: an input whose decoding allocates without bound
MALLOC_LIMIT_MB = 1024   # libFuzzer -malloc_limit_mb: a single allocation beyond this is a finding
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout holding covfuzz/

# Inputs that look like code: a decoder must reject them as data, never run them.
CODE_STRINGS = (
    "__import__('os').system('touch /tmp/covfuzz_pwned')", "exec('1')", "eval('1')",
    "torch.add; import os", "float32\nimport os", "lambda: 0", "${jndi:x}", "'; DROP TABLE x",
    "os.system", "__class__", "torch.ops.aten.add.Tensor", "{}", "[]", "\x00", "\ud800", "",
    "a" * 65, "a" * 4096,
)
INTERESTING_VALUES = (
    0, 1, -1, 2, 7, 8, 9, 16, 63, 64, 65, 255, 256, 511, 512, 513, 1 << 16, (1 << 16) + 1,
    1 << 22, (1 << 22) + 1, 1 << 31, 1 << 32, (1 << 63) - 1, 1 << 63, 1 << 64, -(1 << 63),
    10 ** 30, 0.5, -0.0, 1e308, -1e308, 1e-320, True, False, None, [], {}, [[]], [[[[1]]]],
    [0] * 17, [1] * 9, ["a"], {"": None}, *CODE_STRINGS,
)


@dataclasses.dataclass
class Finding:
    target: str
    kind: str          # "exception", "slow", "crash" (libFuzzer artifact)
    summary: str       # exception type and message, one line
    input: bytes
    detail: str = ""   # traceback

    def __str__(self) -> str:
        return f"[{self.target}] {self.kind}: {self.summary} (input {self.input[:80]!r})"


@dataclasses.dataclass
class Report:
    target: str
    runs: int = 0
    seconds: float = 0.0
    findings: list = dataclasses.field(default_factory=list)
    engine: str = "in-process"
    returncode: int | None = None
    output: str = ""

    @property
    def ok(self) -> bool:
        return not self.findings

    def line(self) -> str:
        rate = self.runs / self.seconds if self.seconds else 0.0
        return (f"{self.target:<13} {self.engine:<10} {self.runs:>9} inputs {self.seconds:>8.1f}s "
                f"({rate:,.0f}/s) findings {len(self.findings)}")


def _temp_dir(prefix: str) -> str:
    """A scratch directory removed when the process exits."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, True)
    return path


# ----------------------------------------------------------------------------- seeds


def _seed_cases(count: int = 12) -> list:
    cases = []
    for seed in range(count):
        try:
            cases.append(generate(seed, GenOptions(max_nodes=2 + seed % 6)))
        except Exception:  # pragma: no cover - the generator is not under test here
            continue
    return cases


def _testcase_seeds() -> list[bytes]:
    out = []
    for case in _seed_cases():
        out.append(serialize.encode(case))
        out.append(serialize.to_json(case).encode())
        out.append(serialize.canonical_json(serialize.to_dict(case)))
    return out


# Records: the first input byte (mod 7) picks the decoder; stats and hits inputs carry their
# key (12 and 8 bytes) before the value.
RECORD_KINDS = ("meta", "features", "failure", "example", "stats", "info", "hit")
STATS_KIND, HIT_KIND = RECORD_KINDS.index("stats"), RECORD_KINDS.index("hit")
_SEED_KEY, _SIG_KEY = b"0123456789abcdef", b"0123456789ab"


def _record_seeds() -> list[bytes]:
    """Kind byte + a realistic record of each kind, made by the store's own encoders."""
    case = _seed_cases(1)[0]
    meta = records.seed_meta(parent=None, mutators=["generate"], depth=0, nodes=3, exec_time=0.5,
                             features_found=7, times_chosen=2, found_at=1.7e9, outcome="pass",
                             n_features=9)
    failure = {"signature": "0123456789ab", "kind": "compile_crash", "message": "boom",
               "exc_type": "RuntimeError", "count": 3, "first_seen": 1.7e9, "last_seen": 1.7e9 + 5,
               "example_ids": ["0123456789abcdef"], "extra": {"signature": "compile_crash|x"}}
    example = {"signature": "0123456789ab", "recorded_at": 1.7e9,
               "case_bytes": serialize.encode(case), "result": {"outcome": "x"}}
    stats = {"elapsed": 3.5, "execs": 10, "corpus": 4, "features": 100}
    feats = records.encode_features(as_features([1, 5, 1 << 40, (1 << 64) - 1]))
    return [b"\x00" + records.encode_meta(meta), b"\x01" + feats,
            b"\x02" + records.encode_failure(failure), b"\x03" + records.encode_example(example),
            b"\x04" + records.stats_key(1_700_000_000_000, 0) + records.encode_stats(1.7e9, stats),
            b"\x05" + records.encode_info({"state": {"execs": 3}, "scheduler": {}}),
            b"\x06" + records.hit_key(5) + records.encode_hit(9)]


# ----------------------------------------------------------------------------- targets


def _testcase_target():
    def one(data: bytes) -> None:
        try:
            serialize.decode(data)
        except TestCaseFormatError:
            pass
    return one


def _json_target():
    def one(data: bytes) -> None:
        text = data.decode("utf-8", "surrogateescape")  # every str, lone surrogates included
        try:
            serialize.from_json_text(text)
        except TestCaseFormatError:
            pass
    return one


def _in_range(value, what: str) -> None:
    """The oracle of a decoded timestamp: what a decoder lets through is a time in range."""
    if value is not None and not 0 <= value <= records.MAX_TIME:
        raise AssertionError(f"decoded {what} {value!r:.40} is out of range")


def _records_target():
    def one(data: bytes) -> None:
        if not data:
            return
        kind, raw = data[0] % len(RECORD_KINDS), data[1:]
        try:
            if kind == 0:
                _in_range(records.decode_meta(_SEED_KEY, raw)["found_at"], "found_at")
            elif kind == 1:
                records.decode_features(raw, _SEED_KEY)
            elif kind == 2:
                rec = records.decode_failure(_SIG_KEY, raw)
                _in_range(rec["first_seen"], "first_seen")
                _in_range(rec["last_seen"], "last_seen")
            elif kind == 3:
                _in_range(records.decode_example(_SEED_KEY, raw).get("recorded_at"), "recorded_at")
            elif kind == STATS_KIND:
                t, rec = records.decode_stats(raw[:12], raw[12:])
                _in_range(t, "t")
                if "elapsed" in rec:  # what `covfuzz plot` computes with
                    float(rec["elapsed"]) / 60
            elif kind == 5:
                _in_range(records.decode_info(b"campaign", raw).get("created"), "created")
            else:
                records.decode_hit(raw[:8], raw[8:])
        except CorpusError:
            pass
    return one


# ----------------------------------------------------------------------------- campaign data


def _state_seeds() -> list[bytes]:
    """Campaign info records as the store keeps them: version 2 (with an RNG state) and 1."""
    import random
    state = CampaignState(rng=rng_state(random.Random(7)), times_chosen={"0123456789abcdef": 3},
                          mutator_stats={"graph.add_node": {"wins": 1, "tries": 4}},
                          strategies={"mutate": {"gain": 1.5, "cost": 2.0, "tries": 3}})
    state.counters.execs, state.counters.last_new_feature = 12, 1.7e9
    state.counters.count_mutator("graph.add_node", "valid")
    info = {"covfuzz": "0.1", "torch": "2.13", "created": 1.7e9, "mode": "feedback"}
    v1 = dict(info, state={"execs": 3, "elapsed": 1.5}, scheduler={"times_chosen": {}},
              bandits={"strategies": {}})
    return [records.encode_info(dict(info, state=state.to_record())), records.encode_info(v1),
            records.encode_info(info)]


def _state_target():
    def one(data: bytes) -> None:
        try:
            state = CampaignState.from_info(records.decode_info(b"campaign", data))
        except CampaignDataError:
            return
        records.canonical_json(state.to_record())  # what loaded can be saved again
    return one


def _status_seeds() -> list[bytes]:
    row = {"gain": 1.0, "cost": 2.0, "tries": 3, "rate": 0.4}
    full = {"dir": "/tmp/c", "pid": 4242, "mode": "feedback", "updated": 1.7e9, "elapsed": 61.5,
            "execs": 40, "execs_per_s": 0.65, "corpus": 7, "features": 12000, "lines": 900,
            "unique_failures": 2, "failures_by_kind": {"compile_crash": 2},
            "last_new_feature": 1.7e9, "last_new_failure": None, "validity": 0.8,
            "ran_eagerly": 0.9, "worker_restarts": 1, "workers": 2, "supervisor_rss_mb": 300.5,
            "device": "cpu", "outcomes": {"pass": 30, "compile_crash": 2},
            "mutators": {"graph.add_node": {"proposals": 5, "valid": 4, "ran": 4, "executed": 4,
                                            "wins": 1}},
            "running": False, "strategies": {"mutate": row}, "settings_moves": {"dynamic": row}}
    minimal = {k: full[k] for k in ("elapsed", "execs", "execs_per_s", "corpus", "features",
                                    "unique_failures", "worker_restarts")}
    return [json.dumps(full).encode(), json.dumps(minimal).encode()]


def _status_target():
    def one(data: bytes) -> None:
        try:
            record = status.decode_status(data)
        except CampaignDataError:
            return
        status.status_line(record)  # what decodes can be printed
    return one


_REDUCED_SIG = "0123456789ab"


def _reduced_meta_seeds() -> list[bytes]:
    meta = {"signature": "compile_crash|x", "signature_id": _REDUCED_SIG,
            "example_id": "0123456789abcdef", "original_id": "0123456789abcdef",
            "reduced_id": "fedcba9876543210", "nodes_before": 9, "nodes_after": 2,
            "inputs_before": 3, "inputs_after": 1, "runs": 40, "steps": 12, "seconds": 30.5,
            "reduced_at": 1.7e9, "stopped": "fixpoint"}
    return [json.dumps(meta).encode(), b"{}"]


def _reduced_meta_target():
    """The metadata file as covfuzz reads it: DIR/reduced/<sig>.json through `reduced_meta`."""
    directory = _temp_dir("selffuzz-reduced-")
    _, path = failures.reduced_paths(directory, _REDUCED_SIG)
    os.makedirs(os.path.dirname(path), exist_ok=True)

    def one(data: bytes) -> None:
        with open(path, "wb") as handle:
            handle.write(data)
        try:
            meta = failures.reduced_meta(directory, _REDUCED_SIG)
        except CampaignDataError:
            return
        _in_range(meta.get("reduced_at"), "reduced_at")
    return one


_KI_SAMPLE = ("compile_crash|RuntimeError|LoweringException: aten.add N|torch/_inductor/lowering.py:f\n"
              + "a" * 40 + "!")


def _known_issues_target():
    tmpdir = _temp_dir("selffuzz-ki-")
    paths = (os.path.join(tmpdir, "known_issues.json"), os.path.join(tmpdir, "known_issues.toml"))
    counter = [0]

    def one(data: bytes) -> None:
        counter[0] += 1
        # The first byte picks the syntax (JSON or TOML) so each input is one file.
        toml = bool(data) and data[0] % 2 == 1
        body = data[1:] if data else data
        path = paths[toml]
        try:
            if counter[0] % 16 == 0:  # the file path of the loader, now and then
                with open(path, "wb") as handle:
                    handle.write(body)
                issues = known_issues.load(path)
            else:
                issues = known_issues.parse(body, path)
        except CampaignDataError:
            return
        if len(issues):  # matching must terminate quickly too (user regexes: ReDoS)
            _match_in_time(issues, _KI_SAMPLE)
    return one


def _match_in_time(issues, text: str) -> None:
    """Match `text` against loaded known issues; slower than SLOW_INPUT_S is a finding."""
    started = time.perf_counter()
    issues.match(text, text)
    spent = time.perf_counter() - started
    if spent > SLOW_INPUT_S:
        raise AssertionError(f"matching took {spent:.1f}s (more than {SLOW_INPUT_S}s)")


# The matcher: patterns (one a line) before a NUL byte, the message after it.
_MATCH_MESSAGE = b"compile_crash|RuntimeError|" + b"a" * 40 + b"x" * 10 + b"!"


def _matcher_target():
    def one(data: bytes) -> None:
        patterns, _, message = data.partition(b"\x00")
        entries = [{"pattern": p} for p in patterns.decode("utf-8", "replace").split("\n") if p]
        try:
            issues = known_issues.parse(json.dumps(entries).encode(), "known_issues.json")
        except CampaignDataError:
            return
        _match_in_time(issues, message.decode("utf-8", "replace"))
    return one


def _matcher_seeds() -> list[bytes]:
    redos = (b"(a|aa)*$", b"((a+)+)+b", b"(x+x+)+y", b"(a+)+$", b"(.*a){20}", b"(a|a?)+$",
             b"compile_crash\\|.*Lowering", b"^(([a-z])+.)+[A-Z]([a-z])+$", b"(\\w+\\s?)+$")
    return [p + b"\x00" + _MATCH_MESSAGE for p in redos] + [b"\n".join(redos) + b"\x00" + _MATCH_MESSAGE]


def _known_issues_seeds() -> list[bytes]:
    return [b"\x00" + b'{"issues": [{"pattern": "compile_crash\\\\|.*Lowering", "link": "https://x/1", '
            b'"note": "n"}]}',
            b"\x00" + b'[{"pattern": "mismatch\\\\|torch\\\\.cumsum"}]', b"\x00{}", b"\x00[]",
            b"\x01[[issues]]\npattern = 'mismatch\\\\|torch\\\\.cumsum'\nlink = \"https://x/2\"\n",
            b"\x01issues = [{pattern = 'a+', note = 'x'}]\n"]


# Selectors run against a small real campaign: two seeds, one failure bucket with one example.
_SELECTOR_SIGNATURE = "compile_crash|RuntimeError|selffuzz|torch/x.py:f"


def _selector_cases() -> tuple:
    """(seed cases, failing example case): deterministic, so the seeds can name their ids."""
    cases = _seed_cases(3)
    return cases[:2], cases[2]


def _selector_campaign() -> str:
    directory = _temp_dir("selffuzz-campaign-")
    seeds, failing = _selector_cases()
    with corpus.open_campaign_store(directory, readonly=False, create=True) as store:
        for case in seeds:
            store.add_seed(serialize.case_id(case), serialize.encode(case),
                           records.seed_meta(mutators=["generate"], nodes=len(case.graph.nodes)),
                           [1, 2, 3])
        store.record_failure(signature_id(_SELECTOR_SIGNATURE), "compile_crash", "boom",
                             "RuntimeError", serialize.case_id(failing), serialize.encode(failing),
                             {"outcome": "compile_crash", "message": "boom"},
                             extra={"signature": _SELECTOR_SIGNATURE})
    return directory


def _selector_seeds() -> list[bytes]:
    seeds, failing = _selector_cases()
    ids = [serialize.case_id(c) for c in seeds + [failing]]
    sig_id = signature_id(_SELECTOR_SIGNATURE)
    known = [i.encode() for i in ids] + [sig_id.encode(), ids[0][:6].encode(), sig_id[:5].encode(),
                                         _SELECTOR_SIGNATURE.encode()]
    return known + [b"0123456789abcdef", b"0123456789ab", b"sha256:" + b"a" * 64,
                    b"fedcba9876543210", b"0123456789ABCDEF", b"../../etc/passwd", b"-h", b"",
                    b"\x00", b"a b", b"id\n", b"0123456789abcdef0", b"\xff\xfe", b"012", b"0123"]


# The store's id lookups raised plain ValueError for malformed ids (finding SF-1); they raise
# `corpus.InvalidId` (a CorpusError and a ValueError) now. `strict=True` reports a ValueError
# that is not a CovfuzzError; `strict=False` tolerates it.
SELECTOR_TOLERATED = (ValueError,)


def _selectors_target(strict: bool = False):
    allowed = (CovfuzzError,) if strict else (CovfuzzError,) + SELECTOR_TOLERATED
    directory = _selector_campaign()
    store = corpus.open_campaign_store(directory, readonly=True, create=False)
    seeds, failing = _selector_cases()
    seed_ids = {serialize.case_id(c) for c in seeds}
    example_ids = {serialize.case_id(failing)}
    sig_ids = {signature_id(_SELECTOR_SIGNATURE)}
    known = seed_ids | example_ids | sig_ids

    def expected(text: str) -> str | None:
        """The full id `text` must resolve to, by the documented rule; None: an error."""
        if text in known:
            return text
        if text == _SELECTOR_SIGNATURE:
            return next(iter(sig_ids))
        if not resolve.MIN_PREFIX <= len(text) <= 16 or not re.fullmatch(r"[0-9a-f]+", text):
            return None
        matches = [i for i in known if i.startswith(text)]
        return matches[0] if len(matches) == 1 else None

    def one(data: bytes) -> None:
        text = data.decode("utf-8", "surrogateescape")
        is_case = resolve.CASE_ID.fullmatch(text) is not None
        for lookup in (store.has_seed, store.get_case_bytes, store.get_meta, store.get_example):
            try:
                got = lookup(text)
            except allowed:
                if is_case:
                    raise AssertionError(f"{lookup.__name__} refused the valid id {text!r}")
                continue
            if got not in (None, False) and text not in known:
                raise AssertionError(f"{lookup.__name__}({text!r}) found an id nobody stored")
        try:
            key = records.signature_key(text)
            if resolve.SIGNATURE_ID.fullmatch(text) and key != text.encode():
                raise AssertionError(f"signature id {text!r} maps to key {key!r}")
            if not isinstance(key, bytes) or len(key) > 511:
                raise AssertionError(f"signature key of {text!r} is not an LMDB key: {key!r:.80}")
            store.get_failure(text)
        except allowed:
            if resolve.SIGNATURE_ID.fullmatch(text):
                raise
        want = expected(text)
        try:
            got = resolve.campaign_case(store, text, directory)
        except CovfuzzError:
            if want is not None:
                raise AssertionError(f"{text!r} should resolve to {want}") from None
        else:
            if want not in (got.label, got.sig_id, got.example_id):
                raise AssertionError(f"{text!r} resolved to {got.label}, expected {want}")
        try:  # the same text as a file path (no campaign): a case or a CovfuzzError
            resolve.load_case(text)
        except CovfuzzError:
            pass
    return one


@dataclasses.dataclass
class Target:
    name: str
    make: object        # () -> TestOneInput(bytes)
    seeds: object      # () -> list[bytes]
    doc: str
    structured: str = "bytes"  # "testcase" / "json": the in-process mutator edits JSON trees


TARGETS = {
    "testcase": Target("testcase", _testcase_target, _testcase_seeds,
                       "serialize.decode on raw bytes", "testcase"),
    "json": Target("json", _json_target, lambda: [s for s in _testcase_seeds() if s[:1] == b"{"],
                   "serialize.from_json_text", "json"),
    "records": Target("records", _records_target, _record_seeds,
                      "corpus.records decoders (meta, features, failures, examples, stats, "
                      "info, hits)", "records"),
    "state": Target("state", _state_target, _state_seeds,
                    "campaign state record: corpus.records.decode_info + CampaignState.from_info",
                    "json"),
    "status": Target("status", _status_target, _status_seeds,
                     "fuzzer_stats.json: covfuzz.status.decode_status + status_line", "json"),
    "reduced_meta": Target("reduced_meta", _reduced_meta_target, _reduced_meta_seeds,
                           "reduced/<sig>.json: covfuzz.triage.failures.reduced_meta", "json"),
    "known_issues": Target("known_issues", _known_issues_target,
                           _known_issues_seeds, "covfuzz.triage.known_issues parse/load (JSON and TOML)",
                           "records"),
    "matcher": Target("matcher", _matcher_target, _matcher_seeds,
                      "known-issue patterns matched against a message (RE2; slower than "
                      f"{SLOW_INPUT_S:g}s is a finding)"),
    "selectors": Target("selectors", _selectors_target, _selector_seeds,
                        "ids, id prefixes and paths via covfuzz.triage.resolve and store lookups"),
}


# ----------------------------------------------------------------------------- mutation


def _mutate_tree(obj, rng: random.Random, depth: int = 0):
    """One random edit somewhere in a JSON tree: replace, delete, duplicate or retype a value."""
    if isinstance(obj, dict) and obj and rng.random() < 0.8:
        key = rng.choice(sorted(obj, key=str))
        r = rng.random()
        if r < 0.1:
            obj = dict(obj)
            del obj[key]
            return obj
        if r < 0.2:
            obj = dict(obj)
            obj[rng.choice(CODE_STRINGS[:12] + ("op", "attrs", "kind", "out"))] = obj[key]
            return obj
        return {**obj, key: _mutate_tree(obj[key], rng, depth + 1)}
    if isinstance(obj, list) and obj and rng.random() < 0.8:
        i = rng.randrange(len(obj))
        r = rng.random()
        out = list(obj)
        if r < 0.1:
            del out[i]
        elif r < 0.2:
            out.insert(i, out[i])
        else:
            out[i] = _mutate_tree(out[i], rng, depth + 1)
        return out
    r = rng.random()
    if isinstance(obj, int) and not isinstance(obj, bool) and r < 0.5:
        return obj + rng.choice((-1, 1, -obj - 1, obj, 1 << rng.randrange(70)))
    if isinstance(obj, str) and r < 0.3:
        return obj[: rng.randrange(len(obj) + 1)] + rng.choice(("", "x", "'", "\\", "\x00", "é"))
    return rng.choice(INTERESTING_VALUES)


def _bytes_mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(1 + int(rng.expovariate(1.0))):
        r = rng.random()
        if not buf or r < 0.15:
            buf[rng.randrange(len(buf) + 1):] = bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
        elif r < 0.45:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif r < 0.6:
            buf[rng.randrange(len(buf))] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x22, 0x5C, 0x7B))
        elif r < 0.75:
            i = rng.randrange(len(buf))
            del buf[i:i + rng.randrange(1, 9)]
        elif r < 0.9:
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = rng.choice((b"\x00", b"\xff\xff\xff\xff", b"{", b"[", b"\"", b"9" * 40,
                                   b"1e999", b"NaN", b"-", b"\\u0000", b"\\ud800"))
        else:
            del buf[rng.randrange(len(buf) + 1):]
    return bytes(buf[:MAX_INPUT_LEN])


def structured_mutate(target: str, data: bytes, rng: random.Random) -> bytes:
    """Structure-aware edit: mutate the JSON tree inside the stored/JSON form (re-encoded so it
    passes the framing), or fall back to byte-level mutation."""
    magic = data.startswith(serialize.MAGIC)
    body, prefix = data, b""
    if target in ("records", "known_issues") and data:
        prefix, body = data[:1], data[1:]
        if target == "records" and prefix[0] % len(RECORD_KINDS) == STATS_KIND:
            prefix, body = data[:13], data[13:]
    if magic:
        try:
            body = zlib.decompress(data[len(serialize.MAGIC) + 1:])
        except zlib.error:
            return _bytes_mutate(data, rng)
    if rng.random() < 0.7:
        try:
            tree = json.loads(body)
        except ValueError:
            tree = None
        if tree is not None:
            for _ in range(1 + int(rng.expovariate(0.7))):
                tree = _mutate_tree(tree, rng)
            try:
                body = json.dumps(tree, sort_keys=rng.random() < 0.5).encode("utf-8", "surrogatepass")
            except (TypeError, ValueError):
                pass
        else:
            body = _bytes_mutate(body, rng)
    else:
        body = _bytes_mutate(body, rng)
    if magic:
        version = bytes([serialize.SCHEMA_VERSION if rng.random() < 0.95 else rng.randrange(256)])
        return serialize.MAGIC + version + zlib.compress(body)
    return prefix + body


# ----------------------------------------------------------------------------- drivers


def _summary(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}"


def fuzz_in_process(name: str, runs: int = 2000, max_seconds: float | None = None,
                    seed: int = 0, strict: bool = False, max_findings: int = 20) -> Report:
    """Drive a target without atheris: mutated seeds (structure-aware) plus random bytes read
    through atheris' FuzzedDataProvider when atheris is installed. Collects findings (one per
    distinct exception type + location) instead of stopping at the first."""
    target = TARGETS[name]
    report = Report(name)
    one = _selectors_target(strict) if name == "selectors" else target.make()
    seeds = target.seeds()
    try:
        import atheris  # lazily: only this driver's random inputs use it
        provider = atheris.FuzzedDataProvider
    except ImportError:  # pragma: no cover - atheris is a dev dependency
        provider = None
    rng = random.Random(seed)
    pool = list(seeds) or [b""]
    seen: set = set()
    started = time.perf_counter()
    for i in range(runs):
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            break
        r = rng.random()
        if r < 0.15 and provider is not None:
            raw = rng.getrandbits(8 * 256).to_bytes(256, "little")
            fdp = provider(raw)
            data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200))
            if name == "testcase" and rng.random() < 0.5:
                data = b"CFZT\x01" + data
        elif r < 0.25:
            data = rng.choice(pool)
        else:
            data = structured_mutate(name, rng.choice(pool), rng)
            if rng.random() < 0.05 and len(pool) < 500:
                pool.append(data)
        t0 = time.perf_counter()
        try:
            one(data)
        except Exception as exc:  # noqa: BLE001 - every escaping exception is a finding
            tb = traceback.extract_tb(exc.__traceback__)
            where = f"{tb[-1].filename}:{tb[-1].lineno}" if tb else "?"
            key = (type(exc).__name__, where)
            if key not in seen and len(report.findings) < max_findings:
                seen.add(key)
                report.findings.append(Finding(name, "exception", f"{_summary(exc)} at {where}",
                                               data, traceback.format_exc()))
        dt = time.perf_counter() - t0
        if dt > SLOW_INPUT_S and ("slow", name) not in seen:
            seen.add(("slow", name))
            report.findings.append(Finding(name, "slow", f"one input took {dt:.1f}s", data))
        report.runs = i + 1
    report.seconds = time.perf_counter() - started
    return report


def write_seed_corpus(name: str, directory: str) -> int:
    os.makedirs(directory, exist_ok=True)
    n = 0
    for i, data in enumerate(TARGETS[name].seeds()):
        with open(os.path.join(directory, f"seed-{i:03d}"), "wb") as handle:
            handle.write(data)
        n += 1
    return n


# The libFuzzer process. Third-party modules load first, uninstrumented; then this module (and
# through its imports every covfuzz and corpus module a target reaches) loads inside
# atheris.instrument_imports, so libFuzzer is guided by their coverage. Hence a fresh
# interpreter: in the covfuzz command, those modules are loaded already.
_ATHERIS_BOOT = """
import json, sys
import atheris
import lmdb, numpy, torch
with atheris.instrument_imports(include=["covfuzz", "corpus"]):
    from covfuzz import selffuzz
sys.exit(selffuzz.atheris_main(**json.loads(sys.argv[1])))
"""


def atheris_process(name: str, runs: int | None, seconds: int | None, artifacts: str,
                    corpus_dir: str | None = None, seed: int = 0, strict: bool = False,
                    extra: list[str] = (), capture: bool = True, cwd: str | None = None,
                    timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run target `name` under libFuzzer in a child process; `capture=False` lets its output
    through to this process's stdout/stderr. Raises subprocess.TimeoutExpired after `timeout`."""
    spec = {"name": name, "runs": runs, "seconds": seconds, "artifacts": artifacts,
            "corpus_dir": corpus_dir, "seed": seed, "strict": strict, "extra": list(extra)}
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", _ATHERIS_BOOT, json.dumps(spec)], env=env,
                          cwd=cwd, timeout=timeout, capture_output=capture, text=capture,
                          errors="replace" if capture else None)


_DONE_RE = re.compile(r"Done (\d+) runs in (\d+) second")
_STAT_RE = re.compile(r"#(\d+)\s+(?:pulse|NEW|REDUCE|DONE|INITED)")


def run_target(name: str, runs: int = 2000, max_seconds: float | None = None,
               engine: str = "atheris", seed: int = 0, artifacts: str | None = None,
               timeout_slack: float = 120.0, strict: bool = False) -> Report:
    """Run one target for `runs` inputs (or `max_seconds`), returning a Report.

    engine="atheris": libFuzzer in a child process (`atheris_process`; atheris.Fuzz ends with
    sys.exit); findings are libFuzzer's crash/timeout/oom artifacts. engine="in-process": see
    `fuzz_in_process`."""
    if name not in TARGETS:
        raise KeyError(f"unknown target {name!r}; targets: {', '.join(TARGETS)}")
    if engine == "in-process":
        return fuzz_in_process(name, runs, max_seconds, seed=seed, strict=strict)
    own_artifacts = artifacts is None
    artifacts = artifacts or tempfile.mkdtemp(prefix=f"selffuzz-{name}-")
    seconds = int(max(1, max_seconds)) if max_seconds else None
    started = time.perf_counter()
    limit = (max_seconds or 3600) + timeout_slack
    try:
        proc = atheris_process(name, runs, seconds, artifacts, seed=seed, strict=strict,
                               cwd=ROOT, timeout=limit)
        output, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
        code = None
    report = Report(name, engine="atheris", returncode=code, output=output[-20000:])
    report.seconds = time.perf_counter() - started
    done = _DONE_RE.findall(output)
    stats = _STAT_RE.findall(output)
    report.runs = int(done[-1][0]) if done else (int(stats[-1]) if stats else 0)
    for fname in sorted(os.listdir(artifacts)):
        if fname.split("-")[0] in ("crash", "timeout", "oom", "leak", "slow"):
            with open(os.path.join(artifacts, fname), "rb") as handle:
                data = handle.read()
            tail = [l for l in output.splitlines() if "Error" in l or "Exception" in l or "==" in l]
            report.findings.append(Finding(name, fname.split("-")[0],
                                           (tail[-1] if tail else fname)[:300], data, output[-4000:]))
    if code not in (0, None) and not report.findings:
        report.findings.append(Finding(name, "crash", f"fuzzer exited {code}", b"", output[-4000:]))
    if code is None:
        report.findings.append(Finding(name, "hang", f"no result after {limit:.0f}s", b"", output[-4000:]))
    if own_artifacts and not report.findings:
        shutil.rmtree(artifacts, ignore_errors=True)
    return report


def atheris_main(name: str, runs: int | None, seconds: int | None, artifacts: str,
                 corpus_dir: str | None, seed: int, strict: bool, extra: list[str]) -> int:
    """The libFuzzer process's body (started by `atheris_process`); does not return."""
    import atheris  # lazily: only the libFuzzer child needs it
    target = TARGETS[name]
    one = _selectors_target(strict) if name == "selectors" else target.make()
    tmp_corpus = None
    if corpus_dir is None:
        tmp_corpus = corpus_dir = tempfile.mkdtemp(prefix=f"selffuzz-corpus-{name}-")
    write_seed_corpus(name, corpus_dir)
    os.makedirs(artifacts, exist_ok=True)
    rng = random.Random(seed)

    def custom_mutator(data: bytes, max_size: int, mseed: int) -> bytes:
        if target.structured != "bytes" and rng.random() < 0.5:
            rng.seed(mseed)
            out = structured_mutate(target.name, data, rng)
        else:
            out = atheris.Mutate(data, max_size)
        return out[:max_size]

    argv = ["covfuzz-selffuzz", corpus_dir, f"-artifact_prefix={os.path.join(artifacts, '')}",
            f"-max_len={MAX_INPUT_LEN}", f"-rss_limit_mb={RSS_LIMIT_MB}",
            f"-malloc_limit_mb={MALLOC_LIMIT_MB}", f"-timeout={int(SLOW_INPUT_S * 5)}",
            f"-seed={seed or 1}", "-print_final_stats=1"]
    if runs:
        argv.append(f"-runs={runs}")
    if seconds:
        argv.append(f"-max_total_time={seconds}")
    argv += extra
    kwargs = {"custom_mutator": custom_mutator} if target.structured != "bytes" else {}
    atheris.Setup(argv, one, **kwargs)
    try:
        atheris.Fuzz()  # ends the process (sys.exit)
    finally:  # pragma: no cover
        if tmp_corpus:
            shutil.rmtree(tmp_corpus, ignore_errors=True)
    return 0
