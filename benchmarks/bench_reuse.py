"""Issue 20's lever "one compile, many inputs", side by side: a campaign's worker that runs a
value variant on the compiled program it already has, against one that compiles every case.

What is measured: G groups, each one generated case (covfuzz.generator.generate, seeds from
--seed on) followed by V value variants of it made as a campaign's sweep makes them
(covfuzz/campaign/candidates.py `sweep_of`: one SWEEP_MUTATORS mutator per variant through
`mutators.stack`). Cases whose compiled code may hold values (`compiled_code_holds_values`) get
no sweep in a campaign, so their groups are skipped (the next seed is drawn); no case carries a
metamorphic check (its variant would compile in between). Two arms, each one warm worker made
as a campaign makes it (`WorkerSpec.for_campaign`: coverage on, the feature families a
feedback campaign computes, its own empty kernel cache in a temporary folder):

- reuse:   COVFUZZ_REUSE_COMPILE=1 (the default): a variant runs on its group's compiled
           program (harness/execute.py), unless Dynamo's guards recompile;
- compile: COVFUZZ_REUSE_COMPILE=0: every case compiles (its kernels come from the arm's own
           kernel cache after the group's first case, as in a campaign).

How, and why fair: the same case list goes to both workers in the same order; they run case
by case in turn, and which arm goes first alternates per group, so machine noise (other jobs on
the box) hits both arms alike. Each arm keeps its own kernel cache, so neither profits from
kernels the other built. Seconds are the worker's own `timings["total"]` (the case's run,
not the pipe).

Prints per arm the cases, seconds, cases per hour, mean seconds of a group's first case and of
its variants; the ratio of cases per hour reuse / compile; how many variants reused (and why
the others did not); and the verdicts of the two arms case by case, listing every case where
they differ (reuse must keep the oracle's power: the same failures as compiling afresh).

    python benchmarks/bench_reuse.py [--groups 8] [--variants 4] [--seed 0] [--timeout 120]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import mutators  # noqa: E402
from covfuzz.campaign.candidates import COMPILED_OUTCOMES, SWEEP_MUTATORS  # noqa: E402
from covfuzz.features import FAMILY_ENV, FEEDBACK_FAMILIES, parse_families  # noqa: E402
from covfuzz.generator import generate  # noqa: E402
from covfuzz.ir import TensorSpec, TestCase, compiled_code_holds_values  # noqa: E402
from covfuzz.serialize import case_id, encode  # noqa: E402
from harness.pool import WorkerSpec, start_worker  # noqa: E402
from harness.result import REUSE_ENV, RunResult  # noqa: E402

ARMS = ("reuse", "compile")
MAX_SKIPPED = 200  # seeds whose settings hold values, at most, before giving up
VARIANT_TRIES = 4  # mutator draws per wanted variant (a draw may not apply)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints its usage too)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


@dataclasses.dataclass
class Group:
    seed: int
    cases: list  # [TestCase]: the generated case, then its variants
    mutators: list  # the variant's mutator, per case ("" for the first)


def make_groups(n: int, variants: int, first_seed: int) -> tuple[list[Group], list[int]]:
    """`n` groups from seeds first_seed, first_seed + 1, ...; the seeds skipped (settings that
    hold values: a campaign makes no sweep of them)."""
    groups, skipped, seed = [], [], first_seed
    ctx = mutators.MutationContext()
    while len(groups) < n:
        if len(skipped) > MAX_SKIPPED:
            raise SystemExit(f"bench_reuse: {len(skipped)} seeds in a row hold values; giving up")
        case = generate(seed)
        case = case.replace(settings=dataclasses.replace(case.settings, metamorphic=None))
        if compiled_code_holds_values(case.settings.mode, case.settings.inductor_config):
            skipped.append(seed)
            seed += 1
            continue
        rng = random.Random(seed)  # the group's variants depend on its seed only
        cases, names, seen = [case], [""], {case_id(case)}
        for _ in range(variants * VARIANT_TRIES):
            if len(cases) > variants:
                break
            stacked = mutators.stack(case, rng, ctx, [rng.choice(SWEEP_MUTATORS)])
            # an identical variant would be a rerun (the worker compiles a rerun afresh)
            if stacked.case is None or case_id(stacked.case) in seen:
                continue
            seen.add(case_id(stacked.case))
            cases.append(stacked.case)
            names.append(stacked.applied[0].mutator)
        groups.append(Group(seed, cases, names))
        seed += 1
    return groups, skipped


def verdict(r: RunResult) -> str:
    """What the oracle said: the outcome, and a failure's exception type."""
    return f"{r.outcome}:{r.exc_type}" if r.failed and r.exc_type else r.outcome


