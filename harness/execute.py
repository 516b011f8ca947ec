"""Running one test case inside a worker process: codegen -> exec -> eager -> compiled -> oracle.

This module imports torch and is only meant to be used in a worker (or a test process that
accepts torch state changes). `execute(case_bytes, ...)` returns a plain dict (RunResult
fields) and never raises for anything a test case can do; process-level failures (segfaults,
hangs, memory blow-ups) are the WorkerHandle's job (harness.worker_handle).

Stages and timing keys:
- eager: first eager forward (+ determinism-gate and float64-reference reruns when needed);
- compile: first compiled call (Dynamo + AOTAutograd + Inductor + one run);
- run: second compiled call on fresh inputs (+ the confirmation rerun of a suspected mismatch);
- backward: eager and compiled backward (when the case asks for it);
- coverage: feature extraction (start/stop and data reading; tracing slowdown is inside compile;
  the issue-19 families named in the worker's COVFUZZ_FEATURE_FAMILIES: generated code
  (harness.gencode), per-node values and divergence (harness.values)).
Parts measured inside them (harness.result.PART_KEYS; `stage_split` makes the partition):
reference (the float64 reference, in eager), oracle (the verdict), and the compile work torch's
own instrumentation times (dynamo, aot, inductor, build: per-region deltas of its `dynamo_timed`
keys and compile callbacks, `_CompileClock`), wherever it ran: the backward graph compiles at the
first backward.
Outside the five regions: metamorphic (a passing case whose settings name a metamorphic variant
compiled again under it, `_metamorphic`; harness/metamorphic.py judges).

A case that differs from the worker's previous one only in its tensor values (same graph, specs,
settings and scalar inputs: `reuse_key`) runs on that case's compiled program instead of
compiling again (the lever "one compile, many inputs" of issue 20: Dynamo's own cache serves the
call, as it would in a user's program; its guards recompile whatever they must, and
details["reused_compile"] says so, with the graphs it "recompiled"). Anything that resets
Dynamo in between (another case, a metamorphic variant, a localization probe) ends the reuse;
the environment variable COVFUZZ_REUSE_COMPILE=0 turns it off.

Every eager or compiled call gets its own inputs and its own module (parameters included), and
its outputs are detached clones taken right after it: an in-place write on one call's inputs or
parameters cannot show in another. `probe_case` runs the same code and keeps every value (for
localization).
"""

from __future__ import annotations

import contextlib
import dataclasses
import linecache
import os
import time
import warnings

import torch
import torch._dynamo
import torch._dynamo.config
import torch._dynamo.utils
import torch._inductor.config

from covfuzz import codegen, ops
from covfuzz.errors import CovfuzzError, InvalidGraph
from covfuzz.features import FAMILY_ENV
from covfuzz.ir import (INT_CONVERSION_METHODS, INT_DTYPES, TensorSpec, TestCase,
                        compiled_code_holds_values, dtype_class, metamorphic_case)
from covfuzz.propagate import backward_loss, propagate
from covfuzz.serialize import case_id, decode
from harness import gencode, metamorphic, oracle, values
from harness.faults import GPU_FAULT_SEEDS, fault_of, perturbed, raise_gpu_fault
from harness.result import COMPILE_KEYS, REUSE_ENV, WINDOWS, compile_parts, empty_timings


def _trigger(fault: str) -> None:
    if fault == "segfault":
        import ctypes
        ctypes.string_at(0)
    elif fault == "abort":
        os.abort()
    elif fault == "hang":
        while True:
            pass
    elif fault == "memory":
        hog = []
        while True:
            hog.append(bytearray(b"\x01") * (256 << 20))  # written, so it counts in RSS
            time.sleep(0.02)


def _raising_backend(gm, example_inputs):
    raise RuntimeError("covfuzz fault injection: backend raised during compilation")


# ----------------------------------------------------------------------------- helpers

def _upcast(x, device="cpu"):
    """A float64 (complex: complex128) copy on `device` of a floating tensor with the same
    shape, strides and storage offset."""
    if (not isinstance(x, torch.Tensor) or not (x.is_floating_point() or x.is_complex())
            or x.dtype in (torch.float64, torch.complex128)):
        return x
    with torch.no_grad():
        n = x.untyped_storage().nbytes() // x.element_size()
        flat = torch.empty(0, dtype=x.dtype, device=x.device).set_(
            x.untyped_storage(), 0, (n,), (1,))
        flat64 = flat.to(device, torch.complex128 if x.is_complex() else torch.float64)
        r = flat64.as_strided(tuple(x.shape), tuple(x.stride()), x.storage_offset()).detach()
    return r.requires_grad_(x.requires_grad)


