"""`covfuzz fuzz`: run or resume a campaign."""

from __future__ import annotations

import os
import sys

import torch

from covfuzz.campaign import Campaign, CampaignOptions
from covfuzz.campaign.triage_stage import TriageStage
from covfuzz.cli.cases import add_gen_arguments, gen_options
from covfuzz.cli.commands import summary
from covfuzz.errors import CovfuzzError
from covfuzz.status import status_line


def cmd_fuzz(args) -> int:
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise CovfuzzError("--device cuda: no CUDA device is visible to torch")
    workers = args.workers or default_workers(args.device)
    opts = CampaignOptions(workers=workers, device=args.device, hours=args.hours, execs=args.execs,
                           no_feedback=args.no_feedback, seed_files=args.seeds or [],
                           timeout=args.timeout, memory_limit_mb=args.memory_limit_mb,
                           rng_seed=args.seed, status_interval=args.status_interval,
                           inject_faults=args.inject_faults, gen_candidates=args.gen_candidates,
                           drain_limit=args.drain_limit,
                           gen=gen_options(args))
    if opts.hours is None and opts.execs is None:
        print("covfuzz fuzz: no --hours or --execs: running until interrupted (Ctrl-C stops cleanly)",
              file=sys.stderr)
    stages = [] if args.no_triage else [TriageStage(args.dir)]
    status = Campaign(args.dir, opts, stages=stages).run()
    print(f"summary: {status_line(status)}")
    print(f"results: {args.dir} (covfuzz status {args.dir}; covfuzz plot {args.dir})")
    return 0


def default_workers(device: str) -> int:
    if device == "cuda":
        return max(torch.cuda.device_count(), 1) * 2
    return max(os.cpu_count() or 1, 1)


def add_parsers(sub) -> None:
    fuzz = sub.add_parser(
        "fuzz", help=summary("fuzz"),
        description="Run a campaign: seed the corpus from the generator (and --seeds), then choose, "
                    "mutate, validate, execute on warm workers, keep new coverage, bucket failures. "
                    "Re-running on the same DIR resumes. SIGINT/SIGTERM stop cleanly.")
    fuzz.add_argument("dir", metavar="DIR", help="campaign directory (created if missing)")
    fuzz.add_argument("--workers", type=int, default=0, help="parallel workers (default: one per core, two per GPU)")
    budget = fuzz.add_mutually_exclusive_group()
    budget.add_argument("--hours", type=float, help="stop after this many hours (this run)")
    budget.add_argument("--execs", type=int, help="stop after this many executions (this run)")
    fuzz.add_argument("--no-feedback", action="store_true",
                      help="baseline: pure generation, no coverage guidance (like torchfuzz)")
    fuzz.add_argument("--gen-candidates", type=int, default=12, metavar="K",
                      help="feedback mode: graphs drawn per generation; the one whose ops, op pairs, "
                           "dtypes and settings have paid most in new coverage runs (default %(default)s)")
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
