"""Case batching (issue 20): k independent test cases compiled as ONE program against one
compile per case, in one warm process.

What is measured. N generated cases (covfuzz's own generator, seeds --seed, --seed+1, ...: the
cases `covfuzz gen --seed S -n ...` prints, minus the ones skipped below) are compiled and run
once each in three arms:

- k=1: each case's callable (`bind(make_inputs())` of its generated program, as the harness
       calls it) under `torch.compile(backend="inductor")`, called once;
- k=4, k=8: a generated function that calls k cases' callables one after another, each on its
       own inputs (passed as the function's arguments), and returns their outputs as one tuple,
       compiled once (one Dynamo trace, one AOTAutograd, one Inductor compile, one C++ build per
       graph) and called once.

The time of an arm is torch.compile + the first call (making inputs and loading the programs
are outside it), split by the harness's own compile clock (Dynamo, AOTAutograd, Inductor, C++
build). Then each case's batched outputs are compared with its outputs compiled alone (dtype,
shape, values bit for bit with NaN equal to NaN; else torch.testing's default tolerances of
the dtype): a difference means batching changes what is compiled for a case. Per program it
also counts Dynamo's graphs and graph breaks (torch._dynamo.utils.counters) and the C++ kernels
Inductor's wrapper loads; per arm, the distinct kernel sources (one g++ run each): fewer of them
batched than alone means Inductor fused loops of different cases into one kernel.

Case mix and settings. One compiled program has one set of compile settings, so only cases
whose settings batch are taken: backend inductor, no mode, `dynamic=None`, no marked dynamic
dim, no inductor or dynamo config override (about half of what the generator draws; the rest
are skipped and counted). Forward only: a case drawn with backward loses it (its inputs no
longer require grad), and `fullgraph=True` is dropped (it only turns a graph break into an
error; the graph is the same). Every call runs under torch.no_grad(), in both arms. Cases whose
eager run raises are skipped (they would not reach the compiler in a campaign either). Cases
with nondeterministic ops are run but not compared.

Fairness. The cases are cut into chunks of max(k) cases; each chunk runs every arm, arms in a
rotating order per chunk (k=1, 4, 8; then 4, 8, 1; ...), so machine noise hits all arms alike
and all arms compile the same cases. No arm may reuse another's work:
- TORCHINDUCTOR_CACHE_DIR is set to a temporary folder before torch is imported, and each
  (chunk, arm) runs inside `torch._inductor.utils.fresh_cache()` (a new empty cache folder and
  Inductor's in-memory code caches cleared): the kernel cache cannot hand the second arm the
  kernels the first built. Within one (chunk, arm) the cache is kept, as a warm worker keeps
  it: a kernel two cases share is built once in every arm;
- the FX graph cache and the AOTAutograd cache are off (as in a campaign's worker);
- each arm loads the case's program text anew (new code objects), so Dynamo's cache on a code
  object cannot serve the second arm either;
- no torch._dynamo.reset() between cases (the code objects are new anyway);
- compile_threads=1 (as in a worker), no coverage tracer (the lever is measured on compile
  work; the tracer slows that work down about proportionally).

A batch whose compile or run raises fails whole (one case's compiler crash takes the k-1 others
with it). The figures count it as run (its time is spent) and also give "with fallback": the
batched arm's time plus, for each failed batch, its cases compiled alone (their k=1 time), as a
worker would have to do to know which case failed and what the others do.

How this combines with the unmerged `wip-onebuild` branch (harness/batch.py, all C++ kernels of
one Inductor compile built in one g++ run): batching makes one Inductor compile out of k cases,
so one-build would then build k cases' kernels in one g++ run; the two levers save the same
fixed g++ cost per kernel and partly overlap.

    nice -n 10 python benchmarks/bench_batching.py [--cases 24] [--seed 0] [--ks 1,4,8]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import linecache
import os
import shutil
import sys
import tempfile
import time
import types
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

STAGE_NAMES = ("dynamo", "aot", "inductor", "build")
KERNELS: list[str] = []  # source of every C++ kernel the generated wrappers asked to load
MAX_DRAWS = 50  # seeds drawn per wanted case before giving up (about half batch)


@dataclasses.dataclass
class Arm:
    """The figures of one arm (one k) over all chunks."""
    k: int
    seconds: float = 0.0
    cases: int = 0
    programs: int = 0          # torch.compile calls (k=1: one per case)
    failed: int = 0            # programs whose compile or first call raised
    failed_cases: list = dataclasses.field(default_factory=list)
    graphs: int = 0            # Dynamo graphs compiled (graph breaks make more than one)
    breaks: int = 0            # graph breaks Dynamo counted
    kernels: int = 0           # distinct C++ kernel sources per (chunk, arm): one g++ run each
    stages: dict = dataclasses.field(default_factory=lambda: dict.fromkeys(STAGE_NAMES, 0.0))
    chunk_seconds: list = dataclasses.field(default_factory=list)


# ----------------------------------------------------------------------------- cases


def batchable(case) -> str | None:
    """Why `case`'s settings cannot share one compile with default settings (None: they can)."""
    s = case.settings
    if s.backend != "inductor" or s.mode is not None:
        return "backend/mode"
    if s.dynamic is not None:
        return f"dynamic={s.dynamic}"
    if s.mark_dynamic:
        return "mark_dynamic"
    if s.inductor_config:
        return "inductor_config"
    if s.dynamo_config:
        return "dynamo_config"
    if s.metamorphic is not None:
        return "metamorphic"
    return None


