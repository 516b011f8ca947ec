"""What a campaign is asked to do (`covfuzz fuzz` options)."""

from __future__ import annotations

from dataclasses import dataclass, field

from covfuzz.features import FEEDBACK_FAMILIES, parse_families
from covfuzz.generator import GenOptions
from harness.worker_handle import DEFAULT_TIMEOUT

DEFAULT_METAMORPHIC_RATE = 0.1
DEFAULT_SWEEP_STEPS = 4
MAX_SWEEP_STEPS = 64


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
    timeout: float = DEFAULT_TIMEOUT
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
    # Feature families judged (`--feedback`, issue 19): None = every family in feedback mode,
    # coverage alone with no_feedback (the baseline as it always was). Coverage is always on.
    feedback: tuple[str, ...] | None = None
    # --device cuda: where the float64 reference runs (harness.oracle.REFERENCE_CHOICES).
    reference: str = "auto"
    # Workers on a Ray cluster (issue 21, harness/ray_pool.py): its address ("auto" or
    # HOST:PORT), and the slots per node (None: its CPU count) or per GPU. None: local workers.
    ray: str | None = None
    workers_per_node: int | None = None
    workers_per_gpu: int | None = None
    # Issue 19's metamorphic checks (`--metamorphic`): the share of candidates that, when they
    # pass, are compiled again under one variant of their settings and compared.
    metamorphic_rate: float = DEFAULT_METAMORPHIC_RATE
    # Issue 20's sweeps (`--sweep-steps`, covfuzz/campaign/candidates.py): value variants run
    # right after each chosen candidate, on its compiled program (feedback mode; 0: none).
    sweep_steps: int = DEFAULT_SWEEP_STEPS

    def __post_init__(self) -> None:
        if not 0.0 <= self.metamorphic_rate <= 1.0:
            raise ValueError(f"metamorphic rate {self.metamorphic_rate!r:.20} is not in [0, 1]")
        if not 0 <= self.sweep_steps <= MAX_SWEEP_STEPS:
            raise ValueError(f"sweep steps {self.sweep_steps!r:.20} is not in "
                             f"[0, {MAX_SWEEP_STEPS}]")
        if self.feedback is not None:
            self.feedback = parse_families(",".join(self.feedback))  # ValueError: unknown name

    @property
    def families(self) -> tuple[str, ...]:
        """The feature families this campaign computes and judges, coverage first."""
        if self.feedback is None:
            return ("coverage",) if self.no_feedback else FEEDBACK_FAMILIES
        return ("coverage", *(f for f in FEEDBACK_FAMILIES if f in self.feedback and f != "coverage"))

    @property
    def mode(self) -> str:
        return "no-feedback" if self.no_feedback else "feedback"
