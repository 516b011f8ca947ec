"""Corpus minimization (like afl-cmin) and corpus merging.

`minimize(store)`: the smallest-first greedy cover. Features are processed rarest first (fewest
seeds containing them, then feature id); for each feature not yet covered, the "smallest" seed
containing it is kept — smallest by node count (meta `nodes`; unknown counts last), then exec
time (unknown last), then id — and all its features count as covered. Every feature of the
(readable) corpus stays covered.

Seeds it cannot judge are never dropped (`plan`): a seed without features (`covfuzz import`
without `--run`) or with a record that is missing or does not decode (meta, features, a key
that is not an id) is kept exactly as stored (`CorpusStore.get_seed_copies`) and counted in the
report (`featureless`, `damaged`); `covfuzz cmin --rerun` measures them first. Only seeds whose
three records decode and whose feature set is not empty take part in the cover.

`write_minimized(src, ids, out, unjudged=...)`: a new store with the kept seeds (testcase, meta,
features copied unchanged) and the unjudged ones verbatim, `info` copied (plus
`minimized_from`), `hits` copied (the global hit counts, i.e. the union over the source),
failures/examples/stats copied unchanged. `minimize_into(src, out)` plans, writes and checks
that no feature and no unjudged seed was lost.

`minimize_in_place(dir)`: minimize into `<dir>/.corpus-cmin.tmp/`, check the features, then swap:
rename `corpus.lmdb` -> `corpus.lmdb.bak`, rename the new one into place, delete the backup. An
interruption leaves either the old store, or the backup alone (restored by the next
read-write open, see `corpus.lmdb_env.recover_swap`), or both (backup deleted at next open). No
campaign may write to the store meanwhile (the caller ensures it).

`merge(a, b, out)`: seeds of A then of B (each in found_at, id order) are kept only when they add
a feature not covered by seeds kept before, and every seed of either it cannot judge is kept
verbatim (B's only when A has no seed of that id); hit counts are summed over the union of features;
failure buckets are merged by signature (counts summed, first/last seen widened, examples
united up to the cap); stats records of both are copied.

Damaged records are reported (`errors` / report["errors"]); damage of the file itself
(`DamagedStore`) stops them before anything is written.
Everything here goes through the public, typed API of `CorpusStore` (records are decoded,
validated and re-encoded; canonical encodings make the copies byte-identical).
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from corpus.errors import CorpusError, report_corrupt
from corpus.lmdb_env import ENV_NAME, DamagedStore, env_path
from corpus.records import MAX_COUNT
from corpus.store import MAX_EXAMPLES, CorpusStore
from covfuzz.features import COVERAGE, family_mask, is_line, sorted_unique

COPY_BATCH = 512
HITS_BATCH = 4096
TMP_NAME = ".corpus-cmin.tmp"


# ----------------------------------------------------------------------------- judging


@dataclass
class Plan:
    """What cmin or merge may do with one store's seeds."""
    ids: list[str] = field(default_factory=list)       # judged: all records read, features known
    sizes: list[tuple] = field(default_factory=list)   # (nodes, exec_time) of each, inf unknown
    feats: list[np.ndarray] = field(default_factory=list)
    found_at: list[float] = field(default_factory=list)
    featureless: list[bytes] = field(default_factory=list)  # kept: nothing to judge them by
    damaged: list[bytes] = field(default_factory=list)      # kept: a record unreadable/missing
    seeds: int = 0                                       # every seed key present

    @property
    def unjudged(self) -> list[bytes]:
        return sorted(self.featureless + self.damaged)


def plan(store: CorpusStore, errors: list | None = None) -> Plan:
    """Sort every seed key of `store` into judged seeds and the ones it cannot judge."""
    keys = store.seed_key_sets()
    complete = keys["testcases"] & keys["meta"] & keys["features"]
    out = Plan(seeds=len(keys["testcases"] | keys["meta"] | keys["features"]))
    judged = set()
    for sid, meta, f in store.iter_seeds(errors, with_features=True):
        key = sid.encode("ascii")
        if key not in complete:
            continue
        judged.add(key)
        if not len(f):
            out.featureless.append(key)
            continue
        nodes, et = meta.get("nodes"), meta.get("exec_time")
        out.ids.append(sid)
        out.sizes.append((math.inf if nodes is None else nodes, math.inf if et is None else et))
        out.feats.append(f)
        out.found_at.append(meta.get("found_at", 0.0))
    out.damaged = sorted((keys["testcases"] | keys["meta"] | keys["features"]) - judged)
    return out