def _f2i_cast_values(case: TestCase) -> set[int]:
    """Value ids downstream of (or equal to) a float -> int cast (`Tensor.to`, `x.short()`...) or
    `view(dtype)` reinterpretation: out-of-range casts are undefined behaviour in C, and reinterpreted bits
    expose NaN payloads and signs that no IEEE operation promises to preserve."""
    g = case.graph
    base = len(g.inputs)
    tainted: set[int] = set()
    for j, node in enumerate(g.nodes):
        vid = base + j
        if any(a in tainted for a in node.args):
            tainted.add(vid)
            continue
        if node.op in ("Tensor.to", "Tensor.view.dtype", *INT_CONVERSION_METHODS) and node.args:
            src = g.spec_of(node.args[0])
            out = node.out
            if (isinstance(src, TensorSpec) and dtype_class(src.dtype) in ("float", "complex")
                    and isinstance(out, TensorSpec) and out.dtype in INT_DTYPES):
                tainted.add(vid)
    return tainted


class _CompileClock:
    """Compile seconds as torch measures them: per-key durations of its `dynamo_timed` calls
    (`compilation_time_metrics`, cumulative: one entry appended per call, cleared by
    torch._dynamo.reset), and the outermost compile windows between torch's compile start and
    end callbacks (they fire once around nested compiles: a frame compiled while another is
    traced nests `_compile.compile_inner` in itself, so its durations overlap)."""

    def __init__(self):
        self.windows = dict.fromkeys(WINDOWS, 0.0)
        self._started = 0.0

    def _start(self, *args) -> None:
        self._started = time.perf_counter()

    def _end(self, *args) -> None:  # torch 2.13 passes CallbackArgs (older ones nothing)
        trigger = getattr(getattr(args[0], "callback_trigger", None), "name", "") if args else ""
        key = "lazy_backward" if trigger == "LAZY_BACKWARD" else "frame"
        self.windows[key] += time.perf_counter() - self._started

    def mark(self) -> tuple:
        handler = getattr(torch._dynamo, "callback_handler", None)  # torch 2.5+
        callbacks = getattr(handler, "start_callbacks", None)
        if callbacks is not None and self._start not in callbacks:  # dropped by dynamo.reset
            handler.register_start_callback(self._start)
            handler.register_end_callback(self._end)
        metrics = torch._dynamo.utils.compilation_time_metrics
        return dict(self.windows), {k: len(metrics.get(k, ())) for k in COMPILE_KEYS}

    def since(self, mark: tuple) -> dict:
        """Seconds per window and per key since `mark`."""
        windows, counts = mark
        metrics = torch._dynamo.utils.compilation_time_metrics
        spent = {k: self.windows[k] - windows[k] for k in WINDOWS}
        for key, count in counts.items():
            entries = metrics.get(key, ())
            spent[key] = sum(entries[count:] if len(entries) >= count else entries)
        return spent


_COMPILE_CLOCK = _CompileClock()


def _charge_compile(timings: dict, region: str, mark: tuple) -> None:
    """Add the compile work torch timed since `mark` to the compile parts, and note how much
    of it ran inside `region` when that is not the compile region."""
    parts = compile_parts(_COMPILE_CLOCK.since(mark))
    for key, seconds in parts.items():
        timings[key] += seconds
    if region != "compile":  # e.g. eager while_loop compiles itself; the lazy backward compile
        key = f"compile_in_{region}"
        timings[key] = timings.get(key, 0.0) + sum(parts.values())


@contextlib.contextmanager
def _timed(timings: dict, key: str):
    t = time.perf_counter()
    mark = _COMPILE_CLOCK.mark()
    try:
        yield
    finally:
        timings[key] += time.perf_counter() - t
        _charge_compile(timings, key, mark)


@contextlib.contextmanager
def _family_timed(timings: dict):
    """Time spent on the issue-19 feature families: counted in `coverage` (feature extraction)
    and, on its own, in `families`."""
    t = time.perf_counter()
    try:
        yield
    finally:
        spent = time.perf_counter() - t
        timings["coverage"] += spent
        timings["families"] = timings.get("families", 0.0) + spent