def forward_only(case):
    """`case` without backward and fullgraph (inputs no longer require grad), propagated again;
    None when that makes it invalid."""
    from covfuzz.errors import InvalidGraph
    from covfuzz.ir import TensorSpec
    from covfuzz.propagate import propagate

    inputs = tuple(dataclasses.replace(i, spec=dataclasses.replace(i.spec, requires_grad=False))
                   if isinstance(i.spec, TensorSpec) else i for i in case.graph.inputs)
    settings = dataclasses.replace(case.settings, backward=False, fullgraph=False)
    plain = case.replace(graph=dataclasses.replace(case.graph, inputs=inputs), settings=settings)
    try:
        return propagate(plain)
    except InvalidGraph:
        return None


def pick_cases(count: int, seed: int) -> tuple[list, collections.Counter]:
    """`count` batchable, forward-only cases that run eagerly, from seeds seed, seed+1, ...,
    and why the others were skipped."""
    import torch
    from covfuzz.generator import generate

    kept, skipped = [], collections.Counter()
    s = seed
    while len(kept) < count and s < seed + count * MAX_DRAWS:
        case = generate(s)
        s += 1
        why = batchable(case)
        if why is None:
            case = forward_only(case)
            why = "invalid forward-only" if case is None else None
        if why is None:
            try:
                target, args = Program(case, "eager").bound()
                with torch.no_grad():
                    target(*args)
            except Exception:  # noqa: BLE001 - not a compiler's case
                why = "eager raises"
        if why is None:
            kept.append(case)
        else:
            skipped[why] += 1
    return kept, skipped


class Program:
    """A case's generated program loaded anew (its own code objects, so no Dynamo cache entry
    of another arm applies)."""

    def __init__(self, case, tag: str):
        from covfuzz import codegen, ops, serialize

        self.case = case
        self.cid = serialize.case_id(case)
        self.ops = sorted({n.op for n in case.graph.nodes})
        self.nondet = any(ops.get_op(n.op).nondeterministic for n in case.graph.nodes)
        src = codegen.program(case)
        self.ns = _module(f"covfuzz_batching_{self.cid}_{tag}", src)

    def bound(self):
        """(callable, its arguments) on fresh inputs, as the harness calls it."""
        target, args, _ = self.ns["bind"](self.ns["make_inputs"]("cpu"))
        return target, list(args)


