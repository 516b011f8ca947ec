"""Fuzzing covfuzz's own parsers of outside data (atheris / libFuzzer).

Targets (`TARGETS`):

  testcase      `covfuzz.serialize.decode` on raw bytes (stored form and JSON form)
  json          `covfuzz.serialize.from_json_text` on text
  records       the LMDB record decoders of `corpus.store`: meta, features, failure buckets,
                examples, stats, info and hits records (decoded through the store's own code on a
                stub store, so no LMDB transaction is needed per input)
  known_issues  the known-issues file loader (`covfuzz.triage.known_issues`), skipped while that
                module does not exist
  selectors     user-given ids and selectors: test-case ids (16 hex digits), signature ids
                (12 hex digits) and example ids, through the public store lookups and the CLI

Contract of every target: an input either loads or raises the documented error type
(`TestCaseFormatError`, `CorpusError`, `CovfuzzError`). Anything else is a finding: another
exception type, a hang (an input slower than `SLOW_INPUT_S`, or libFuzzer's -timeout), or an
unbounded allocation (libFuzzer's -rss_limit_mb / -malloc_limit_mb).

Usage:
  python -m covfuzz.selffuzz TARGET [--runs N] [--seconds S] [--in-process] [--corpus DIR]
  python -m covfuzz.selffuzz list

With atheris (the default) the run is libFuzzer's: it stops at the first finding and writes the
input as `crash-*` / `timeout-*` / `oom-*` into the artifact directory. `--in-process` drives the
target with a small structure-aware mutator instead (no atheris needed; collects every finding).
`run_target(name, runs=N, max_seconds=S)` is the API for tests; `add_parser(subparsers)` adds
the `selffuzz` subcommand to a CLI.
"""

from __future__ import annotations

import argparse
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

SLOW_INPUT_S = 2.0       # one input taking longer than this is a (hang) finding
MAX_INPUT_LEN = 1 << 16  # libFuzzer -max_len
RSS_LIMIT_MB = 3072      # libFuzzer -rss_limit_mb: an input whose decoding allocates without bound
MALLOC_LIMIT_MB = 1024   # libFuzzer -malloc_limit_mb: a single allocation beyond this is a finding
CASE_ID_RE = re.compile(r"[0-9a-f]{16}")
SIGNATURE_ID_RE = re.compile(r"[0-9a-f]{12}")

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


class Skip(Exception):
    """The target cannot run here (e.g. the module it fuzzes does not exist yet)."""


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
    skipped: str | None = None
    engine: str = "in-process"
    returncode: int | None = None
    output: str = ""

    @property
    def ok(self) -> bool:
        return not self.findings

    def line(self) -> str:
        if self.skipped:
            return f"{self.target:<13} SKIPPED: {self.skipped}"
        rate = self.runs / self.seconds if self.seconds else 0.0
        return (f"{self.target:<13} {self.engine:<10} {self.runs:>9} inputs {self.seconds:>8.1f}s "
                f"({rate:,.0f}/s) findings {len(self.findings)}")


# ----------------------------------------------------------------------------- seeds


def _seed_cases(count: int = 12) -> list:
    from covfuzz.generator import GenOptions, generate
    cases = []
    for seed in range(count):
        try:
            cases.append(generate(seed, GenOptions(max_nodes=2 + seed % 6)))
        except Exception:  # pragma: no cover - the generator is not under test here
            continue
    return cases


def _testcase_seeds() -> list[bytes]:
    from covfuzz import serialize
    out = []
    for case in _seed_cases():
        out.append(serialize.encode(case))
        out.append(serialize.to_json(case).encode())
        out.append(serialize.canonical_json(serialize.to_dict(case)))
    return out


