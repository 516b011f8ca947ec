"""Tests of corpus/: the LMDB corpus store, cmin and merge (real LMDB files under tmp_path)."""

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import zlib

import lmdb
import numpy as np
import pytest

from corpus import (CorpusError, CorpusStore, STORE_SCHEMA, merge, minimize, minimize_in_place,
                    open_campaign_store, seed_meta)
from corpus import records
from corpus.lmdb_env import env_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASE = b"CFZT\x01" + bytes(range(256)) * 4  # opaque ~1 KB payload (the store does not decode)


def _child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _sha(path):
    with open(os.path.join(env_path(path), "data.mdb"), "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _union(store):
    parts = [f for _, f in store.iter_features()]
    return set(np.unique(np.concatenate(parts)).tolist()) if parts else set()


# ----------------------------------------------------------------------------- basics


def test_round_trip_with_real_test_cases(tmp_path):
    from covfuzz.generator import generate
    from covfuzz.serialize import case_id, encode
    cases = [generate(seed) for seed in range(3)]
    with CorpusStore(str(tmp_path)) as store:
        store.set_info({"settings": {"device": "cpu"}, "torch_version": "x"})
        for i, case in enumerate(cases):
            new = store.add_seed(case_id(case), encode(case),
                                 {"parent": None, "mutators": ["gen"], "depth": 0,
                                  "nodes": len(case.graph.nodes), "exec_time": 0.5,
                                  "outcome": "ok", "note": "extra"},
                                 [i, 100 + i, 2**64 - 1])
            assert new == ([i, 100 + i, 2**64 - 1] if i == 0 else [i, 100 + i])
    assert os.path.isdir(tmp_path / "corpus.lmdb")
    with CorpusStore(str(tmp_path), readonly=True) as store:
        info = store.get_info()
        assert info == {"settings": {"device": "cpu"}, "torch_version": "x"}
        created = store.store_info()
        assert created["schema_version"] == STORE_SCHEMA and created["covfuzz_version"]
        assert "torch_version" in created and created["created_at"] > 0
        assert store.num_seeds() == 3 and store.num_features() == 7
        for i, case in enumerate(cases):
            cid = case_id(case)
            assert store.has_seed(cid)
            assert store.get_case_bytes(cid) == encode(case)
            assert case_id(store.get_case(cid)) == cid
            meta = store.get_meta(cid)
            assert meta["mutators"] == ["gen"] and meta["note"] == "extra"
            assert meta["nodes"] == len(case.graph.nodes) and meta["times_chosen"] == 0
            assert meta["features_found"] == (3 if i == 0 else 2)
            feats = store.get_features(cid)
            assert feats.dtype == np.uint64 and feats.tolist() == sorted({i, 100 + i, 2**64 - 1})
        assert sorted(store.seed_ids()) == sorted(case_id(c) for c in cases)
        assert store.feature_counts()[2**64 - 1] == 3
        assert store.get_meta("0" * 16) is None and not store.has_seed("0" * 16)
        with pytest.raises(CorpusError, match="read-only"):
            store.add_seed("abc", CASE, {}, [1])


def test_new_feature_accounting_and_hits(tmp_path):
    with CorpusStore(str(tmp_path)) as store:
        assert store.add_seed("a", CASE, {}, [5, 1, 3, 3]) == [1, 3, 5]
        assert store.add_seed("b", CASE, {}, [3, 7]) == [7]
        assert store.get_meta("b")["features_found"] == 1
        assert list(store.hit_counts([1, 7, 9, 11])) == [1, 1, 0, 0]  # read only
        assert store.record_execution([9, 1]) == [9]
        assert store.record_execution([9]) == []
        # an existing id is left alone but its execution is counted
        assert store.add_seed("a", b"other", {"nodes": 3}, [1, 42]) == [42]
        assert store.get_case_bytes("a") == CASE and store.get_meta("a")["nodes"] is None
        assert store.feature_counts() == {1: 3, 3: 2, 5: 1, 7: 1, 9: 2, 42: 1}
        assert store.num_features() == 6
        assert store.hit_counts([1, 3, 1000]).tolist() == [3, 2, 0]
        assert store.add_seed("c", CASE, {"features_found": 9}, [2], count_hits=False) == [2]
        assert store.get_meta("c")["features_found"] == 9
        assert store.bump_hits(np.array([2, 2, 3], dtype=np.uint64)) == []
        assert store.feature_counts()[2] == 2
        with pytest.raises(ValueError):
            store.add_seed("d", CASE, {}, [-1])
        with pytest.raises(ValueError):
            store.add_seed("d", CASE, {}, [2**64])
        with pytest.raises(ValueError):
            store.add_seed("bad id", CASE, {}, [1])
        with pytest.raises(ValueError):
            store.add_seed("d", CASE, {"depth": "x"}, [1])
        assert not store.has_seed("d")


def test_meta_updates(tmp_path):
    with CorpusStore(str(tmp_path)) as store:
        store.add_seed("a", CASE, {"parent": "p", "mutators": ("m1", "m2"), "depth": 2}, [1])
        meta = store.update_meta("a", outcome="crash", exec_time=0.25)
        assert meta["outcome"] == "crash" and meta["exec_time"] == 0.25
        for _ in range(3):
            store.update_meta("a", increment={"times_chosen": 1})
        meta = store.get_meta("a")
        assert meta["times_chosen"] == 3 and meta["mutators"] == ["m1", "m2"] and meta["parent"] == "p"
        store.update_meta("a", custom={"k": [1, 2]})
        assert store.get_meta("a")["custom"] == {"k": [1, 2]}
        with pytest.raises(KeyError):
            store.update_meta("missing", outcome="x")
        with pytest.raises(ValueError):
            store.update_meta("a", times_chosen=-1)
        assert store.get_meta("a")["times_chosen"] == 3
        assert [sid for sid, _ in store.iter_seeds()] == ["a"]


def test_failures_bucketed_with_capped_examples(tmp_path):
    with CorpusStore(str(tmp_path), max_examples=8) as store:
        news = [store.record_failure("sig-A", "crash", f"boom {i}", "RuntimeError", f"ex{i}",
                                     CASE + bytes([i]), {"rc": -11, "i": i}, extra={"op": "mm"})
                for i in range(12)]
        assert news == [True] + [False] * 11
        assert store.record_failure("sig-B", "mismatch", "diff", None, "ex0", CASE, {}) is True
        long_sig = "frame\n" * 300
        assert store.record_failure(long_sig, "crash", "m", "E", "exL", CASE, {}) is True
        assert store.record_failure(long_sig, "crash", "m", "E", "exL", CASE, {}) is False
    with CorpusStore(str(tmp_path), readonly=True) as store:
        a = store.get_failure("sig-A")
        assert a["count"] == 12 and a["example_ids"] == [f"ex{i}" for i in range(8)]
        assert a["message"] == "boom 0" and a["extra"] == {"op": "mm"}
        assert a["first_seen"] <= a["last_seen"] and a["exc_type"] == "RuntimeError"
        ex = store.get_example("ex3")
        assert ex["case_bytes"] == CASE + bytes([3]) and ex["result"] == {"rc": -11, "i": 3}
        assert ex["signature"] == "sig-A"
        assert store.get_example("ex9") is None  # over the cap: not stored
        assert store.get_failure(long_sig)["count"] == 2
        assert store.get_failure(long_sig)["signature"] == long_sig
        sigs = sorted(f["signature"] for f in store.failures())
        assert sigs == sorted(["sig-A", "sig-B", long_sig]) and store.num_failures() == 3
        assert store.get_failure("nope") is None


def test_stats_series_order(tmp_path):
    with CorpusStore(str(tmp_path)) as store:
        store.append_stats({"n": 3}, t=1003.0)
        store.append_stats({"n": 1}, t=1001.0)
        store.append_stats({"n": 2}, t=1002.0)
        store.append_stats({"n": 21}, t=1002.0)  # same ms: kept, after the first
        store.append_stats({"n": 22}, t=1002.0004)
        assert [r["n"] for _, r in store.stats_series()] == [1, 2, 21, 22, 3]
        assert [r["n"] for _, r in store.stats_series(since=1002.0)] == [2, 21, 22, 3]
        assert [t for t, _ in store.stats_series()] == [1001.0, 1002.0, 1002.0, 1002.0004, 1003.0]
        assert store.stats_series(since=5000) == []
        t = store.append_stats({"n": 4})
        assert store.stats_series()[-1] == (t, {"n": 4, "t": t})


def test_map_growth_from_tiny_map(tmp_path):
    rng = random.Random(1)
    expected = {}
    with CorpusStore(str(tmp_path), map_size=256 << 10) as store:
        start = store.map_size()
        for i in range(600):
            feats = sorted(rng.sample(range(1 << 40), 100))
            expected[f"s{i:05d}"] = feats
            store.add_seed(f"s{i:05d}", CASE, {"nodes": i}, feats)
        store.add_seeds([(f"b{i}", CASE, {}, [i]) for i in range(300)])  # one big transaction
        grown = store.map_size()
    assert grown >= start * 8  # several doublings
    with CorpusStore(str(tmp_path), readonly=True) as store:
        assert store.num_seeds() == 900
        for sid, feats in expected.items():
            assert store.get_features(sid).tolist() == feats
            assert store.get_meta(sid)["nodes"] == int(sid[1:])
        assert store.verify() == []


def test_open_rules(tmp_path):
    with pytest.raises(CorpusError, match="no corpus"):
        CorpusStore(str(tmp_path / "missing"), readonly=True)
    with pytest.raises(CorpusError, match="no corpus"):
        CorpusStore(str(tmp_path / "missing"), create=False)
    store = CorpusStore(str(tmp_path))
    with pytest.raises(CorpusError, match="already open"):
        CorpusStore(str(tmp_path / "corpus.lmdb"))
    store.close()
    store.close()  # idempotent
    with pytest.raises(CorpusError, match="closed"):
        store.num_seeds()
    # a non-covfuzz LMDB environment is refused
    other = tmp_path / "other" / "corpus.lmdb"
    os.makedirs(other)
    env = lmdb.open(str(other), max_dbs=2)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.close()
    with pytest.raises(CorpusError, match="not a covfuzz corpus"):
        CorpusStore(str(tmp_path / "other"))


FORK_CHECK = textwrap.dedent("""
    import os, sys
    from corpus import CorpusError, CorpusStore
    store = CorpusStore(sys.argv[1])
    pid = os.fork()
    if pid == 0:  # child: must refuse, must not close the parent's environment
        code = 0
        try:
            store.num_seeds()
            code = 1
        except CorpusError:
            pass
        store.close()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, "child could use the store"
    store.add_seed("a", b"x", {}, [1])  # the parent is still fine
    store.close()
    print("OK")
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_use_across_fork_is_refused(tmp_path):
    # in a fresh interpreter: forking the pytest process (torch threads loaded) is unsafe
    out = subprocess.run([sys.executable, "-c", FORK_CHECK, str(tmp_path)], env=_child_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "OK", out.stderr


# ----------------------------------------------------------------------------- schema / corruption


def test_schema_mismatch_is_refused_and_store_untouched(tmp_path):
    with CorpusStore(str(tmp_path)) as store:
        store.add_seed("a", CASE, {}, [1])
    env = lmdb.open(env_path(str(tmp_path)), max_dbs=16)
    info = env.open_db(b"info")
    with env.begin(write=True) as txn:
        txn.put(b"schema", b"7", db=info)
    env.close()
    before = _sha(str(tmp_path))
    for kwargs in ({}, {"readonly": True}):
        with pytest.raises(CorpusError) as err:
            CorpusStore(str(tmp_path), **kwargs)
        assert "7" in str(err.value) and str(STORE_SCHEMA) in str(err.value)
        assert "schema" in str(err.value)
    assert _sha(str(tmp_path)) == before
    # the failed opens released the path: fixing the schema makes it usable again
    env = lmdb.open(env_path(str(tmp_path)), max_dbs=16)
    info = env.open_db(b"info")
    with env.begin(write=True) as txn:
        txn.put(b"schema", str(STORE_SCHEMA).encode(), db=info)
    env.close()
    with CorpusStore(str(tmp_path)) as store:
        assert store.has_seed("a")


def test_corrupt_records_are_reported_not_fatal(tmp_path):
    with CorpusStore(str(tmp_path)) as store:
        for i in range(6):
            store.add_seed(f"s{i}", CASE, {"nodes": i}, [i, 10 + i])
        store.record_failure("sig", "crash", "m", "E", "ex", CASE, {})
    env = lmdb.open(env_path(str(tmp_path)), max_dbs=16)
    meta, feats, fails = env.open_db(b"meta"), env.open_db(b"features"), env.open_db(b"failures")
    with env.begin(write=True) as txn:
        txn.put(b"s1", b"\x00\xffgarbage{", db=meta)
        txn.put(b"s2", b"\x01\x02\x03", db=feats)  # not a multiple of 8
        txn.put(b"s3", b"[1, 2]", db=meta)  # JSON, but not an object
        txn.put(b"s4", np.array([9, 3], dtype="<u8").tobytes(), db=feats)  # unsorted
        txn.put(b"sig", b'{"kind": 1}', db=fails)
    env.close()
    with CorpusStore(str(tmp_path)) as store:
        with pytest.raises(CorpusError, match="'meta'.*'s1'") as err:
            store.get_meta("s1")
        assert err.value.db == "meta" and err.value.key == "s1"
        with pytest.raises(CorpusError, match="'features'.*'s2'.*multiple of 8"):
            store.get_features("s2")
        with pytest.raises(CorpusError, match="'meta'.*'s3'.*object"):
            store.get_meta("s3")
        with pytest.raises(CorpusError, match="'features'.*'s4'.*sorted"):
            store.get_features("s4")
        with pytest.raises(CorpusError, match="'failures'.*'sig'"):
            store.get_failure("sig")
        assert store.get_meta("s0")["nodes"] == 0 and store.get_features("s5").tolist() == [5, 15]
        errors = []
        assert [sid for sid, _ in store.iter_seeds(errors)] == ["s0", "s2", "s4", "s5"]
        assert {(e.db, e.key) for e in errors} == {("meta", "s1"), ("meta", "s3")}
        errors = []
        assert [s for s, _, _ in store.iter_seeds(errors, with_features=True)] == ["s0", "s5"]
        assert len(errors) == 4
        errors = []
        assert store.failures(errors) == [] and errors[0].db == "failures"
        assert len(store.verify()) == 5
        # the broken bucket is rebuilt by the next failure rather than blocking the campaign
        assert store.record_failure("sig", "crash", "m", "E", "ex2", CASE, {}) is False
        assert store.get_failure("sig")["count"] == 1
        # cmin skips the corrupt seeds and keeps the features of the readable ones
        errs = []
        kept = minimize(store, errs)
        assert set(kept) == {"s0", "s5"} and len(errs) == 4


def test_corrupt_test_case_bytes(tmp_path):
    with CorpusStore(str(tmp_path)) as store:
        store.add_seed("a", b"CFZT\x01not zlib", {}, [1])
        with pytest.raises(CorpusError, match="'testcases'.*'a'"):
            store.get_case("a")


# ----------------------------------------------------------------------------- processes

WRITER = textwrap.dedent("""
    import sys, zlib
    from corpus import CorpusStore
    path, tag, map_size, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    case = b"CFZT\\x01" + bytes(range(256)) * 4
    store = CorpusStore(path, map_size=map_size)
    print("ready", flush=True)
    for i in range(limit):
        sid = f"{tag}-{i}"
        store.add_seed(sid, case, {"nodes": i, "tag": tag},
                       [zlib.crc32(f"{tag}/{i}/{k}".encode()) for k in range(50)])
        print(sid, flush=True)
        store.get_meta(sid)  # read transactions too, so kills hit readers as well
        if i % 10 == 0:
            sum(1 for _ in store.iter_seeds())
    store.close()
    print("done", flush=True)
""")


def _feats(tag, i):
    return sorted({zlib.crc32(f"{tag}/{i}/{k}".encode()) for k in range(50)})


def test_kill_safety(tmp_path):
    path = str(tmp_path / "camp")
    rng = random.Random(1234)
    committed: list[str] = []
    env = _child_env()
    for rnd in range(10):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, path, f"r{rnd}", str(256 << 10),
                                 "100000"], stdout=subprocess.PIPE, env=env, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        lines = out.split("\n")
        printed = [ln for ln in lines[:-1] if ln.startswith(f"r{rnd}-")]  # complete lines only
        with CorpusStore(path) as store:
            assert isinstance(store.reader_check(), int)
            n = store.num_seeds()
            # at most the record in flight beyond what was printed
            assert len(committed) + len(printed) <= n <= len(committed) + len(printed) + 1
            committed += printed
            for sid in printed + committed[:: max(1, len(committed) // 50)]:
                tag, i = sid.split("-")
                meta = store.get_meta(sid)
                assert meta is not None and meta["nodes"] == int(i) and meta["tag"] == tag
                assert store.get_case_bytes(sid) is not None
            committed = sorted(set(store.seed_ids()))  # include the record in flight, if any
            assert store.verify() == []
    with CorpusStore(path, readonly=True) as store:
        for sid in committed:
            tag, i = sid.split("-")
            assert store.get_features(sid).tolist() == _feats(tag, int(i))
    assert len(committed) > 10


READER = textwrap.dedent("""
    import sys, time
    from corpus import CorpusStore
    path, seconds = sys.argv[1], float(sys.argv[2])
    store = CorpusStore(path, readonly=True)
    end, last, reads = time.time() + seconds, 0, 0
    while time.time() < end:
        n = store.num_seeds()
        assert n >= last, (n, last)
        last = n
        ids = store.seed_ids()
        for sid in ids[-20:]:
            assert store.get_meta(sid) is not None and store.get_features(sid) is not None
            reads += 1
        store.summary(); store.failures(); store.stats_series()
    print("OK", reads, last, store.map_size(), flush=True)
    store.close()
""")


def test_concurrent_readers_while_writer_writes(tmp_path):
    path = str(tmp_path / "camp")
    env = _child_env()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, path, "w", str(256 << 10), "100000"],
                              stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        assert writer.stdout.readline().startswith("w-")  # something committed
        readers = [subprocess.Popen([sys.executable, "-c", READER, path, "1.5"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                    text=True) for _ in range(2)]
        results = [r.communicate(timeout=60) for r in readers]
        assert writer.poll() is None  # the writer was alive the whole time
    finally:
        writer.kill()
        writer.communicate()
    for (out, err), r in zip(results, readers):
        assert r.returncode == 0, err
        _, reads, last, map_size = out.split()
        assert int(reads) > 0 and int(last) > 0
    with CorpusStore(path) as store:
        assert store.num_seeds() >= max(int(o.split()[2]) for o, _ in results)
        assert store.map_size() > 256 << 10  # the map grew while readers were reading


# ----------------------------------------------------------------------------- cmin / merge


def _fill(path, n, rng, prefix="s", universe=3000, failures=()):
    with CorpusStore(path) as store:
        store.set_info({"settings": {"who": prefix}})
        for i in range(n):
            k = rng.randint(1, 40)
            store.add_seed(f"{prefix}{i:04d}", CASE, {"nodes": rng.randint(1, 30),
                                                      "exec_time": rng.random()},
                           rng.sample(range(universe), k))
        for sig, ex in failures:
            store.record_failure(sig, "crash", "m", "E", ex, CASE, {"x": 1})
        store.append_stats({"execs": n}, t=1000.0 + n)


def test_cmin_keeps_all_features_and_shrinks(tmp_path):
    path = str(tmp_path / "camp")
    _fill(path, 200, random.Random(7), failures=[("sigA", "e1"), ("sigA", "e2"), ("sigB", "e3")])
    with CorpusStore(path) as store:
        before = _union(store)
        hits_before = store.feature_counts()
        ids = minimize(store)
        assert ids == minimize(store)  # deterministic
        kept = set()
        for sid in ids:
            kept |= set(store.get_features(sid).tolist())
        assert kept == before and 0 < len(ids) < 200
    report = minimize_in_place(path)
    assert report["seeds_before"] == 200 and report["seeds_after"] == len(ids)
    assert report["features_before"] == report["features_after"] == len(before)
    assert sorted(os.listdir(path)) == ["corpus.lmdb"]  # no tmp or .bak left
    with CorpusStore(path, readonly=True) as store:
        assert sorted(store.seed_ids()) == ids and _union(store) == before
        assert store.feature_counts() == hits_before
        assert store.get_failure("sigA")["count"] == 2
        assert store.get_example("e3")["case_bytes"] == CASE
        assert store.stats_series()[0][1]["execs"] == 200
        assert store.get_info()["settings"] == {"who": "s"}
        assert store.verify() == []


def test_cmin_prefers_rare_features_and_small_seeds(tmp_path):
    with CorpusStore(str(tmp_path)) as store:
        store.add_seed("big", CASE, {"nodes": 50}, [1, 2, 3, 4])
        store.add_seed("small1", CASE, {"nodes": 2}, [1, 2])
        store.add_seed("small2", CASE, {"nodes": 3}, [3, 4])
        store.add_seed("rare", CASE, {"nodes": 40}, [5, 1])
        store.add_seed("tie_b", CASE, {"nodes": 1, "exec_time": 0.1}, [6])
        store.add_seed("tie_a", CASE, {"nodes": 1, "exec_time": 0.1}, [6])
        store.add_seed("slow", CASE, {"nodes": 1, "exec_time": 0.9}, [6])
        assert minimize(store) == ["rare", "small1", "small2", "tie_a"]


def test_interrupted_swap_is_recovered(tmp_path):
    path = str(tmp_path / "camp")
    _fill(path, 20, random.Random(3))
    env = env_path(path)
    os.rename(env, env + ".bak")  # as if killed between the two renames
    with CorpusStore(path, readonly=True) as store:  # readers read the backup, change nothing
        assert store.num_seeds() == 20
    assert not os.path.exists(env)
    with CorpusStore(path) as store:  # a read-write open restores it
        assert store.num_seeds() == 20
    assert sorted(os.listdir(path)) == ["corpus.lmdb"]


def test_merge_keeps_only_seeds_adding_features(tmp_path):
    a, b, out = (str(tmp_path / n) for n in ("a", "b", "out"))
    with CorpusStore(a) as st:
        st.add_seed("a1", CASE, {"found_at": 1.0}, [1, 2, 3])
        st.add_seed("a2", CASE, {"found_at": 2.0}, [2, 3])  # adds nothing after a1
        st.add_seed("a3", CASE, {"found_at": 3.0}, [4])
        st.record_failure("sig", "crash", "m", "E", "ea", CASE, {})
        st.record_failure("only-a", "crash", "m", "E", "ea2", CASE, {})
        st.append_stats({"src": "a"}, t=10.0)
    with CorpusStore(b) as st:
        st.add_seed("b1", CASE, {"found_at": 0.5}, [1, 4])  # covered by A
        st.add_seed("b2", CASE, {"found_at": 1.5}, [5, 1])  # adds 5
        st.add_seed("a1", CASE, {"found_at": 1.6}, [1, 2, 3])  # same id as in A
        st.add_seed("b3", CASE, {"found_at": 2.5}, [5, 6])  # adds 6
        for ex in ("eb1", "eb2"):
            st.record_failure("sig", "crash", "m", "E", ex, CASE, {})
        st.append_stats({"src": "b"}, t=10.0)  # same key as A's record: both kept
    report = merge(a, b, out)
    assert report["seeds_before"] == 7 and report["seeds_after"] == 4
    assert report["features_before"] == report["features_after"] == 6
    with CorpusStore(out, readonly=True) as st:
        assert sorted(st.seed_ids()) == ["a1", "a3", "b2", "b3"]
        assert st.feature_counts() == {1: 4, 2: 3, 3: 3, 4: 2, 5: 2, 6: 1}  # summed
        sig = st.get_failure("sig")
        assert sig["count"] == 3 and sig["example_ids"] == ["ea", "eb1", "eb2"]
        assert st.get_example("eb2")["case_bytes"] == CASE
        assert st.get_failure("only-a")["count"] == 1
        assert sorted(r["src"] for _, r in st.stats_series()) == ["a", "b"]
        assert st.verify() == []
    with pytest.raises(CorpusError, match="existing corpus"):
        merge(a, b, out)


# ----------------------------------------------------------------------------- public copy API


def test_seed_records_copy_unchanged_without_touching_hits(tmp_path):
    with CorpusStore(str(tmp_path / "src")) as src, CorpusStore(str(tmp_path / "out")) as out:
        src.add_seed("a", CASE, {"nodes": 3, "note": {"k": [1]}, "n_features": 2}, [7, 3])
        src.add_seed("b", CASE + b"b", {"parent": "a", "mutators": ["m"], "depth": 1}, [9])
        recs = src.get_seed_records(["b", "missing", "a"])
        assert recs[1] is None and [r.id for r in (recs[0], recs[2])] == ["b", "a"]
        assert recs[2].data == CASE and recs[2].features.tolist() == [3, 7]
        out.put_seed_records([recs[0], recs[2]])
        for sid in ("a", "b"):
            assert out.get_meta(sid) == src.get_meta(sid)
            assert out.get_case_bytes(sid) == src.get_case_bytes(sid)
            assert out.get_features(sid).tolist() == src.get_features(sid).tolist()
        assert out.num_features() == 0  # hits are copied separately
        out.add_hits(*zip(*src.iter_hits()))
        assert out.feature_counts() == src.feature_counts() == {3: 1, 7: 1, 9: 1}
        assert out.verify() == []
        bad = recs[2].__class__("c", CASE, {"depth": -1}, np.array([1], dtype=np.uint64))
        with pytest.raises(ValueError):
            out.put_seed_records([bad])
        assert not out.has_seed("c")


def test_merge_failure_bucket_copies_and_merges(tmp_path):
    with CorpusStore(str(tmp_path / "src")) as src, \
            CorpusStore(str(tmp_path / "out"), max_examples=3) as out:
        for i in range(4):
            src.record_failure("sig", "crash", "boom", "E", f"e{i}", CASE + bytes([i]), {"i": i},
                               extra={"op": "mm"})
        bucket = src.get_failure("sig")
        examples = {e: src.get_example(e) for e in bucket["example_ids"]}
        assert out.merge_failure_bucket(bucket, examples) is True
        got = out.get_failure("sig")
        assert got["example_ids"] == ["e0", "e1", "e2"]  # capped by out's max_examples
        assert {k: v for k, v in got.items() if k != "example_ids"} == \
            {k: v for k, v in bucket.items() if k != "example_ids"}
        assert out.get_example("e1") == src.get_example("e1")  # recorded_at kept
        assert out.get_example("e3") is None
        # a second bucket of the same signature: counts summed, seen times widened
        later = dict(bucket, count=5, first_seen=1.0, last_seen=bucket["last_seen"] + 10,
                     example_ids=["e0", "x"], extra={"op": "other"})
        x = dict(examples["e0"], case_bytes=b"other")
        assert out.merge_failure_bucket(later, {"e0": x}) is False
        got = out.get_failure("sig")
        assert got["count"] == 9 and got["first_seen"] == 1.0
        assert got["last_seen"] == later["last_seen"] and got["example_ids"] == ["e0", "e1", "e2"]
        assert got["extra"] == {"op": "mm"}  # kept: it was set here
        assert out.get_example("e0")["case_bytes"] == CASE + bytes([0])  # the stored one stays
        with pytest.raises(ValueError):
            out.merge_failure_bucket(dict(bucket, count=0), {})
        assert out.verify() == []


def test_extend_stats_keeps_times_and_order(tmp_path):
    with CorpusStore(str(tmp_path / "a")) as a, CorpusStore(str(tmp_path / "out")) as out:
        for n, t in ((1, 5.0), (2, 5.0), (3, 6.5)):
            a.append_stats({"n": n}, t=t)
        out.append_stats({"n": 0}, t=5.0)
        assert out.extend_stats(a.stats_series()) == 3
        series = out.stats_series()
        assert [(t, r["n"]) for t, r in series] == [(5.0, 0), (5.0, 1), (5.0, 2), (6.5, 3)]
        assert series[1][1] == {"n": 1, "t": 5.0}
        with pytest.raises(ValueError):
            out.extend_stats([(float("nan"), {})])
        assert len(out.stats_series()) == 4


def test_open_campaign_store(tmp_path):
    camp = str(tmp_path / "camp")
    os.makedirs(camp)
    with pytest.raises(CorpusError) as err:
        open_campaign_store(camp)
    assert str(err.value) == f"{camp}: not a campaign directory (no corpus.lmdb/)"
    with pytest.raises(CorpusError, match="not a campaign directory"):
        open_campaign_store(camp, readonly=False)
    with open_campaign_store(camp, readonly=False, create=True) as store:
        store.add_seed("a", CASE, {}, [1])
    assert os.path.isdir(os.path.join(camp, "corpus.lmdb"))
    with open_campaign_store(camp) as store:
        assert store.readonly and store.has_seed("a")
        with pytest.raises(CorpusError, match="read-only"):
            store.add_seed("b", CASE, {}, [2])
    os.rename(env_path(camp), env_path(camp) + ".bak")  # an interrupted cmin swap still opens
    with open_campaign_store(camp) as store:
        assert store.num_seeds() == 1
    with pytest.raises(CorpusError) as err:
        open_campaign_store(str(tmp_path / "a\nb"))
    assert "\n" not in str(err.value)  # one line


# ----------------------------------------------------------------------------- records


def test_seed_meta_builder():
    meta = seed_meta(parent="p", mutators=("m1", "m2"), depth=2, nodes=5, found_at=7.0, note="x")
    assert meta == {"parent": "p", "mutators": ["m1", "m2"], "depth": 2, "nodes": 5,
                    "exec_time": None, "features_found": 0, "times_chosen": 0, "found_at": 7.0,
                    "outcome": None, "note": "x"}
    assert "n_features" not in meta and seed_meta(n_features=4)["n_features"] == 4
    assert abs(seed_meta()["found_at"] - time.time()) < 60
    for bad in ({"depth": -1}, {"mutators": "m"}, {"exec_time": float("inf")},
                {"n_features": "9"}, {"note": object()}):
        with pytest.raises(ValueError):
            seed_meta(**bad)
    key = b"0123456789abcdef"
    assert records.decode_meta(key, records.encode_meta(meta)) == meta


def test_record_decoders_name_database_and_key():
    key = b"0123456789abcdef"
    cases = [
        (lambda: records.decode_meta(key, b"{}"), "meta"),
        (lambda: records.decode_failure(b"sig", b'{"kind": 1}'), "failures"),
        (lambda: records.decode_example(key, b'{"case": "!!", "result": {}}'), "examples"),
        (lambda: records.decode_stats(b"short", b"{}"), "stats"),
        (lambda: records.decode_stats(records.stats_key(1, 0), b"[]"), "stats"),
        (lambda: records.decode_info(b"campaign", b"\xff"), "info"),
        (lambda: records.decode_hit(records.hit_key(5), b"123"), "hits"),
        (lambda: records.decode_features(b"\x00" * 9, key), "features"),
    ]
    for decode, db in cases:
        with pytest.raises(CorpusError) as err:
            decode()
        assert err.value.db == db and err.value.key is not None
    assert records.decode_hit(records.hit_key(5), records.encode_hit(9)) == (5, 9)
    assert records.decode_stats(records.stats_key(1500, 2), b'{"a": 1}') == (1.5, {"a": 1})
    ex = {"signature": "s", "recorded_at": 1.0, "case_bytes": b"\x00\xff", "result": {"r": 1}}
    assert records.decode_example(key, records.encode_example(ex)) == ex
    arr = np.array([1, 5, 2**64 - 1], dtype=np.uint64)
    assert records.decode_features(records.encode_features(arr)).tolist() == arr.tolist()


def test_opens_a_store_written_in_the_documented_format(tmp_path):
    """The on-disk layout (the table in corpus/store.py), written with raw LMDB, opens."""
    env = lmdb.open(env_path(str(tmp_path)), subdir=True, max_dbs=16)
    dbs = {n: env.open_db(n.encode()) for n in ("info", "testcases", "meta", "features", "hits",
                                               "failures", "examples", "stats")}
    meta = {"parent": None, "mutators": ["generate"], "depth": 0, "nodes": 3, "exec_time": 0.5,
            "features_found": 2, "times_chosen": 4, "found_at": 1.7e9, "outcome": "pass"}
    bucket = {"signature": "sig", "kind": "crash", "message": "m", "exc_type": "E", "count": 2,
              "first_seen": 1.0, "last_seen": 2.0, "example_ids": ["ex"], "extra": None}
    with env.begin(write=True) as txn:
        txn.put(b"schema", str(STORE_SCHEMA).encode(), db=dbs["info"])
        txn.put(b"campaign", b'{"settings":{"x":1}}', db=dbs["info"])
        txn.put(b"abc", CASE, db=dbs["testcases"])
        txn.put(b"abc", records.canonical_json(meta), db=dbs["meta"])
        txn.put(b"abc", np.array([2, 9], dtype="<u8").tobytes(), db=dbs["features"])
        for f, c in ((2, 1), (9, 3)):
            txn.put(f.to_bytes(8, "big"), c.to_bytes(8, "big"), db=dbs["hits"])
        txn.put(b"sig", records.canonical_json(bucket), db=dbs["failures"])
        txn.put(b"ex", b'{"case":"AAE=","recorded_at":1.0,"result":{},"signature":"sig"}',
                db=dbs["examples"])
        txn.put((1500).to_bytes(8, "big") + (0).to_bytes(4, "big"), b'{"n":1}', db=dbs["stats"])
    env.close()
    with CorpusStore(str(tmp_path), readonly=True) as store:
        assert store.get_info() == {"settings": {"x": 1}}
        assert store.get_meta("abc") == meta and store.get_case_bytes("abc") == CASE
        assert store.get_features("abc").tolist() == [2, 9]
        assert store.feature_counts() == {2: 1, 9: 3}
        assert store.get_failure("sig") == bucket
        assert store.get_example("ex")["case_bytes"] == b"\x00\x01"
        assert store.stats_series() == [(1.5, {"n": 1})]
        assert store.verify() == []
