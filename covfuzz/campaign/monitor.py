"""The monitor: what a campaign tells the outside world (AFL++'s fuzzer_stats and plot_data).

- `scheduler.jsonl`: one JSON object per executed candidate (what the bandits learned from);
- `fuzzer_stats.json`: the latest status, rewritten atomically at every tick (`covfuzz status`
  reads it while the campaign runs), and a stats record in the store (`covfuzz plot`). It holds
  all the morning view needs, so `covfuzz status` never opens the store: this run's start and
  budget (time left), the workers still warming up, the restart reasons, one row per failure
  bucket (culprit, failing check or divergence, reduced or not, first seen) and a coarse
  history of the counters (`covfuzz status --since`);
- a status line on stderr at every tick; each new failure's log line is followed by the
  command that reproduces it;
- where worker time goes (`fuzzer_stats.json`'s `time_split`): the executions' stages
  (harness.result.stage_split) summed, the triage steps, and the slots' idle time
  (`SlotClock`), against the worker slots' time; the closing log line shows it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

from covfuzz import workdir
from covfuzz.campaign.execution import Execution
from covfuzz.campaign.feedbacks import family_counts
from covfuzz.campaign.state import CampaignState
from covfuzz.errors import CovfuzzError
from covfuzz.status import (MAX_BUCKET_ROWS, MAX_HISTORY, MAX_ROW_TEXT, RESTART_REASONS,
                            read_status, repro_command, status_line, time_line, triage_line)
from covfuzz.triage.failures import bucket_id, bucket_signature, triage_record, triage_summary
from covfuzz.triage.signature import check_of
from harness.result import STAGES
from harness.worker import rss_bytes

HISTORY_INTERVAL = 300.0  # seconds between history snapshots (for `covfuzz status --since`)
# The failure objective's log line; the monitor adds the command that reproduces the bucket.
NEW_FAILURE = re.compile(r"^\[new failure\] \S+ ([0-9a-f]{12})\b")
TRIAGE_STEPS = ("confirm", "localize", "reduce")  # covfuzz.triage.pipeline's timed steps
STATS_KEYS = ("elapsed", "execs", "corpus", "features", "lines", "unique_failures",
              "failures_by_kind", "validity", "worker_restarts", "execs_per_s", "supervisor_rss_mb",
              "families")


def write_json_atomic(path: str, obj: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as handle:
        json.dump(obj, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _first_line(text: str) -> str:
    return (text or "").strip().split("\n", 1)[0][:MAX_ROW_TEXT]


def _check_text(check: dict) -> str:
    """A crash's failing check in one line: the source line that raised, and where."""
    if not check:
        return ""
    text = check.get("source") or check.get("root_message") or ""
    if check.get("where"):
        text += f" ({check['where']})"
    return _first_line(text)


def _signature_check(sig: str) -> str:
    """A crash signature's failing check (`kind|type|message|source|frames`), for buckets
    recorded before the check was kept beside it."""
    parts = sig.split("|")
    if len(parts) < 5 or not parts[3]:
        return ""
    frame = parts[4].split(",")[0]
    return _first_line(f"{parts[1]}: {parts[3]}" + (f" ({frame})" if frame else ""))


def _triaged_at(rec: dict) -> float | None:
    raw = ((rec.get("extra") or {}).get("triage") or {}).get("triaged_at")
    ok = isinstance(raw, (int, float)) and not isinstance(raw, bool) and 0 <= raw < 1e11
    return float(raw) if ok else None


def bucket_rows(failures: list[dict]) -> list[dict]:
    """The morning view's row of each bucket (the newest MAX_BUCKET_ROWS by first seen): kind,
    triage state, culprit op, the failing check of a crash or the divergence of a mismatch,
    reduced size, first/last seen. Stored records are untrusted: texts are cut to one line."""
    rows = []
    for rec in failures:
        t = triage_record(rec) or {}
        kind = str(rec.get("kind") or "")[:200]
        rows.append({
            "id": bucket_id(rec), "kind": kind, "count": int(rec.get("count") or 0),
            "first_seen": rec.get("first_seen"), "last_seen": rec.get("last_seen"),
            "state": t.get("state", "untriaged"), "root_id": t.get("root_id"),
            "culprit": _first_line(t.get("culprit_op") or ""),
            "check": (_check_text(check_of({"details": rec.get("extra") or {}}))
                      or ("crash" in kind and _signature_check(bucket_signature(rec))) or ""),
            "divergence": "" if "crash" in kind else _first_line(rec.get("message") or ""),
            "label": (t.get("label") or None) and str(t["label"])[:200],
            "reduced_nodes": t.get("reduced_nodes"), "triaged_at": _triaged_at(rec)})
    rows.sort(key=lambda r: -(r["first_seen"] or 0))
    return rows[:MAX_BUCKET_ROWS]