def _record_seeds() -> list[bytes]:
    """Selector byte + a realistic record of each database (see `_records_one`)."""
    import base64
    import numpy as np
    from corpus.store import canonical_json, encode_features
    from covfuzz import serialize
    case = _seed_cases(1)[0]
    meta = {"parent": None, "mutators": ["generate"], "depth": 0, "nodes": 3, "exec_time": 0.5,
            "features_found": 7, "times_chosen": 2, "found_at": 1.7e9, "outcome": "pass",
            "n_features": 9}
    failure = {"signature": "0123456789ab", "kind": "compile_crash", "message": "boom",
               "exc_type": "RuntimeError", "count": 3, "first_seen": 1.7e9, "last_seen": 1.7e9 + 5,
               "example_ids": ["0123456789abcdef"], "extra": {"signature": "compile_crash|x"}}
    example = {"signature": "0123456789ab", "recorded_at": 1.7e9,
               "case": base64.b64encode(serialize.encode(case)).decode(), "result": {"outcome": "x"}}
    stats = {"elapsed": 3.5, "execs": 10, "corpus": 4, "features": 100, "t": 1.7e9}
    feats = encode_features(np.array([1, 5, 1 << 40, (1 << 64) - 1], dtype=np.uint64))
    return [b"\x00" + canonical_json(meta), b"\x01" + feats, b"\x02" + canonical_json(failure),
            b"\x03" + canonical_json(example),
            b"\x04" + (1_700_000_000_000).to_bytes(8, "big") + (0).to_bytes(4, "big")
            + canonical_json(stats),
            b"\x05" + canonical_json({"state": {"execs": 3}, "scheduler": {}}),
            b"\x06" + (5).to_bytes(8, "big") + (9).to_bytes(8, "big")]


def _selector_seeds() -> list[bytes]:
    return [b"0123456789abcdef", b"0123456789ab", b"sha256:" + b"a" * 64, b"fedcba9876543210",
            b"0123456789ABCDEF", b"../../etc/passwd", b"-h", b"", b"\x00", b"a b", b"id\n",
            b"0123456789abcdef0", b"\xff\xfe"]


# ----------------------------------------------------------------------------- targets


def _testcase_target():
    from covfuzz import serialize
    from covfuzz.errors import TestCaseFormatError

    def one(data: bytes) -> None:
        try:
            serialize.decode(data)
        except TestCaseFormatError:
            pass
    return one


def _json_target():
    from covfuzz import serialize
    from covfuzz.errors import TestCaseFormatError

    def one(data: bytes) -> None:
        text = data.decode("utf-8", "surrogateescape")  # every str, lone surrogates included
        try:
            serialize.from_json_text(text)
        except TestCaseFormatError:
            pass
    return one


class _StubStore:
    """Enough of a CorpusStore for its decoding methods: every read returns the fuzzed record."""

    def __init__(self, key: bytes, raw: bytes):
        from corpus.store import CorpusStore
        self.key, self.raw = key, raw
        self._dbs = {name: name for name in ("info", "testcases", "meta", "features", "hits",
                                             "failures", "examples", "stats")}
        self._report = CorpusStore._report
        self._decode_meta = CorpusStore._decode_meta
        self._decode_failure = lambda key, raw: CorpusStore._decode_failure(self, key, raw)

    def _read(self, fn):
        return self.raw

    def _scan(self, db, start=b"", chunk=0, values=True):
        yield (self.key, self.raw) if values else (self.key, None)


def _records_target():
    from corpus import store as st
    from corpus.errors import CorpusError
    S = st.CorpusStore

    def one(data: bytes) -> None:
        if not data:
            return
        which, raw = data[0] % 7, data[1:]
        errors: list = []
        try:
            if which == 0:
                S._decode_meta(b"0123456789abcdef", raw)
            elif which == 1:
                st.decode_features(raw, b"0123456789abcdef")
            elif which == 2:
                S.failures(_StubStore(b"0123456789ab", raw), errors)
                S.get_failure(_StubStore(b"0123456789ab", raw), "0123456789ab")
            elif which == 3:
                S.get_example(_StubStore(b"", raw), "0123456789abcdef")
            elif which == 4:  # stats: a 12-byte key (when present) then the JSON value
                S.stats_series(_StubStore(raw[:12], raw[12:]), errors=errors)
            elif which == 5:
                S.get_info(_StubStore(b"campaign", raw))
                S.store_info(_StubStore(b"created", raw))
            else:
                S.feature_counts(_StubStore(raw[:8], raw[8:]), errors)
        except CorpusError:
            pass
        for exc in errors:
            if not isinstance(exc, CorpusError):
                raise TypeError(f"reported error is not a CorpusError: {exc!r}")
    return one


