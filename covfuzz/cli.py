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
from covfuzz.errors import CovfuzzError

EXIT_BAD_INPUT = 2


def _load_case(path: str):
    """A test case from a file in stored or JSON form (propagated, so specs are filled)."""
    from covfuzz import serialize
    from covfuzz.errors import TestCaseFormatError
    from covfuzz.propagate import propagate

    if not os.path.isfile(path):
        raise TestCaseFormatError(f"{path}: no such file (corpus ids arrive with the campaign)")
    with open(path, "rb") as handle:
        data = handle.read(serialize.MAX_ENCODED_BYTES + 1)
    case = serialize.decode(data)
    try:
        return propagate(case)
    except CovfuzzError:
        return case  # an invalid graph can still be shown


# ----------------------------------------------------------------------------- gen


def cmd_gen(args) -> int:
    from covfuzz import codegen, serialize
    from covfuzz.generator import GenOptions, generate, parse_dtypes, parse_supported_ops

    opts = GenOptions(max_nodes=args.max_nodes, max_depth=args.max_depth, device=args.device,
                      data_dependent=args.data_dependent)
    if args.supported_ops:
        opts.op_weights = parse_supported_ops(args.supported_ops)
    if args.dtypes:
        opts.dtypes = parse_dtypes(args.dtypes)
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

    case = _load_case(args.case)
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


# ----------------------------------------------------------------------------- parser


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
    gen.add_argument("--max-nodes", type=int, default=10, help="upper bound on ops per graph (default 10)")
    gen.add_argument("--max-depth", type=int, default=6, help="longest chain of ops (default 6)")
    gen.add_argument("--supported-ops", help='restrict/weight ops, e.g. "torch.add,torch.matmul=5"')
    gen.add_argument("--dtypes", help="dtypes of fresh inputs, e.g. float32,bfloat16,int64")
    gen.add_argument("--data-dependent", action="store_true",
                     help="also use nonzero/masked_select/unique/item (turns on dynamo capture_*)")
    gen.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    gen.add_argument("--stats", action="store_true", help="print op and dtype counts to stderr")
    gen.set_defaults(func=cmd_gen)

    show = sub.add_parser("show", help="print a test case: graph, specs, code",
                          description="Show a test case file (stored or JSON form).")
    show.add_argument("case", metavar="FILE", help="test case file (.cfz stored form or .json)")
    show.add_argument("--json", action="store_true", help="print the JSON form only")
    show.add_argument("--no-code", action="store_true", help="omit the generated program")
    show.set_defaults(func=cmd_show)

    ops_cmd = sub.add_parser("ops", help="list the op catalog and availability",
                             description="List every op covfuzz knows, checked against this torch.")
    ops_cmd.add_argument("--json", action="store_true")
    ops_cmd.add_argument("--category", help="only this category (e.g. reduction, view, matmul)")
    ops_cmd.set_defaults(func=cmd_ops)

    try:
        from harness import cli_run
    except ImportError:
        cli_run = None
    if cli_run is not None:
        cli_run.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CovfuzzError as exc:
        print(f"covfuzz {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return 0
    except OSError as exc:
        print(f"covfuzz {args.command}: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"covfuzz {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