def scalars(case: TestCase) -> list:
    """The case's non-tensor inputs (part of its compiled program: harness.execute.reuse_key)."""
    return [i for i in case.graph.inputs if not isinstance(i.spec, TensorSpec)]


def no_reuse_reason(prev: RunResult | None, prev_case: TestCase | None, r: RunResult,
                    case: TestCase) -> str:
    """Why a variant on the reuse arm compiled (best guess from what the worker reported)."""
    if prev is None or prev.outcome not in COMPILED_OUTCOMES:
        return f"previous case did not compile ({prev.outcome if prev else 'none'})"
    if prev.details.get("recompiled"):
        return "previous case was reused but Dynamo recompiled it (reuse ends there)"
    if prev_case is not None and case_id(prev_case) == case_id(case):
        return "same case as the previous one (a rerun compiles)"
    if prev_case is not None and scalars(prev_case) != scalars(case):
        return "a scalar input changed (Dynamo specializes on it: another program, by design)"
    if r.outcome in ("timeout", "process_crash", "oom"):
        return f"worker killed ({r.outcome})"
    return "other (its program differs from the previous one: harness.execute.reuse_key)"


def main() -> int:
    parser = _Parser(description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=8,
                        help="generated cases, each with its variants (default %(default)s)")
    parser.add_argument("--variants", type=int, default=4,
                        help="value variants per generated case (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="first generator seed (default 0)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds per case (default %(default)s)")
    parser.add_argument("--families", default=",".join(f for f in FEEDBACK_FAMILIES),
                        help="feature families the workers compute, comma-separated (default: "
                             "all, as a feedback campaign; 'coverage' for coverage alone)")
    args = parser.parse_args()
    if args.groups < 1:
        parser.error("--groups must be at least 1")
    if args.variants < 1:
        parser.error("--variants must be at least 1")
    if args.seed < 0:
        parser.error("--seed must be at least 0")
    if not args.timeout > 0:
        parser.error("--timeout must be positive")
    try:
        families = [f for f in parse_families(args.families) if f != "coverage"]
    except ValueError as exc:
        parser.error(f"--families: {exc}")

    t0 = time.perf_counter()
    groups, skipped = make_groups(args.groups, args.variants, args.seed)
    n_cases = sum(len(g.cases) for g in groups)
    short = [g.seed for g in groups if len(g.cases) - 1 < args.variants]
    print(f"{len(groups)} groups, {n_cases} cases (seeds {groups[0].seed}-{groups[-1].seed}; "
          f"skipped, settings hold values: {skipped or 'none'}; fewer than {args.variants} "
          f"variants: {short or 'none'}), made in {time.perf_counter() - t0:.1f} s; "
          f"feature families: coverage{''.join(',' + f for f in families)}", flush=True)

    work = tempfile.mkdtemp(prefix="covfuzz-reuse-")
    base_env = {FAMILY_ENV: ",".join(families)} if families else {}
    # explicit "1": a COVFUZZ_REUSE_COMPILE=0 in this shell must not turn the reuse arm off
    envs = {"reuse": {**base_env, REUSE_ENV: "1"}, "compile": {**base_env, REUSE_ENV: "0"}}
    workers, startup = {}, {}
    results: dict[str, list[RunResult]] = {a: [] for a in ARMS}
    index: list[tuple[int, int]] = []  # (group, position in group) per case
    try:
        for arm in ARMS:
            t0 = time.perf_counter()
            workers[arm] = start_worker(WorkerSpec.for_campaign(
                cache_dir=os.path.join(work, f"inductor-{arm}"), timeout=args.timeout,
                env=envs[arm]))
            workers[arm].ping()  # started and warmed up
            startup[arm] = time.perf_counter() - t0
        print("workers warm (import torch + warm-up case): "
              + ", ".join(f"{a} {startup[a]:.0f} s" for a in ARMS), flush=True)
        for gi, group in enumerate(groups):
            order = ARMS if gi % 2 == 0 else ARMS[::-1]
            for k, case in enumerate(group.cases):
                data = encode(case)
                line = []
                for arm in order:
                    r = workers[arm].run(data)
                    results[arm].append(r)
                    tag = " reused" if r.details.get("reused_compile") else ""
                    if r.details.get("recompiled"):
                        tag += f" recompiled {r.details['recompiled']}"
                    line.append(f"{arm} {r.timings['total']:6.2f}s {verdict(r)}{tag}")
                index.append((gi, k))
                what = "case" if k == 0 else f"  v{k} {group.mutators[k]}"
                print(f"group {gi} seed {group.seed} {what:<22} ({len(case.graph.nodes)} nodes): "
                      + " | ".join(sorted(line)), flush=True)
    finally:
        for w in workers.values():
            w.close()
        shutil.rmtree(work, ignore_errors=True)

    report(groups, index, results, startup)
    return 0


def report(groups: list[Group], index: list[tuple[int, int]],
           results: dict[str, list[RunResult]], startup: dict) -> None:
    def total(r: RunResult) -> float:
        return float(r.timings.get("total", 0.0))

    def mean(xs: list[float]) -> str:
        return f"{statistics.fmean(xs):.2f}" if xs else "n/a"

    print()
    print(f"{'arm':<8} {'cases':>6} {'seconds':>9} {'cases/hour':>11} {'first s':>8} "
          f"{'variant s':>10} {'startup s':>10}")
    per_hour = {}
    for arm in ARMS:
        rs = results[arm]
        secs = sum(total(r) for r in rs)
        per_hour[arm] = 3600 * len(rs) / secs if secs > 0 else 0.0
        firsts = [total(r) for r, (_, k) in zip(rs, index) if k == 0]
        variants = [total(r) for r, (_, k) in zip(rs, index) if k > 0]
        print(f"{arm:<8} {len(rs):>6} {secs:>9.1f} {per_hour[arm]:>11.0f} {mean(firsts):>8} "
              f"{mean(variants):>10} {startup[arm]:>10.0f}")
    if per_hour["compile"] > 0:
        print(f"cases/hour reuse / compile: {per_hour['reuse'] / per_hour['compile']:.2f}x")

    # which variants reused, and why the others did not
    reused, reasons = 0, {}
    rs = results["reuse"]
    for i, (gi, k) in enumerate(index):
        if k == 0:
            continue
        r = rs[i]
        if r.details.get("reused_compile"):
            reused += 1
            continue
        why = no_reuse_reason(rs[i - 1], groups[gi].cases[k - 1], r, groups[gi].cases[k])
        reasons.setdefault(why, []).append(f"g{gi}v{k}")
    n_var = sum(1 for _, k in index if k > 0)
    recompiled = sum(1 for r in rs if r.details.get("reused_compile") and r.details.get("recompiled"))
    print(f"variants reused on the reuse arm: {reused} of {n_var} (of them, Dynamo recompiled "
          f"a frame in {recompiled})")
    for why, where in reasons.items():
        print(f"  not reused, {why}: {len(where)} ({', '.join(where)})")
    wrong = sum(1 for r in results["compile"] if r.details.get("reused_compile"))
    if wrong:
        print(f"  WARNING: the compile arm reported reused_compile on {wrong} cases")

    # the oracle's power: the same verdicts either way
    diffs = []
    for i, (gi, k) in enumerate(index):
        a, b = results["reuse"][i], results["compile"][i]
        if verdict(a) != verdict(b):
            diffs.append((gi, k, a, b))
    tally = {}
    for r in results["compile"]:
        tally[verdict(r)] = tally.get(verdict(r), 0) + 1
    print("verdicts (compile arm): "
          + ", ".join(f"{v} {c}" for v, c in sorted(tally.items(), key=lambda t: -t[1])))
    failures = {arm: sum(1 for r in results[arm] if r.failed) for arm in ARMS}
    print(f"failures: reuse {failures['reuse']}, compile {failures['compile']}; cases whose "
          f"verdicts differ: {len(diffs)} of {len(index)}")
    for gi, k, a, b in diffs:
        case = groups[gi].cases[k]
        what = "case" if k == 0 else f"v{k} {groups[gi].mutators[k]}"
        print(f"  group {gi} seed {groups[gi].seed} {what} {case_id(case)}: "
              f"reuse {verdict(a)}{' (reused)' if a.details.get('reused_compile') else ''} "
              f"[{a.message.splitlines()[0][:100] if a.message else ''}] | "
              f"compile {verdict(b)} [{b.message.splitlines()[0][:100] if b.message else ''}]")


if __name__ == "__main__":
    sys.exit(main())