def known_issues_module():
    """The known-issues module, or raise Skip naming what is missing."""
    try:
        from covfuzz.triage import known_issues
    except ImportError as exc:
        if "known_issues" not in str(exc):
            raise
        raise Skip("covfuzz/triage/known_issues.py does not exist yet (being written); "
                   "the known_issues target will run once it does") from None
    return known_issues


_KI_SAMPLE = ("compile_crash|RuntimeError|LoweringException: aten.add N|torch/_inductor/lowering.py:f\n"
              + "a" * 40 + "!")


def _known_issues_target():
    from covfuzz.errors import CovfuzzError
    mod = known_issues_module()
    parse, load = getattr(mod, "parse", None), getattr(mod, "load", None)
    if not callable(parse) or not callable(load):
        raise Skip("covfuzz.triage.known_issues has no parse(data, path) / load(path)")
    tmpdir = tempfile.mkdtemp(prefix="selffuzz-ki-")
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
                issues = load(path)
            else:
                issues = parse(body, path)
        except CovfuzzError:
            return
        if len(issues):  # matching must terminate quickly too (user regexes: ReDoS)
            issues.match(_KI_SAMPLE, _KI_SAMPLE)
    return one


def _known_issues_seeds() -> list[bytes]:
    return [b"\x00" + b'{"issues": [{"pattern": "compile_crash\\\\|.*Lowering", "link": "https://x/1", '
            b'"note": "n"}]}',
            b"\x00" + b'[{"pattern": "mismatch\\\\|torch\\\\.cumsum"}]', b"\x00{}", b"\x00[]",
            b"\x01[[issues]]\npattern = 'mismatch\\\\|torch\\\\.cumsum'\nlink = \"https://x/2\"\n",
            b"\x01issues = [{pattern = 'a+', note = 'x'}]\n"]


# Selectors: no covfuzz function validates user-given ids yet (see the report in the module
# docstring of tests/test_selffuzz.py). The store lookups raise plain ValueError for malformed
# ids, which is not a CovfuzzError: known finding SF-1. `strict=False` tolerates it so the short
# test run checks everything else; `--strict` reports it.
SELECTOR_TOLERATED = (ValueError,)


