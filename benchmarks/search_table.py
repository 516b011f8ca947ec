"""Issue 19's table: what a feedback campaign found against a --no-feedback baseline.

    python benchmarks/search_table.py FEEDBACK_DIR BASELINE_DIR [--window MIN] [--json]

For each campaign directory (read only; both may still be running):
- distinct confirmed root causes (`covfuzz.triage.failures.root_causes`: confirmed buckets
  grouped by root id), and every reported root cause (untriaged buckets count as their own);
- features per family (coverage, gencode, values, divergence) at the end and new in the last
  `--window` minutes (default 30), as a rate per hour. From the stats series when its records
  hold per-family counts (`families`), otherwise from the stored seeds (each seed's features
  that no earlier seed had, by `found_at`): both count what the feedbacks keep;
- which move first found each confirmed root cause: the origin (`scheduler.jsonl`) of the
  earliest bucket's example: a fresh generation, a generation under a changed setting, a
  settings move on a seed, a mutation, a value mutation, a climb step or a sweep step (a
  value variant run on its parent's compiled program); and the share not found by a plain
  fresh generation;
- per origin kind, the executions logged and their mean seconds (what a graph of each kind costs).
Then the ratio of confirmed root causes (feedback / baseline) and, for the feedback run, its
new features over the window (every family) against Python coverage's alone, read two ways: its
own coverage family, and the --no-feedback run's coverage over the same window.
Bad input (a missing or damaged directory): one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from corpus import open_campaign_store  # noqa: E402
from covfuzz import jsondata, workdir  # noqa: E402
from covfuzz.errors import CovfuzzError, one_line  # noqa: E402
from covfuzz.features import FEEDBACK_FAMILIES, family_codes  # noqa: E402
from covfuzz.triage import failures as F  # noqa: E402

MAX_LOG_BYTES = 4 << 30  # scheduler.jsonl read at most this far
MAX_LINE = 1 << 16  # a longer line is not one covfuzz wrote: skipped
# Mutators that change values or element counts rather than structure (mutators/values.py and
# mutators/params.py's mutate_values).
VALUE_MUTATORS = ("value_magnitudes", "value_specials", "simd_counts", "mutate_values")
ORIGINS = ("generate", "generate+settings", "settings", "mutate", "mutate:values", "climb",
           "sweep", "seed-file", "unknown")


class TableError(CovfuzzError):
    pass


# ----------------------------------------------------------------------------- origins


def read_scheduler_log(directory: str, wanted: set[str]) -> tuple[dict[str, dict], dict]:
    """The first scheduler.jsonl record of each case id in `wanted`, and per origin kind
    (ORIGINS) the executions logged and their seconds (bounded, validated)."""
    path = workdir.scheduler_log_path(directory)
    out: dict[str, dict] = {}
    costs = {kind: {"execs": 0, "seconds": 0.0} for kind in ORIGINS}
    if not os.path.isfile(path) or os.path.islink(path):
        return out, costs
    read = 0
    with open(path, "rb") as handle:
        for raw in handle:
            read += len(raw)
            if read > MAX_LOG_BYTES:
                break
            if len(raw) > MAX_LINE:
                continue
            try:
                rec = jsondata.loads(raw, "scheduler.jsonl line", ValueError, max_bytes=MAX_LINE)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            cost = costs[origin_kind(rec)]
            cost["execs"] += 1
            seconds = rec.get("seconds")
            if isinstance(seconds, (int, float)) and 0 <= seconds < 1e6:
                cost["seconds"] += float(seconds)
            cid = rec.get("id")
            if isinstance(cid, str) and cid in wanted and cid not in out:
                out[cid] = rec
    return out, costs


def origin_kind(rec: dict | None) -> str:
    """Which move made a case (ORIGINS), from its scheduler.jsonl record."""
    if not isinstance(rec, dict):
        return "unknown"
    names = rec.get("mutators")
    names = [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
    strategy = rec.get("strategy")
    if "seed-file" in names:
        return "seed-file"
    if "generate" in names:
        return "generate+settings" if "mutate_settings" in names else "generate"
    if strategy == "climb":  # a value mutant of a case that came closer to a mismatch
        return "climb"
    if strategy == "sweep":  # a value variant run on its parent's compiled program
        return "sweep"
    if strategy == "settings" or names == ["mutate_settings"]:
        return "settings"
    if names:
        return "mutate:values" if any(n in VALUE_MUTATORS for n in names) else "mutate"
    return "unknown"


# ----------------------------------------------------------------------------- families


def _families_from_stats(series: list[tuple[float, dict]]) -> list[tuple[float, dict]]:
    """(t, {family: features}) from stats records that hold per-family counts."""
    out = []
    for t, rec in series:
        fams = rec.get("families")
        if isinstance(fams, dict) and all(isinstance(fams.get(f, 0), int) for f in FEEDBACK_FAMILIES):
            out.append((t, {f: int(fams.get(f, 0)) for f in FEEDBACK_FAMILIES}))
    return out


def _families_from_seeds(store) -> list[tuple[float, dict]]:
    """(found_at, cumulative {family: features}) after each stored seed, in the order found."""
    seeds = []
    for _, meta, feats in store.iter_seeds(with_features=True):
        t = meta.get("found_at")
        if isinstance(t, (int, float)):
            seeds.append((float(t), np.asarray(feats, dtype=np.uint64)))
    seeds.sort(key=lambda pair: pair[0])
    seen: set[int] = set()
    totals = dict.fromkeys(FEEDBACK_FAMILIES, 0)
    out = []
    for t, feats in seeds:
        new = np.array([f for f in feats.tolist() if f not in seen], dtype=np.uint64)
        seen.update(new.tolist())
        codes = family_codes(new)
        for k, name in enumerate(FEEDBACK_FAMILIES):
            totals[name] += int((codes == k).sum())
        out.append((t, dict(totals)))
    return out


def _at(timeline: list[tuple[float, dict]], t: float) -> dict:
    """The counts of the last point at or before `t` (zeros before the first)."""
    best = dict.fromkeys(FEEDBACK_FAMILIES, 0)
    for when, counts in timeline:
        if when > t:
            break
        best = counts
    return best


# ----------------------------------------------------------------------------- one campaign


def campaign_table(directory: str, window_s: float) -> dict:
    """What the table shows for one campaign directory."""
    try:
        store = open_campaign_store(directory)
    except CovfuzzError as exc:
        raise TableError(one_line(exc)) from None
    try:
        info = store.get_info() or {}
        rows = F.buckets(store, directory)
        series = store.stats_series()
        timeline = _families_from_stats(series)
        source = "stats series"
        if not timeline:
            timeline, source = _families_from_seeds(store), "stored seeds"
    finally:
        store.close()
    causes = F.root_causes(rows)
    confirmed = [c for c in causes if c["state"] == "confirmed"]
    by_sig = {r["signature_id"]: r for r in rows}
    first_examples = {}
    for cause in confirmed:
        members = [by_sig[s] for s in cause["buckets"] if s in by_sig]
        earliest = min(members, key=lambda r: r["first_seen"] or float("inf"))
        first_examples[cause["root_id"]] = earliest["example_id"]
    origins, costs = read_scheduler_log(directory, {e for e in first_examples.values() if e})
    found_by = dict.fromkeys(ORIGINS, 0)
    for root_id, example in first_examples.items():
        found_by[origin_kind(origins.get(example))] += 1
    known = sum(v for k, v in found_by.items() if k not in ("unknown", "seed-file"))
    # Issue 19's "mutation, settings or value move": everything but a fresh graph as drawn.
    moved = sum(found_by[k] for k in ("generate+settings", "settings", "mutate", "mutate:values",
                                      "climb", "sweep"))
    last = series[-1][1] if series else {}
    end = series[-1][0] if series else (timeline[-1][0] if timeline else 0.0)
    at_end, before = _at(timeline, end), _at(timeline, end - window_s)
    new = {f: at_end[f] - before[f] for f in FEEDBACK_FAMILIES}
    return {"dir": directory, "mode": info.get("mode"), "execs": last.get("execs"),
            "elapsed_s": last.get("elapsed"), "confirmed_root_causes": len(confirmed),
            "root_causes": len(causes), "buckets": len(rows),
            "families_source": source, "features": at_end,
            "new_in_window": new,
            "new_per_hour": {f: round(v * 3600.0 / window_s, 1) for f, v in new.items()},
            "found_by": found_by,
            "executed_by": {k: c["execs"] for k, c in costs.items()},
            "seconds_per_exec": {k: round(c["seconds"] / c["execs"], 2) if c["execs"] else None
                                 for k, c in costs.items()},
            "moved_share": round(moved / known, 3) if known else None}


# ----------------------------------------------------------------------------- printing


def _fmt(v) -> str:
    return "-" if v is None else str(v)


def _runs(row: dict, origin: str) -> str:
    """'N @ S' for `origin`'s executions and seconds each, or '-'."""
    n = row["executed_by"][origin]
    return f"{n} @ {row['seconds_per_exec'][origin]}" if n else "-"