class _Failure(Exception):
    def __init__(self, outcome: str, exc: BaseException, stage: str):
        super().__init__(outcome)
        self.outcome, self.exc, self.stage = outcome, exc, stage


# ----------------------------------------------------------------------------- execution

def execute(case_bytes: bytes, device: str | None = None, reference: str | None = None,
            collector=None) -> dict:
    """Run one encoded test case; returns RunResult fields as a dict (features included)."""
    t_start = time.perf_counter()
    result = _new_result()
    try:
        case = decode(case_bytes)
        result["case_id"] = case_id(case)
        if any(n.out is None for n in case.graph.nodes):
            case = propagate(case)
    except (CovfuzzError, InvalidGraph) as exc:
        result.update(outcome="invalid", message=f"{type(exc).__name__}: {exc}",
                      exc_type=type(exc).__name__)
        return _finish(result, t_start)
    trace = _Trace(families=_families())
    _execute(case, device, reference, collector, result, trace)
    if result["outcome"] == "pass" and case.settings.metamorphic is not None:
        _metamorphic(result, trace, reference)
    if result["outcome"] == "pass":  # divergence is measured on runs within tolerance only
        trace.family_ids += trace.divergence_ids
    if trace.family_ids:
        result["features"] = list(result["features"]) + trace.family_ids
    return _finish(result, t_start)


def _families() -> frozenset[str]:
    """The feature families beyond coverage this worker computes (its environment says)."""
    return frozenset(n.strip() for n in os.environ.get(FAMILY_ENV, "").split(",") if n.strip())


def _metamorphic(result: dict, trace: "_Trace", reference) -> None:
    """Issue 19's metamorphic check of a passing case: its compiled calls made again under the
    variant its settings name, on the same eager values (no coverage, no feature families), then
    `harness.metamorphic.judge` (into `result`). Seconds: timings["metamorphic"]."""
    t0 = time.perf_counter()
    case = trace.program.case  # on the device it ran on
    variant = metamorphic_case(case)
    if variant is None:
        result["details"]["metamorphic_note"] = (f"variant {case.settings.metamorphic} changes "
                                                 "nothing for these settings")
        return
    run = _new_result()
    run["case_id"], run["details"] = result["case_id"], {
        k: v for k, v in result["details"].items() if k == "eager_deterministic"}
    other = _Trace(eager=trace.eager, eager_grads=trace.eager_grads,
                   variant=case.settings.metamorphic)
    _execute(variant, case.settings.device, reference, None, run, other)
    metamorphic.judge(case, trace, other, run, result, _f2i_cast_values(case))
    result["timings"]["metamorphic"] = time.perf_counter() - t0


@dataclasses.dataclass
class Probe:
    """Everything one run of a case computed, for localization (`probe_case`).

    - outcome, message, details: as `execute` gives them;
    - inputs: the eager run's materialized inputs (detached clones taken before the call, in
      graph-input order, parameters included; Python scalars as they are);
    - eager / compiled / reference: outputs as detached clones (compiled: of the first
      compiled call, None when it crashed; reference: float64, None when it cannot be built);
    - verdicts: one per output, None when it matches, else the oracle's mismatch dict
      (`oracle.compare_tensor` / `compare_scalar`); empty when there is no compiled output;
    - eager_grads / compiled_grads / reference_grads, grad_verdicts: the same for gradients
      (a None gradient counts as zeros), only when the case runs backward (else None).
    """

    outcome: str
    message: str
    inputs: list
    eager: list
    compiled: list | None
    reference: list | None
    verdicts: list
    eager_grads: list | None = None
    compiled_grads: list | None = None
    reference_grads: list | None = None
    grad_verdicts: list | None = None
    details: dict = dataclasses.field(default_factory=dict)


