"""Where a campaign's execution time goes, on the campaign's own case mix, and what each
throughput lever would save (issue 20).

Samples N executed case ids from DIR/scheduler.jsonl among those the campaign stored (its seeds
and failure examples: a case that was neither kept nor failed is not stored anywhere), reads
them from DIR's corpus opened read-only, and replays them on warm workers, one per variant,
case by case in turn (the variant order rotates per case), so machine noise hits every variant
alike. Nothing is written into DIR (the kernel caches and worker files live in a temporary
folder; LMDB's read-only opening takes a reader slot in corpus.lmdb/lock.mdb, as `covfuzz
status` does). Variants:

- base:  the campaign's worker (coverage on, the campaign's feature families, an empty kernel
         cache of its own);
- nocov: the same without coverage (the tracer's cost: the lever "coverage on a sample");
- warm:  the same as base on base's kernel cache, right after base ran the case (every kernel
         of the case is built already, as when another worker built it: the upper bound of the
         lever "kernel cache kept warm"; DIR's own cache cannot serve: its keys hold the paths
         of the installation that built it).

Prints, per variant, the mean seconds per case by stage (harness.result.STAGES) and cases per
hour, then each lever's estimate with the figures behind it.

    python benchmarks/bench_campaign_mix.py DIR [-n 20] [--seed 0] [--variants base,nocov,warm]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from corpus import open_campaign_store  # noqa: E402
from covfuzz import serialize, workdir  # noqa: E402
from covfuzz.errors import CovfuzzError  # noqa: E402
from covfuzz.features import FAMILY_ENV  # noqa: E402
from covfuzz.status import read_status  # noqa: E402
from harness.pool import WorkerSpec, start_worker  # noqa: E402
from harness.result import STAGES, RunResult  # noqa: E402

VARIANTS = ("base", "nocov", "warm")
MAX_LOG_LINE = 1 << 16
CASE_ID = re.compile(r"^[0-9a-f]{16}\Z")  # covfuzz.serialize.case_id
COMPILE_STAGES = ("dynamo", "aot", "inductor", "build", "compile_other")


def executed_records(directory: str) -> list[dict]:
    """The scheduler log's records that name a case id (malformed lines are skipped)."""
    out = []
    with open(workdir.scheduler_log_path(directory), "rb") as handle:
        for raw in handle:
            if len(raw) > MAX_LOG_LINE:
                continue
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if (isinstance(rec, dict) and isinstance(rec.get("id"), str)
                    and CASE_ID.match(rec["id"])):
                seconds = rec.get("seconds")
                rec["seconds"] = float(seconds) if isinstance(seconds, (int, float)) else None
                out.append(rec)
    return out


def stored_cases(directory: str, ids: set[str]) -> tuple[dict[str, bytes], dict]:
    """{case id: stored bytes} of the ids the corpus holds (seeds, failure examples), read from
    the store opened read-only, and counts of what it holds."""
    store = open_campaign_store(directory, readonly=True)
    try:
        seeds = set(store.seed_ids())
        examples = {eid for rec in store.failures() for eid in rec.get("example_ids") or []}
        out = {}
        for cid in ids:
            if cid in seeds:
                data = store.get_case_bytes(cid)
            elif cid in examples:
                data = (store.get_example(cid) or {}).get("case_bytes")
            else:
                continue
            if data is not None:
                out[cid] = bytes(data)
    finally:
        store.close()
    return out, {"seeds": len(seeds), "examples": len(examples)}


def campaign_families(directory: str) -> list[str]:
    """The feature families beyond coverage the campaign's workers computed (its status)."""
    try:
        return [f for f in read_status(directory).get("families") or {} if f != "coverage"]
    except CovfuzzError:
        return []


