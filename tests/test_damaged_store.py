"""A damaged or hostile corpus store: detected before use, salvaged, never silently shrunk.

Every store here is real: built with the store's API (or raw lmdb writes), then damaged on disk
(truncated, pages zeroed). Commands run in the test process (tests/cli_inprocess.py: a real
process would spend seconds importing torch first); a real `covfuzz` process
(`_covfuzz_process`) runs `crashes` on each damaged store, and the salvage whose LMDB reader
must abort in a child without a word on the real stderr.
"""

import hashlib
import os
import subprocess
import sys
import time

import lmdb
import numpy as np
import pytest

from cli_inprocess import run_covfuzz
from corpus import CorpusError, CorpusStore, DamagedStore, open_campaign_store
from corpus.lmdb_env import env_path
from corpus.salvage import salvage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A hang guard, not a speed target: the issue's 10 s answer time is measured on an idle
# machine (see the closing note); under a loaded CI, importing torch alone can take 5-9 s.
ANSWER_SECONDS = 30
PAGE = 4096


# ----------------------------------------------------------------------------- helpers


def _cases(n):
    from covfuzz.generator import generate
    from covfuzz.serialize import case_id, encode
    return [(case_id(c), encode(c), len(c.graph.nodes)) for c in (generate(i) for i in range(n))]


def _campaign(path, n=40, compact=True):
    """A small campaign store: n seeds (overlapping feature sets), one failure bucket with its
    example, a stats record; compacted so that every page of data.mdb is live."""
    cases = _cases(n + 1)
    with CorpusStore(env_path(path)) as store:
        store.set_info({"settings": {"device": "cpu"}})
        for i, (cid, data, nodes) in enumerate(cases[:n]):
            store.add_seed(cid, data, {"nodes": nodes}, np.arange(i * 7, i * 7 + 50))
        cid, data, _ = cases[n]
        store.record_failure("sigA", "crash", "boom", "RuntimeError", cid, data, {"x": 1})
        store.append_stats({"execs": n, "elapsed": 1.0}, t=1000.0)
    if compact:
        _compact(path)
    return {cid: data for cid, data, _ in cases[:n]}


def _compact(path):
    env_dir = env_path(path)
    env = lmdb.open(env_dir, max_dbs=16, readonly=True, lock=False)
    os.makedirs(env_dir + ".c")
    env.copy(env_dir + ".c", compact=True)
    env.close()
    os.replace(os.path.join(env_dir + ".c", "data.mdb"), os.path.join(env_dir, "data.mdb"))
    os.rmdir(env_dir + ".c")


def _data(path):
    return os.path.join(env_path(path), "data.mdb")


