"""The campaign: the fuzzing loop, composed of components (LibAFL's shape).

    CandidateMaker --candidate--> ExecuteStage (worker pool) --execution-->
        feedbacks (is it new?) -> objectives (which failure bucket?) -> SeedCorpus (keep it?)
        -> CandidateMaker.learn (bandits, traits) -> Monitor (log) -> state saved -> stages

Only the main thread touches the store and the components; the pool's threads only wait on
their workers. The whole state a resume needs (`CampaignState`: counters, RNG, times chosen,
bandits) is saved in the store's info after every execution, and the trait table at status
ticks, so a restart, even after SIGKILL, resumes where the last execution left it (the trait
table where the last tick left it). The directory's layout is in `covfuzz/workdir.py`.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import os
import random
import signal
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from corpus import CorpusStore
from covfuzz import __version__, lock, workdir
from covfuzz.campaign.candidates import CandidateMaker, sweep_goes_on
from covfuzz.campaign.execution import Candidate, Execution
from covfuzz.campaign.feedbacks import Feedback, make_feedbacks
from covfuzz.campaign.monitor import Monitor, SlotClock
from covfuzz.campaign.objectives import FailureObjective, Objective
from covfuzz.campaign.options import CampaignOptions
from covfuzz.campaign.seeds import SeedCorpus
from covfuzz.campaign.stages import ExecuteStage, Stage
from covfuzz.campaign.state import V1_KEYS, CampaignState, restore_rng, rng_state
from covfuzz.features import FAMILY_ENV, sorted_unique
from covfuzz.scheduler import Scheduler
from harness.pool import LocalPool, WorkerPool, WorkerSpec
from harness.ray_pool import CaseLost, RayPool

FAULT_MEMORY_LIMIT_MB = 4096  # injected memory blow-ups need a limit to be caught at
TRAITS_RECORD = "traits"  # the info record that holds the trait table
TRAITS_SAVE_INTERVAL = 60.0  # seconds between saves of the trait table (it can be megabytes)


@dataclass
class Budget:
    """When this run stops: a deadline, a number of executions, or a stop request."""

    deadline: float | None
    execs: int | None
    executed: int = 0

    def allows(self, in_flight: int) -> bool:
        if self.execs is not None and self.executed + in_flight >= self.execs:
            return False
        return self.deadline is None or time.time() < self.deadline


def _groups_in(in_flight: dict) -> int:
    """Worker slots the cases in flight hold: one per group (a candidate and its sweep)."""
    return len({group for _, group, _ in in_flight.values()})


class Campaign:
    def __init__(self, directory: str, opts: CampaignOptions, stages: list[Stage] = ()):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.opts = opts
        self._lock_handle = lock.acquire(self.dir)
        store_args = {"map_size": opts.map_size} if opts.map_size else {}
        self.store = CorpusStore(workdir.corpus_path(self.dir), **store_args)
        self.monitor = Monitor(self)
        info = self.store.get_info() or {}
        state = CampaignState.from_info(info, self.store.get_info_record(TRAITS_RECORD))
        self.counters = state.counters
        self.rng = random.Random(opts.rng_seed)
        if state.rng is not None:
            restore_rng(self.rng, state.rng)
        self.scheduler = Scheduler(self.rng)
        self.scheduler.load_state(state.mutator_stats)
        # Coverage first (the status counts its features), then the issue-19 families the
        # options name; the workers compute those (FAMILY_ENV, see `_pool`).
        self.feedbacks: list[Feedback] = make_feedbacks(opts.families)
        self.coverage = self.feedbacks[0]
        self.objectives: list[Objective] = [FailureObjective(self.store, self.monitor.log)]
        self.stages: list[Stage] = list(stages)
        self.lost_cases = 0  # this run's cases lost with a Ray node (after their re-queue)
        self.pool_status: dict = {}  # a remote pool's own report (per-node stats)
        self.seeds = SeedCorpus(self.store, self.scheduler, self.feedbacks)
        self.candidates = CandidateMaker(opts, self.rng, self.seeds, self.counters)
        self.candidates.load(state)
        self.stop_requested = False
        self._traits_saved = 0.0
        if not info:
            self.counters.next_gen_seed = opts.rng_seed * 1_000_000
            self.store.set_info({"covfuzz": __version__, "torch": torch.__version__,
                                 "created": time.time(), "mode": opts.mode,
                                 "settings": {"device": opts.device, "workers": opts.workers}})
            self.save_state()
        elif info.get("torch") != torch.__version__:
            self.log(f"note: corpus was made with torch {info.get('torch')}, running "
                     f"{torch.__version__}; `covfuzz cmin --rerun` re-measures features")
        self.seeds.load(state.times_chosen)
        self._load_divergence()

    @property
    def mode(self) -> str:
        return self.opts.mode

    def _load_divergence(self) -> None:
        """Resume: each stored seed's best divergence bucket (its metadata) to the scheduler."""
        if "divergence" not in self.opts.families:
            return
        for seed_id, meta in self.store.iter_seeds():
            bucket = meta.get("divergence")
            if isinstance(bucket, int) and not isinstance(bucket, bool) and bucket > 0:
                self.scheduler.set_divergence(seed_id, bucket)

    def log(self, text: str) -> None:
        self.monitor.log(text)

    # ----------------------------------------------------------------------------- state
    def state(self) -> CampaignState:
        state = CampaignState(counters=self.counters, rng=rng_state(self.rng),
                              times_chosen=self.seeds.times_chosen(),
                              mutator_stats=self.scheduler.state())
        self.candidates.save(state)
        return state

    def save_state(self, with_traits: bool = True) -> None:
        """The state record; and the trait table when `with_traits` (a status tick, the end)."""
        state = self.state()
        self.store.set_info({"state": state.to_record()}, remove=V1_KEYS)
        if with_traits:
            self.store.set_info_record(TRAITS_RECORD, state.traits)
            self._traits_saved = time.time()

    # ----------------------------------------------------------------------------- one execution
    def handle(self, ex: Execution) -> None:
        """Judge one execution, record what it found, learn from it, then run the stages."""
        self._count(ex)
        hits_before = self.seeds.count(ex)
        found = {feedback.name: feedback.judge(ex) for feedback in self.feedbacks}
        ex.novelty = {name: len(new) for name, new in found.items()}
        ex.new_features = sorted_unique(np.concatenate([np.zeros(0, np.uint64), *found.values()]))
        for objective in self.objectives:
            if objective.judge(ex):
                break  # the first objective that claims a failure buckets it
        now = time.time()
        if ex.gain:
            self.seeds.add(ex, hits_before, found_at=now)
            if ex.origin.get("divergence"):
                self.scheduler.set_divergence(ex.case_id, ex.origin["divergence"])
            for feedback in self.feedbacks:
                feedback.commit(found[feedback.name])
            self.counters.last_new_feature = now
        else:
            self.seeds.defer_hits(ex)
        if ex.new_bucket:
            self.counters.last_new_failure = now
        self.candidates.learn(ex)
        if ex.won:
            for name in ex.credited_names():
                self.counters.count_mutator(name, "wins")
        self.monitor.executed(ex)
        self.save_state(with_traits=False)
        for stage in self.stages:
            stage.process(ex, self)

    def _count(self, ex: Execution) -> None:
        c = self.counters
        c.execs += 1
        c.add_execution_time(ex.result.stages())
        c.outcomes[ex.outcome] = c.outcomes.get(ex.outcome, 0) + 1
        ran = ex.outcome != "invalid"
        c.ran += int(ran)
        for name in ex.origin["mutators"]:
            c.count_mutator(name, "executed")
            if ran:
                c.count_mutator(name, "ran")

    def tick(self, running: bool = True) -> dict:
        """A status tick: hits flushed to the store, status reported, state saved (the trait
        table at most every TRAITS_SAVE_INTERVAL seconds while running, and at the end)."""
        self.seeds.flush_hits()
        status = self.monitor.report(running)
        self.save_state(with_traits=not running
                        or time.time() - self._traits_saved >= TRAITS_SAVE_INTERVAL)
        return status

    # ----------------------------------------------------------------------------- loop
    def _pool(self) -> WorkerPool:
        opts = self.opts
        memory_limit_mb = opts.memory_limit_mb or (FAULT_MEMORY_LIMIT_MB if opts.inject_faults else None)
        env = {"COVFUZZ_FAULT_INJECTION": "1"} if opts.inject_faults else {}
        families = [f for f in opts.families if f != "coverage"]
        if families:
            env[FAMILY_ENV] = ",".join(families)
        spec = WorkerSpec.for_campaign(
            device=opts.device, cache_dir=workdir.inductor_cache(self.dir), timeout=opts.timeout,
            memory_limit=memory_limit_mb * (1 << 20) if memory_limit_mb else None, env=env,
            reference=opts.reference)
        if opts.ray:
            return RayPool(spec, opts.ray, workers_per_node=opts.workers_per_node,
                           workers_per_gpu=opts.workers_per_gpu)
        return LocalPool(spec, opts.workers)

    def run(self, pool: WorkerPool | None = None) -> dict:
        """Fuzz until the budget or a stop; returns the final status. `pool`: the workers to
        run on (default: `LocalPool` of `opts.workers`); the campaign closes it."""
        opts = self.opts
        started, base_elapsed = time.time(), self.counters.elapsed
        budget = Budget(started + opts.hours * 3600 if opts.hours else None, opts.execs)
        executor = ExecuteStage(pool or self._pool())
        for stage in self.stages:
            stage.resume(self)
        self.counters.restarts_before = self.counters.restarts
        queue = deque(self.candidates.initial() if not len(self.seeds) else [])
        old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self.slot_clock = SlotClock(self.counters)  # worker slots' time, and their idle time
        self.log(f"covfuzz fuzz: {self.dir} ({self.mode}, {opts.workers} worker(s), {opts.device}); "
                 f"corpus {len(self.seeds)} seeds, {self.coverage.arcs} features")
        try:
            self._loop(executor, queue, budget, started, base_elapsed)
        finally:
            self.slot_clock.tick(0, 0)  # the slots' time ends with the loop (not the close)
            # The pool closes first, while a second SIGINT/SIGTERM still only interrupts the
            # wait: the final status below must be written either way.
            try:
                executor.close()
            except KeyboardInterrupt:
                pass
            self.pool_status = getattr(executor.pool, "status", dict)()  # with what close cancelled
            for stage in self.stages:
                stage.poll(self)  # record what finished meanwhile
                stage.close()
            for s, handler in old_handlers.items():
                signal.signal(s, handler)
            self.counters.restarts_before = self.counters.restarts
            self.counters.elapsed = base_elapsed + time.time() - started
            status = self.tick(running=False)
            self.close()
        return status

    def _loop(self, executor: ExecuteStage, queue: deque, budget: Budget, started: float,
              base_elapsed: float) -> None:
        """Keep every worker busy until the budget or a stop request ends the run: a group
        per free slot (`_submit_group`), the next candidate made one ahead while all are busy
        (lost on a stop, like the cases in flight, and made again after a resume)."""
        in_flight: dict[cf.Future, tuple[Candidate, int, int]] = {}  # (candidate, group, index)
        imported: deque[Candidate] = deque()  # cases the stages brought: they go first
        groups = itertools.count()
        last_report = time.time()
        drain_until = None
        while True:
            for stage in self.stages:
                stage.poll(self)
            if self.opts.ray:  # nodes join and leave: the pool's size is the worker count
                self.opts.workers = executor.pool.size
            # Stages working in the background (triage) hold some of the worker slots.
            free = self.opts.workers - sum(stage.slots() for stage in self.stages)
            for stage in self.stages:  # cases a stage brings (another campaign's, when synced)
                imported.extend(stage.candidates())
            while not self.stop_requested and budget.allows(len(in_flight)) \
                    and _groups_in(in_flight) < free:
                self._submit_group(executor, queue, imported, in_flight, budget, next(groups))
            self.slot_clock.tick(self.opts.workers, free - _groups_in(in_flight))
            if not in_flight:
                pending = sum(stage.pending() for stage in self.stages)
                if self.stop_requested or not pending:
                    if self.stop_requested or not budget.allows(0):
                        return
                if not budget.allows(0):
                    if drain_until is None:
                        drain_until = time.time() + self.opts.drain_limit
                        self.log(f"budget spent: finishing the background work left "
                                 f"({pending} bucket(s) to triage, at most "
                                 f"{self.opts.drain_limit:.0f} s)")
                    elif time.time() > drain_until:
                        self.log("drain limit reached: the rest is triaged when the campaign "
                                 "resumes")
                        return
                time.sleep(0.5)  # a stage holds every slot, or the budget is spent: wait
                self.counters.elapsed = base_elapsed + time.time() - started
                if time.time() - last_report >= self.opts.status_interval:
                    self.tick()
                    last_report = time.time()
                continue
            if not queue and not imported and not self.stop_requested \
                    and budget.allows(len(in_flight)):
                queue.append(self.candidates.next())
            done, _ = cf.wait(list(in_flight), timeout=1.0, return_when=cf.FIRST_COMPLETED)
            finished = sorted(((in_flight.pop(f), f) for f in done), key=lambda pair: pair[0][1:])
            self.slot_clock.tick(self.opts.workers, free - _groups_in(in_flight))
            for (candidate, _, _), future in finished:  # a group's cases in their order
                budget.executed += self._finished(future, candidate)
            self.pool_status = getattr(executor.pool, "status", dict)()
            self.counters.restarts = executor.restarts() + self.counters.restarts_before
            self.counters.elapsed = base_elapsed + time.time() - started
            if time.time() - last_report >= self.opts.status_interval:
                self.tick()
                last_report = time.time()
            if self.stop_requested and in_flight:
                return  # abandon in-flight cases: they are re-generated after a resume

    def _submit_group(self, executor: ExecuteStage, queue: deque, imported: deque,
                      in_flight: dict, budget: Budget, number: int) -> None:
        """Submit the next group (group `number`): a case a stage brought, alone, else the
        next candidate and its sweep steps, within the budget of executions."""
        if imported:
            group = [imported.popleft()]
        else:
            candidate = queue.popleft() if queue else self.candidates.next()
            group = [candidate, *self.candidates.sweep_of(candidate)]
        if budget.execs is not None:  # allows() left room for one at least
            group = group[:budget.execs - budget.executed - len(in_flight)]
        futures = executor.submit_group(group, sweep_goes_on)
        for index, (future, candidate) in enumerate(zip(futures, group)):
            in_flight[future] = (candidate, number, index)

    def _finished(self, future: cf.Future, candidate: Candidate) -> int:
        """Handle a finished case; 1 when it counts as executed, 0 when it was not run (a
        sweep step after a result that did not compile: `sweep_goes_on`) or was lost with its
        Ray node (its slot died twice: there is no result to judge)."""
        if future.cancelled():
            return 0
        try:
            ex = future.result()
        except CaseLost as exc:
            self.lost_cases += 1
            self.log(f"[lost] {exc} (origin {candidate.origin.get('mutators')})")
            return 0
        self.handle(ex)
        return 1

    def close(self) -> None:
        """Close the store and release the campaign directory's lock."""
        self.store.close()
        self._lock_handle.close()

    def _on_signal(self, signum, frame) -> None:
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True
        self.log(f"\n[{signal.Signals(signum).name}] stopping after the cases in flight...")