def _selectors_target(strict: bool = False):
    import contextlib
    import io
    from corpus import store as st
    from covfuzz import cli
    from covfuzz.errors import CovfuzzError
    S = st.CorpusStore
    allowed = (CovfuzzError,) if strict else (CovfuzzError,) + SELECTOR_TOLERATED
    nowhere = os.path.join(tempfile.gettempdir(), "covfuzz-selffuzz-no-such-dir")

    def one(data: bytes) -> None:
        text = data.decode("utf-8", "surrogateescape")
        is_case = CASE_ID_RE.fullmatch(text) is not None
        is_sig = SIGNATURE_ID_RE.fullmatch(text) is not None
        stub = _StubStore(b"", None)  # every lookup misses
        for lookup in (S.has_seed, S.get_case_bytes, S.get_meta, S.get_features, S.get_example):
            try:
                got = lookup(stub, text)
            except allowed:
                if is_case:
                    raise AssertionError(f"{lookup.__name__} refused the valid id {text!r}")
                continue
            if got not in (None, False):
                raise AssertionError(f"{lookup.__name__}({text!r}) found something in an empty store")
        try:
            key = st.signature_key(text)
            if is_sig and key != text.encode():
                raise AssertionError(f"signature id {text!r} maps to key {key!r}")
            if not isinstance(key, bytes) or len(key) > 511:
                raise AssertionError(f"signature key of {text!r} is not an LMDB key: {key!r:.80}")
            S.get_failure(stub, text)
        except allowed:
            if is_sig:
                raise
        # The CLI with the selector as a file/dir argument: exit status, never an exception.
        if "\x00" not in text and not os.path.exists(text):
            for argv in (["show", "--no-code", "--", text], ["status", "--json", "--", text],
                         ["status", "--", os.path.join(nowhere, text[:200])]):
                err = io.StringIO()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                    try:
                        code = cli.main(argv)
                    except SystemExit as exc:  # argparse
                        code = exc.code
                if code != 2:
                    raise AssertionError(f"covfuzz {argv[0]} {text!r:.60} exited {code}, expected 2")
                lines = err.getvalue().strip().splitlines()
                # Known finding SF-2: the CLI echoes control characters of a path raw.
                if "Traceback" in err.getvalue() or (
                        len(lines) != 1 and (strict or text.isprintable())):
                    raise AssertionError(f"covfuzz {argv[0]} {text!r:.60}: stderr is not one line: "
                                         f"{err.getvalue()[:200]!r}")
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
                      "corpus.store record decoders (meta, features, failures, examples, stats, "
                      "info, hits)", "records"),
    "known_issues": Target("known_issues", _known_issues_target,
                           _known_issues_seeds, "covfuzz.triage.known_issues parse/load (JSON and TOML)",
                           "records"),
    "selectors": Target("selectors", _selectors_target, _selector_seeds,
                        "test-case / signature / example ids via store lookups and the CLI"),
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
    from covfuzz import serialize
    magic = data.startswith(serialize.MAGIC)
    body, prefix = data, b""
    if target in ("records", "known_issues") and data:
        prefix, body = data[:1], data[1:]
        if target == "records" and prefix[0] % 7 == 4:
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
    try:
        one = _selectors_target(strict) if name == "selectors" else target.make()
        seeds = target.seeds()
    except Skip as exc:
        report.skipped = str(exc)
        return report
    try:
        import atheris
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


_DONE_RE = re.compile(r"Done (\d+) runs in (\d+) second")
_STAT_RE = re.compile(r"#(\d+)\s+(?:pulse|NEW|REDUCE|DONE|INITED)")


def run_target(name: str, runs: int = 2000, max_seconds: float | None = None,
               engine: str = "atheris", seed: int = 0, artifacts: str | None = None,
               timeout_slack: float = 120.0, strict: bool = False) -> Report:
    """Run one target for `runs` inputs (or `max_seconds`), returning a Report.

    engine="atheris": `python -m covfuzz.selffuzz NAME` in a subprocess (atheris.Fuzz ends with
    sys.exit); findings are libFuzzer's crash/timeout/oom artifacts. engine="in-process": see
    `fuzz_in_process`."""
    if name not in TARGETS:
        raise KeyError(f"unknown target {name!r}; targets: {', '.join(TARGETS)}")
    if engine == "in-process":
        return fuzz_in_process(name, runs, max_seconds, seed=seed, strict=strict)
    if name == "known_issues":
        try:
            known_issues_module()
        except Skip as exc:
            return Report(name, skipped=str(exc), engine="atheris")
    own_artifacts = artifacts is None
    artifacts = artifacts or tempfile.mkdtemp(prefix=f"selffuzz-{name}-")
    cmd = [sys.executable, "-m", "covfuzz.selffuzz", name, "--runs", str(runs),
           "--artifacts", artifacts, "--seed", str(seed)]
    if max_seconds:
        cmd += ["--seconds", str(int(max(1, max_seconds)))]
    if strict:
        cmd.append("--strict")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    started = time.perf_counter()
    limit = (max_seconds or 3600) + timeout_slack
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env,
                              timeout=limit, cwd=root)
        output, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
        code = None
    report = Report(name, engine="atheris", returncode=code, output=output[-20000:])
    report.seconds = time.perf_counter() - started
    done = _DONE_RE.findall(output)
    stats = _STAT_RE.findall(output)
    report.runs = int(done[-1][0]) if done else (int(stats[-1]) if stats else 0)
    skip = re.search(r"^SKIP: (.*)$", output, re.M)
    if skip:
        report.skipped = skip.group(1)
        return report
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