def probe_case(case: TestCase, device: str | None = None, config: dict | None = None) -> Probe:
    """Run propagated `case` in this process as `execute` does and keep every value: inputs,
    outputs of each side, the float64 reference and a verdict per output (and per gradient).
    `config`: inductor config merged over the case's own (e.g. {"emulate_precision_casts":
    True}). Only localization pays for this; the campaign path (`execute`) keeps nothing."""
    result = _new_result()
    result["case_id"] = case_id(case)
    trace = _Trace(keep_inputs=True)
    _execute(case, device, None, None, result, trace, config)
    probe = Probe(result["outcome"], result["message"], trace.inputs or [], trace.eager or [],
                  trace.compiled, None, [], details=result["details"])
    program = trace.program
    if program is None or trace.eager is None:
        return probe
    reference, reference_grads = program.reference()
    probe.reference = reference
    if trace.compiled is not None:
        probe.verdicts = _verdicts(trace.eager, trace.compiled, reference)
    if program.backward:
        probe.eager_grads, probe.compiled_grads = trace.eager_grads, trace.compiled_grads
        probe.reference_grads = reference_grads
        if trace.eager_grads is not None and trace.compiled_grads is not None:
            probe.grad_verdicts = _verdicts(trace.eager_grads, trace.compiled_grads,
                                            reference_grads)
    return probe


def _verdicts(eager: list, compiled: list, reference: list | None) -> list:
    """The oracle's verdict on each output pair: None (matches) or its mismatch dict."""
    lazy = oracle._LazyRef(reference)
    out = []
    for i, e in enumerate(eager):
        if i >= len(compiled):
            out.append({"output": i, "kind": "arity", "eager": len(eager),
                        "compiled": len(compiled)})
        elif isinstance(e, torch.Tensor):
            out.append(oracle.compare_tensor(i, e, compiled[i], lazy))
        else:
            out.append(oracle.compare_scalar(i, e, compiled[i], lazy))
    return out


def _new_result() -> dict:
    return {"outcome": "pass", "message": "", "exc_type": "", "frames": [],
            "timings": empty_timings(), "features": [], "n_lines": 0, "details": {},
            "case_id": ""}


def _finish(result: dict, t_start: float) -> dict:
    t = result["timings"]
    t["total"] = time.perf_counter() - t_start
    t["overhead"] = max(0.0, t["total"] - sum(t[k] for k in
                                              ("eager", "compile", "run", "backward", "coverage")))
    return result


def _execute(case: TestCase, device, reference, collector, result: dict, trace: "_Trace",
             config: dict | None = None) -> None:
    """Run `case` into `result` (outcome, message, details...) and `trace` (the values)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = _Program(case, result["case_id"], device, reference, config)
            trace.program = program
            _run(program, collector, result, trace)
            _timed_judge(program, trace, result)
    except _Failure as f:
        exc_type, message, frames = oracle.describe(f.exc)
        result.update(outcome=f.outcome, message=message, exc_type=exc_type, frames=frames)
        result["details"]["stage"] = f.stage
        if f.outcome != "invalid":
            result["details"]["check"] = oracle.failing_check(f.exc)
        if oracle.is_cuda_fatal(f.exc):
            result["details"]["cuda_context_lost"] = True  # the handle replaces this worker
    except Exception as exc:
        # An asynchronous CUDA fault can surface outside the stages (in the oracle's copies).
        if not oracle.is_cuda_fatal(exc):
            raise
        exc_type, message, frames = oracle.describe(exc)
        result.update(outcome="process_crash", message=message, exc_type=exc_type, frames=frames)
        result["details"].update(stage="judge", cuda_context_lost=True)
    finally:
        if collector is not None and collector.running:
            collector.stop()


def _sync(device: str) -> None:
    """Wait for the GPU's queued kernels, so that a kernel's fault is raised in its stage."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _snapshot(values):
    """Detached clones of a call's outputs (Python values as they are), taken right after the
    call: an output that aliases an input or a parameter must not change when a later call
    mutates its own copy (or when the same storage is reused)."""
    return [v.detach().clone() if isinstance(v, torch.Tensor) else v for v in values]


def _grads(leaves) -> list:
    """Detached clones of the gradients of the leaves that require grad. A leaf the loss does
    not reach has no gradient in eager autograd (None) while compiled code may hand back zeros:
    None is taken as zeros, so the two are judged alike."""
    out = []
    for x in leaves:
        if isinstance(x, torch.Tensor) and x.requires_grad:
            g = x.grad
            out.append(torch.zeros_like(x.detach()) if g is None else g.detach().clone())
    return out


@dataclasses.dataclass
class _Trace:
    """The values one run produced (snapshots; see `_snapshot`)."""

    keep_inputs: bool = False
    program: "_Program | None" = None
    inputs: list | None = None
    eager: list | None = None
    eager_grads: list | None = None
    compiled: list | None = None
    compiled_grads: list | None = None
    second: list | None = None
    families: frozenset = frozenset()  # issue-19 families to compute ("gencode", ...)
    family_ids: list = dataclasses.field(default_factory=list)  # their feature ids
    divergence_ids: list = dataclasses.field(default_factory=list)  # kept for passing runs
    # A metamorphic variant's compiled calls: only those are made, eager comes from the case's run.
    variant: str | None = None