def restart_reasons(outcomes: dict, restarts: int) -> dict:
    """Why workers were restarted, from the outcomes that kill a worker (timeouts, process
    crashes, memory kills); the rest are recycled workers (after `recycle_after` compiles or
    above `recycle_rss`), which the pool counts as restarts but reports no reason for."""
    reasons = {k: int(outcomes.get(k, 0)) for k in RESTART_REASONS if outcomes.get(k)}
    other = restarts - sum(reasons.values())
    if other > 0:
        reasons["recycled"] = other
    return reasons


class SlotClock:
    """Worker-slot time, integrated between the loop's turns into the counters' time split:
    "worker" (every slot's seconds) and "idle" (slots with no case in flight and not held by a
    stage: waiting for a candidate, or for the loop to handle a finished case). `tick(slots,
    idle)` closes the segment since the last tick and opens one with these counts."""

    def __init__(self, counters):
        self.counters = counters
        self.t = time.monotonic()
        self.slots = self.idle = 0

    def tick(self, slots: int, idle: int) -> None:
        now = time.monotonic()
        spent = now - self.t
        self.counters.add_time("worker", spent * self.slots)
        self.counters.add_time("idle", spent * self.idle)
        self.t, self.slots, self.idle = now, max(slots, 0), max(idle, 0)


def account_triage(counters, steps: dict, base: dict) -> None:
    """The triage steps' seconds (`steps`: every bucket's record, all runs) into the counters'
    time split, less `base` (what was recorded before the split was kept: `triage_base`)."""
    for step in TRIAGE_STEPS:
        counters.time_split[f"triage_{step}"] = max(0.0, steps.get(step, 0.0) - base.get(step, 0.0))


def triage_base(counters, steps: dict) -> dict:
    """Triage seconds already recorded in the buckets but not in the counters (a campaign made
    before the time split, or records written after a killed run's last status)."""
    return {step: max(0.0, steps.get(step, 0.0) - counters.time_split.get(f"triage_{step}", 0.0))
            for step in TRIAGE_STEPS}


def time_split(counters) -> dict:
    """The status file's `time_split`: worker slot-seconds, the executions summed, and seconds
    by stage (every key of STAGES, the triage steps and idle)."""
    split = counters.time_split
    keys = (*STAGES, *(f"triage_{step}" for step in TRIAGE_STEPS), "idle")
    return {"worker_seconds": round(split.get("worker", 0.0), 3), "execs": counters.timed_execs,
            "stages": {k: round(split.get(k, 0.0), 3) for k in keys}}