def _sha(path):
    with open(_data(path), "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _pages_holding(path, needle: bytes):
    with open(_data(path), "rb") as fh:
        data = fh.read()
    return sorted({i // PAGE for i in range(len(data)) if data.startswith(needle, i)} - {0, 1})


def _zero_pages(path, pages):
    with open(_data(path), "r+b") as fh:
        for page in pages:
            fh.seek(page * PAGE)
            fh.write(bytes(PAGE))


def _truncate_half(path, fraction=0.5):
    size = os.path.getsize(_data(path))
    os.truncate(_data(path), int(size * fraction))


def _covfuzz(*args, cwd=None):
    """The command run in this process: (what it left, seconds)."""
    ran = run_covfuzz(*args, cwd=cwd)
    return ran, ran.seconds


def _covfuzz_process(*args, cwd=None):
    """The command run as a real `covfuzz` process: (CompletedProcess, seconds)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "covfuzz", *map(str, args)], cwd=cwd or ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    return proc, time.monotonic() - start


def _refused(proc, seconds, *words):
    """The command answered in time with one line on stderr and exit 2, naming `words`."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1, proc.stderr
    assert seconds < ANSWER_SECONDS, seconds
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _store_commands(camp, tmp_path):
    """Every command that reads the store (`merge` with an intact second campaign)."""
    other = tmp_path / "other"
    if not os.path.exists(other):
        _campaign(other, n=2)
    return [
        ("crashes", camp),
        ("show", "0123456789abcdef", "--dir", camp),
        ("export", camp, "-o", tmp_path / "exported"),
        ("cmin", camp, "-o", tmp_path / "minimized"),
        ("cmin", camp),
        ("merge", other, camp, "-o", tmp_path / "merged"),
        ("fuzz", camp, "--execs", "1", "--workers", "1"),
        ("plot", camp, "-o", tmp_path / "plot.png"),
    ]


# ----------------------------------------------------------------------------- detection


@pytest.mark.parametrize("damage", ["truncated", "zeroed-page", "meta-page-gone"])
def test_every_command_refuses_a_damaged_store_in_one_line(tmp_path, damage):
    camp = tmp_path / "camp"
    _campaign(camp)
    if damage == "truncated":
        _truncate_half(camp)
        words = ("data.mdb", "truncated")
    elif damage == "zeroed-page":
        _zero_pages(camp, _pages_holding(camp, b'"found_at"')[1:2])  # a leaf of `meta`
        words = ("data.mdb", "'meta'")
    else:
        with open(_data(camp), "r+b") as fh:
            fh.write(bytes(PAGE))  # meta page 0
        words = ("data.mdb", "meta page 0")
    before = _sha(camp)
    for args in _store_commands(camp, tmp_path):
        run = _covfuzz_process if args[0] == "crashes" else _covfuzz
        proc, seconds = run(*args)
        _refused(proc, seconds, *words, f"covfuzz salvage {camp} -o NEW")
    assert _sha(camp) == before  # nothing rewrote or "repaired" the damaged store
    for name in ("exported", "minimized", "merged", "plot.png"):
        assert not os.path.exists(tmp_path / name / "corpus.lmdb"), name
    assert not any(n.endswith(".cfz") for n in os.listdir(tmp_path / "exported")) \
        if os.path.isdir(tmp_path / "exported") else True
    assert not os.path.exists(tmp_path / "plot.png")
    assert not os.path.exists(camp / "scheduler.jsonl")  # fuzz refused before any execution


def test_lmdb_error_while_reading_is_a_corpus_error_naming_file_and_database(tmp_path):
    camp = tmp_path / "camp"
    seeds = _campaign(camp)
    page = _pages_holding(camp, b'"found_at"')[0]
    with open_campaign_store(str(camp)) as store:
        _zero_pages(camp, [page])  # damaged under a store already open (checked at open)
        errors = []
        with pytest.raises(DamagedStore) as err:
            for sid in sorted(seeds):
                store.get_meta(sid)
        assert isinstance(err.value, CorpusError) and err.value.db == "meta"
        message = str(err.value)
        assert "data.mdb" in message and "database 'meta'" in message
        assert "covfuzz salvage" in message and "\n" not in message
        with pytest.raises(DamagedStore):  # scans do not skip it as one bad record
            list(store.iter_seeds(errors, with_features=True))


def test_a_sound_store_passes_the_checks(tmp_path):
    camp = tmp_path / "camp"
    seeds = _campaign(camp)
    with open_campaign_store(str(camp)) as store:
        assert sorted(store.seed_ids()) == sorted(seeds) and store.verify() == []
    proc, _ = _covfuzz("crashes", camp)
    assert proc.returncode == 0, proc.stderr


# ----------------------------------------------------------------------------- salvage


def _records(path):
    """Everything a store holds, decoded, for comparing two stores."""
    with CorpusStore(env_path(path), readonly=True) as store:
        seeds = {r.id: (r.data, r.meta, r.features.tolist())
                 for r in store.get_seed_records(store.seed_ids())}
        info = store.get_info()
        info.pop("salvaged_from", None)
        failures = store.failures()
        examples = {e: store.get_example(e) for f in failures for e in f["example_ids"]}
        return {"seeds": seeds, "hits": store.feature_counts(), "failures": failures,
                "examples": examples, "stats": store.stats_series(), "info": info}


def test_salvage_of_an_intact_store_gives_the_same_records(tmp_path):
    camp, new = tmp_path / "camp", tmp_path / "new"
    _campaign(camp)
    proc, _ = _covfuzz("salvage", camp, "-o", new)
    assert proc.returncode == 0, proc.stderr
    assert "40 seeds, 1 failure buckets (1 examples)" in proc.stdout
    assert "every record was read" in proc.stdout
    assert _records(new) == _records(camp)
    with CorpusStore(env_path(new), readonly=True) as store:
        assert store.get_info()["salvaged_from"] == str(camp) and store.verify() == []


def test_salvage_of_a_zeroed_page_keeps_every_seed_and_lists_what_it_lost(tmp_path):
    camp, new = tmp_path / "camp", tmp_path / "new"
    seeds = _campaign(camp)
    _zero_pages(camp, _pages_holding(camp, b'"found_at"')[1:2])  # a middle leaf of `meta`
    proc, seconds = _covfuzz_process("salvage", camp, "-o", new)
    assert proc.returncode == 0 and seconds < 60, proc.stderr
    lost = [line for line in proc.stdout.splitlines() if line.startswith("could not read")]
    assert len(lost) == 1 and lost[0].startswith("could not read from 'meta': ")
    assert "Assertion" not in proc.stderr  # LMDB's abort stayed in a reader child
    with CorpusStore(env_path(new), readonly=True) as store:
        assert store.verify() == []
        assert {r.id: r.data for r in store.get_seed_records(store.seed_ids())} == seeds
        rebuilt = [sid for sid in seeds if store.get_meta(sid).get("salvaged")]
        assert rebuilt and sorted(rebuilt)[0] in lost[0]  # the seeds whose meta is gone are listed
        assert all(len(store.get_features(sid)) == 50 for sid in seeds)
        assert store.num_failures() == 1 and store.stats_series()[0][1]["execs"] == 40
    proc, _ = _covfuzz("crashes", new)  # the salvaged campaign is usable
    assert proc.returncode == 0, proc.stderr


def test_salvage_of_a_truncated_store_copies_what_is_readable(tmp_path):
    camp, new = tmp_path / "camp", tmp_path / "new"
    seeds = _campaign(camp, compact=False)  # as written: the main database in the first part
    # 60% keeps the main database's pages and loses records (which ones, seeds or their
    # features, depends on the layout the generated cases give).
    _truncate_half(camp, 0.6)
    report = salvage(str(camp), env_path(new))
    assert any("truncated" in note for note in report.notes)
    assert report.lost and report.copied["testcases"] > 0
    with CorpusStore(env_path(new), readonly=True) as store:
        assert store.verify() == []
        for rec in store.get_seed_records(store.seed_ids()):
            assert seeds[rec.id] == rec.data  # only true records, byte for byte
    compacted = tmp_path / "compacted"
    _campaign(compacted)  # the main database lies in the lost half: nothing is readable
    _truncate_half(compacted)
    report = salvage(str(compacted), env_path(tmp_path / "new2"))
    assert report.lost["testcases"].whole and report.copied["testcases"] == 0


def test_salvage_falls_back_to_the_other_meta_page_and_refuses_when_both_are_gone(tmp_path):
    camp = tmp_path / "camp"
    seeds = _campaign(camp)
    with open(_data(camp), "r+b") as fh:
        fh.write(bytes(64))  # meta page 0
    report = salvage(str(camp), env_path(tmp_path / "new"))
    assert any("meta page 0 is damaged" in note for note in report.notes)
    assert report.copied["testcases"] == len(seeds) and not report.lost
    with open(_data(camp), "r+b") as fh:
        fh.seek(PAGE)
        fh.write(bytes(64))  # and meta page 1
    proc, seconds = _covfuzz("salvage", camp, "-o", tmp_path / "new2")
    _refused(proc, seconds, "both LMDB meta pages are damaged")
    assert not os.path.exists(tmp_path / "new2" / "corpus.lmdb" / "data.mdb")


def test_salvage_copies_reduced_files_and_known_issues_but_no_links(tmp_path):
    camp, new = tmp_path / "camp", tmp_path / "new"
    _campaign(camp, n=3)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the copy")
    red = camp / "reduced"
    red.mkdir()
    (red / "0123456789ab.cfz").write_bytes(b"CFZT reduced")
    (red / "0123456789ab.json").symlink_to(secret)
    (red / "notes.txt").write_text("not covfuzz's")
    (camp / "known_issues.json").write_text('{"issues": []}')
    proc, _ = _covfuzz("salvage", camp, "-o", new)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(new / "reduced")) == ["0123456789ab.cfz"]
    assert (new / "reduced" / "0123456789ab.cfz").read_bytes() == b"CFZT reduced"
    assert (new / "known_issues.json").read_text() == '{"issues": []}'
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and "symbolic link" in proc.stderr
    proc, seconds = _covfuzz("salvage", camp, "-o", new)  # never into an existing corpus
    _refused(proc, seconds, "already holds a corpus")


# ----------------------------------------------------------------------------- cmin and merge


def _unjudgeable_campaign(path):
    """Normal seeds, 2 imported without features, 1 whose meta record is damaged (its test case
    and features intact). Returns (normal ids, featureless ids, damaged id)."""
    cases = _cases(12)
    with CorpusStore(env_path(path)) as store:
        for i, (cid, data, nodes) in enumerate(cases[:9]):
            store.add_seed(cid, data, {"nodes": nodes}, np.arange(i, i + 20))  # much overlap
        for cid, data, nodes in cases[9:11]:
            store.add_seed(cid, data, {"nodes": nodes, "mutators": ["import"]}, [])
        damaged, data, nodes = cases[11]
        store.add_seed(damaged, data, {"nodes": nodes}, [1000, 1001])
    env = lmdb.open(env_path(path), max_dbs=16)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(damaged.encode(), b"\x00{not json", db=meta)
    env.close()
    return [c[0] for c in cases[:9]], [c[0] for c in cases[9:11]], damaged


def _check_unjudged_kept(path, featureless, damaged, features):
    with CorpusStore(env_path(path), readonly=True) as store:
        for sid in featureless:
            assert store.get_features(sid).tolist() == [] and store.get_case_bytes(sid)
        assert store.get_case_bytes(damaged) and store.get_features(damaged).tolist() == [1000, 1001]
        with pytest.raises(CorpusError, match="'meta'"):
            store.get_meta(damaged)  # kept exactly as stored, not "repaired"
        union = set()
        for _, f in store.iter_features():
            union |= set(f.tolist())
        assert union == features


def test_cmin_keeps_and_reports_the_seeds_it_cannot_judge(tmp_path):
    camp = tmp_path / "camp"
    normal, featureless, damaged = _unjudgeable_campaign(camp)
    features = set(range(0, 28)) | {1000, 1001}
    proc, _ = _covfuzz("cmin", camp, "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert ("kept 3 seeds it could not judge: 2 without features, 1 with damaged records; "
            "`--rerun` measures them") in proc.stdout
    _check_unjudged_kept(tmp_path / "out", featureless, damaged, features)
    proc, _ = _covfuzz("cmin", camp)  # in place: the atomic swap
    assert proc.returncode == 0, proc.stderr
    assert "seeds 12 -> " in proc.stdout and "kept 3 seeds it could not judge" in proc.stdout
    _check_unjudged_kept(camp, featureless, damaged, features)
    assert set(os.listdir(camp)) - {".lock"} == {"corpus.lmdb"}  # no temporary store or backup
    with CorpusStore(env_path(camp), readonly=True) as store:
        kept = set(store.seed_ids())
    assert set(featureless) | {damaged} <= kept and kept & set(normal)


def test_cmin_after_import_without_run_keeps_the_imported_seeds(tmp_path):
    from covfuzz.generator import generate
    from covfuzz.serialize import to_json
    camp = tmp_path / "camp"
    files = []
    for i in range(2):
        path = tmp_path / f"case{i}.json"
        path.write_text(to_json(generate(i)))
        files.append(path)
    proc, _ = _covfuzz("import", camp, *files)
    assert proc.returncode == 0, proc.stderr
    proc, _ = _covfuzz("cmin", camp)
    assert proc.returncode == 0, proc.stderr
    assert "seeds 2 -> 2" in proc.stdout and "2 without features" in proc.stdout


def test_merge_keeps_the_seeds_it_cannot_judge(tmp_path):
    from corpus import merge
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    normal, featureless, damaged = _unjudgeable_campaign(a)
    with CorpusStore(env_path(b)) as store:
        store.add_seed("b-only", b"CFZT\x01x", {}, [5000])
    report = merge(env_path(a), env_path(b), env_path(out))
    assert report["featureless"] == 2 and report["damaged"] == 1
    assert report["seeds_before"] == 13
    _check_unjudged_kept(out, featureless, damaged, set(range(0, 28)) | {1000, 1001, 5000})


# ----------------------------------------------------------------------------- export


def test_export_writes_only_validated_ids_inside_its_folder(tmp_path):
    camp, out = tmp_path / "camp", tmp_path / "out"
    seeds = _campaign(camp, n=3)
    good = sorted(seeds)
    env = lmdb.open(env_path(camp), max_dbs=16)
    tc = env.open_db(b"testcases")
    with env.begin(write=True) as txn:
        for key in (b"../canary", b"a/../../canary2", b"0123456789ABCDEF"):
            txn.put(key, seeds[good[0]], db=tc)
        txn.put(b"fedcba9876543210", b"CFZT\x01 not zlib", db=tc)  # a valid id, corrupt bytes
    env.close()
    out.mkdir()
    target = tmp_path / "target.txt"
    target.write_text("untouched")
    (out / f"{good[1]}.cfz").symlink_to(target)  # planted where export writes
    proc, _ = _covfuzz("export", camp, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert f"exported 3 seeds to {out} (4 skipped)" in proc.stdout
    warnings = proc.stderr.strip().splitlines()
    assert len(warnings) == 4 and all(w.startswith("warning: skipped seed") for w in warnings)
    assert target.read_text() == "untouched"
    assert not os.path.exists(tmp_path / "canary") and not os.path.exists(camp / "canary")
    assert not os.path.exists(tmp_path / "canary2")
    assert sorted(os.listdir(out)) == sorted(f"{sid}.cfz" for sid in good)
    for sid in good:
        path = out / f"{sid}.cfz"
        assert not os.path.islink(path) and path.read_bytes() == seeds[sid]


def test_export_refuses_an_output_folder_that_is_a_symlink(tmp_path):
    camp = tmp_path / "camp"
    _campaign(camp, n=2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").symlink_to(elsewhere)
    proc, seconds = _covfuzz("export", camp, "-o", tmp_path / "out", "--json")
    _refused(proc, seconds, "symbolic link")
    assert os.listdir(elsewhere) == []