# ----------------------------------------------------------------------------- minimize


def _cover(ids, sizes, feats) -> tuple[list[str], int]:
    """Greedy cover; returns (kept ids sorted, number of distinct features)."""
    n = len(ids)
    if n == 0:
        return [], 0
    lens = np.fromiter((len(f) for f in feats), dtype=np.int64, count=n)
    if lens.sum() == 0:
        return [], 0
    allf = np.concatenate(feats)
    owner = np.repeat(np.arange(n, dtype=np.int64), lens)
    uniq, inv, counts = np.unique(allf, return_inverse=True, return_counts=True)
    inv = inv.astype(np.int64).ravel()
    del allf
    order_seeds = sorted(range(n), key=lambda i: (sizes[i][0], sizes[i][1], ids[i]))
    rank = np.empty(n, dtype=np.int64)
    rank[np.asarray(order_seeds, dtype=np.int64)] = np.arange(n, dtype=np.int64)
    best = np.full(len(uniq), n, dtype=np.int64)
    np.minimum.at(best, inv, rank[owner])
    offsets = np.concatenate(([0], np.cumsum(lens)))
    covered = np.zeros(len(uniq), dtype=bool)
    kept = []
    # rarest first; ties by feature id (uniq is sorted, so a stable sort keeps id order)
    for f in np.argsort(counts, kind="stable").tolist():
        if covered[f]:
            continue
        s = order_seeds[best[f]]
        kept.append(s)
        covered[inv[offsets[s]:offsets[s + 1]]] = True
    return sorted(ids[s] for s in kept), len(uniq)


def minimize(store: CorpusStore, errors: list | None = None) -> list[str]:
    """Ids of the smallest set of judged seeds covering every feature of the judged seeds
    (sorted); the seeds `plan` cannot judge are kept besides (see `write_minimized`)."""
    p = plan(store, errors)
    return _cover(p.ids, p.sizes, p.feats)[0]


def _union(*stores: CorpusStore, errors: list | None = None) -> np.ndarray:
    """Distinct feature ids over every readable features record (unjudged seeds included)."""
    parts = [f for st in stores for _, f in st.iter_features(errors)]
    return sorted_unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)


def unit_counts(features: np.ndarray) -> tuple[int, int]:
    """(arcs, lines) of a feature array: the one coverage unit every command prints is the arc
    count of Dynamo and Inductor ("features"), covered lines beside it. Ids of the other
    feature families (generated code, values, divergence: covfuzz.features.FAMILIES) are not
    coverage and count in neither."""
    arr = np.asarray(features, dtype=np.uint64)
    if not len(arr):
        return 0, 0
    coverage = arr[family_mask(arr, COVERAGE)]
    lines = int(is_line(coverage).sum())
    return int(len(coverage)) - lines, lines


def _unit_report(before: np.ndarray, after: np.ndarray) -> dict:
    """Every id before/after (the loss check) and the same in the printed unit (arcs, lines)."""
    (arcs_b, lines_b), (arcs_a, lines_a) = unit_counts(before), unit_counts(after)
    return {"features_before": int(len(before)), "features_after": int(len(after)),
            "arcs_before": arcs_b, "arcs_after": arcs_a,
            "lines_before": lines_b, "lines_after": lines_a}


def _copy_unjudged(src: CorpusStore, out: CorpusStore, keys: list[bytes]) -> None:
    """Seeds `keys` of src into out exactly as stored, in batches."""
    for i in range(0, len(keys), COPY_BATCH):
        out.put_seed_copies(src.get_seed_copies(keys[i:i + COPY_BATCH]))