def batch_function(programs: list, tag: str):
    """(a function calling each program's callable on its own arguments, returning their
    outputs as one tuple, its flat arguments). Generated text, so Dynamo sees straight-line
    calls, as in a batched case program."""
    params, lines, env = [], [], {}
    flat = []
    for j, program in enumerate(programs):
        target, args = program.bound()
        env[f"t{j}"] = target
        names = [f"a{j}_{i}" for i in range(len(args))]
        params += names
        flat += args
        lines.append(f"    o{j} = t{j}({', '.join(names)})")
    outs = "".join(f"o{j}, " for j in range(len(programs)))
    src = f"def batch({', '.join(params)}):\n" + "\n".join(lines) + f"\n    return ({outs})\n"
    ns = _module(f"covfuzz_batching_batch_{tag}", src, env)
    return ns["batch"], flat


def _module(name: str, src: str, env: dict | None = None) -> dict:
    """The namespace of `src` run as a module registered in sys.modules: Dynamo reaches the
    globals of a function it inlines from another module through that module's name."""
    module = types.ModuleType(name)
    module.__dict__.update(env or {})
    filename = f"{name}.py"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    sys.modules[name] = module
    exec(compile(src, filename, "exec"), module.__dict__)  # noqa: S102 - generated program text
    return module.__dict__


# ----------------------------------------------------------------------------- running


def count_kernels() -> None:
    """Note each C++ kernel's source as Inductor's wrapper loads it (behaviour unchanged): fewer
    distinct kernels batched than alone would mean Inductor fused across cases."""
    from torch._inductor.async_compile import AsyncCompile

    for name in ("cpp", "cpp_pybinding"):
        original = getattr(AsyncCompile, name)

        def counted(self, *args, _original=original, **kwargs):
            KERNELS.append(str(kwargs.get("source_code", args[-1] if args else "")))
            return _original(self, *args, **kwargs)
        setattr(AsyncCompile, name, counted)


def snapshot(value):
    """Detached clones of the tensors in `value` (outputs may alias inputs)."""
    import torch
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return tuple(snapshot(v) for v in value)
    return value


def compile_and_call(fn, args, seed: int, clock) -> tuple[float, object, str | None, dict, int, int]:
    """(seconds, outputs or None, error or None, stage seconds, graphs, graph breaks) of
    torch.compile(fn) and its first call."""
    import torch
    from torch._dynamo.utils import counters
    from harness.result import compile_parts

    graphs0 = counters["stats"]["unique_graphs"]
    breaks0 = sum(counters["graph_break"].values())
    mark = clock.mark()
    out, error = None, None
    t = time.perf_counter()
    try:
        compiled = torch.compile(fn, backend="inductor")
        torch.manual_seed(seed % (1 << 32))
        with torch.no_grad():
            out = compiled(*args)
    except Exception as exc:  # noqa: BLE001 - a failing compile is a result
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
    seconds = time.perf_counter() - t
    stages = compile_parts(clock.since(mark))
    graphs = counters["stats"]["unique_graphs"] - graphs0
    breaks = sum(counters["graph_break"].values()) - breaks0
    return seconds, (snapshot(out) if error is None else None), error, stages, graphs, breaks


def run_arm(arm: Arm, chunk: list, tag: str, clock, alone: dict, batched: dict,
            tmp: str) -> None:
    """One arm on one chunk of cases, inside a fresh Inductor cache (a new folder under `tmp`,
    deleted after)."""
    from torch._inductor.utils import fresh_cache

    spent, first_kernel = 0.0, len(KERNELS)
    with fresh_cache(dir=tmp):
        for start in range(0, len(chunk), arm.k):
            group = chunk[start:start + arm.k]
            programs = [Program(c, f"{tag}_{i}") for i, c in enumerate(group)]
            if arm.k == 1:
                fn, args = programs[0].bound()
            else:
                fn, args = batch_function(programs, f"{tag}_{start}")
            before = len(KERNELS)
            seconds, out, error, stages, graphs, breaks = compile_and_call(
                fn, args, group[0].seed, clock)
            spent += seconds
            arm.programs += 1
            arm.cases += len(group)
            arm.graphs += graphs
            arm.breaks += breaks
            for key in STAGE_NAMES:
                arm.stages[key] += stages[key]
            ids = [p.cid for p in programs]
            if error is not None:
                arm.failed += 1
                arm.failed_cases.append((ids, error))
            if arm.k == 1:
                alone[ids[0]] = (seconds, out, error)
            else:
                for j, cid in enumerate(ids):
                    batched.setdefault(cid, {})[arm.k] = (None if out is None else out[j], error)
            print(f"  k={arm.k} {'+'.join(i[:6] for i in ids)}: {seconds:.1f} s, "
                  f"{graphs} graph(s), {breaks} break(s), {len(KERNELS) - before} kernel(s)"
                  f"{'  FAILED ' + error if error else ''}", flush=True)
    arm.seconds += spent
    arm.kernels += len(set(KERNELS[first_kernel:]))
    arm.chunk_seconds.append(spent)


