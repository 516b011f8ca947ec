"""The monitor: what a campaign tells the outside world (AFL++'s fuzzer_stats and plot_data).

- `scheduler.jsonl`: one JSON object per executed candidate (what the bandits learned from);
- `fuzzer_stats.json`: the latest status, rewritten atomically at every tick (`covfuzz status`
  reads it while the campaign runs), and a stats record in the store (`covfuzz plot`);
- a status line on stderr at every tick.
"""

from __future__ import annotations

import json
import os
import sys
import time

from covfuzz import workdir
from covfuzz.campaign.execution import Execution
from covfuzz.status import status_line, triage_line
from covfuzz.triage.failures import triage_summary
from harness.worker import rss_bytes

STATS_KEYS = ("elapsed", "execs", "corpus", "features", "lines", "unique_failures",
              "failures_by_kind", "validity", "worker_restarts", "execs_per_s", "supervisor_rss_mb")


def write_json_atomic(path: str, obj: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as handle:
        json.dump(obj, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


class Monitor:
    def __init__(self, campaign):
        self.campaign = campaign  # read-only here: the monitor reports, it decides nothing
        self.quiet = campaign.opts.quiet

    def log(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def executed(self, ex: Execution) -> None:
        """One line of scheduler.jsonl."""
        origin = ex.origin
        record = {"t": round(time.time(), 3), "id": ex.case_id, "parent": origin.get("parent"),
                  "energy": origin.get("energy"), "strategy": origin.get("strategy"),
                  "mutators": origin["mutators"], "settings": origin.get("settings"),
                  "outcome": ex.outcome, "new_features": ex.gain if ex.kept else 0, "won": ex.won,
                  "seconds": round(ex.seconds, 3)}
        if origin.get("fault"):
            record["fault"] = origin["fault"]
        with open(workdir.scheduler_log_path(self.campaign.dir), "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def status(self, running: bool) -> dict:
        c = self.campaign
        counters, elapsed = c.counters, c.counters.elapsed
        failures = c.store.failures()
        by_kind: dict[str, int] = {}
        for row in failures:
            by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + 1
        proposals = max(counters.proposals, 1)
        status = {
            "dir": c.dir, "pid": os.getpid(), "mode": c.opts.mode, "updated": time.time(),
            "elapsed": round(elapsed, 1), "execs": counters.execs,
            "execs_per_s": round(counters.execs / elapsed, 3) if elapsed > 0 else 0.0,
            "corpus": len(c.seeds), "features": c.coverage.arcs, "lines": c.coverage.lines,
            "unique_failures": len(failures), "failures_by_kind": by_kind,
            "last_new_feature": counters.last_new_feature,
            "last_new_failure": counters.last_new_failure,
            # Mutants that passed the validity check (None: nothing was mutated, e.g. no-feedback).
            "validity": round(counters.valid / proposals, 4) if counters.proposals else None,
            "ran_eagerly": round(counters.ran / max(counters.execs, 1), 4),
            "worker_restarts": counters.restarts, "workers": c.opts.workers,
            "supervisor_rss_mb": round(rss_bytes() / 2**20, 1),
            "device": c.opts.device, "outcomes": counters.outcomes,
            "mutators": counters.by_mutator, "running": running,
            "strategies": c.candidates.strategies.table(),
            "settings_moves": dict(sorted(c.candidates.setting_moves.table().items(),
                                          key=lambda kv: -kv[1]["rate"])[:10]),
            "triage": triage_summary(failures),
        }
        for stage in c.stages:
            status.update(stage.status())
        if "triage_worker_seconds" in status and elapsed > 0:
            status["triage"]["worker_share"] = round(
                status["triage_worker_seconds"] / (elapsed * max(c.opts.workers, 1)), 4)
        return status

    def report(self, running: bool = True) -> dict:
        """A status tick: the stats record, fuzzer_stats.json and the status line."""
        status = self.status(running)
        self.campaign.store.append_stats({k: status[k] for k in STATS_KEYS})
        write_json_atomic(workdir.stats_path(self.campaign.dir), status)
        self.log(status_line(status))
        if status.get("triage_queue"):
            self.log(triage_line(status))
        return status