def _copy_seeds(src: CorpusStore, out: CorpusStore, ids: list[str]) -> None:
    """Seeds `ids` of src into out (test case, meta, features as they are), in batches."""
    for i in range(0, len(ids), COPY_BATCH):
        batch = ids[i:i + COPY_BATCH]
        records = src.get_seed_records(batch)
        for sid, rec in zip(batch, records):
            if rec is None:
                raise CorpusError(f"seed {sid} vanished while copying")
        out.put_seed_records(records)


def _write_hits(out: CorpusStore, counts: Iterable[tuple[int, int]]) -> None:
    """Add (feature, count) pairs to out's hits, in batches (out's hits start empty)."""
    feats: list[int] = []
    ns: list[int] = []
    for f, n in counts:
        feats.append(f)
        ns.append(n)
        if len(feats) >= HITS_BATCH:
            out.add_hits(feats, ns)
            feats, ns = [], []
    if feats:
        out.add_hits(feats, ns)


def _copy_failures(stores: list[CorpusStore], out: CorpusStore, errors: list | None) -> int:
    """Merge every failure bucket of `stores` (in order) with its examples into out; returns
    the number of buckets in out."""
    for st in stores:
        for bucket in st.failures(errors):
            examples = {}
            for eid in bucket["example_ids"]:
                try:
                    example = st.get_example(eid)
                except DamagedStore:
                    raise
                except CorpusError as exc:
                    report_corrupt(errors, exc)
                    continue
                if example is not None:
                    examples[eid] = example
            out.merge_failure_bucket(bucket, examples)
    return out.num_failures()


def _new_store(out_path: str, max_examples: int) -> CorpusStore:
    if os.path.exists(os.path.join(env_path(out_path), "data.mdb")):
        raise CorpusError(f"refusing to write into an existing corpus at {env_path(out_path)}")
    return CorpusStore(out_path, sync=False, max_examples=max_examples)


def write_minimized(src: CorpusStore, ids: list[str], out_path: str,
                    features_before: np.ndarray | None = None, errors: list | None = None,
                    unjudged: list[bytes] = ()) -> dict:
    """Write a new store at `out_path` holding the seeds `ids` of `src`, the seeds `unjudged`
    exactly as stored, and src's info, hits, failures, examples and stats. Returns a report
    (seeds/features before and after); damaged records of src other than seeds are skipped
    and reported into `errors`."""
    out = _new_store(out_path, src.max_examples)
    try:
        info = src.get_info()
        info["minimized_from"] = src.path
        out.set_info(info)
        _copy_seeds(src, out, list(ids))
        _copy_unjudged(src, out, list(unjudged))
        _write_hits(out, src.iter_hits(errors))
        _copy_failures([src], out, errors)
        out.extend_stats(src.stats_series(errors=errors))
        out.sync()
        report = {"seeds_before": src.num_seeds(), "seeds_after": out.num_seeds(),
                  **_unit_report(_union(src) if features_before is None else features_before,
                                 _union(out)),
                  "hits_before": src.num_features(), "hits_after": out.num_features(),
                  "failures": out.num_failures()}
    finally:
        out.close()
    return report


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def minimize_into(src: CorpusStore, out_path: str) -> dict:
    """Minimize `src` into a new store at `out_path`: the cover of the judged seeds plus every
    seed it cannot judge. Returns the report (with `featureless`, `damaged` and `errors`);
    CorpusError when the result would lack a feature or an unjudged seed (the caller removes
    `out_path`)."""
    errors: list = []
    p = plan(src, errors)
    kept, _ = _cover(p.ids, p.sizes, p.feats)
    p.feats = []
    report = write_minimized(src, kept, out_path, features_before=_union(src),
                             errors=errors, unjudged=p.unjudged)
    report.update(seeds_before=p.seeds, featureless=len(p.featureless), damaged=len(p.damaged),
                  errors=[str(e) for e in errors])
    if report["features_after"] != report["features_before"]:
        raise CorpusError(f"minimization would lose features ({report['features_before']} -> "
                          f"{report['features_after']}); store left unchanged")
    if report["seeds_after"] < len(kept) + len(p.unjudged):
        raise CorpusError(f"minimization would lose seeds ({len(kept) + len(p.unjudged)} kept, "
                          f"{report['seeds_after']} written); store left unchanged")
    return report


