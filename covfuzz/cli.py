"""The `covfuzz` command line.

Every subcommand prints a one-line error and exits 2 on bad input (a malformed test case, an
unknown op, a missing file); tracebacks are reserved for covfuzz's own bugs.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

from covfuzz import __version__
from covfuzz.errors import CovfuzzError, one_line

EXIT_BAD_INPUT = 2


def _load_case(path: str, directory: str | None = None):
    """A test case from a file in stored or JSON form, or a seed / failure-example / signature
    id of the campaign in `directory` (propagated, so specs are filled)."""
    from covfuzz import serialize
    from covfuzz.errors import TestCaseFormatError
    from covfuzz.propagate import propagate

    if os.path.isfile(path):
        with open(path, "rb") as handle:
            data = handle.read(serialize.MAX_ENCODED_BYTES + 1)
        case = serialize.decode(data)
    elif directory:
        case = case_from_campaign(directory, path)
    else:
        raise TestCaseFormatError(f"{path}: no such file (for an id, name its campaign with --dir DIR)")
    try:
        return propagate(case)
    except CovfuzzError:
        return case  # an invalid graph can still be shown


def case_from_campaign(directory: str, ident: str):
    """The test case a seed, failure-example or signature id names in campaign `directory`
    (also used by `covfuzz run`)."""
    from corpus import CorpusStore
    from covfuzz import serialize
    from covfuzz.triage import failures

    path = os.path.join(directory, "corpus.lmdb")
    if not os.path.isdir(path):
        raise CovfuzzError(f"{directory}: not a campaign directory (no corpus.lmdb/)")
    with CorpusStore(path, readonly=True, create=False) as store:
        data = store.get_case_bytes(ident) if failures.is_case_id(ident) else None
        if data is not None:
            return serialize.decode(data)
        return failures.resolve(store, ident, directory).case


# ----------------------------------------------------------------------------- gen


def cmd_gen(args) -> int:
    from covfuzz import codegen, serialize
    from covfuzz.generator import generate

    opts = _gen_options(args)
    if args.count < 1:
        raise CovfuzzError("-n must be at least 1")

    out_dir = None
    if args.out and (args.count > 1 or os.path.isdir(args.out) or args.out.endswith(os.sep)):
        out_dir = args.out
        os.makedirs(out_dir, exist_ok=True)

    op_counts: collections.Counter = collections.Counter()
    dtype_counts: collections.Counter = collections.Counter()
    started = time.perf_counter()
    for k in range(args.count):
        seed = args.seed + k
        case = generate(seed, opts)
        for node in case.graph.nodes:
            op_counts[node.op] += 1
        for value in list(case.graph.inputs) + [n for n in case.graph.nodes]:
            spec = value.spec if hasattr(value, "spec") else value.out
            if hasattr(spec, "dtype"):
                dtype_counts[spec.dtype] += 1
        if args.code:
            sys.stdout.write(codegen.program(case))
            continue
        data = serialize.to_json(case).encode() if args.json else serialize.encode(case)
        if out_dir:
            ext = ".json" if args.json else ".cfz"
            with open(os.path.join(out_dir, f"{serialize.case_id(case)}{ext}"), "wb") as handle:
                handle.write(data)
        elif args.out:
            with open(args.out, "wb") as handle:
                handle.write(serialize.to_json(case).encode() if args.out.endswith(".json") else data)
        elif args.count == 1:
            sys.stdout.write(serialize.to_json(case))
        else:
            ops_text = ",".join(n.op for n in case.graph.nodes)
            print(f"{serialize.case_id(case)} seed={seed} nodes={len(case.graph.nodes)} {ops_text}")
        if args.count >= 50 and (k + 1) % 100 == 0:
            print(f"[gen] {k + 1}/{args.count}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    if args.stats or out_dir:
        print(f"generated {args.count} test cases in {elapsed:.1f}s "
              f"({sum(op_counts.values())} nodes, {len(op_counts)} distinct ops, "
              f"{len(dtype_counts)} dtypes)" + (f" -> {out_dir}" if out_dir else ""), file=sys.stderr)
    if args.stats:
        print("ops: " + ", ".join(f"{n}={c}" for n, c in op_counts.most_common()), file=sys.stderr)
        print("dtypes: " + ", ".join(f"{n}={c}" for n, c in dtype_counts.most_common()),
              file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- show


def cmd_show(args) -> int:
    from covfuzz import codegen, serialize
    from covfuzz.ir import TensorSpec

    case = _load_case(args.case, args.dir)
    if args.json:
        sys.stdout.write(serialize.to_json(case))
        return 0
    g, s = case.graph, case.settings
    print(f"test case {serialize.case_id(case)}  seed={case.seed}  "
          f"{len(g.inputs)} inputs, {len(g.nodes)} nodes, outputs {list(g.outputs)}")
    print(f"settings: backend={s.backend} mode={s.mode} dynamic={s.dynamic} "
          f"fullgraph={s.fullgraph} device={s.device} backward={s.backward} "
          f"mark_dynamic={list(s.mark_dynamic)}")
    if s.inductor_config or s.dynamo_config:
        print(f"config: inductor={s.inductor_config} dynamo={s.dynamo_config}")
    print("values:")
    for i, inp in enumerate(g.inputs):
        detail = f"fill={inp.fill}" if isinstance(inp.spec, TensorSpec) else f"value={inp.value!r}"
        if inp.param:
            detail += "  (a Model parameter)"
        print(f"  x{i:<3} input  {inp.spec.short():<40} {detail}")
    base = len(g.inputs)
    for j, node in enumerate(g.nodes):
        spec = node.out.short() if node.out is not None else "(invalid)"
        args_text = ", ".join(codegen.value_name(g, a) for a in node.args)
        print(f"  v{base + j:<3} {node.op}({args_text}) {node.attrs or ''} -> {spec}")
    if not args.no_code:
        print("\ncode:")
        if any(n.out is None for n in g.nodes):
            from covfuzz.propagate import propagate
            try:
                propagate(case)
            except CovfuzzError as exc:
                print(f"  (graph is invalid: {exc})")
                return 1
        sys.stdout.write(codegen.program(case))
    return 0


# ----------------------------------------------------------------------------- ops


def cmd_ops(args) -> int:
    from covfuzz import ops

    rows = []
    for name, op in sorted(ops.CATALOG.items()):
        if args.category and op.category != args.category:
            continue
        rows.append({"name": name, "category": op.category, "available": name in ops.AVAILABLE,
                     "arity": len(op.args), "dtypes": [a.dtypes for a in op.args],
                     "attrs": sorted(op.attrs), "data_dependent": op.data_dependent,
                     "nondeterministic": op.nondeterministic, "weight": op.weight})
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    for row in rows:
        flags = "".join([" data-dependent" if row["data_dependent"] else "",
                         " nondeterministic" if row["nondeterministic"] else "",
                         "" if row["available"] else " UNAVAILABLE"])
        attrs = ",".join(row["attrs"])
        print(f"{row['name']:<42} {row['category']:<18} args={row['arity']} "
              f"({'/'.join(row['dtypes'])}) attrs=[{attrs}]{flags}")
    available = sum(r["available"] for r in rows)
    print(f"{available} of {len(rows)} ops available in this torch", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- fuzz / status / plot


def _gen_options(args):
    from covfuzz.generator import GenOptions, parse_dtypes, parse_supported_ops

    opts = GenOptions(max_nodes=args.max_nodes, max_depth=args.max_depth, device=args.device,
                      data_dependent=args.data_dependent)
    if args.supported_ops:
        opts.op_weights = parse_supported_ops(args.supported_ops)
    if args.dtypes:
        opts.dtypes = parse_dtypes(args.dtypes)
    return opts


def cmd_fuzz(args) -> int:
    from covfuzz.campaign import Campaign, CampaignOptions

    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise CovfuzzError("--device cuda: no CUDA device is visible to torch")
    workers = args.workers or default_workers(args.device)
    opts = CampaignOptions(workers=workers, device=args.device, hours=args.hours, execs=args.execs,
                           no_feedback=args.no_feedback, seed_files=args.seeds or [],
                           timeout=args.timeout, memory_limit_mb=args.memory_limit_mb,
                           rng_seed=args.seed, status_interval=args.status_interval,
                           inject_faults=args.inject_faults, gen_candidates=args.gen_candidates,
                           gen=_gen_options(args))
    if opts.hours is None and opts.execs is None:
        print("covfuzz fuzz: no --hours or --execs: running until interrupted (Ctrl-C stops cleanly)",
              file=sys.stderr)
    status = Campaign(args.dir, opts).run()
    from covfuzz.campaign import status_line
    print(f"summary: {status_line(status)}")
    print(f"results: {args.dir} (covfuzz status {args.dir}; covfuzz plot {args.dir})")
    return 0


def default_workers(device: str) -> int:
    if device == "cuda":
        import torch
        return max(torch.cuda.device_count(), 1) * 2
    return max(os.cpu_count() or 1, 1)


def cmd_status(args) -> int:
    from covfuzz.campaign import status_line
    from covfuzz.status import read_status

    status = read_status(args.dir)
    if args.json:
        json.dump(status, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    state = "running" if status.get("running") else "stopped"
    print(f"{args.dir}: {state} ({status.get('mode')}, {status.get('workers')} workers, "
          f"{status.get('device')})")
    print(status_line(status))
    outcomes = status.get("outcomes", {})
    if outcomes:
        print("outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
    rows = status.get("mutators", {})
    if rows:
        print("mutators (proposals / valid / executed / ran eagerly / wins):")
        for name, row in sorted(rows.items()):
            print(f"  {name:<18} {row.get('proposals', 0):>6} {row.get('valid', 0):>6} "
                  f"{row.get('executed', 0):>6} {row.get('ran', 0):>6} {row.get('wins', 0):>5}")
    for title, key in (("strategies", "strategies"), ("best settings moves", "settings_moves")):
        table = status.get(key) or {}
        if table:
            print(f"{title} (tries, new features per second, decayed):")
            for name, row in sorted(table.items(), key=lambda kv: -kv[1].get("rate", 0)):
                print(f"  {name:<34} {row.get('tries', 0):>6} {row.get('rate', 0):>10.3f}")
    rss = status.get("supervisor_rss_mb")
    if rss is not None:
        print(f"supervisor RSS: {rss} MiB")
    return 0


def cmd_plot(args) -> int:
    from covfuzz.status import plot

    out = plot(args.dir, args.out or os.path.join(args.dir, "progress.png"),
               compare=args.compare or [])
    print(out)
    return 0


# ----------------------------------------------------------------------------- parser


def _add_gen_arguments(parser) -> None:
    parser.add_argument("--max-nodes", type=int, default=10, help="upper bound on ops per graph (default 10)")
    parser.add_argument("--max-depth", type=int, default=6, help="longest chain of ops (default 6)")
    parser.add_argument("--supported-ops", help='restrict/weight ops, e.g. "torch.add,torch.matmul=5"')
    parser.add_argument("--dtypes", help="dtypes of fresh inputs, e.g. float32,bfloat16,int64")
    parser.add_argument("--data-dependent", action="store_true",
                        help="also use nonzero/masked_select/unique/item (turns on dynamo capture_*)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="covfuzz", description="Coverage-guided mutational fuzzer for torch.compile.")
    parser.add_argument("--version", action="version", version=f"covfuzz {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    gen = sub.add_parser("gen", help="generate random test cases",
                         description="Generate seeded random test cases (same seed => same bytes).")
    gen.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    gen.add_argument("-n", "--count", type=int, default=1, help="how many cases (seeds seed..seed+n-1)")
    gen.add_argument("--out", "-o", help="output file (n=1) or directory (one file per case)")
    gen.add_argument("--json", action="store_true", help="write the JSON form instead of the stored form")
    gen.add_argument("--code", action="store_true", help="print the generated Python programs")
    _add_gen_arguments(gen)
    gen.add_argument("--stats", action="store_true", help="print op and dtype counts to stderr")
    gen.set_defaults(func=cmd_gen)

    show = sub.add_parser("show", help="print a test case: graph, specs, code",
                          description="Show a test case file (stored or JSON form).")
    show.add_argument("case", metavar="FILE_OR_ID",
                      help="test case file (.cfz stored form or .json), or an id with --dir")
    show.add_argument("--dir", help="campaign directory to look ids up in (seed, example or signature id)")
    show.add_argument("--json", action="store_true", help="print the JSON form only")
    show.add_argument("--no-code", action="store_true", help="omit the generated program")
    show.set_defaults(func=cmd_show)

    ops_cmd = sub.add_parser("ops", help="list the op catalog and availability",
                             description="List every op covfuzz knows, checked against this torch.")
    ops_cmd.add_argument("--json", action="store_true")
    ops_cmd.add_argument("--category", help="only this category (e.g. reduction, view, matmul)")
    ops_cmd.set_defaults(func=cmd_ops)

    fuzz = sub.add_parser(
        "fuzz", help="run (or resume) a coverage-guided campaign in DIR",
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
    fuzz.add_argument("--timeout", type=float, default=120.0, help="per-case timeout in seconds (default 120)")
    fuzz.add_argument("--memory-limit-mb", type=int, default=None, help="per-worker RSS limit")
    fuzz.add_argument("--seed", type=int, default=0, help="campaign RNG seed (default 0)")
    fuzz.add_argument("--status-interval", type=float, default=10.0, help="seconds between status lines")
    fuzz.add_argument("--inject-faults", type=float, default=0.0, metavar="RATE",
                      help="testing covfuzz itself: this share of cases makes its worker segfault, "
                           "abort, hang, blow up memory or raise (default 0)")
    _add_gen_arguments(fuzz)
    fuzz.set_defaults(func=cmd_fuzz)

    status = sub.add_parser("status", help="status of a campaign (running or stopped)",
                            description="Read DIR/fuzzer_stats.json; safe while a campaign runs.")
    status.add_argument("dir", metavar="DIR")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    plot_cmd = sub.add_parser("plot", help="PNG of features and unique failures over time",
                              description="Plot features and unique failures over time.")
    plot_cmd.add_argument("dir", metavar="DIR")
    plot_cmd.add_argument("-o", "--out", help="PNG path (default DIR/progress.png)")
    plot_cmd.add_argument("--compare", nargs="*", metavar="DIR", help="other campaigns on the same axes")
    plot_cmd.set_defaults(func=cmd_plot)

    from covfuzz.triage import cli as triage_cli
    triage_cli.add_parsers(sub)
    from covfuzz import selffuzz
    selffuzz.add_parser(sub)

    try:
        from harness import cli_run
    except ImportError:
        cli_run = None
    if cli_run is not None:
        run_parser = cli_run.add_parser(sub)
        if run_parser is not None and run_parser.get_default("func") is None:
            run_parser.set_defaults(func=cli_run.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CovfuzzError as exc:
        print(f"covfuzz {args.command}: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return 0
    except OSError as exc:
        print(f"covfuzz {args.command}: {one_line(exc.strerror or exc)}: {one_line(exc.filename or '')}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"covfuzz {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
