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
"""

from __future__ import annotations

import random

import mutators
from covfuzz.campaign.execution import Candidate, Execution
from covfuzz.campaign.feedbacks import MAX_FAMILY_CREDIT, normalized_gain
from covfuzz.campaign.options import CampaignOptions
from covfuzz.campaign.seeds import SeedCorpus
from covfuzz.campaign.state import CampaignState, Counters
from covfuzz.generator import generate
from covfuzz.propagate import propagate
from covfuzz.scheduler import RateBandit, Scheduler
from covfuzz.traits import TraitYield
from covfuzz.triage.resolve import read_case_file
from harness.faults import FAULT_SEEDS

STRATEGIES = ("generate", "generate+settings", "settings", "mutate")
# What a new failure bucket is worth to the strategy and settings bandits, which learn from
# each family's finds in units of that family's average execution (feedbacks.normalized_gain):
# as much as the largest find one family can credit.
NEW_FAILURE_CREDIT = MAX_FAMILY_CREDIT
MUTATION_TRIES = 8  # seeds tried before a mutation strategy falls back to a fresh graph


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
        out += [self.generated() for _ in range(self.opts.initial_seeds)]
        return out

    def next(self) -> Candidate:
        candidate = self._choose()
        if self.opts.inject_faults and self.rng.random() < self.opts.inject_faults:
            fault_seed = self.rng.choice(sorted(FAULT_SEEDS))
            origin = candidate.origin
            candidate = Candidate(candidate.case.replace(seed=fault_seed),
                                  {**origin, "mutators": list(origin["mutators"]) + ["inject-fault"],
                                   "fault": FAULT_SEEDS[fault_seed]})
        return candidate

    def _choose(self) -> Candidate:
        """No-feedback: always a fresh graph. Feedback: the strategy with the best rate of new
        features per second (Thompson-sampled, with a uniform exploration share)."""
        if self.opts.no_feedback or not self.scheduler.seeds:
            return self.generated()
        strategy = self.strategies.choose(list(STRATEGIES))
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
        drawn = []
        for i in range(k):
            case, move = generate(seed + i, self.opts.gen), None
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
            for name, outcome in stacked.tried:
                self.counters.count_mutator(name, "proposals")
                if outcome == mutators.ACCEPTED:
                    self.counters.count_mutator(name, "valid")
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
        if strategy:
            self.strategies.reward(strategy, gain, seconds)
        # A move is credited only where it alone made the difference (not on a fresh graph,
        # whose new features come mostly from its ops).
        if strategy == "settings":
            for move in ex.origin.get("settings", ()):
                self.setting_moves.reward(move, gain, seconds)
        arms = ex.mutator_names()
        if arms and strategy in ("settings", "mutate"):
            self.scheduler.reward(arms, ex.new_bucket or credit >= 1.0)
