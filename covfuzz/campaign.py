"""The fuzzing campaign: choose, mutate, validate, execute on N warm workers, keep, bucket, report.

One campaign = one directory:
  DIR/corpus.lmdb/      the LMDB store (seeds, features, hits, failures, examples, stats, info)
  DIR/fuzzer_stats.json the latest status, rewritten atomically (read by `covfuzz status`)
  DIR/scheduler.jsonl   one line per executed candidate: parent, strategy, mutators, settings
                        moves, outcome, new features, seconds (what the bandits learned from)
  DIR/inductor_cache/   TORCHINDUCTOR_CACHE_DIR of this campaign's workers
  DIR/.lock             held (flock) by the running campaign: a second one is refused

Only the main thread writes to the store; worker threads only block on their supervisor.
Everything needed to resume (counters, bandit statistics, trait yields, generator position) is
saved in the store's info (keys `state`, `scheduler`, `bandits`, `traits`) after every kept seed
and every status tick, so a restart resumes where it was.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import queue
import random
import signal
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from covfuzz import __version__, lock, serialize
from covfuzz.lock import CampaignLocked
from covfuzz.errors import CovfuzzError
from covfuzz.generator import GenOptions, generate
from covfuzz.propagate import propagate
from covfuzz.scheduler import RateBandit, Scheduler, SeedInfo, lookup, sorted_unique
from covfuzz.traits import TraitYield
from covfuzz.triage.signature import FAILURE_KINDS, signature_of
from harness.coverage import LINE_BIT
from harness.worker import rss_bytes

KEEP_OUTCOMES = ("pass", "mismatch", "grad_mismatch")

# Feedback mode's strategies, chosen per candidate by new features per second:
#   generate           - a fresh graph: the most promising of `gen_candidates` drawn, by the
#                        coverage yield of their traits so far (covfuzz/traits.py);
#   generate+settings  - the same, each drawn graph under one changed compile setting (the
#                        setting's traits count in the choice);
#   settings           - a corpus seed under one changed compile setting;
#   mutate             - 1..k stacked mutators (Thompson-sampled) on a corpus seed.
# The setting is itself chosen by its yield: e.g. cpp_wrapper or backward re-lowers every op of a
# graph through different code.
STRATEGIES = ("generate", "generate+settings", "settings", "mutate")
NEW_FAILURE_GAIN = 50.0  # a new failure bucket is worth this many new features to the bandits


@dataclass
class CampaignOptions:
    workers: int = 1
    device: str = "cpu"
    hours: float | None = None
    execs: int | None = None
    no_feedback: bool = False
    seed_files: list[str] = field(default_factory=list)
    initial_seeds: int = 12
    explore: float = 0.1  # share of strategy / setting choices made uniformly in feedback mode
    gen_candidates: int = 12  # feedback mode: graphs drawn per generation, the best one executed
    timeout: float = 120.0
    memory_limit_mb: int | None = None
    max_stack: int = 3
    rng_seed: int = 0
    status_interval: float = 10.0
    gen: GenOptions = field(default_factory=GenOptions)
    quiet: bool = False
    # Testing only: this share of candidates carries a fault seed (segfault, abort, hang, memory
    # blow-up, raise in compile/eager) that workers started with COVFUZZ_FAULT_INJECTION=1 obey.
    inject_faults: float = 0.0
    map_size: int | None = None  # initial LMDB map size (tests start tiny to force growth)


def write_json_atomic(path: str, obj: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as handle:
        json.dump(obj, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


class Campaign:
    def __init__(self, directory: str, opts: CampaignOptions):
        from corpus import CorpusStore
        from harness.supervisor import Supervisor
        import mutators

        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.opts = opts
        self._lock_handle = lock.acquire(self.dir)
        store_args = {"map_size": opts.map_size} if opts.map_size else {}
        self.store = CorpusStore(os.path.join(self.dir, "corpus.lmdb"), **store_args)
        self.mutators = mutators
        self._supervisor_cls = Supervisor
        self.rng = random.Random(opts.rng_seed)
        self.scheduler = Scheduler(self.rng)
        self.strategies = RateBandit(self.rng, explore=opts.explore, decay=0.99)
        self.setting_moves = RateBandit(self.rng, explore=opts.explore, decay=0.995)
        self.known: set[int] = set()  # every feature (arcs and lines) of the stored seeds
        self.n_arcs = self.n_lines = 0
        self.pending_hits: list[np.ndarray] = []  # executions not yet counted in the store
        self.state = {"execs": 0, "elapsed": 0.0, "next_gen_seed": opts.rng_seed * 1_000_000,
                      "restarts": 0, "last_new_feature": None, "last_new_failure": None,
                      "proposals": 0, "valid": 0, "ran": 0, "by_mutator": {}, "outcomes": {}}
        self.trait_yield = TraitYield()
        self.stop_requested = False
        self.mutation_ctx = self._mutation_context()
        self._load()

    # ----------------------------------------------------------------------------- state
    def _load(self) -> None:
        info = self.store.get_info() or {}
        if not info:
            self.store.set_info({"covfuzz": __version__, "torch": torch.__version__,
                                 "created": time.time(), "mode": self.mode,
                                 "settings": {"device": self.opts.device, "workers": self.opts.workers},
                                 "state": self.state})
        else:
            self.state.update(info.get("state", {}))
            self.scheduler.load_state(info.get("scheduler", {}))
            bandits = info.get("bandits", {})
            self.strategies.load(bandits.get("strategies", {}))
            self.setting_moves.load(bandits.get("settings", {}))
            self.trait_yield = TraitYield(info.get("traits"))
            self.state.pop("op_yield", None)  # older campaigns: superseded by the trait table
            if info.get("torch") != torch.__version__:
                self.log(f"note: corpus was made with torch {info.get('torch')}, running "
                         f"{torch.__version__}; `covfuzz cmin --rerun` re-measures features")
        counts = self.store.feature_counts()
        keys = np.fromiter(counts.keys(), dtype=np.uint64, count=len(counts))
        values = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        order = np.argsort(keys)
        keys, values = keys[order], values[order]

        def stored_hits(features):
            return lookup(keys, values, features, 1.0)

        # Known features are the union of all seeds' features, merged in numpy chunks (a
        # resume of a big corpus must not loop over every feature in Python per seed).
        infos, chunk, known = [], [], np.zeros(0, dtype=np.uint64)
        for seed_id, meta, features in self.store.iter_seeds(with_features=True):
            features = np.asarray(features, dtype=np.uint64)
            chunk.append(features)
            if len(chunk) >= 256:
                known = sorted_unique(np.concatenate([known, *chunk]))
                chunk = []
            infos.append(self._seed_info(seed_id, meta, features, stored_hits(features)))
        if chunk:
            known = sorted_unique(np.concatenate([known, *chunk]))
        self._know(self._unknown(known))
        self.scheduler.add_seeds(infos, stored_hits)

    def _unknown(self, features) -> list[int]:
        return [f for f in features.tolist() if f not in self.known]

    def _know(self, new: list[int]) -> None:
        """Adds features not known yet (from `_unknown`) to the known set and the counters."""
        self.known.update(new)
        lines = sum(1 for f in new if f & LINE_BIT)
        self.n_lines += lines
        self.n_arcs += len(new) - lines

    @staticmethod
    def _seed_info(seed_id, meta, features, hits, first_found=None) -> SeedInfo:
        arcs = features[(features & np.uint64(LINE_BIT)) == 0]
        arc_hits = hits[(features & np.uint64(LINE_BIT)) == 0]
        rare = Scheduler.rare_subset(arcs, arc_hits, first_found)
        return SeedInfo(seed_id, rare, int(meta.get("nodes") or 1),
                        float(meta.get("exec_time") or 1.0), int(meta.get("times_chosen") or 0))

    @property
    def mode(self) -> str:
        return "no-feedback" if self.opts.no_feedback else "feedback"

    def save_state(self) -> None:
        info = self.store.get_info() or {}
        info["state"] = self.state
        info["scheduler"] = self.scheduler.state()
        info["bandits"] = {"strategies": self.strategies.table(),
                           "settings": self.setting_moves.table()}
        info["traits"] = self.trait_yield.state()
        self.store.set_info(info)

    def log(self, text: str) -> None:
        if not self.opts.quiet:
            print(text, file=sys.stderr, flush=True)

    # ----------------------------------------------------------------------------- candidates
    def _generated(self, with_setting: bool = False):
        """A fresh graph. Feedback mode draws `gen_candidates` of them (each under one changed
        compile setting when `with_setting`) and keeps the one whose traits, setting included,
        promise the most new coverage; the no-feedback baseline takes each as drawn."""
        k = 1 if self.opts.no_feedback else max(1, self.opts.gen_candidates)
        seed = self.state["next_gen_seed"]
        self.state["next_gen_seed"] = seed + k
        meta = {"parent": None, "mutators": ["generate"], "depth": 0}
        drawn = []
        for i in range(k):
            case, move = generate(seed + i, self.opts.gen), None
            if with_setting:
                self.mutation_ctx.last_setting = None
                changed = self.mutators.mutate_with("mutate_settings", case, self.rng, self.mutation_ctx)
                if changed is not None:
                    case, move = changed, self.mutation_ctx.last_setting
            drawn.append((case, move))
        case, move = max(drawn, key=lambda pair: self.trait_yield.score(pair[0])) if k > 1 else drawn[0]
        if move is not None:
            meta.update(mutators=["generate", "mutate_settings"], settings=[move])
        return case, meta

    def _initial_cases(self):
        for path in self.opts.seed_files:
            with open(path, "rb") as handle:
                case = propagate(serialize.decode(handle.read()))
            yield case, {"parent": None, "mutators": ["seed-file"], "depth": 0}
        for _ in range(self.opts.initial_seeds):
            yield self._generated()

    def next_candidate(self):
        case, meta = self._next_candidate()
        if self.opts.inject_faults and self.rng.random() < self.opts.inject_faults:
            from harness.execute import FAULT_SEEDS
            fault_seed = self.rng.choice(sorted(FAULT_SEEDS))
            case = case.replace(seed=fault_seed)
            meta = {**meta, "mutators": list(meta["mutators"]) + ["inject-fault"],
                    "fault": FAULT_SEEDS[fault_seed]}
        return case, meta

    def _next_candidate(self):
        """No-feedback: always a fresh graph. Feedback: the strategy with the best rate of new
        features per second (Thompson-sampled, with a uniform exploration share)."""
        if self.opts.no_feedback or not self.scheduler.seeds:
            return self._generated()
        strategy = self.strategies.choose(list(STRATEGIES))
        if strategy.startswith("generate"):
            case, meta = self._generated(with_setting=strategy == "generate+settings")
            return case, {**meta, "strategy": strategy}
        names = ["mutate_settings"] if strategy == "settings" else sorted(self.mutators.MUTATORS)
        for _ in range(8):
            seed, energy = self.scheduler.pick()
            parent = self._load_case(seed.seed_id)
            k = 1 if strategy == "settings" else min(self.opts.max_stack,
                                                      1 + int(self.rng.expovariate(1.0)))
            chosen = self.scheduler.choose_mutators(names, k)
            case = parent
            applied, moves = [], []
            for name in chosen:
                self.mutation_ctx.last_setting = None
                out = self.mutators.mutate_with(name, case, self.rng, self.mutation_ctx)
                self._count_mutator(name, "proposals")
                if out is None:
                    continue
                self._count_mutator(name, "valid")
                case = out
                applied.append(name)
                if self.mutation_ctx.last_setting:
                    moves.append(self.mutation_ctx.last_setting)
            self.state["proposals"] += 1
            if applied:
                self.state["valid"] += 1
                meta = {"parent": seed.seed_id, "mutators": applied, "energy": round(energy, 4),
                        "depth": int((self.store.get_meta(seed.seed_id) or {}).get("depth", 0)) + 1,
                        "strategy": strategy}
                if moves:
                    meta["settings"] = moves
                return case, meta
        case, meta = self._generated()
        return case, {**meta, "strategy": "generate"}

    def _load_case(self, seed_id: str):
        return propagate(serialize.decode(self.store.get_case_bytes(seed_id)))

    def _mutation_context(self):
        def random_case(rng):
            if not self.scheduler.seeds:
                return None
            other = rng.choice(self.scheduler.seeds)
            try:
                return self._load_case(other.seed_id)
            except CovfuzzError:
                return None
        choose = None if self.opts.no_feedback else self.setting_moves.choose
        return self.mutators.MutationContext(options=self.opts.gen, case_source=random_case,
                                             choose_setting=choose)

    def _count_mutator(self, name: str, key: str) -> None:
        row = self.state["by_mutator"].setdefault(name, {"proposals": 0, "valid": 0, "ran": 0,
                                                         "executed": 0, "wins": 0})
        row[key] = row.get(key, 0) + 1

    # ----------------------------------------------------------------------------- results
    def handle(self, case, meta: dict, result) -> None:
        self.state["execs"] += 1
        outcome = result.outcome
        self.state["outcomes"][outcome] = self.state["outcomes"].get(outcome, 0) + 1
        features = sorted_unique(result.features)
        hits_before = self.scheduler.hits_of(features)
        self.scheduler.record_hits(features)
        new = self._unknown(features)
        ran = outcome != "invalid"
        self.state["ran"] += int(ran)
        for name in meta["mutators"]:
            self._count_mutator(name, "executed")
            if ran:
                self._count_mutator(name, "ran")
        won = new_failure = False
        data = serialize.encode(case)
        cid = serialize.case_id(case)
        if outcome in FAILURE_KINDS:
            sig, sig_id = signature_of(case, result)
            is_new = self.store.record_failure(sig_id, outcome, result.message or "",
                                               result.exc_type or "", cid, data, result.to_dict(),
                                               extra={"signature": sig})
            if is_new:
                won = new_failure = True
                self.state["last_new_failure"] = time.time()
                self.log(f"[new failure] {outcome} {sig_id} {sig[:150]}")
        if new and outcome in KEEP_OUTCOMES:
            won = True
            self._know(new)
            seed_meta = {**meta, "nodes": len(case.graph.nodes), "exec_time": result.timings.get("total", 0.0),
                         "features_found": len(new), "times_chosen": 0, "found_at": time.time(),
                         "outcome": outcome, "n_features": int(len(features))}
            self.store.add_seed(cid, data, seed_meta, features)  # counts this execution's hits
            self.scheduler.add_seed(self._seed_info(cid, seed_meta, features, hits_before,
                                                    np.asarray(new, dtype=np.uint64)),
                                    self.scheduler.hits_of)
            self.state["last_new_feature"] = time.time()
        else:
            self.pending_hits.append(features)
        arms = [n for n in meta["mutators"] if n not in ("seed-file", "inject-fault", "generate")]
        kept_new = len(new) if outcome in KEEP_OUTCOMES else 0  # only kept features count as new
        if not self.opts.no_feedback:
            seconds = float(result.timings.get("total") or 0.0)
            self.trait_yield.record(case, kept_new, seconds)
            # Rates, for the strategy and setting bandits.
            gain = kept_new + new_failure * NEW_FAILURE_GAIN
            if meta.get("strategy"):
                self.strategies.reward(meta["strategy"], gain, seconds)
            # A move is credited only where it alone made the difference (not on a fresh graph,
            # whose new features come mostly from its ops).
            if meta.get("strategy") == "settings":
                for move in meta.get("settings", ()):
                    self.setting_moves.reward(move, gain, seconds)
            if arms and meta.get("strategy") in ("settings", "mutate"):
                self.scheduler.reward(arms, won)
        if won:
            for name in meta["mutators"]:
                if name not in ("seed-file", "inject-fault"):
                    self._count_mutator(name, "wins")
        self._log_choice(cid, meta, outcome, kept_new, won, result.timings.get("total"))
        if new or won:
            self.save_state()

    def _log_choice(self, cid, meta, outcome, new_features, won, seconds) -> None:
        record = {"t": round(time.time(), 3), "id": cid, "parent": meta.get("parent"),
                  "energy": meta.get("energy"), "strategy": meta.get("strategy"),
                  "mutators": meta["mutators"], "settings": meta.get("settings"),
                  "outcome": outcome, "new_features": new_features, "won": won,
                  "seconds": round(float(seconds or 0.0), 3)}
        if meta.get("fault"):
            record["fault"] = meta["fault"]
        with open(os.path.join(self.dir, "scheduler.jsonl"), "a") as handle:
            handle.write(json.dumps(record) + "\n")

    # ----------------------------------------------------------------------------- status
    def status(self, elapsed: float) -> dict:
        failures = self.store.failures()
        by_kind: dict[str, int] = {}
        for row in failures:
            by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + 1
        execs = self.state["execs"]
        proposals = max(self.state["proposals"], 1)
        return {
            "dir": self.dir, "pid": os.getpid(), "mode": self.mode, "updated": time.time(),
            "elapsed": round(elapsed, 1), "execs": execs,
            "execs_per_s": round(execs / elapsed, 3) if elapsed > 0 else 0.0,
            "corpus": len(self.scheduler.seeds), "features": self.n_arcs, "lines": self.n_lines,
            "unique_failures": len(failures), "failures_by_kind": by_kind,
            "last_new_feature": self.state["last_new_feature"],
            "last_new_failure": self.state["last_new_failure"],
            # Mutants that passed the validity check (None: nothing was mutated, e.g. no-feedback).
            "validity": round(self.state["valid"] / proposals, 4) if self.state["proposals"] else None,
            "ran_eagerly": round(self.state["ran"] / max(execs, 1), 4),
            "worker_restarts": self.state["restarts"], "workers": self.opts.workers,
            "supervisor_rss_mb": round(rss_bytes() / 2**20, 1),
            "device": self.opts.device, "outcomes": self.state["outcomes"],
            "mutators": self.state["by_mutator"], "running": not self.stop_requested,
            "strategies": self.strategies.table(),
            "settings_moves": dict(sorted(self.setting_moves.table().items(),
                                          key=lambda kv: -kv[1]["rate"])[:10]),
        }

    def flush_hits(self) -> None:
        """Count the executions since the last flush in the store's hits (one transaction)."""
        if self.pending_hits:
            keys, counts = np.unique(np.concatenate(self.pending_hits), return_counts=True)
            self.store.add_hits(keys, counts)
            self.pending_hits = []

    def report(self, elapsed: float, final: bool = False) -> dict:
        self.flush_hits()
        status = self.status(elapsed)
        status["running"] = not final
        self.store.append_stats({k: status[k] for k in (
            "elapsed", "execs", "corpus", "features", "lines", "unique_failures", "failures_by_kind",
            "validity", "worker_restarts", "execs_per_s", "supervisor_rss_mb")})
        write_json_atomic(os.path.join(self.dir, "fuzzer_stats.json"), status)
        self.save_state()
        self.log(status_line(status))
        return status

    # ----------------------------------------------------------------------------- loop
    def run(self) -> dict:
        opts = self.opts
        started = time.time()
        base_elapsed = float(self.state.get("elapsed", 0.0))
        deadline = started + opts.hours * 3600 if opts.hours else None
        exec_budget = opts.execs
        cache_dir = os.path.join(self.dir, "inductor_cache")
        pool: queue.Queue = queue.Queue()
        memory_limit_mb = opts.memory_limit_mb or (4096 if opts.inject_faults else None)
        memory_limit = memory_limit_mb * (1 << 20) if memory_limit_mb else None
        env = {"COVFUZZ_FAULT_INJECTION": "1"} if opts.inject_faults else {}
        supervisors = [self._supervisor_cls(device=opts.device, cache_dir=cache_dir,
                                            memory_limit=memory_limit, timeout=opts.timeout,
                                            warmup=True, env=env)
                       for _ in range(opts.workers)]
        for sup in supervisors:
            pool.put(sup)

        def execute(case):
            sup = pool.get()
            try:
                return sup.run(case, timeout=opts.timeout)
            finally:
                pool.put(sup)

        # Restarts of earlier runs (a SIGKILLed run never reached its `finally`).
        self.state["restarts_before"] = int(self.state.get("restarts", 0))
        initial = list(self._initial_cases()) if not self.scheduler.seeds else []
        old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        executed_now = 0
        last_report = time.time()
        self.log(f"covfuzz fuzz: {self.dir} ({self.mode}, {opts.workers} worker(s), {opts.device}); "
                 f"corpus {len(self.scheduler.seeds)} seeds, {self.n_arcs} features")
        in_flight: dict = {}
        prepared = None  # the next candidate, made ahead; lost on a stop, like the ones in flight
        try:
            with cf.ThreadPoolExecutor(max_workers=opts.workers) as executor:
                while True:
                    budget_left = not (exec_budget is not None and executed_now + len(in_flight) >= exec_budget)
                    time_left = deadline is None or time.time() < deadline
                    while (not self.stop_requested and budget_left and time_left
                           and len(in_flight) < opts.workers):
                        if initial:
                            case, meta = initial.pop(0)
                        elif prepared is not None:
                            (case, meta), prepared = prepared, None
                        else:
                            case, meta = self.next_candidate()
                        in_flight[executor.submit(execute, case)] = (case, meta)
                        budget_left = not (exec_budget is not None
                                           and executed_now + len(in_flight) >= exec_budget)
                    if not in_flight:
                        break
                    if (prepared is None and not initial and not self.stop_requested and budget_left
                            and time_left):
                        # Make the next candidate while every worker is busy, so that no worker
                        # waits for it (drawing and scoring graphs takes a good part of a second).
                        prepared = self.next_candidate()
                    done, _ = cf.wait(list(in_flight), timeout=1.0, return_when=cf.FIRST_COMPLETED)
                    for future in done:
                        case, meta = in_flight.pop(future)
                        self.handle(case, meta, future.result())
                        executed_now += 1
                    self.state["restarts"] = sum(s.stats["restarts"] for s in supervisors) + \
                        int(self.state.get("restarts_before", 0))
                    self.state["elapsed"] = base_elapsed + time.time() - started
                    if time.time() - last_report >= opts.status_interval:
                        self.report(self.state["elapsed"])
                        last_report = time.time()
                    if self.stop_requested and in_flight:
                        break  # abandon in-flight cases: they are re-generated after a resume
        finally:
            for s, handler in old_handlers.items():
                signal.signal(s, handler)
            for sup in supervisors:
                sup.close()
            self.state["restarts_before"] = self.state["restarts"]
            self.state["elapsed"] = base_elapsed + time.time() - started
            status = self.report(self.state["elapsed"], final=True)
            self.close()
        return status

    def close(self) -> None:
        """Close the store and release the campaign directory's lock."""
        self.store.close()
        self._lock_handle.close()

    def _on_signal(self, signum, frame) -> None:
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True
        self.log(f"\n[{signal.Signals(signum).name}] stopping after the cases in flight...")


def _ago(ts) -> str:
    if not ts:
        return "never"
    seconds = max(time.time() - ts, 0)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def status_line(s: dict) -> str:
    kinds = ",".join(f"{k}={v}" for k, v in sorted(s.get("failures_by_kind", {}).items())) or "none"
    valid = "n/a" if s.get("validity") is None else f"{100 * s['validity']:.0f}%"
    return (f"[{s['elapsed'] / 60:6.1f}m] execs {s['execs']} ({s['execs_per_s']:.2f}/s) | corpus "
            f"{s['corpus']} | features {s['features']} (lines {s.get('lines', 0)}) | failures {s['unique_failures']} ({kinds}) | "
            f"new feature {_ago(s.get('last_new_feature'))}, new failure {_ago(s.get('last_new_failure'))} | "
            f"valid {valid} ran {100 * s.get('ran_eagerly', 0):.0f}% | "
            f"restarts {s['worker_restarts']}")


__all__ = ["Campaign", "CampaignOptions", "CampaignLocked", "status_line", "write_json_atomic"]