def so_files(cache: str) -> int:
    count = 0
    for _, _, files in os.walk(cache):
        count += sum(1 for f in files if f.endswith(".so"))
    return count


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares y = a + b x: (a, b, r^2)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return my, 0.0, 0.0
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    ss = sum((y - my) ** 2 for y in ys)
    res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    return a, b, (1 - res / ss) if ss else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", metavar="DIR", help="campaign directory (read only)")
    parser.add_argument("-n", type=int, default=20, help="cases to replay (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated, from " + ", ".join(VARIANTS))
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case")
    parser.add_argument("--json", metavar="PATH", help="also write every result here")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or any(v not in VARIANTS for v in variants) or "base" not in variants:
        parser.error(f"--variants: names from {', '.join(VARIANTS)}, base included")
    directory = os.path.abspath(args.dir)

    records = executed_records(directory)
    cases, held = stored_cases(directory, {r["id"] for r in records})
    pool = [r for r in records if r["id"] in cases]
    if not pool:
        print(f"{directory}: no executed case is stored in its corpus", file=sys.stderr)
        return 2
    sample = random.Random(args.seed).sample(pool, min(args.n, len(pool)))

    def secs(rows):
        vals = [r["seconds"] for r in rows if r["seconds"] is not None]
        return (f"mean {statistics.fmean(vals):.2f} s, median {statistics.median(vals):.2f} s"
                if vals else "n/a")
    print(f"campaign {directory}: {len(records)} executions logged, {len(pool)} of them stored "
          f"(corpus: {held['seeds']} seeds, {held['examples']} failure examples); "
          f"replaying {len(sample)} (seed {args.seed})")
    print(f"  seconds per execution as the campaign logged them: all {secs(records)}; "
          f"stored {secs(pool)}; sampled {secs(sample)}")

    families = campaign_families(directory)
    work = tempfile.mkdtemp(prefix="covfuzz-mix-")
    env = {FAMILY_ENV: ",".join(families)} if families else {}
    caches = {v: os.path.join(work, f"inductor-{'base' if v == 'warm' else v}")
              for v in variants}
    workers, startup = {}, {}
    try:
        for v in variants:
            t0 = time.perf_counter()
            workers[v] = start_worker(WorkerSpec.for_campaign(
                cache_dir=caches[v], timeout=args.timeout, env=env))
            workers[v].ping()  # started and warmed up
            startup[v] = time.perf_counter() - t0
        print("  workers warm (import torch + warm-up case): " + ", ".join(
            f"{v} {startup[v]:.0f} s" for v in variants)
            + f"; feature families {','.join(families) or 'none'}")
        results: dict[str, list[RunResult]] = {v: [] for v in variants}
        builds: list[int] = []
        nodes: list[int] = []
        for i, rec in enumerate(sample):
            data = cases[rec["id"]]
            nodes.append(len(serialize.decode(data).graph.nodes))
            cold = [v for v in variants if v != "warm"]
            order = cold[i % len(cold):] + cold[:i % len(cold)]
            if "warm" in variants:  # right after base: the case's kernels are in its cache
                order.insert(order.index("base") + 1, "warm")
            line = []
            for v in order:
                before = so_files(caches[v]) if v == "base" else 0
                r = workers[v].run(data, coverage=(v != "nocov"))
                if v == "base":
                    builds.append(so_files(caches[v]) - before)
                results[v].append(r)
                line.append(f"{v} {r.timings['total']:6.2f}s {r.outcome}")
            print(f"case {i:>3} {rec['id']} ({nodes[-1]} nodes, campaign {rec['seconds'] or 0:.2f}s): "
                  + " | ".join(sorted(line)), flush=True)
    finally:
        for w in workers.values():
            w.close()
        shutil.rmtree(work, ignore_errors=True)

    report(variants, results, builds, nodes, startup)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"sample": [r["id"] for r in sample], "nodes": nodes, "builds": builds,
                       "startup": startup,
                       "results": {v: [r.to_dict() for r in rs] for v, rs in results.items()}},
                      handle)
    return 0