def _atheris_main(name: str, runs: int | None, seconds: int | None, artifacts: str,
                  corpus_dir: str | None, seed: int, strict: bool, extra: list[str]) -> int:
    import atheris
    import torch  # noqa: F401 - imported (uninstrumented) before covfuzz's modules
    import numpy  # noqa: F401
    import lmdb  # noqa: F401
    target = TARGETS[name]
    with atheris.instrument_imports(include=["covfuzz", "corpus"]):
        import corpus.store  # noqa: F401
        import covfuzz.serialize  # noqa: F401
        import covfuzz.cli  # noqa: F401
        import covfuzz.config_space  # noqa: F401
        import covfuzz.ops  # noqa: F401
        try:
            one = _selectors_target(strict) if name == "selectors" else target.make()
        except Skip as exc:
            print(f"SKIP: {exc}", flush=True)
            return 0
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

    argv = [sys.argv[0], corpus_dir, f"-artifact_prefix={os.path.join(artifacts, '')}",
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


# ----------------------------------------------------------------------------- command line


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("target", choices=sorted(TARGETS) + ["all", "list"],
                        help="what to fuzz ('all': each target in turn, in-process or subprocess)")
    parser.add_argument("--runs", type=int, default=None, help="inputs to run (default: 100000)")
    parser.add_argument("--seconds", type=int, default=None, help="stop after this many seconds")
    parser.add_argument("--in-process", action="store_true",
                        help="use the built-in structure-aware driver instead of atheris")
    parser.add_argument("--corpus", help="libFuzzer corpus directory (kept; default: a temp dir)")
    parser.add_argument("--artifacts", default=None, help="where findings are written "
                        "(default: ./selffuzz-artifacts/TARGET)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strict", action="store_true",
                        help="selectors: report plain ValueError from id lookups (finding SF-1)")
    parser.add_argument("libfuzzer_args", nargs="*", help="extra libFuzzer flags after --")
    parser.set_defaults(func=main_args)
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    """`covfuzz selffuzz TARGET ...` for the covfuzz CLI (the lead wires it in cli.py)."""
    return _configure(subparsers.add_parser(
        "selffuzz", help="fuzz covfuzz's own parsers (atheris)",
        description="Fuzz covfuzz's parsers of outside data; any input must load or raise the "
                    "documented error type."))


def main_args(args) -> int:
    if args.target == "list":
        for t in TARGETS.values():
            print(f"{t.name:<13} {t.doc}")
        return 0
    runs = args.runs if args.runs is not None else (None if args.seconds else 100_000)
    names = sorted(TARGETS) if args.target == "all" else [args.target]
    direct = args.target != "all" and not args.in_process and os.environ.get("_SELFFUZZ_CHILD") != "0"
    if direct:  # this process becomes the libFuzzer process
        artifacts = args.artifacts or os.path.join("selffuzz-artifacts", args.target)
        return _atheris_main(args.target, runs, args.seconds, artifacts, args.corpus, args.seed,
                             args.strict, args.libfuzzer_args)
    status = 0
    for name in names:
        if args.in_process:
            report = fuzz_in_process(name, runs or 10 ** 9, args.seconds, seed=args.seed,
                                     strict=args.strict)
        else:
            report = run_target(name, runs or 0, args.seconds, seed=args.seed, strict=args.strict,
                                artifacts=os.path.join(args.artifacts or "selffuzz-artifacts", name))
        print(report.line(), flush=True)
        for finding in report.findings:
            print(f"  {finding}")
            if finding.detail:
                print("    " + finding.detail.strip().splitlines()[-1][:300])
        status |= 0 if report.ok else 1
    return status


def main(argv: list[str] | None = None) -> int:
    parser = _configure(argparse.ArgumentParser(prog="python -m covfuzz.selffuzz",
                                                description=__doc__.split("\n\n")[0]))
    return main_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
