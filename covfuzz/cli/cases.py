"""Test-case commands: `covfuzz gen`, `covfuzz show`, `covfuzz ops`."""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
import warnings

from covfuzz import codegen, ops, serialize
from covfuzz.cli.commands import summary
from covfuzz.errors import CovfuzzError
from covfuzz.generator import GenOptions, generate, parse_dtypes, parse_supported_ops
from covfuzz.ir import TensorSpec
from covfuzz.propagate import backward_loss, propagate
from covfuzz.text import printable
from covfuzz.triage.resolve import load_case


# ----------------------------------------------------------------------------- generator options


def add_gen_arguments(parser: argparse.ArgumentParser) -> None:
    """The generator options `gen` and `fuzz` share."""
    parser.add_argument("--max-nodes", type=int, default=10, help="upper bound on ops per graph (default 10)")
    parser.add_argument("--max-depth", type=int, default=6, help="longest chain of ops (default 6)")
    parser.add_argument("--supported-ops", help='restrict/weight ops, e.g. "torch.add,torch.matmul=5"')
    parser.add_argument("--dtypes", help="dtypes of fresh inputs, e.g. float32,bfloat16,int64")
    parser.add_argument("--data-dependent", action="store_true",
                        help="also use nonzero/masked_select/unique/item (turns on dynamo capture_*)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")


def gen_options(args) -> GenOptions:
    opts = GenOptions(max_nodes=args.max_nodes, max_depth=args.max_depth, device=args.device,
                      data_dependent=args.data_dependent)
    if args.supported_ops:
        opts.op_weights = parse_supported_ops(args.supported_ops)
    if args.dtypes:
        opts.dtypes = parse_dtypes(args.dtypes)
    return opts


# ----------------------------------------------------------------------------- gen


def cmd_gen(args) -> int:
    opts = gen_options(args)
    if args.count < 1:
        raise CovfuzzError("-n must be at least 1")

    out_dir = None
    if args.out and (args.count > 1 or os.path.isdir(args.out) or args.out.endswith(os.sep)):
        out_dir = args.out
        os.makedirs(out_dir, exist_ok=True)

    op_counts: collections.Counter = collections.Counter()
    dtype_counts: collections.Counter = collections.Counter()
    invalid: collections.Counter = collections.Counter()  # --stats: why cases fail the checks
    eager_failed: collections.Counter = collections.Counter()
    started = time.perf_counter()
    for k in range(args.count):
        seed = args.seed + k
        case = generate(seed, opts)
        if args.stats:
            _check_case(case, invalid, eager_failed)
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
        n = args.count
        print(f"valid (stored form decoded and propagated again): {n - sum(invalid.values())}/{n} "
              f"({100 * (1 - sum(invalid.values()) / n):.1f}%)", file=sys.stderr)
        print(f"run eagerly on the CPU (program's fn on make_inputs, backward when set): "
              f"{n - sum(eager_failed.values())}/{n} "
              f"({100 * (1 - sum(eager_failed.values()) / n):.1f}%)", file=sys.stderr)
        for title, counter in (("invalid", invalid), ("eager failures", eager_failed)):
            for why, count in counter.most_common(12):
                print(f"  {title}: {count} x {why}", file=sys.stderr)
        print("ops: " + ", ".join(f"{n}={c}" for n, c in op_counts.most_common()), file=sys.stderr)
        print("dtypes: " + ", ".join(f"{n}={c}" for n, c in dtype_counts.most_common()),
              file=sys.stderr)
    return 0


def _check_case(case, invalid: collections.Counter, eager_failed: collections.Counter) -> None:
    """`gen --stats`: count whether `case` survives its stored form and propagation again, and
    whether its program runs eagerly (as tests/test_generator.py runs them): reason -> count."""
    try:
        propagate(serialize.decode(serialize.encode(case)))
    except CovfuzzError as exc:
        invalid[_reason(exc)] += 1
        return
    namespace: dict = {}
    program = codegen.program(case)
    stage = "forward"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(program, "<case>", "exec"), namespace)  # noqa: S102 - our codegen
            outputs = namespace["fn"](*namespace["make_inputs"]("cpu"))
            stage = "backward"
            if case.settings.backward:
                loss = backward_loss(outputs)
                if loss is not None:
                    loss.backward()
    except Exception as exc:  # noqa: BLE001 - counting eager failures is the point
        where = _failing_op(case, program, exc) if stage == "forward" else stage
        eager_failed[f"{where}: {_reason(exc)}"] += 1


