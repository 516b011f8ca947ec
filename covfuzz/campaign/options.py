"""What a campaign is asked to do (`covfuzz fuzz` options)."""

from __future__ import annotations

from dataclasses import dataclass, field

from covfuzz.generator import GenOptions


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
    # Background triage (covfuzz/campaign/triage_stage.py): at the end of the budget the run
    # waits up to this many seconds for the buckets still queued.
    drain_limit: float = 1800.0
    map_size: int | None = None  # initial LMDB map size (tests start tiny to force growth)

    @property
    def mode(self) -> str:
        return "no-feedback" if self.no_feedback else "feedback"