def _round_or_none(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _thin(history: list[dict]) -> list[dict]:
    """Half the snapshots (every other one, the newest kept) once the history is full."""
    if len(history) < MAX_HISTORY:
        return history
    return history[-1::-2][::-1]


class Monitor:
    def __init__(self, campaign):
        self.campaign = campaign  # read-only here: the monitor reports, it decides nothing
        self.quiet = campaign.opts.quiet
        # This run's starting point (the counters a resume starts from): time left and
        # executions left are measured from it.
        try:
            base = CampaignState.from_info(campaign.store.get_info() or {}).counters
            self.base_elapsed, self.base_execs = base.elapsed, base.execs
        except CovfuzzError:  # the campaign itself reports a bad state record
            self.base_elapsed, self.base_execs = 0.0, 0
        self.run_execs = 0  # executions finished in this run (0: workers still warming up)
        self.history = self._previous_history()
        self.triage_base: dict | None = None  # set at the first status (it reads the buckets)

    def _previous_history(self) -> list[dict]:
        """The history snapshots of the last run's status file (a resume keeps them)."""
        try:
            return list(read_status(self.campaign.dir).get("history") or [])
        except CovfuzzError:
            return []

    def log(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)
            match = NEW_FAILURE.match(text)
            if match:
                print(f"  reproduce: {repro_command(self.campaign.dir, match.group(1))}",
                      file=sys.stderr, flush=True)

    def executed(self, ex: Execution) -> None:
        """One line of scheduler.jsonl."""
        self.run_execs += 1
        origin = ex.origin
        record = {"t": round(time.time(), 3), "id": ex.case_id, "parent": origin.get("parent"),
                  "energy": origin.get("energy"), "strategy": origin.get("strategy"),
                  "mutators": origin["mutators"], "settings": origin.get("settings"),
                  "outcome": ex.outcome, "new_features": ex.gain if ex.kept else 0, "won": ex.won,
                  "seconds": round(ex.seconds, 3)}
        if ex.novelty:  # new features per family: which strategy pays in which family
            record["novelty"] = {k: int(v) for k, v in ex.novelty.items() if v}
        if origin.get("fault"):
            record["fault"] = origin["fault"]
        if ex.case is not None and ex.case.settings.metamorphic:
            record["metamorphic"] = ex.case.settings.metamorphic
        record["stages"] = {k: round(v, 3) for k, v in ex.result.stages().items() if v >= 5e-4}
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
        triage = triage_summary(failures)
        steps = triage.get("seconds_by_step") or {}
        if self.triage_base is None:
            self.triage_base = triage_base(counters, steps)
        account_triage(counters, steps, self.triage_base)
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
            "strategies": c.candidates.strategy_table(),
            # Issue 20's cost-aware sweeps: the next sweep's steps, and what its steps earn in
            # new features per second over what chosen candidates earn (None until both ran a
            # few times).
            "sweep_steps": None if c.opts.no_feedback else c.candidates.sweep_length(),
            "sweep_pay": _round_or_none(c.candidates.sweep_pay_ratio()),
            "settings_moves": dict(sorted(c.candidates.setting_moves.table().items(),
                                          key=lambda kv: -kv[1]["rate"])[:10]),
            "triage": triage,
            # Features seen per feedback family (coverage, gencode, values, divergence).
            "families": family_counts(c.feedbacks),
            "time_split": time_split(counters),
        }
        run_seconds = max(elapsed - self.base_elapsed, 0.0)
        status.update({
            "run_started": round(time.time() - run_seconds, 3), "hours": c.opts.hours,
            "execs_budget": c.opts.execs, "run_execs": counters.execs - self.base_execs,
            # No case finished in this run yet: the workers are importing torch and compiling
            # their warm-up case (30-90 s), not stuck.
            "warming": c.opts.workers if running and self.run_execs == 0 else None,
            "restart_reasons": restart_reasons(counters.outcomes, counters.restarts),
            "buckets": bucket_rows(failures),
            "history": self._history(status),
        })
        # A Ray pool's per-node stats ("nodes") and case accounting ("pool"); cases lost with a node.
        status.update(c.pool_status, lost=c.lost_cases)
        for stage in c.stages:
            status.update(stage.status())
        if "triage_worker_seconds" in status and elapsed > 0:
            status["triage"]["worker_share"] = round(
                status["triage_worker_seconds"] / (elapsed * max(c.opts.workers, 1)), 4)
        return status

    def _history(self, status: dict) -> list[dict]:
        """The history with a snapshot of `status` added when the last is HISTORY_INTERVAL old."""
        now = status["updated"]
        if not self.history or now - self.history[-1]["t"] >= HISTORY_INTERVAL:
            self.history = _thin(self.history + [{
                "t": round(now, 3), "elapsed": status["elapsed"], "execs": status["execs"],
                "corpus": status["corpus"], "features": status["features"],
                "lines": status["lines"], "unique_failures": status["unique_failures"]}])
        return self.history

    def report(self, running: bool = True) -> dict:
        """A status tick: the stats record, fuzzer_stats.json and the status line."""
        status = self.status(running)
        self.campaign.store.append_stats({k: status[k] for k in STATS_KEYS})
        write_json_atomic(workdir.stats_path(self.campaign.dir), status)
        self.log(status_line(status))
        if status.get("triage_queue"):
            self.log(triage_line(status))
        if not running and time_line(status):
            self.log(time_line(status))
        return status