def report(variants, results, builds, nodes, startup) -> None:
    n = len(results["base"])
    splits = {v: [r.stages() for r in results[v]] for v in variants}
    mean = {v: {k: sum(s[k] for s in splits[v]) / n for k in STAGES} for v in variants}
    totals = {v: sum(mean[v].values()) for v in variants}
    print()
    print("mean seconds per case by stage (share of the variant's time):")
    print(f"  {'stage':<14}" + "".join(f"{v:>18}" for v in variants))
    for k in STAGES:
        if any(mean[v][k] >= 5e-4 for v in variants):
            print(f"  {k:<14}" + "".join(
                f"{mean[v][k]:>9.3f} {100 * mean[v][k] / totals[v]:>6.1f}%  " for v in variants))
    print(f"  {'total':<14}" + "".join(f"{totals[v]:>9.3f} {100.0:>6.1f}%  " for v in variants))
    # A campaign's worker also restarts every 200 cases: its start-up amortized over them.
    print(f"  {'cases/hour':<14}" + "".join(
        f"{3600 / (totals[v] + startup[v] / 200):>9.0f}         " for v in variants))
    print(f"  {'vs base':<14}" + "".join(
        f"{totals['base'] / totals[v]:>8.2f}x         " for v in variants))

    base, raw = mean["base"], results["base"]
    compile_s = sum(base[k] for k in COMPILE_STAGES)
    print()
    print(f"base: compile {compile_s:.2f} s of {totals['base']:.2f} s per case "
          f"({100 * compile_s / totals['base']:.0f}%), the C++/Triton build alone "
          f"{100 * base['build'] / totals['base']:.0f}%")
    print("levers (per case, against base):")
    if "nocov" in variants:
        saved = totals["base"] - totals["nocov"]
        print(f"- coverage on a sample p of executions: coverage costs {saved:.3f} s per case "
              f"({100 * saved / totals['base']:.1f}%: the tracer inside the traced stages, "
              f"{base['coverage']:.3f} s of it starting/stopping/reading it); p = 0.25 saves "
              f"{0.75 * saved:.3f} s ({100 * 0.75 * saved / totals['base']:.1f}%)")
    if "warm" in variants:
        saved = totals["base"] - totals["warm"]
        print(f"- kernel cache warm: {saved:.3f} s per case ({100 * saved / totals['base']:.1f}%) "
              f"with every kernel of these cases already built (build {base['build']:.3f} s -> "
              f"{mean['warm']['build']:.3f} s): the upper bound; a campaign keeps its own cache, "
              f"so it only pays for kernels it has not built before")
    second = sum(r.timings.get("run", 0.0) for r in raw) / n
    print(f"- second compiled call only when the first mismatches: run {second:.3f} s per case "
          f"({100 * second / totals['base']:.1f}%)")
    with_bwd = [r for r in raw if r.timings.get("backward", 0.0) > 0]
    bwd = sum(r.timings["backward"] for r in with_bwd) / n
    lazy = sum(r.timings.get("compile_in_backward", 0.0) for r in with_bwd) / n
    print(f"- skip backward: {len(with_bwd)} of {n} cases run it; {bwd:.3f} s per case "
          f"({100 * bwd / totals['base']:.1f}%), of which the backward graph's compile "
          f"{lazy:.3f} s (the joint graph AOTAutograd traces at compile time for inputs that "
          "require grad is in aot, not counted here)")
    ref_cases = sum(1 for r in raw if r.timings.get("reference", 0.0) > 0)
    print(f"- float64 reference: already computed only when eager and compiled differ "
          f"({ref_cases} of {n} cases): {base['reference']:.3f} s per case")
    mean_builds = statistics.fmean(builds) if builds else 0.0
    parallel = sum(r.stages()["build"] * (1 - 1 / b) for r, b in zip(raw, builds) if b > 1) / n
    print(f"- compile_threads > 1: {mean_builds:.2f} new kernel builds (.so) per case "
          f"(max {max(builds, default=0)}); building them at once saves at most {parallel:.3f} s "
          f"per case ({100 * parallel / totals['base']:.1f}%), and only with idle cores "
          f"(this machine: {os.cpu_count()} cores)")
    comp = [sum(s[k] for k in COMPILE_STAGES) for s in splits["base"]]
    a, b, r2 = fit_line([float(x) for x in nodes], comp)
    a_all, b_all, r2_all = fit_line([float(x) for x in nodes], [r.timings["total"] for r in raw])
    print(f"- batching: compile s = {a:.2f} + {b:.3f} x nodes (r^2 {r2:.2f}), total s = "
          f"{a_all:.2f} + {b_all:.3f} x nodes (r^2 {r2_all:.2f}) over {n} cases of "
          f"{min(nodes)}-{max(nodes)} nodes; k cases in one program save about (k-1) x "
          f"{max(a_all, 0):.2f} s of fixed cost per batch, if the fixed part is the intercept")


if __name__ == "__main__":
    sys.exit(main())