def minimize_in_place(path: str) -> dict:
    """Minimize the corpus of campaign directory `path` (or its corpus.lmdb) in place, with an
    atomic directory swap. Returns the report; raises CorpusError (leaving the store untouched)
    if the minimized corpus would lose a feature or a seed it cannot judge."""
    env = env_path(path)
    campaign = os.path.dirname(env)
    tmp = os.path.join(campaign, TMP_NAME)
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    try:
        with CorpusStore(env, create=False) as src:
            report = minimize_into(src, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bak = env + ".bak"
    if os.path.exists(bak):
        shutil.rmtree(bak)
    os.rename(env, bak)
    os.rename(os.path.join(tmp, ENV_NAME), env)
    _fsync_dir(campaign)
    shutil.rmtree(bak)
    shutil.rmtree(tmp, ignore_errors=True)
    return report


# ----------------------------------------------------------------------------- merge


def _seed_order(p: Plan):
    rows = list(zip(p.found_at, p.ids, p.feats))
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows


def merge(a_path: str, b_path: str, out_path: str) -> dict:
    """Merge corpora A and B into a new corpus at `out_path` (see the module docstring).
    A and B are opened read-only and not modified. Returns a report."""
    if len({os.path.realpath(env_path(p)) for p in (a_path, b_path, out_path)}) != 3:
        raise CorpusError("merge needs three different corpora")
    errors: list = []
    with CorpusStore(a_path, readonly=True) as a, CorpusStore(b_path, readonly=True) as b:
        out = _new_store(out_path, MAX_EXAMPLES)
        try:
            info = a.get_info()
            info["merged_from"] = [a.path, b.path]
            out.set_info(info)
            plans = {"a": plan(a, errors), "b": plan(b, errors)}
            covered: set[int] = set()
            kept = {"a": [], "b": []}
            for name in ("a", "b"):
                for _, sid, f in _seed_order(plans[name]):
                    fl = f.tolist()
                    if not covered.issuperset(fl):
                        covered.update(fl)
                        kept[name].append(sid)
            # a seed id of A, kept or unjudged, is not taken again from B (same id, same case)
            from_a = {sid.encode("ascii") for sid in kept["a"]} | set(plans["a"].unjudged)
            kept["b"] = [sid for sid in kept["b"] if sid.encode("ascii") not in from_a]
            unjudged_b = [key for key in plans["b"].unjudged if key not in from_a]
            _copy_seeds(a, out, kept["a"])
            _copy_seeds(b, out, kept["b"])
            _copy_unjudged(a, out, plans["a"].unjudged)
            _copy_unjudged(b, out, unjudged_b)
            counts: dict[int, int] = {}
            for st in (a, b):
                for f, c in st.feature_counts(errors).items():
                    counts[f] = min(MAX_COUNT, counts.get(f, 0) + c)
            for f in covered:  # every kept feature is in hits (even if a hits record was bad)
                counts.setdefault(f, 1)
            _write_hits(out, sorted(counts.items()))
            n_fail = _copy_failures([a, b], out, errors)
            out.extend_stats(a.stats_series(errors=errors) + b.stats_series(errors=errors))
            out.sync()
            union_before = _union(a, b, errors=[])
            report = {"seeds_a": plans["a"].seeds, "seeds_b": plans["b"].seeds,
                      "seeds_before": plans["a"].seeds + plans["b"].seeds,
                      "seeds_after": out.num_seeds(),
                      "kept_from_a": len(kept["a"]), "kept_from_b": len(kept["b"]),
                      "featureless": len(plans["a"].featureless) + len(plans["b"].featureless),
                      "damaged": len(plans["a"].damaged) + len(plans["b"].damaged),
                      **_unit_report(union_before, _union(out)),
                      "hits_after": out.num_features(), "failures": n_fail,
                      "errors": [str(e) for e in errors]}
        finally:
            out.close()
    return report