def reuse_key(case: TestCase, device, config: dict | None) -> str:
    """What a compiled program depends on: the generated program of `case` with its tensor
    values made neutral (fill, literal values, seed; the metamorphic variant, which runs
    apart), the device and the extra config. Two cases with one key differ only in the values
    their tensors hold, which Dynamo does not compile in."""
    g = case.graph
    inputs = tuple(dataclasses.replace(i, fill="normal", values=None)
                   if isinstance(i.spec, TensorSpec) else i for i in g.inputs)
    neutral = case.replace(seed=0, graph=dataclasses.replace(g, inputs=inputs),
                           settings=dataclasses.replace(case.settings, metamorphic=None))
    return f"{device}|{sorted((config or {}).items())!r}|{codegen.program(neutral)}"


class _Reusable:
    """The previous case's program, while its compiled code is still in Dynamo's cache."""

    key: str | None = None
    program: "_Program | None" = None

    @classmethod
    def forget(cls) -> None:
        cls.key = cls.program = None


class _Program:
    """A case's generated program loaded in this process, and the calls the harness makes.

    Every call gets its own inputs and its own module (`bind(make_inputs())`): a call that
    mutates an input or a parameter in place cannot leak into another call.
    """

    def __init__(self, case: TestCase, cid: str, device, reference, config: dict | None):
        self.fault = fault_of(case.seed)
        device = device or case.settings.device
        if device != case.settings.device:
            case = case.replace(settings=dataclasses.replace(case.settings, device=device))
        self.case, self.cid, self.device = case, cid, device
        # Eager on the case's device (or the CPU: --reference cpu-eager); the float64
        # reference on the GPU when it fits there, else on the CPU (oracle.reference_device).
        self.eager_device = oracle.eager_device(device, reference)
        self.ref_device = oracle.reference_device(device, reference, oracle.float64_bytes(case),
                                                  oracle.free_gpu_bytes(device))
        src = codegen.program(case)
        filename = f"covfuzz_case_{cid}.py"
        linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
        ns: dict = {"__name__": "covfuzz_case"}
        try:
            exec(compile(src, filename, "exec"), ns)  # noqa: S102 - generated from a checked case
        except Exception as exc:  # a codegen defect: not a torch.compile bug
            raise _Failure("invalid", exc, "codegen") from None
        self.ns = ns
        self.bind, self.make_inputs = ns["bind"], ns["make_inputs"]
        self.backward = bool(ns["BACKWARD"])
        self.grad_enabled = not ns["NO_GRAD"]
        self.nondet = any(ops.get_op(n.op).nondeterministic for n in case.graph.nodes)
        self.inductor_config = {**ns["INDUCTOR_CONFIG"], **(config or {})}
        self.compile_kwargs = dict(ns["COMPILE_KWARGS"])
        if self.fault == "raise_compile":
            self.compile_kwargs["backend"] = _raising_backend
            self.compile_kwargs.pop("mode", None)
        self._reference = None
        # One compile, many inputs: the previous program's fn, module and bind (the code objects
        # Dynamo cached its compile on) with this case's own inputs. Not where the compiled code
        # holds values of its own: frozen parameters folded in, CUDA graphs, a compile mode.
        holds_values = compiled_code_holds_values(self.compile_kwargs.get("mode"),
                                                  self.inductor_config)
        self.reuse_key = (reuse_key(case, device, config)
                          if self.fault is None and not holds_values else None)
        # The same case again is run afresh: a rerun (calibration, confirmation) means a compile.
        self.reused = (self.reuse_key is not None and self.reuse_key == _Reusable.key
                       and _Reusable.program.cid != cid
                       and os.environ.get(REUSE_ENV, "1") != "0")
        if self.reused:
            self.ns = {**_Reusable.program.ns, "make_inputs": ns["make_inputs"]}
            self.bind = _Reusable.program.bind

    def _seeded(self):
        torch.manual_seed(self.case.seed % (1 << 32))
        return torch.set_grad_enabled(self.grad_enabled)

    def eager(self, inputs=None):
        """(raw outputs, grad leaves) of the forward, uncompiled, on `inputs` (fresh ones by
        default) in its own module."""
        target, call_args, leaves = self.bind(self.make_inputs(self.eager_device)
                                              if inputs is None else inputs)
        with self._seeded():
            return target(*call_args), leaves

    def eager_backward_error(self) -> BaseException | None:
        """The exception of an eager forward + backward on fresh inputs, or None when it works."""
        try:
            out, _ = self.eager()
            with torch.set_grad_enabled(True):
                loss = backward_loss(out)
                if loss is not None:
                    loss.backward()
        except Exception as exc:  # noqa: BLE001 - the exception is the answer
            return exc
        return None

    def needs_grad(self) -> bool:
        """Whether AOTAutograd traces a backward when compiling (grad enabled and some input
        or parameter requiring grad), even if the case never calls backward."""
        return self.grad_enabled and any(
            isinstance(i.spec, TensorSpec) and i.spec.requires_grad
            for i in self.case.graph.inputs)

    def compiled_inputs(self):
        args = self.make_inputs(self.device)
        for index, dim in self.ns["MARK_DYNAMIC"]:
            torch._dynamo.mark_dynamic(args[index], dim)
        return args

    def compiled_call(self):
        """(raw outputs, grad leaves) of a compiled call in its own module on fresh inputs.
        Compiling a fresh module of the same class reuses Dynamo's cache entry (same code,
        same guards): a second call runs the code the first one compiled."""
        target, call_args, leaves = self.bind(self.compiled_inputs())
        compiled = torch.compile(target, **self.compile_kwargs)
        with self._seeded():
            return compiled(*call_args), leaves

    def reference(self):
        """(outputs, grads) of eager run on float64-upcast inputs (each None when it fails);
        computed once."""
        if self._reference is None:
            self._reference = (None, None)
            try:
                inputs = [_upcast(x, self.ref_device) for x in self.make_inputs(self.ref_device)]
                out, leaves = self.eager(inputs)
                grads = None
                if self.backward:
                    with torch.set_grad_enabled(self.grad_enabled):
                        loss = backward_loss(out)
                        if loss is not None:
                            loss.backward()
                    grads = _grads(leaves)
                self._reference = (_snapshot(out), grads)
            except Exception as exc:  # noqa: BLE001 - no reference: the oracle says so
                if oracle.is_oom(exc) and self.ref_device != "cpu":
                    del exc
                    self.ref_device = "cpu"  # the size estimate was wrong: the CPU has room
                    self._reference = None
                    return self.reference()
        return self._reference


