"""In-campaign throughput of two commits, side by side (issue 20's "Done when").

    python benchmarks/campaign_pair.py --old COMMIT --new COMMIT --minutes 30 --out DIR
        [--workers N] [--fresh K] [--keep-trees]
    python benchmarks/campaign_pair.py --fresh-of CAMPAIGN_DIR --fresh K

Checks each commit out into its own git worktree (DIR/src-old, DIR/src-new), sets each up
with its own virtual environment (`scripts/setup_env.sh`: the installed torch is reused), then
runs `covfuzz fuzz DIR/camp-old` and `covfuzz fuzz DIR/camp-new` at the same time for the same
duration, with default settings (plus `--workers N` when given), so the machine's noise hits
both alike. Then prints, per commit, executions, cases per hour per worker and where the
worker time went (its `fuzzer_stats.json`), and the ratio new / old.

`--fresh K` then runs K of the new campaign's stored cases (seeds and failure examples, chosen
at random from those it executed) each in a fresh Python process, as a process-per-case fuzzer
would (the standalone program of `covfuzz.codegen.program`, an empty kernel cache each), and
prints the campaign's cases per hour per worker against the fresh processes' (the second
figure of the issue's "Done when"), and the same cases' own in-campaign seconds.

`--fresh-of CAMPAIGN_DIR` makes only that comparison, for a campaign already run (e.g. one of
issue 19's 2-hour pair), against its own cases per hour per worker.

Campaign directories are kept; the worktrees are removed unless --keep-trees. A campaign that
fails to start, or a stats file that cannot be read: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

from bench_campaign_mix import executed_records, stored_cases  # noqa: E402
from bench_throughput import fresh_process  # noqa: E402
from covfuzz import serialize  # noqa: E402
from covfuzz.errors import CovfuzzError, one_line  # noqa: E402
from covfuzz.status import read_status, time_shares  # noqa: E402

POLL_S = 30.0
GRACE_S = 900.0  # past the budget: the campaigns drain in-flight cases and triage


class PairError(CovfuzzError):
    pass


def checkout(commit: str, tree: str) -> None:
    """A detached worktree of `commit` at `tree`, with its own .venv."""
    if not os.path.isdir(tree):
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-f", tree, commit],
                       check=True, capture_output=True)
    setup = os.path.join(tree, "scripts", "setup_env.sh")
    if not os.path.isfile(setup):
        raise PairError(f"{commit}: no scripts/setup_env.sh in that commit")
    subprocess.run([setup], cwd=tree, check=True)


def launch(tree: str, directory: str, hours: float, workers: int | None, log: str):
    cmd = [os.path.join(tree, ".venv", "bin", "covfuzz"), "fuzz", directory, "--hours",
           f"{hours:.4f}"] + (["--workers", str(workers)] if workers else [])
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, cwd=tree, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def summary(directory: str) -> dict:
    """Executions, worker count, elapsed seconds and time shares from a campaign's status."""
    try:
        s = read_status(directory)
    except CovfuzzError as exc:
        raise PairError(f"{directory}: {one_line(exc)}") from None
    execs = int(s.get("execs") or 0)
    workers = int(s.get("workers") or 1)
    elapsed = float(s.get("elapsed") or 0.0)
    split = s.get("time_split") or {}
    rate = execs / (elapsed / 3600.0) / workers if elapsed > 0 else 0.0
    return {"execs": execs, "workers": workers, "elapsed": elapsed, "rate": rate,
            "shares": time_shares(split) if split else []}


def print_pair(old: dict, new: dict) -> None:
    print(f"{'':34}{'old':>12}{'new':>12}")
    for key, label in (("execs", "executions"), ("workers", "workers"),
                       ("elapsed", "elapsed (s)"), ("rate", "cases/hour/worker")):
        print(f"{label:34}{old[key]:>12.0f}{new[key]:>12.0f}")
    ratio = new["rate"] / old["rate"] if old["rate"] else float("nan")
    print(f"{'ratio new / old':34}{'':>12}{ratio:>11.2f}x")
    for name, row in (("old", old), ("new", new)):
        if row["shares"]:
            print(f"time ({name}): " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in row["shares"]))


