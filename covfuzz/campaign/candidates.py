"""Where candidates come from, and what the choices learn from their executions.

Feedback mode's strategies, chosen per candidate by new features per second:
  generate           - a fresh graph: the most promising of `gen_candidates` drawn, by the
                       coverage yield of their traits so far (covfuzz/traits.py);
  generate+settings  - the same, each drawn graph under one changed compile setting (the
                       setting's traits count in the choice);
  settings           - a corpus seed under one changed compile setting;
  mutate             - 1..k stacked mutators (Thompson-sampled) on a corpus seed.
The setting is itself chosen by its yield: e.g. cpp_wrapper or backward re-lowers every op of a
graph through different code. The no-feedback baseline runs each generated graph as drawn.

In both modes a `metamorphic_rate` share of candidates carries a metamorphic check (issue 19,
`CompileSettings.metamorphic`): when the case passes, the worker compiles it again under one
applicable variant and compares the two compiled results (harness/metamorphic.py).

Climbs (feedback mode with the `divergence` family): an execution that came closer to a
mismatch than any before it (a new divergence feature: its op x dtype's largest in-tolerance
error ratio, log-bucketed) and was kept has CLIMB_STEPS value mutants of its own queued; a
mutant that comes closer again queues its own. The way value-profile feedback climbs toward a
comparison, value and shape moves climb toward a miscompile. While steps are queued, `climb` is
one more arm of the strategy bandit, which runs the newest step when it chooses it: climbs are
paid like the other strategies and take the time they earn. (They used to run first, up to 30%
of the candidates; in a 2-hour campaign that was 19% of the execution time, at a fifth of the
new features per second of fresh graphs, and found 1 of 31 root causes.) The queue is not
saved: a resumed campaign starts with none.

Sweeps (feedback mode, issue 20's "one compile, many inputs"): each candidate the strategies
choose is followed by value variants of its own case (`sweep_of`: value mutators only, the
graph, shapes, dtypes and settings stay). The loop submits the candidate and its steps as one
group (`WorkerPool.submit_group`), which a local pool runs whole on one worker, each step only
while the result before it compiled (`sweep_goes_on`). A worker runs a case that differs from
its previous one only in values on the compiled program it already has (harness/execute.py),
so a step costs an eager run, a compiled run and the oracle instead of a compile: the same
compiled kernels meet several value mixes (specials, magnitudes near overflow, other fills).
Not for a candidate whose compiled code may hold values (`compiled_code_holds_values`), one
carrying a metamorphic check (its variant compiles again in between), climbs, or sweeps
themselves.

How many steps a sweep takes is cost-aware (`sweep_length`): `opts.sweep_steps` scaled by how
many new features per second sweep steps earn against the candidates the strategies choose
(both decayed: `sweep_pay`), within [1, SWEEP_GROWTH x sweep_steps]. A step costs a few
percent of a compile on CPU, so steps that go on finding value and divergence features pay
more per second and sweeps grow; steps that stop paying shrink them back toward one. Sweep
steps are credited there, not to the strategy bandit: they are never its choice, and their
many cheap rewards would decay what it learned about the strategies.

Bandit credit for failures: a new bucket is worth NEW_FAILURE_CREDIT to the strategy (and
settings move, mutators) that found it, at once; when triage later confirms a root cause that
no other bucket had, `credit_root` adds NEW_ROOT_CREDIT to the strategy of the bucket's first
example (a late reward: `RateBandit.credit`).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import random

import mutators
from covfuzz import serialize
from covfuzz.campaign.execution import Candidate, Execution
from covfuzz.campaign.feedbacks import MAX_FAMILY_CREDIT, normalized_gain
from covfuzz.campaign.options import CampaignOptions
from covfuzz.campaign.seeds import SeedCorpus
from covfuzz.campaign.state import CampaignState, Counters
from covfuzz.generator import generate
from covfuzz.ir import TestCase, applicable_variants, compiled_code_holds_values
from covfuzz.propagate import propagate
from covfuzz.scheduler import RateBandit, Scheduler
from covfuzz.traits import TraitYield
from covfuzz.triage import failures as failure_records
from covfuzz.triage.resolve import read_case_file
from harness.faults import FAULT_SEEDS

STRATEGIES = ("generate", "generate+settings", "settings", "mutate")
# What a new failure bucket is worth to the strategy and settings bandits, which learn from
# each family's finds in units of that family's average execution (feedbacks.normalized_gain):
# as much as the largest find one family can credit.
NEW_FAILURE_CREDIT = MAX_FAMILY_CREDIT
# What a bucket whose triage names a root cause no other bucket has is worth on top of that.
NEW_ROOT_CREDIT = NEW_FAILURE_CREDIT
MUTATION_TRIES = 8  # seeds tried before a mutation strategy falls back to a fresh graph
CLIMB_MUTATORS = ("value_magnitudes", "value_specials", "simd_counts", "mutate_values")
CLIMB_STEPS = 4  # value mutants queued for a case that came closer to a mismatch
CLIMB_QUEUE = 32  # climb steps waiting at most (the newest are kept)
SWEEP_MUTATORS = ("value_magnitudes", "value_specials", "mutate_values")
SWEEP_GROWTH = 4  # the longest sweep, in units of --sweep-steps
SWEEP_PAY_DECAY = 0.995  # per execution: steps outnumber chosen candidates, keep ~200 in mind
SWEEP_PAY_TRIES = 5  # executions of each kind before the sweep length follows what they paid
# Outcomes after which a case's program compiled (its sweep steps can reuse it).
COMPILED_OUTCOMES = ("pass", "mismatch", "grad_mismatch")


def sweep_goes_on(result) -> bool:
    """After a sweep's case or step: whether its next step runs (the program compiled, and
    the worker still holds it: a crash or a timeout restarts the worker)."""
    return result.outcome in COMPILED_OUTCOMES


class CandidateMaker:
    def __init__(self, opts: CampaignOptions, rng: random.Random, seeds: SeedCorpus,
                 counters: Counters):
        self.opts = opts
        self.rng = rng
        self.seeds = seeds
        self.scheduler: Scheduler = seeds.scheduler
        self.counters = counters
        self.strategies = RateBandit(rng, explore=opts.explore, decay=0.99)
        self.setting_moves = RateBandit(rng, explore=opts.explore, decay=0.995)
        self.trait_yield = TraitYield()
        choose = None if opts.no_feedback else self.setting_moves.choose
        self.ctx = mutators.MutationContext(options=opts.gen, case_source=seeds.random_case,
                                            choose_setting=choose)
        # bucket id -> the strategy and settings moves of its first example (this run only:
        # a bucket found before a resume gets no root credit), until its root is credited
        self.bucket_origins: dict[str, dict] = {}
        self.known_roots: set[str] | None = None  # confirmed root ids (read from the store once)
        self.climbs: collections.deque[Candidate] = collections.deque(maxlen=CLIMB_QUEUE)
        # New features per second of sweep steps ("sweep") and of every other execution
        # ("chosen"): the sweep length follows their ratio (`sweep_length`).
        self.sweep_pay = RateBandit(rng, explore=0.0, decay=SWEEP_PAY_DECAY)

    def load(self, state: CampaignState) -> None:
        self.strategies.load(state.strategies)
        self.setting_moves.load(state.settings_moves)
        self.trait_yield = TraitYield(state.traits)

    def save(self, state: CampaignState) -> None:
        state.strategies = self.strategies.state()
        state.settings_moves = self.setting_moves.state()
        state.traits = self.trait_yield.state()

    # ------------------------------------------------------------------ making candidates
    def initial(self) -> list[Candidate]:
        """The first candidates of a campaign with an empty corpus: seed files, then graphs."""
        out = []
        for path in self.opts.seed_files:
            case = propagate(read_case_file(path))
            out.append(Candidate(case, {"parent": None, "mutators": ["seed-file"], "depth": 0}))
        out += [self.with_metamorphic(self.generated()) for _ in range(self.opts.initial_seeds)]
        return out

    def next(self) -> Candidate:
        candidate = self._choose()
        if self.opts.inject_faults and self.rng.random() < self.opts.inject_faults:
            fault_seed = self.rng.choice(sorted(FAULT_SEEDS))
            origin = candidate.origin
            candidate = Candidate(candidate.case.replace(seed=fault_seed),
                                  {**origin, "mutators": list(origin["mutators"]) + ["inject-fault"],
                                   "fault": FAULT_SEEDS[fault_seed]})
        return self.with_metamorphic(candidate)

    def sweep_of(self, parent: Candidate) -> list[Candidate]:
        """`sweep_length()` value variants of `parent`'s case, to run right after it on the
        same worker (see the module's docstring for which candidates get none)."""
        case, origin = parent.case, parent.origin
        if (self.opts.no_feedback or not self.opts.sweep_steps
                or origin.get("strategy") == "climb" or "fault" in origin
                or case.settings.metamorphic is not None
                or compiled_code_holds_values(case.settings.mode, case.settings.inductor_config)):
            return []
        parent_id = serialize.case_id(case)
        steps = []
        for _ in range(self.sweep_length()):
            stacked = mutators.stack(case, self.rng, self.ctx, [self.rng.choice(SWEEP_MUTATORS)])
            self._count_proposals(stacked)
            if stacked.case is not None:
                steps.append(Candidate(stacked.case, {
                    "parent": parent_id, "mutators": [a.mutator for a in stacked.applied],
                    "depth": int(origin.get("depth", 0)) + 1, "strategy": "sweep"}))
        return steps

    def sweep_length(self) -> int:
        """Steps for the next sweep: `opts.sweep_steps` times how much more sweep steps earned
        per second than chosen candidates, rounded, within [1, SWEEP_GROWTH x sweep_steps];
        `opts.sweep_steps` until each kind has run SWEEP_PAY_TRIES times."""
        base, ratio = self.opts.sweep_steps, self.sweep_pay_ratio()
        if not base or ratio is None:
            return base
        return max(1, min(SWEEP_GROWTH * base, round(base * ratio)))

    def sweep_pay_ratio(self) -> float | None:
        """New features per second of sweep steps over those of chosen candidates (posterior
        means); None before each kind has run SWEEP_PAY_TRIES times."""
        table = self.sweep_pay.table()
        rows = [table.get(kind) for kind in ("sweep", "chosen")]
        if any(row is None or row["tries"] < SWEEP_PAY_TRIES for row in rows):
            return None
        return rows[0]["rate"] / max(rows[1]["rate"], 1e-9)

    def strategy_table(self) -> dict[str, dict]:
        """The strategy bandit's arms, and sweep steps as one more row (the status's table)."""
        table = self.strategies.table()
        sweep = self.sweep_pay.table().get("sweep")
        return {**table, "sweep": sweep} if sweep else table

    def queue_climb(self, ex: Execution) -> int:
        """Queue CLIMB_STEPS value mutants of `ex`'s case (one value mutator each, valid ones
        only); how many were queued."""
        queued = 0
        for _ in range(CLIMB_STEPS):
            plan = [self.rng.choice(CLIMB_MUTATORS)]
            stacked = mutators.stack(ex.case, self.rng, self.ctx, plan)
            self._count_proposals(stacked)
            if stacked.case is None:
                continue
            origin = {"parent": ex.case_id, "mutators": [a.mutator for a in stacked.applied],
                      "depth": int(ex.origin.get("depth", 0)) + 1, "strategy": "climb"}
            self.climbs.append(Candidate(stacked.case, origin))
            queued += 1
        return queued

    def _count_proposals(self, stacked: mutators.Stacked) -> None:
        """Each mutator's proposals in `stacked`, and the valid ones (the status's table)."""
        for name, outcome in stacked.tried:
            self.counters.count_mutator(name, "proposals")
            if outcome == mutators.ACCEPTED:
                self.counters.count_mutator(name, "valid")

    def with_metamorphic(self, candidate: Candidate) -> Candidate:
        """`candidate` with a metamorphic check or without (`metamorphic_variant`): a seed's
        own check is not inherited by its mutants."""
        case = candidate.case
        variant = metamorphic_variant(case, self.opts.metamorphic_rate, self.opts.rng_seed)
        if variant == case.settings.metamorphic:
            return candidate
        settings = dataclasses.replace(case.settings, metamorphic=variant)
        return Candidate(case.replace(settings=settings), candidate.origin)

    def _choose(self) -> Candidate:
        """No-feedback: always a fresh graph. Feedback: the strategy with the best rate of new
        features per second (Thompson-sampled, with a uniform exploration share); `climb`
        is one of them while climb steps are queued, and runs the newest."""
        if self.opts.no_feedback or not (self.scheduler.seeds or self.climbs):
            return self.generated()
        arms = list(STRATEGIES) if self.scheduler.seeds else ["generate", "generate+settings"]
        strategy = self.strategies.choose(arms + (["climb"] if self.climbs else []))
        if strategy == "climb":
            return self.climbs.pop()
        if strategy.startswith("generate"):
            return self.generated(with_setting=strategy == "generate+settings", strategy=strategy)
        return self.mutated(strategy) or self.generated(strategy="generate")

    def generated(self, with_setting: bool = False, strategy: str | None = None) -> Candidate:
        """A fresh graph. Feedback mode draws `gen_candidates` of them (each under one changed
        compile setting when `with_setting`) and keeps the one whose traits, setting included,
        promise the most new coverage; the no-feedback baseline takes each as drawn."""
        k = 1 if self.opts.no_feedback else max(1, self.opts.gen_candidates)
        seed = self.counters.next_gen_seed
        self.counters.next_gen_seed = seed + k
        gen = self.opts.gen
        if not self.opts.no_feedback:  # ops drawn by what they paid, ops never run first
            gen = dataclasses.replace(gen, op_yield=self.trait_yield.op_yield())
        drawn = []
        for i in range(k):
            case, move = generate(seed + i, gen), None
            if with_setting:
                stacked = mutators.stack(case, self.rng, self.ctx, ["mutate_settings"])
                if stacked.case is not None:
                    case, move = stacked.case, stacked.applied[0].move
            drawn.append((case, move))
        case, move = max(drawn, key=lambda pair: self.trait_yield.score(pair[0])) if k > 1 else drawn[0]
        origin = {"parent": None, "mutators": ["generate"], "depth": 0}
        if move is not None:
            origin.update(mutators=["generate", "mutate_settings"], settings=[move])
        if strategy is not None:
            origin["strategy"] = strategy
        return Candidate(case, origin)

    def mutated(self, strategy: str) -> Candidate | None:
        """A corpus seed under one settings move (`settings`) or 1..k stacked mutators
        (`mutate`); None when no seed gave a valid mutant in MUTATION_TRIES tries."""
        names = ["mutate_settings"] if strategy == "settings" else sorted(mutators.MUTATORS)
        for _ in range(MUTATION_TRIES):
            seed, energy = self.scheduler.pick()
            k = 1 if strategy == "settings" else min(self.opts.max_stack,
                                                      1 + int(self.rng.expovariate(1.0)))
            plan = self.scheduler.choose_mutators(names, k)
            stacked = mutators.stack(self.seeds.case(seed.seed_id), self.rng, self.ctx, plan)
            self._count_proposals(stacked)
            self.counters.proposals += 1
            if stacked.case is None:
                continue
            self.counters.valid += 1
            origin = {"parent": seed.seed_id, "mutators": [a.mutator for a in stacked.applied],
                      "energy": round(energy, 4), "depth": self.seeds.depth(seed.seed_id) + 1,
                      "strategy": strategy}
            moves = [a.move for a in stacked.applied if a.move]
            if moves:
                origin["settings"] = moves
            return Candidate(stacked.case, origin)
        return None

    # ------------------------------------------------------------------ learning
    def learn(self, ex: Execution) -> None:
        """Feedback mode: the trait table, the strategy and settings bandits and the mutator
        bandit learn what this execution earned per second. The bandits are credited per
        feature family (each family's new features in units of its own average execution,
        `feedbacks.normalized_gain`), so a family that finds few features (divergence, values)
        weighs as much as coverage; a mutator wins when it paid at least one average
        execution's worth in some family, or found a new failure bucket."""
        if self.opts.no_feedback:
            return
        seconds, strategy = ex.seconds, ex.origin.get("strategy")
        kept_gain = ex.gain if ex.kept else 0  # only kept features count as new
        self.trait_yield.record(ex.case, kept_gain, seconds)
        credit = normalized_gain(self.seeds.feedbacks, ex.novelty) if ex.kept else 0.0
        gain = credit + ex.new_bucket * NEW_FAILURE_CREDIT
        if ex.new_bucket and ex.bucket and strategy:
            self.bucket_origins[ex.bucket] = {"strategy": strategy,
                                              "settings": list(ex.origin.get("settings", ()))}
        self.sweep_pay.reward("sweep" if strategy == "sweep" else "chosen", gain, seconds)
        if strategy and strategy != "sweep":
            self.strategies.reward(strategy, gain, seconds)
        # A move is credited only where it alone made the difference (not on a fresh graph,
        # whose new features come mostly from its ops).
        if strategy == "settings":
            for move in ex.origin.get("settings", ()):
                self.setting_moves.reward(move, gain, seconds)
        arms = ex.mutator_names()
        if arms and strategy in ("settings", "mutate", "climb", "sweep"):
            self.scheduler.reward(arms, ex.new_bucket or credit >= 1.0)
        if ex.kept and ex.novelty.get("divergence"):
            self.queue_climb(ex)

    def credit_root(self, bucket: str, root_id: str) -> str | None:
        """Triage confirmed `bucket` with root cause `root_id`: when no other bucket of this
        campaign has that root, the strategy that made the bucket's first example (and, for
        `settings`, its settings moves) gets NEW_ROOT_CREDIT more. The strategy credited, or
        None (a root seen before, a bucket found before this run, no-feedback mode)."""
        if self.known_roots is None:
            self.known_roots = {r["root_id"] for r in self._triaged(exclude=bucket)}
        new = root_id not in self.known_roots
        self.known_roots.add(root_id)
        origin = self.bucket_origins.pop(bucket, None)
        if not new or origin is None:
            return None
        self.strategies.credit(origin["strategy"], NEW_ROOT_CREDIT)
        if origin["strategy"] == "settings":
            for move in origin["settings"]:
                self.setting_moves.credit(move, NEW_ROOT_CREDIT)
        return origin["strategy"]

    def _triaged(self, exclude: str) -> list[dict]:
        """The validated triage records of the store's confirmed buckets but `exclude`."""
        out = []
        for rec in self.seeds.store.failures():
            triage = failure_records.triage_record(rec)
            if (triage and triage.get("state") == "confirmed" and triage.get("root_id")
                    and failure_records.bucket_id(rec) != exclude):
                out.append(triage)
        return out


def metamorphic_variant(case: TestCase, rate: float, campaign_seed: int) -> str | None:
    """The metamorphic variant a candidate carries: with probability `rate`, one of the variants
    that apply to its settings, else None. Drawn from a hash of the campaign's seed and the case
    without a variant (not the campaign's RNG, whose stream stays as it was; the same case draws
    the same after a resume)."""
    if rate <= 0:
        return None
    plain = case.replace(settings=dataclasses.replace(case.settings, metamorphic=None))
    digest = hashlib.blake2b(f"{campaign_seed}:{serialize.case_id(plain)}".encode(),
                             digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0 ** 64
    names = applicable_variants(case.settings)
    if u >= rate or not names:
        return None
    return names[min(int(u / rate * len(names)), len(names) - 1)]