def _graphs_compiled() -> int:
    """FX graphs Dynamo compiled so far (frames it only looked at, e.g. a tracer's own
    functions, do not count)."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def _run(program: _Program, collector, result: dict, trace: _Trace) -> None:
    """The calls: eager (+ backward), compiled (+ backward), a second compiled call; a
    metamorphic variant's run (`trace.variant`) makes only the compiled ones."""
    reused = program.reused and trace.variant is None
    _Reusable.forget()  # until this run has compiled (a failure leaves nothing to reuse)
    if reused:
        result["details"]["reused_compile"] = True
    else:
        torch._dynamo.reset()
    if trace.variant is None:
        _run_eager(program, result, trace)
    graphs = _graphs_compiled()
    # A reused program runs no compiler code: Python coverage would only see the same few lines
    # of a cached call every time, at half a sweep step's cost.
    _run_compiled(program, None if reused else collector, result, trace)
    recompiled = _graphs_compiled() - graphs
    if reused:
        result["details"]["recompiled"] = recompiled
    # A reused program that Dynamo compiled again (a guard on a value: the second compile may
    # differ from a fresh one, e.g. automatic dynamic shapes) is not reused further.
    if trace.variant is None and program.reuse_key is not None and not (reused and recompiled):
        _Reusable.key, _Reusable.program = program.reuse_key, program
    if trace.variant is not None and program.fault == "perturb_variant":  # test-only fault
        trace.compiled, trace.second = perturbed(trace.compiled), perturbed(trace.second)


