"""`covfuzz fuzz`: run or resume a campaign."""

from __future__ import annotations

import socket
import sys

import torch

from covfuzz.campaign import Campaign, CampaignOptions
from covfuzz.campaign.options import DEFAULT_METAMORPHIC_RATE, DEFAULT_SWEEP_STEPS, MAX_SWEEP_STEPS
from covfuzz.campaign.sync import SyncStage
from covfuzz.campaign.triage_stage import TriageStage
from covfuzz.cli.cases import add_gen_arguments, gen_options
from covfuzz.cli.commands import summary
from covfuzz.errors import CovfuzzError
from covfuzz.features import parse_families
from covfuzz.status import status_line
from harness.pool import default_workers_here


def cmd_fuzz(args) -> int:
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise CovfuzzError("--device cuda: no CUDA device is visible to torch")
    if args.ray and args.workers:
        raise CovfuzzError("--workers: with --ray each node's workers are set by "
                           "--workers-per-node or --workers-per-gpu")
    if args.workers_per_node and not args.ray:
        raise CovfuzzError("--workers-per-node needs --ray (a local campaign uses --workers)")
    if not 0.0 <= args.metamorphic <= 1.0:
        raise CovfuzzError(f"--metamorphic: {args.metamorphic} is not a share in [0, 1]")
    if not 0 <= args.sweep_steps <= MAX_SWEEP_STEPS:
        raise CovfuzzError(f"--sweep-steps: {args.sweep_steps} is not in [0, {MAX_SWEEP_STEPS}]")
    workers = args.workers or default_workers_here(args.device, args.workers_per_gpu or None)
    try:
        families = parse_families(args.feedback) if args.feedback else None
    except ValueError as exc:
        raise CovfuzzError(f"--feedback: {exc}") from None
    opts = CampaignOptions(workers=workers, device=args.device, hours=args.hours, execs=args.execs,
                           no_feedback=args.no_feedback, seed_files=args.seeds or [],
                           timeout=args.timeout, memory_limit_mb=args.memory_limit_mb,
                           rng_seed=args.seed, status_interval=args.status_interval,
                           inject_faults=args.inject_faults, gen_candidates=args.gen_candidates,
                           drain_limit=args.drain_limit, reference=args.reference, feedback=families,
                           ray=args.ray, workers_per_node=args.workers_per_node or None,
                           workers_per_gpu=(args.workers_per_gpu or None) if args.ray else None,
                           metamorphic_rate=args.metamorphic, sweep_steps=args.sweep_steps,
                           gen=gen_options(args))
    if opts.hours is None and opts.execs is None:
        print("covfuzz fuzz: no --hours or --execs: running until interrupted (Ctrl-C stops cleanly)",
              file=sys.stderr)
    stages = [] if args.no_triage else [TriageStage(args.dir)]
    if args.sync_dir:
        stages.append(SyncStage(args.dir, args.sync_dir, args.sync_name or _default_sync_name(),
                                interval=args.sync_interval))
    elif args.sync_name:
        raise CovfuzzError("--sync-name needs --sync-dir")
    status = Campaign(args.dir, opts, stages=stages).run()
    print(f"summary: {status_line(status)}")
    print(f"results: {args.dir} (covfuzz status {args.dir}; covfuzz crashes {args.dir}; "
          f"covfuzz plot {args.dir}; resume: covfuzz fuzz {args.dir})")
    return 0


def _default_sync_name() -> str:
    """This machine's name, as a sync name (letters, digits, '.', '_', '-')."""
    name = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in socket.gethostname())
    return name.strip(".-_")[:64] or "campaign"