def print_table(fb: dict, base: dict, window_min: float) -> None:
    width = 40
    print(f"{'':{width}} {'feedback':>12} {'no-feedback':>12}")
    for key, label in (("execs", "executions"), ("elapsed_s", "elapsed (s)"),
                       ("buckets", "failure buckets"), ("root_causes", "root causes (reported)"),
                       ("confirmed_root_causes", "root causes (confirmed)")):
        print(f"{label:{width}} {_fmt(fb[key]):>12} {_fmt(base[key]):>12}")
    ratio = (fb["confirmed_root_causes"] / base["confirmed_root_causes"]
             if base["confirmed_root_causes"] else None)
    print(f"{'confirmed root causes, ratio':{width}} "
          f"{(f'x{ratio:.2f}' if ratio is not None else '- (baseline 0)'):>12}")
    for fam in FEEDBACK_FAMILIES:
        print(f"{'features: ' + fam:{width}} {fb['features'][fam]:>12} {base['features'][fam]:>12}")
    for fam in FEEDBACK_FAMILIES:
        label = f"new/h in last {window_min:g} min: {fam}"
        print(f"{label:{width}} {fb['new_per_hour'][fam]:>12} {base['new_per_hour'][fam]:>12}")
    for origin in ORIGINS:
        print(f"{'first found by: ' + origin:{width}} {fb['found_by'][origin]:>12} "
              f"{base['found_by'][origin]:>12}")
    for origin in ORIGINS:
        if fb["executed_by"][origin] or base["executed_by"][origin]:
            print(f"{'executions, s each: ' + origin:{width}} "
                  f"{_runs(fb, origin):>12} {_runs(base, origin):>12}")
    print(f"{'share found by a move':{width}} {_fmt(fb['moved_share']):>12} "
          f"{_fmt(base['moved_share']):>12}")
    cov = fb["new_in_window"]["coverage"]
    total = sum(fb["new_in_window"].values())
    print(f"feedback run, last {window_min:g} min: {total} new features in every family against "
          f"{cov} from its own Python coverage"
          + (f" (x{total / cov:.1f})" if cov else ""))
    # The other reading of "what Python coverage alone gives": the baseline campaign, whose only
    # measure is Python coverage, over the same window of its own run.
    base_cov = base["new_in_window"]["coverage"]
    print(f"feedback run, last {window_min:g} min: {total} new features in every family against "
          f"{base_cov} from the --no-feedback run's Python coverage"
          + (f" (x{total / base_cov:.1f})" if base_cov else ""))
    print(f"(families from: feedback {fb['families_source']}, baseline {base['families_source']})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("feedback_dir", help="the campaign run with feedback (every family)")
    ap.add_argument("baseline_dir", help="the campaign run with --no-feedback")
    ap.add_argument("--window", type=float, default=30.0,
                    help="minutes at the end over which new-feature rates are taken (default 30)")
    ap.add_argument("--json", action="store_true", help="print both tables as JSON")
    args = ap.parse_args(argv)
    if not args.window > 0:
        print("error: --window must be positive", file=sys.stderr)
        return 2
    try:
        fb = campaign_table(args.feedback_dir, args.window * 60.0)
        base = campaign_table(args.baseline_dir, args.window * 60.0)
    except CovfuzzError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"feedback": fb, "baseline": base, "window_min": args.window}, indent=1))
    else:
        print_table(fb, base, args.window)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