def _run_eager(program: _Program, result: dict, trace: _Trace) -> None:
    """Eager (+ backward), and the determinism gate of a case with nondeterministic ops."""
    timings, details, fault = result["timings"], result["details"], program.fault

    # -- eager
    try:
        with _timed(timings, "eager"):
            if fault == "raise_eager":
                raise RuntimeError("covfuzz fault injection: eager run raised")
            inputs = program.make_inputs(program.eager_device)
            if trace.keep_inputs:
                trace.inputs = _snapshot(inputs)
            watch = (values.EagerValues(program.ns["fn"].__code__)
                     if "values" in trace.families else contextlib.nullcontext())
            with watch:
                eager_raw, eager_leaves = program.eager(inputs)
            trace.eager = _snapshot(eager_raw)
            _sync(program.eager_device)  # eager's own kernel faults are eager's
    except Exception as exc:
        raise _Failure(oracle.classify(exc, "eager"), exc, "eager") from None
    if "values" in trace.families:
        with _family_timed(timings):
            trace.family_ids += values.ids("values", values.value_texts(
                program.case, watch, program.device))
        del watch
    if program.backward:
        try:
            with _timed(timings, "backward"):
                loss = backward_loss(eager_raw)
                if loss is not None:
                    loss.backward()
                trace.eager_grads = _grads(eager_leaves)
        except Exception as exc:
            raise _Failure(oracle.classify(exc, "eager"), exc, "eager backward") from None
    del eager_raw, eager_leaves
    if program.nondet:
        details["eager_deterministic"] = _deterministic(program, trace, timings)


def _run_compiled(program: _Program, collector, result: dict, trace: _Trace) -> None:
    """The compiled calls: compiled (+ backward), a second compiled call on fresh inputs."""
    timings, details, fault = result["timings"], result["details"], program.fault
    if collector is not None:
        t = time.perf_counter()
        collector.erase()
        collector.start()
        timings["coverage"] += time.perf_counter() - t
    # The capture hook is installed on every run, gencode family or not: Inductor runs one more
    # line when a hook is set, and a case must cover the same lines in every command.
    code_capture = gencode.capture()
    codes = None  # the generated modules
    try:
        with code_capture as codes, torch._inductor.config.patch(program.inductor_config), \
                torch._dynamo.config.patch(program.ns["DYNAMO_CONFIG"]):
            try:
                with _timed(timings, "compile"):
                    if fault in ("segfault", "abort", "hang", "memory"):
                        _trigger(fault)
                    if fault in GPU_FAULT_SEEDS.values():
                        raise_gpu_fault(fault)
                    compiled_raw, leaves = program.compiled_call()
                    trace.compiled = _snapshot(compiled_raw)
                    _sync(program.device)  # a kernel fault surfaces here, not in the oracle
            except Exception as exc:
                raise _compile_failure(program, exc, details) from None
            if program.backward:
                try:
                    with _timed(timings, "backward"):
                        loss = backward_loss(compiled_raw)
                        if loss is not None:
                            loss.backward()
                        trace.compiled_grads = _grads(leaves)
                except Exception as exc:
                    raise _Failure(oracle.classify(exc, "backward"), exc,
                                   "compiled backward") from None
            del compiled_raw, leaves
            try:
                with _timed(timings, "run"):
                    second_raw, _ = program.compiled_call()  # its own module and inputs
                    trace.second = _snapshot(second_raw)
                    _sync(program.device)
            except Exception as exc:
                raise _Failure(oracle.classify(exc, "run"), exc, "run") from None
    finally:
        if collector is not None and collector.running:
            t = time.perf_counter()
            collector.stop()
            result["features"], result["n_lines"] = collector.features()
            collector.erase()
            timings["coverage"] += time.perf_counter() - t
        if "gencode" in trace.families and codes is not None:
            with _family_timed(timings):
                trace.family_ids += gencode.features(codes)


def _compile_failure(program: _Program, exc: BaseException, details: dict) -> _Failure:
    """The outcome of an exception from the first compiled call: a crash, unless the case is
    at fault (documented refusals; a backward that fails in eager too)."""
    outcome = oracle.classify(exc, "compile")
    if outcome == "compile_crash" and oracle.is_specialized_mark_dynamic(exc):
        details["note"] = ("mark_dynamic on a dim the program specializes "
                           "(ConstraintViolationError): a case defect, not a bug")
        outcome = "invalid"
    elif outcome == "compile_crash" and oracle.is_no_gemm_choice(exc):
        details["note"] = ("max_autotune_gemm_backends leaves a matmul no choice "
                           "(NoValidChoicesError): a settings defect, not a bug")
        outcome = "invalid"
    elif outcome not in ("oom", "process_crash") and not program.backward and program.needs_grad():
        # AOTAutograd traces the backward at compile time whenever an input requires grad,
        # even when the case never calls backward: the eager program decides first (its own
        # backward ran before the compile only when the case asks for backward).
        eager_exc = program.eager_backward_error()
        if eager_exc is not None:
            details["note"] = ("the eager backward fails too (AOTAutograd traces it at compile "
                               f"time): {type(eager_exc).__name__}: "
                               f"{oracle.first_line(eager_exc)}")
            outcome = "invalid"
    return _Failure(outcome, exc, "compile")