def _failing_op(case, program: str, exc: BaseException) -> str:
    """The op of the line of the program's `fn` that raised, or "(program)"."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == "<case>" and code.co_name == "fn":
            line = tb.tb_lineno
        tb = tb.tb_next
    lines = program.splitlines()
    text = lines[line - 1] if line and line <= len(lines) else ""
    for j, node in enumerate(case.graph.nodes):
        if text.strip().startswith(f"{codegen.value_name(case.graph, len(case.graph.inputs) + j)} = "):
            return node.op
    return "(program)"


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return printable(f"{type(exc).__name__}: {lines[0][:100] if lines else ''}")


# ----------------------------------------------------------------------------- show


def cmd_show(args) -> int:
    resolved = load_case(args.case, args.dir, prefer_reduced=not args.original)
    print(f"picked {resolved.describe()}", file=sys.stderr)
    case = resolved.case
    if args.json:
        sys.stdout.write(serialize.to_json(case))
        return 0
    g, s = case.graph, case.settings
    check = resolved.failure.get("check") or {}
    if check.get("source") or check.get("root_type"):
        print(printable(f"failing check: {check.get('where', '?')}: {check.get('source', '')}"))
        print(printable(f"raised: {check.get('root_type', '')}: "
                        f"{check.get('root_message', '')[:300]}"))
    print(f"test case {serialize.case_id(case)}  seed={case.seed}  "
          f"{len(g.inputs)} inputs, {len(g.nodes)} nodes, outputs {list(g.outputs)}")
    print(f"settings: backend={s.backend} mode={s.mode} dynamic={s.dynamic} "
          f"fullgraph={s.fullgraph} device={s.device} backward={s.backward} "
          f"mark_dynamic={list(s.mark_dynamic)}")
    if s.inductor_config or s.dynamo_config:
        print(printable(f"config: inductor={s.inductor_config} dynamo={s.dynamo_config}"))
    print("values:")
    for i, inp in enumerate(g.inputs):
        detail = f"fill={inp.fill}" if isinstance(inp.spec, TensorSpec) else f"value={inp.value!r}"
        if inp.values is not None:
            shown = ", ".join(codegen.literal(v) for v in inp.values[:12])
            detail = f"values=[{shown}{', ...' if len(inp.values) > 12 else ''}]"
        if inp.param:
            detail += "  (a Model parameter)"
        print(f"  x{i:<3} input  {inp.spec.short():<40} {detail}")
    base = len(g.inputs)
    for j, node in enumerate(g.nodes):
        spec = node.out.short() if node.out is not None else "(invalid)"
        args_text = ", ".join(codegen.value_name(g, a) for a in node.args)
        print(printable(f"  v{base + j:<3} {node.op}({args_text}) {node.attrs or ''} -> {spec}"))
    if not args.no_code:
        print("\ncode:")
        if any(n.out is None for n in g.nodes):
            try:
                propagate(case)
            except CovfuzzError as exc:
                print(f"  (graph is invalid: {printable(exc)})")
                return 1
        sys.stdout.write(codegen.program(case))
    return 0


# ----------------------------------------------------------------------------- ops


def cmd_ops(args) -> int:
    rows = []
    for name, op in sorted(ops.CATALOG.items()):
        if args.category and op.category != args.category:
            continue
        rows.append({"name": name, "source": op.source, "category": op.category,
                     "available": name in ops.AVAILABLE,
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
        print(f"{row['name']:<42} {row['source']:<12} {row['category']:<18} args={row['arity']} "
              f"({'/'.join(row['dtypes'])}) attrs=[{attrs}]{flags}")
    available = sum(r["available"] for r in rows)
    by_source = collections.Counter(r["source"] for r in rows if r["available"])
    print(f"{available} of {len(rows)} ops available in this torch ("
          + ", ".join(f"{n} {s}" for s, n in sorted(by_source.items())) + ")", file=sys.stderr)
    _print_derivation(ops.DERIVED)
    return 0


def _print_derivation(derived) -> None:
    """What the OpInfo derivation kept and skipped (stderr)."""
    if derived.status != "ok":
        print("OpInfo-derived ops: none (see the note above)", file=sys.stderr)
        return
    print(f"OpInfo-derived: {len(derived.ops)} ops; {derived.complex_ops} of them support "
          "complex dtypes", file=sys.stderr)
    for reason, names in sorted(derived.skipped.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        print(f"  skipped {len(names)}: {reason} ({shown})", file=sys.stderr)


# ----------------------------------------------------------------------------- parsers


def add_parsers(sub) -> None:
    gen = sub.add_parser("gen", help=summary("gen"),
                         description="Generate seeded random test cases (same seed => same bytes).")
    gen.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    gen.add_argument("-n", "--count", type=int, default=1, help="how many cases (seeds seed..seed+n-1)")
    gen.add_argument("--out", "-o", help="output file (n=1) or directory (one file per case)")
    gen.add_argument("--json", action="store_true", help="write the JSON form instead of the stored form")
    gen.add_argument("--code", action="store_true", help="print the generated Python programs")
    add_gen_arguments(gen)
    gen.add_argument("--stats", action="store_true",
                     help="print op and dtype counts to stderr, and check every case: its stored "
                          "form decoded and propagated again (valid), its program run eagerly on "
                          "the CPU with backward when set (eager), with the main causes of failures")
    gen.set_defaults(func=cmd_gen)

    show = sub.add_parser("show", help=summary("show"),
                          description="Show a test case: a file (stored or JSON form, or "
                                      "DIR/reduced/<signature id>.json), or with --dir an id "
                                      "(seed, example, reduced-case or signature id, or a unique "
                                      "prefix; a signature id means the reduced case when there "
                                      "is one). Says on stderr which case it picked.")
    show.add_argument("case", metavar="FILE_OR_ID",
                      help="test case file (.cfz stored form or .json), or an id with --dir")
    show.add_argument("--dir", metavar="DIR",
                      help="campaign directory to look ids up in (seed, example, reduced-case or "
                           "signature id, or a unique prefix of one)")
    show.add_argument("--original", action="store_true",
                      help="for a signature id, the bucket's first example instead of its "
                           "reduced case")
    show.add_argument("--json", action="store_true", help="print the JSON form only")
    show.add_argument("--no-code", action="store_true", help="omit the generated program")
    show.set_defaults(func=cmd_show)

    ops_cmd = sub.add_parser("ops", help=summary("ops"),
                             description="List every op covfuzz knows, checked against this torch.")
    ops_cmd.add_argument("--json", action="store_true")
    ops_cmd.add_argument("--category", help="only this category (e.g. reduction, view, matmul)")
    ops_cmd.set_defaults(func=cmd_ops)
