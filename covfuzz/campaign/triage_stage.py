"""The triage stage: every new bucket confirmed, localized and reduced while the campaign runs.

A new failure bucket is queued; one background thread triages the queue one bucket at a time
(covfuzz/triage/pipeline.py: a fresh worker process confirms it, then localizes and reduces it,
each step bounded in time). The campaign lends the stage one of its worker slots while a bucket
is being triaged (`slots()`), so the machine is not oversubscribed: with one worker, fuzzing
pauses meanwhile. Only the main thread touches the store: the thread hands each outcome back
through a queue and `poll()` records it (the bucket's `extra["triage"]`, the reduced case in
DIR/reduced/). A bucket without a recorded triage is queued again when the campaign resumes, so
an interruption loses nothing. At the end of the run's budget the campaign lets the queue drain
(`pending()`), up to the options' `drain_limit` seconds, so buckets are triaged before it ends.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque

from covfuzz import serialize, workdir
from covfuzz.campaign.execution import Execution
from covfuzz.campaign.objectives import record_failure
from covfuzz.campaign.stages import Stage
from covfuzz.errors import CovfuzzError
from covfuzz.triage import failures as failure_files
from covfuzz.triage.pipeline import TRIAGE_VERSION, Budgets, triage_failure

TRIAGE_KEY = "triage"  # the key of a bucket's extra that holds its triage record


def _needs_triage(rec: dict) -> bool:
    record = failure_files.triage_record(rec)
    return record is None or record.get("version", 1) < TRIAGE_VERSION


class TriageStage(Stage):
    def __init__(self, directory: str, budgets: Budgets | None = None):
        self.dir = directory
        self.budgets = budgets or Budgets()
        self.todo: deque = deque()  # (bucket id, case bytes, result dict)
        self.done: queue.Queue = queue.Queue()
        self.thread: threading.Thread | None = None
        self.current: str | None = None
        self.started_at = 0.0
        self.worker_seconds = 0.0  # time the stage held a worker slot (this run)
        self.counts = {"triaged": 0, "errors": 0}

    # ------------------------------------------------------------------ the Stage interface
    def resume(self, campaign) -> None:
        """Queue every bucket that has no triage record yet, or one written by an older
        triage (TRIAGE_VERSION): new ones first."""
        rows = [r for r in campaign.store.failures() if _needs_triage(r)]
        rows.sort(key=lambda r: -(r.get("first_seen") or 0))
        for rec in rows:
            self._queue_bucket(campaign.store, rec)

    def process(self, ex: Execution, campaign) -> None:
        if ex.new_bucket and ex.bucket:
            self.todo.append((ex.bucket, ex.data, ex.result.to_dict()))

    def slots(self) -> int:
        return 1 if self.current is not None else 0

    def pending(self) -> int:
        return len(self.todo) + (1 if self.current is not None else 0)

    def poll(self, campaign) -> None:
        """Record finished triages; start the next one when idle."""
        while True:
            try:
                bucket, outcome, error, data = self.done.get_nowait()
            except queue.Empty:
                break
            self.worker_seconds += time.monotonic() - self.started_at
            self.current = None
            self._record(campaign, bucket, outcome, error)
            if outcome is not None and outcome.fresh_failure is not None:
                self._record_fresh_failure(campaign, bucket, data, outcome.fresh_failure)
        if self.current is None and self.todo:
            bucket, data, result = self.todo.popleft()
            self.current, self.started_at = bucket, time.monotonic()
            self.thread = threading.Thread(target=self._work, args=(bucket, data, result),
                                           name="covfuzz-triage", daemon=True)
            self.thread.start()

    def status(self) -> dict:
        busy = time.monotonic() - self.started_at if self.current is not None else 0.0
        return {"triage_queue": self.pending(), "triage_current": self.current,
                "triage_worker_seconds": round(self.worker_seconds + busy, 1)}

    def close(self) -> None:
        """Abandon the triage in flight (daemon thread; its worker dies with this process);
        its bucket has no triage record, so a resume queues it again."""
        self.todo.clear()

    # ------------------------------------------------------------------ background thread
    def _work(self, bucket: str, data: bytes, result: dict) -> None:
        try:
            case = serialize.decode(data)
            outcome = triage_failure(case, result, cache_dir=workdir.inductor_cache(self.dir),
                                     budgets=self.budgets)
            self.done.put((bucket, outcome, None, data))
        except Exception as exc:  # noqa: BLE001 - recorded on the bucket, the campaign goes on
            self.done.put((bucket, None, f"{type(exc).__name__}: {exc}"[:300], data))

    # ------------------------------------------------------------------ main thread
    def _queue_bucket(self, store, rec: dict) -> None:
        bid = failure_files.bucket_id(rec)
        for eid in rec.get("example_ids") or []:
            try:
                ex = store.get_example(eid)
            except CovfuzzError:
                continue
            if ex is not None:
                self.todo.append((bid, ex["case_bytes"], ex["result"]))
                return

    def _record_fresh_failure(self, campaign, bucket: str, data: bytes, result) -> None:
        """The fresh process failed, but not as the bucket did: that failure is a finding of
        its own (a timeout on a loaded worker can hide a mismatch), bucketed and triaged."""
        case = serialize.decode(data)
        new_id, sig, new = record_failure(campaign.store, case, serialize.case_id(case), data,
                                          result)
        if new:
            campaign.log(f"[new failure] {result.outcome} {new_id} {sig[:150]} (seen when "
                         f"confirming {bucket} in a fresh process)")
            self.todo.append((new_id, data, result.to_dict()))

    def _record(self, campaign, bucket: str, outcome, error: str | None) -> None:
        if outcome is None:
            self.counts["errors"] += 1
            campaign.store.update_failure_extra(bucket, {TRIAGE_KEY: {
                "state": "error", "error": error, "triaged_at": time.time(),
                "version": TRIAGE_VERSION}})
            campaign.log(f"[triage] {bucket}: failed: {error}")
            return
        self.counts["triaged"] += 1
        record = outcome.record()
        if outcome.reduced is not None:
            meta = dict(outcome.reduction or {}, signature_id=bucket, root=outcome.root,
                        root_id=outcome.root_id)
            failure_files.write_reduced(campaign.dir, bucket, outcome.reduced, meta)
        campaign.store.update_failure_extra(bucket, {TRIAGE_KEY: record})
        if outcome.state == "confirmed" and outcome.root_id:  # a new root pays its strategy
            who = campaign.candidates.credit_root(bucket, outcome.root_id)
            if who:
                campaign.log(f"[triage] {bucket}: new root {outcome.root_id}, credited to {who}")
        text = {"confirmed": f"root {outcome.root_id}", "flaky": "flaky (did not reproduce in "
                f"a fresh process: {record['fresh_outcome']})", "gone": "no longer fails",
                "not_a_bug": f"not a bug: {record['label']}"}.get(outcome.state, outcome.state)
        size = (f", reduced to {record['reduced_nodes']} node(s)"
                if record.get("reduced_nodes") is not None else "")
        spent = sum(record["seconds"].values())
        campaign.log(f"[triage] {bucket}: {text}{size} ({spent:.0f} s)")