def _deterministic(program: _Program, trace: _Trace, timings: dict) -> bool:
    """The determinism gate: a second eager run on fresh inputs agrees bitwise."""
    t0 = time.perf_counter()
    try:
        again, _ = program.eager()
        same = oracle.bitwise_equal(trace.eager, _snapshot(again))
    except Exception:  # noqa: BLE001 - an eager run that fails once and not twice: not det.
        same = False
    timings["eager"] += time.perf_counter() - t0
    return same


def _timed_judge(program: _Program, trace: _Trace, result: dict) -> None:
    """`_judge`, its own time counted as `oracle` (the reruns it asks for count in eager, the
    divergence family in coverage)."""
    timings = result["timings"]
    elsewhere = timings["eager"] + timings["coverage"]
    t0 = time.perf_counter()
    try:
        _judge(program, trace, result)
    finally:
        timings["oracle"] += max(0.0, time.perf_counter() - t0
                                 - (timings["eager"] + timings["coverage"] - elsewhere))


def _judge(program: _Program, trace: _Trace, result: dict) -> None:
    """The oracle's verdict on a run that did not crash (outcome, message, details)."""
    details, timings = result["details"], result["timings"]
    if "divergence" in trace.families and trace.compiled is not None:
        with _family_timed(timings):
            texts, best = values.divergence_texts(program.case, trace.eager, trace.compiled)
            trace.divergence_ids = values.ids("divergence", texts)
            details["divergence"] = best

    def reference_outputs():
        t0 = time.perf_counter()
        value = program.reference()
        spent = time.perf_counter() - t0
        timings["eager"] += spent
        timings["reference"] += spent
        return value

    mismatch = oracle.compare_outputs(trace.eager, trace.compiled,
                                      lambda: reference_outputs()[0])
    kind = "mismatch"
    if mismatch is None and program.backward:
        mismatch = oracle.compare_outputs(trace.eager_grads or [], trace.compiled_grads or [],
                                          lambda: reference_outputs()[1])
        kind = "grad_mismatch"
        if mismatch is not None:
            mismatch["grad"] = True
    if mismatch is None:
        return
    if mismatch.get("has_reference") is False:
        # A floating-point divergence is only believed against a float64 reference (some graphs
        # cannot be upcast, e.g. `view(dtype)` changes meaning): note it, do not report it.
        details.update(note="floating-point divergence not confirmed: no float64 reference",
                       unconfirmed=mismatch)
        return
    # Before believing it: confirm it reproduces, and that eager is deterministic.
    if kind == "mismatch":
        again = oracle.compare_outputs(trace.eager, trace.second, lambda: reference_outputs()[0])
        if again is None:
            details.update(note="mismatch did not reproduce on a second compiled call",
                           first=mismatch)
            return
    deterministic = details.get("eager_deterministic")  # gated already for nondet ops
    if deterministic is None:
        deterministic = _deterministic(program, trace, timings)
    if not deterministic:
        details.update(note="nondeterministic", suspected=mismatch)
        return
    out_index = mismatch.get("output")
    if kind == "mismatch" and out_index is not None:
        tainted = _f2i_cast_values(program.case)
        if program.case.graph.outputs[out_index] in tainted:
            details.update(note="float->int cast UB or float bits reinterpreted", suspected=mismatch)
            return
    result["outcome"] = kind
    details.update(mismatch)
    what = "gradient" if kind == "grad_mismatch" else "output"
    result["message"] = (f"{what} {out_index} {mismatch.get('kind')} mismatch: eager "
                         f"{mismatch.get('eager')} vs compiled {mismatch.get('compiled')}"
                         + (f" (reference {mismatch['reference']}, max abs err "
                            f"{mismatch['max_abs_err']:.3g} at {mismatch['index']})"
                            if "max_abs_err" in mismatch else ""))