def fresh_versus_campaign(directory: str, k: int, seed: int, rate: float) -> None:
    records = [r for r in executed_records(directory) if r.get("seconds")]
    cases, _ = stored_cases(directory, {r["id"] for r in records})
    ids = sorted(cases)
    random.Random(seed).shuffle(ids)
    ids = ids[:k]
    if not ids:
        print("fresh: the campaign stored none of its executed cases")
        return
    logged = {r["id"]: r["seconds"] for r in records}
    work = tempfile.mkdtemp(prefix="covfuzz-pair-fresh-")
    fresh = []
    try:
        for i, cid in enumerate(ids, 1):
            case = serialize.decode(cases[cid])
            cache = os.path.join(work, f"cache{i}")
            fresh.append(fresh_process(case, work, cache))
            print(f"  fresh {i}/{len(ids)}: {fresh[-1]:.1f} s (in the campaign: "
                  f"{logged[cid]:.1f} s)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mean_fresh = statistics.fmean(fresh)
    mean_logged = statistics.fmean(logged[c] for c in ids)
    fresh_rate = 3600.0 / mean_fresh
    print(f"fresh process per case: {mean_fresh:.1f} s mean over {len(ids)} cases "
          f"({fresh_rate:.0f} cases/hour); the same cases in the campaign {mean_logged:.1f} s "
          f"({mean_fresh / mean_logged:.1f}x)")
    print(f"campaign cases/hour/worker against a fresh process per case: {rate:.0f} vs "
          f"{fresh_rate:.0f} = {rate / fresh_rate:.1f}x")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", help="the commit measured as 'today'")
    p.add_argument("--new", help="the commit with the levers")
    p.add_argument("--fresh-of", metavar="DIR",
                   help="no pair: only the fresh-process comparison, for this campaign")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--out", help="directory for the worktrees and campaigns")
    p.add_argument("--workers", type=int, default=None, help="per campaign (default: covfuzz's)")
    p.add_argument("--fresh", type=int, default=0, metavar="K",
                   help="also run K of the new campaign's cases in fresh processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-trees", action="store_true")
    args = p.parse_args(argv)
    if args.fresh_of:
        try:
            rate = summary(args.fresh_of)["rate"]
            print(f"{args.fresh_of}: {rate:.0f} cases/hour/worker in the campaign")
            fresh_versus_campaign(args.fresh_of, args.fresh or 6, args.seed, rate)
        except PairError as exc:
            print(f"campaign_pair: {one_line(exc)}", file=sys.stderr)
            return 2
        return 0
    if not (args.old and args.new and args.out):
        p.error("--old, --new and --out are needed (or --fresh-of DIR)")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    trees = {name: os.path.join(out, f"src-{name}") for name in ("old", "new")}
    try:
        for name, commit in (("old", args.old), ("new", args.new)):
            checkout(commit, trees[name])
        hours = args.minutes / 60.0
        procs = {name: launch(trees[name], os.path.join(out, f"camp-{name}"), hours,
                              args.workers, os.path.join(out, f"{name}.log"))
                 for name in ("old", "new")}
        deadline = time.time() + args.minutes * 60.0 + GRACE_S
        while any(proc.poll() is None for proc in procs.values()):
            if time.time() > deadline:
                for proc in procs.values():
                    if proc.poll() is None:
                        proc.send_signal(2)  # SIGINT: the campaign stops cleanly
            time.sleep(POLL_S)
            done = {n: summary(os.path.join(out, f"camp-{n}"))["execs"]
                    if os.path.exists(os.path.join(out, f"camp-{n}", "fuzzer_stats.json")) else 0
                    for n in procs}
            print(f"[{time.strftime('%H:%M:%S')}] executions old {done['old']}, "
                  f"new {done['new']}", flush=True)
        for name, proc in procs.items():
            if proc.returncode not in (0, None):
                raise PairError(f"the {name} campaign exited with status {proc.returncode} "
                                f"(see {out}/{name}.log)")
        old, new = (summary(os.path.join(out, f"camp-{n}")) for n in ("old", "new"))
        print_pair(old, new)
        if args.fresh:
            fresh_versus_campaign(os.path.join(out, "camp-new"), args.fresh, args.seed,
                                  new["rate"])
    except (PairError, subprocess.CalledProcessError) as exc:
        print(f"campaign_pair: {one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        if not args.keep_trees:
            for tree in trees.values():
                subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree],
                               capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
