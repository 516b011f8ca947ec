"""Benchmark of the LMDB corpus store: fill, open, pick, add, status aggregate, cmin.

    .venv/bin/python benchmarks/bench_corpus.py --seeds 20000

Synthetic seeds: random feature sets of ~`--features` ids drawn from a universe of `--universe`,
and one real encoded test case (~0.5-1 KB) stored under every id.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from corpus import CorpusStore, minimize  # noqa: E402
from corpus.cmin import write_minimized  # noqa: E402
from covfuzz.workdir import corpus_path  # noqa: E402


def case_bytes() -> bytes:
    try:
        from covfuzz.generator import generate
        from covfuzz.serialize import encode
        return max((encode(generate(s)) for s in range(30)), key=len)
    except Exception as exc:  # no torch: an opaque payload of the same size
        print(f"(no real test case: {exc}; using 1 KB of opaque bytes)")
        return b"CFZT\x01" + os.urandom(1019)


def du(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(dirpath, f))
            total += st.st_blocks * 512
    return total


def timed(fn, repeat=1):
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=100_000)
    ap.add_argument("--features", type=int, default=200, help="mean features per seed")
    ap.add_argument("--universe", type=int, default=200_000)
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)

    work = args.dir or tempfile.mkdtemp(prefix="bench_corpus_")
    camp, cmin_out = os.path.join(work, "camp"), os.path.join(work, "cmin")
    for p in (camp, cmin_out):
        shutil.rmtree(p, ignore_errors=True)
    rng = np.random.default_rng(0)
    prng = random.Random(0)
    data = case_bytes()
    rows = []

    def row(name, seconds, ops=1, note=""):
        rows.append((name, seconds, ops, note))

    # ---- fill (bulk: 1000 seeds a transaction, fsync at the end)
    t0 = time.perf_counter()
    with CorpusStore(camp, sync=False) as store:
        store.set_info({"settings": {"bench": True}})
        batch = []
        for i in range(args.seeds):
            k = max(1, int(rng.normal(args.features, args.features / 5)))
            feats = rng.integers(0, args.universe, size=k, dtype=np.uint64)
            batch.append((f"{i:016x}", data, {"nodes": prng.randint(1, 40),
                                             "exec_time": prng.random(), "parent": None,
                                             "mutators": ["bench"], "depth": 1}, feats))
            if len(batch) == 1000:
                store.add_seeds(batch)
                batch = []
        if batch:
            store.add_seeds(batch)
        for s in range(50):
            for e in range(10):
                store.record_failure(f"sig-{s}", "crash", f"message {s}", "RuntimeError",
                                     f"ex-{s}-{e}", data, {"rc": -11})
        for j in range(1000):
            store.append_stats({"execs": j, "seeds": args.seeds})
        store.sync()
    fill = time.perf_counter() - t0
    row("fill (bulk, 1000/txn)", fill, args.seeds, "per seed")

    # ---- open
    def do_open():
        st = CorpusStore(camp)
        st.close()
    _, times = timed(do_open, repeat=5)
    row("open (median of 5)", statistics.median(times))

    with CorpusStore(camp) as store:
        ids = store.seed_ids()
        # ---- pick: random seed meta + case bytes (the scheduler's hot path)
        picks = [prng.choice(ids) for _ in range(5000)]
        t = time.perf_counter()
        for sid in picks:
            store.get_meta(sid)
        row("pick: get_meta", time.perf_counter() - t, len(picks), "per op")
        t = time.perf_counter()
        for sid in picks[:2000]:
            store.get_case_bytes(sid)
            store.get_features(sid)
        row("pick: case bytes + features", time.perf_counter() - t, 2000, "per op")
        t = time.perf_counter()
        for sid in picks[:500]:
            store.update_meta(sid, increment={"times_chosen": 1})
        row("update_meta times_chosen+1 (fsync)", time.perf_counter() - t, 500, "per op")

        # ---- add (durable: one fsync'ed transaction each)
        n_add = 300
        t = time.perf_counter()
        for i in range(n_add):
            feats = rng.integers(0, args.universe, size=args.features, dtype=np.uint64)
            store.add_seed(f"new{i:013x}", data, {"nodes": 5}, feats)
        row("add_seed (fsync)", time.perf_counter() - t, n_add, "per op")
        t = time.perf_counter()
        for i in range(n_add):
            store.record_execution(rng.integers(0, args.universe, size=args.features,
                                                dtype=np.uint64))
        row("record_execution (fsync)", time.perf_counter() - t, n_add, "per op")
        t = time.perf_counter()
        for i in range(n_add):
            store.hit_counts(rng.integers(0, args.universe, size=args.features,
                                          dtype=np.uint64))
        row("hit_counts lookup (read)", time.perf_counter() - t, n_add, "per op")

        # ---- status-style aggregate
        def status():
            return store.num_seeds(), store.num_features(), store.failures(), store.summary()
        (n_seeds, n_feat, fails, _), times = timed(status, repeat=5)
        row("status (counts + failures)", statistics.median(times), 1,
            f"{n_seeds} seeds, {n_feat} features, {len(fails)} buckets")
        _, times = timed(lambda: store.stats_series(), repeat=3)
        row("stats_series (1000 records)", statistics.median(times))
        _, times = timed(lambda: sum(1 for _ in store.iter_seeds()), repeat=1)
        row("iter_seeds (all meta)", times[0], n_seeds, "per seed")

        # ---- the campaign's view: every seed loaded into the scheduler (what a resume does), then
        # energy-weighted picks; a full energy refresh runs every `refresh_every` picks.
        from covfuzz.scheduler import Scheduler, SeedInfo
        sched = Scheduler(random.Random(0))
        t = time.perf_counter()
        infos = [SeedInfo(sid, Scheduler.rare_subset(np.asarray(feats, dtype=np.uint64),
                                                     np.ones(len(feats))),
                          int(meta.get("nodes") or 1), float(meta.get("exec_time") or 1.0))
                 for sid, meta, feats in store.iter_seeds(with_features=True)]
        sched.add_seeds(infos)  # one merge, as a campaign's resume does
        row("scheduler: load all seeds", time.perf_counter() - t, len(sched.seeds), "per seed")
        t = time.perf_counter()
        sched.add_seed(SeedInfo("one-more", np.arange(args.universe, args.universe + args.features,
                                                       dtype=np.uint64), 3, 0.5))
        row("scheduler: add one seed", time.perf_counter() - t, 1)
        t = time.perf_counter()
        sched.energies()
        row("scheduler: energy refresh", time.perf_counter() - t, 1, "all seeds")
        t = time.perf_counter()
        n_pick = 500
        for _ in range(n_pick):
            sched.pick()
        row("scheduler: pick (refresh amortized)", time.perf_counter() - t, n_pick, "per op")

        # ---- cmin
        (kept), times = timed(lambda: minimize(store), repeat=1)
        row("cmin: minimize", times[0], 1, f"{n_seeds} -> {len(kept)} seeds")
        (report), times = timed(lambda: write_minimized(store, kept, cmin_out), repeat=1)
        row("cmin: write_minimized", times[0], 1,
            f"features {report['features_before']} -> {report['features_after']}")
        map_size = store.map_size()

    size = du(corpus_path(camp))
    size_min = du(corpus_path(cmin_out))

    print(f"\ncorpus benchmark: {args.seeds} seeds, ~{args.features} features/seed, "
          f"universe {args.universe}, case {len(data)} bytes")
    print(f"{'operation':34s} {'total':>10s} {'per op':>12s}  note")
    for name, seconds, ops, note in rows:
        per = seconds / ops
        per_s = f"{per * 1e6:9.1f} us" if per < 1e-3 else f"{per * 1e3:9.2f} ms"
        print(f"{name:34s} {seconds:9.3f}s {per_s:>12s}  {note}")
    print(f"on-disk size: {size / 2**20:.1f} MiB ({size / max(args.seeds, 1):.0f} B/seed), "
          f"map size {map_size / 2**20:.0f} MiB; minimized corpus {size_min / 2**20:.1f} MiB")
    if args.keep:
        print(f"kept {work}")
    elif args.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