def add_parsers(sub) -> None:
    fuzz = sub.add_parser(
        "fuzz", help=summary("fuzz"),
        description="Run a campaign: seed the corpus from the generator (and --seeds), then choose, "
                    "mutate, validate, execute on warm workers, keep new coverage, bucket failures. "
                    "Re-running on the same DIR resumes. SIGINT/SIGTERM stop cleanly.")
    fuzz.add_argument("dir", metavar="DIR", help="campaign directory (created if missing)")
    fuzz.add_argument("--workers", type=int, default=0,
                      help="parallel workers (default: one per core; --device cuda: per GPU, see "
                           "--workers-per-gpu)")
    fuzz.add_argument("--workers-per-gpu", type=int, default=0, metavar="N",
                      help="--device cuda: N workers on each visible GPU, each pinned to its GPU "
                           "(default: as many as the GPU's memory holds at 8 GiB each and the "
                           "host's cores feed)")
    fuzz.add_argument("--reference", choices=("auto", "cpu", "cuda", "cpu-eager"), default="auto",
                      help="--device cuda: where the float64 reference runs (auto: on the GPU "
                           "when the case fits, else the CPU); cpu-eager: compare the compiled "
                           "GPU result with eager on the CPU instead of eager on the GPU")
    fuzz.add_argument("--ray", metavar="ADDRESS",
                      help="run the workers on a Ray cluster: 'auto' (the cluster this machine "
                           "belongs to) or HOST:PORT of its head; needs pip install -e '.[ray]'")
    fuzz.add_argument("--workers-per-node", type=int, default=0, metavar="N",
                      help="--ray: workers on each node (default: the node's CPU count); with "
                           "--workers-per-gpu instead, N per GPU of each node")
    fuzz.add_argument("--sync-dir", metavar="SHARED",
                      help="share seeds and new failures with other campaigns through this "
                           "directory (AFL++-style sync; each campaign writes SHARED/NAME)")
    fuzz.add_argument("--sync-name", metavar="NAME",
                      help="this campaign's name in --sync-dir (default: the host name)")
    fuzz.add_argument("--sync-interval", type=float, default=300.0, metavar="SECONDS",
                      help="how often the other campaigns' new cases are read (default 300)")
    budget = fuzz.add_mutually_exclusive_group()
    budget.add_argument("--hours", type=float, help="stop after this many hours (this run)")
    budget.add_argument("--execs", type=int, help="stop after this many executions (this run)")
    fuzz.add_argument("--feedback", metavar="FAMILIES",
                      help="feature families to judge by, comma-separated: coverage,gencode,values,"
                           "divergence (default: all in feedback mode, coverage only with "
                           "--no-feedback; coverage is always judged)")
    fuzz.add_argument("--no-feedback", action="store_true",
                      help="baseline: pure generation, no coverage guidance (like torchfuzz)")
    fuzz.add_argument("--gen-candidates", type=int, default=12, metavar="K",
                      help="feedback mode: graphs drawn per generation; the one whose ops, op pairs, "
                           "dtypes and settings have paid most in new coverage runs (default %(default)s)")
    fuzz.add_argument("--metamorphic", type=float, default=DEFAULT_METAMORPHIC_RATE, metavar="RATE",
                      help="this share of cases, when they pass, is compiled again under one "
                           "variant of its settings (vectorization off, dynamic or static shapes, "
                           "cpp_wrapper flipped) and the two compiled results compared; 0 turns "
                           "it off (default %(default)s)")
    fuzz.add_argument("--sweep-steps", type=int, default=DEFAULT_SWEEP_STEPS, metavar="N",
                      help="feedback mode: value variants of each chosen case (special values, "
                           "magnitudes, other fills) run right after it on the program it "
                           "compiled, without compiling again: N at first, then N times what "
                           "a step earns in new features per second over a compiled case "
                           "(1 to 4N); 0 turns them off (default %(default)s)")
    fuzz.add_argument("--seeds", nargs="*", metavar="FILE", help="test-case files to seed the corpus")
    fuzz.add_argument("--no-triage", action="store_true",
                      help="do not confirm, localize and reduce new buckets in the background "
                           "(by default each new bucket is re-run in a fresh process, localized "
                           "to its culprit node and reduced while the campaign runs)")
    fuzz.add_argument("--drain-limit", type=float, default=1800.0, metavar="SECONDS",
                      help="when the budget is spent, wait up to this long for the buckets still "
                           "queued for triage (default 1800; the rest are triaged on resume)")
    fuzz.add_argument("--timeout", type=float, default=120.0, help="per-case timeout in seconds (default 120)")
    fuzz.add_argument("--memory-limit-mb", type=int, default=None, help="per-worker RSS limit")
    fuzz.add_argument("--seed", type=int, default=0, help="campaign RNG seed (default 0)")
    fuzz.add_argument("--status-interval", type=float, default=10.0, help="seconds between status lines")
    fuzz.add_argument("--inject-faults", type=float, default=0.0, metavar="RATE",
                      help="testing covfuzz itself: this share of cases makes its worker segfault, "
                           "abort, hang, blow up memory or raise (default 0)")
    add_gen_arguments(fuzz)
    fuzz.set_defaults(func=cmd_fuzz)