# ----------------------------------------------------------------------------- comparing


def compare(a, b) -> str:
    """'identical', 'close' (within torch.testing's default tolerances, NaN equal) or what
    differs, between two outputs (nested tuples of tensors and Python values)."""
    import torch
    if isinstance(a, tuple) or isinstance(b, tuple):
        if not (isinstance(a, tuple) and isinstance(b, tuple)) or len(a) != len(b):
            return "different structure"
        verdicts = [compare(x, y) for x, y in zip(a, b)]
        bad = [f"output {i}: {v}" for i, v in enumerate(verdicts) if v not in ("identical", "close")]
        if bad:
            return "; ".join(bad)
        return "close" if "close" in verdicts else "identical"
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        return "identical" if type(a) is type(b) and a == b else f"{a!r} != {b!r}"
    if a.dtype != b.dtype or a.shape != b.shape:
        return f"{a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
    if a.is_complex():
        a, b = torch.view_as_real(a.resolve_conj()), torch.view_as_real(b.resolve_conj())
    if not a.is_floating_point():
        return "identical" if torch.equal(a, b) else f"{int((a != b).sum())} elements differ"
    if bool(torch.isclose(a, b, rtol=0, atol=0, equal_nan=True).all()):
        return "identical"
    try:
        torch.testing.assert_close(a, b, equal_nan=True, check_stride=False)
        return "close"
    except AssertionError:
        diff = (a.double() - b.double()).abs()
        finite = diff[diff.isfinite()]
        worst = finite.max().item() if finite.numel() else float("nan")
        return (f"{int((~torch.isclose(a, b, equal_nan=True)).sum())} of {a.numel()} elements "
                f"differ (max |d| {worst:.3g})")


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="See the module docstring for what is measured.")
    parser.add_argument("--cases", type=int, default=24, help="cases to compile (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="first generator seed (default 0)")
    parser.add_argument("--ks", default="1,4,8",
                        help="batch sizes, comma-separated; 1 is always run (default 1,4,8)")
    args = parser.parse_args(argv)
    ks = sorted({1, *(int(k) for k in args.ks.split(",") if k.strip())})
    if args.cases < 1 or ks[0] < 1:
        parser.error("--cases and every k must be at least 1")

    # Before torch is imported: an empty kernel cache of our own, no FX graph or AOTAutograd
    # cache, no compile subprocesses (as a campaign's worker).
    tmp = tempfile.mkdtemp(prefix="covfuzz-bench-batching-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(tmp, "inductor")
    os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "0"
    os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "0"
    os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
    import torch
    import torch._functorch.config
    import torch._inductor.config
    torch._inductor.config.fx_graph_cache = False
    torch._functorch.config.enable_autograd_cache = False
    torch._inductor.config.compile_threads = 1
    from harness.execute import _CompileClock  # the harness's own split of compile time
    warnings.filterwarnings("ignore")  # deprecated ops, complex codegen: not the question here
    # A warm worker has compiled before: the first compile's one-time imports and setup
    # (about 10 s) would go to whichever arm runs first.
    torch.compile(lambda x: (x + 1).sum(), backend="inductor")(torch.ones(3))

    t = time.perf_counter()
    cases, skipped = pick_cases(args.cases, args.seed)
    print(f"torch {torch.__version__}; {len(cases)} cases from seeds {args.seed}.. in "
          f"{time.perf_counter() - t:.1f} s; skipped: "
          f"{', '.join(f'{k} {v}' for k, v in skipped.most_common()) or 'none'}", flush=True)
    if not cases:
        return 1

    clock = _CompileClock()
    count_kernels()
    arms = {k: Arm(k) for k in ks}
    alone: dict = {}    # case id -> (seconds, outputs, error)
    batched: dict = {}  # case id -> {k: (outputs, error of its batch)}
    size = ks[-1]
    chunks = [cases[i:i + size] for i in range(0, len(cases), size)]
    for c, chunk in enumerate(chunks):
        order = ks[c % len(ks):] + ks[:c % len(ks)]
        print(f"chunk {c + 1}/{len(chunks)} ({len(chunk)} cases), arms in order "
              f"{', '.join(f'k={k}' for k in order)}", flush=True)
        for k in order:
            run_arm(arms[k], chunk, f"c{c}k{k}", clock, alone, batched, tmp)

    programs = {}
    for case in cases:
        p = Program(case, "names")
        programs[p.cid] = p
    print()
    print(f"{'arm':>5} {'cases':>5} {'progs':>5} {'failed':>6} {'seconds':>8} {'s/case':>7} "
          f"{'cases/h':>8} {'ratio':>6} {'fallback c/h':>12} {'graphs':>6} {'breaks':>6} "
          f"{'kernels':>7}  "
          f"dynamo/aot/inductor/build s  (per chunk s)")
    base = arms[1].seconds / max(arms[1].cases, 1)
    for k in ks:
        arm = arms[k]
        per_case = arm.seconds / max(arm.cases, 1)
        # A failed batch: its cases run alone again (their k=1 time) to find out which failed.
        refill = sum(alone[cid][0] for ids, _ in arm.failed_cases for cid in ids) if k > 1 else 0.0
        fallback = (arm.seconds + refill) / max(arm.cases, 1)
        stages = "/".join(f"{arm.stages[s]:.0f}" for s in STAGE_NAMES)
        print(f"{'k=' + str(k):>5} {arm.cases:>5} {arm.programs:>5} {arm.failed:>6} "
              f"{arm.seconds:>8.1f} {per_case:>7.2f} {3600 / per_case:>8.0f} "
              f"{base / per_case:>5.2f}x {3600 / fallback:>12.0f} {arm.graphs:>6} {arm.breaks:>6} "
              f"{arm.kernels:>7}  "
              f"{stages}  ({', '.join(f'{s:.0f}' for s in arm.chunk_seconds)})")

    print()
    for k in ks[1:]:
        for ids, error in arms[k].failed_cases:
            alone_errors = [f"{cid[:6]}: {alone[cid][2]}" for cid in ids if alone[cid][2]]
            print(f"k={k} batch {'+'.join(i[:6] for i in ids)} failed: {error}; failing alone: "
                  f"{'; '.join(alone_errors) or 'none'}")
    counts: collections.Counter = collections.Counter()
    for k in ks[1:]:
        for cid, p in programs.items():
            out_alone, err_alone = alone[cid][1], alone[cid][2]
            out_batch, err_batch = batched[cid][k]
            if err_batch is not None:
                verdict = ("both failed" if err_alone is not None
                           else "batch failed (alone passes)")
            elif err_alone is not None:
                verdict = "DIFFERS: fails alone, passes batched"
            elif p.nondet:
                verdict = "not compared (nondeterministic op)"
            else:
                what = compare(out_alone, out_batch)
                verdict = what if what in ("identical", "close") else "DIFFERS"
                if verdict != "identical":
                    print(f"k={k} case {cid}: {verdict}: {what if verdict == 'DIFFERS' else ''} "
                          f"ops {', '.join(p.ops)}")
            counts[(k, verdict)] += 1
            if verdict.startswith("DIFFERS: fails"):
                print(f"k={k} case {cid}: {verdict} ({err_alone}); ops {', '.join(p.ops)}")
    for k in ks[1:]:
        row = {v: n for (kk, v), n in sorted(counts.items()) if kk == k}
        print(f"k={k} outputs vs alone: " + ", ".join(f"{v} {n}" for v, n in row.items()))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
