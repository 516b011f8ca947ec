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
- coverage: feature extraction (start/stop and data reading; tracing slowdown is inside compile).
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
import torch._inductor.config

from covfuzz import codegen, ops
from covfuzz.errors import CovfuzzError, InvalidGraph
from covfuzz.ir import INT_DTYPES, FLOAT_DTYPES, TensorSpec, TestCase
from covfuzz.propagate import backward_loss, propagate
from covfuzz.serialize import case_id, decode
from harness import oracle
from harness.faults import FAULT_SEEDS, fault_injection_enabled
from harness.result import empty_timings

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

def _upcast(x):
    """A float64 copy of a floating tensor with the same shape, strides and storage offset."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dtype == torch.float64:
        return x
    with torch.no_grad():
        n = x.untyped_storage().nbytes() // x.element_size()
        flat = torch.empty(0, dtype=x.dtype, device=x.device).set_(
            x.untyped_storage(), 0, (n,), (1,))
        flat64 = flat.to("cpu", torch.float64)
        r = flat64.as_strided(tuple(x.shape), tuple(x.stride()), x.storage_offset()).detach()
    return r.requires_grad_(x.requires_grad)


def _grads(inputs):
    return [x.grad for x in inputs if isinstance(x, torch.Tensor) and x.requires_grad]


def _f2i_cast_values(case: TestCase) -> set[int]:
    """Value ids downstream of (or equal to) a float -> int `Tensor.to` cast or `view(dtype)`
    reinterpretation: out-of-range casts are undefined behaviour in C, and reinterpreted bits
    expose NaN payloads and signs that no IEEE operation promises to preserve."""
    g = case.graph
    base = len(g.inputs)
    tainted: set[int] = set()
    for j, node in enumerate(g.nodes):
        vid = base + j
        if any(a in tainted for a in node.args):
            tainted.add(vid)
            continue
        if node.op in ("Tensor.to", "Tensor.view.dtype") and node.args:
            src = g.spec_of(node.args[0])
            out = node.out
            if (isinstance(src, TensorSpec) and src.dtype in FLOAT_DTYPES
                    and isinstance(out, TensorSpec) and out.dtype in INT_DTYPES):
                tainted.add(vid)
    return tainted


@contextlib.contextmanager
def _timed(timings: dict, key: str):
    t = time.perf_counter()
    try:
        yield
    finally:
        timings[key] += time.perf_counter() - t


class _Failure(Exception):
    def __init__(self, outcome: str, exc: BaseException, stage: str):
        super().__init__(outcome)
        self.outcome, self.exc, self.stage = outcome, exc, stage


# ----------------------------------------------------------------------------- execution

def execute(case_bytes: bytes, device: str | None = None, reference: str | None = None,
            collector=None) -> dict:
    """Run one encoded test case; returns RunResult fields as a dict (features included)."""
    t_start = time.perf_counter()
    timings = empty_timings()
    result = {"outcome": "pass", "message": "", "exc_type": "", "frames": [],
              "timings": timings, "features": [], "n_lines": 0, "details": {}, "case_id": ""}
    try:
        case = decode(case_bytes)
        result["case_id"] = case_id(case)
        if any(n.out is None for n in case.graph.nodes):
            case = propagate(case)
    except (CovfuzzError, InvalidGraph) as exc:
        result.update(outcome="invalid", message=f"{type(exc).__name__}: {exc}",
                      exc_type=type(exc).__name__)
        return _finish(result, t_start)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _execute(case, device, reference, collector, result)
    except _Failure as f:
        exc_type, message, frames = oracle.describe(f.exc)
        result.update(outcome=f.outcome, message=message, exc_type=exc_type, frames=frames)
        result["details"]["stage"] = f.stage
    finally:
        if collector is not None and collector.running:
            collector.stop()
    return _finish(result, t_start)


def _finish(result: dict, t_start: float) -> dict:
    t = result["timings"]
    t["total"] = time.perf_counter() - t_start
    t["overhead"] = max(0.0, t["total"] - sum(t[k] for k in
                                              ("eager", "compile", "run", "backward", "coverage")))
    return result


def _execute(case: TestCase, device, reference, collector, result: dict) -> None:
    timings, details = result["timings"], result["details"]
    fault = FAULT_SEEDS.get(case.seed) if fault_injection_enabled() else None
    device = device or case.settings.device
    if device != case.settings.device:
        case = case.replace(settings=dataclasses.replace(case.settings, device=device))
    ref_device = reference or device

    src = codegen.program(case)
    filename = f"covfuzz_case_{result['case_id']}.py"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    ns: dict = {"__name__": "covfuzz_case"}
    try:
        exec(compile(src, filename, "exec"), ns)  # noqa: S102 - generated from a checked case
    except Exception as exc:  # a codegen defect: not a torch.compile bug
        raise _Failure("invalid", exc, "codegen") from None
    bind, make_inputs = ns["bind"], ns["make_inputs"]
    backward = bool(ns["BACKWARD"])
    grad_enabled = not ns["NO_GRAD"]
    nondet = any(ops.get_op(n.op).nondeterministic for n in case.graph.nodes)

    torch._dynamo.reset()

    def eager_run(inputs):
        """(outputs, grad leaves): the program's forward, uncompiled, on inputs `inputs`."""
        target, call_args, leaves = bind(inputs)
        torch.manual_seed(case.seed % (1 << 32))
        with torch.set_grad_enabled(grad_enabled):
            return target(*call_args), leaves

    # -- eager
    try:
        with _timed(timings, "eager"):
            if fault == "raise_eager":
                raise RuntimeError("covfuzz fault injection: eager run raised")
            eager_out, eager_leaves = eager_run(make_inputs(device))
    except Exception as exc:
        raise _Failure(oracle.classify(exc, "eager"), exc, "eager") from None
    eager_grads = None
    if backward:
        try:
            with _timed(timings, "backward"):
                loss = backward_loss(eager_out)
                if loss is not None:
                    loss.backward()
                eager_grads = _grads(eager_leaves)
        except Exception as exc:
            raise _Failure(oracle.classify(exc, "eager"), exc, "eager backward") from None

    deterministic = None

    def determinism_gate() -> bool:
        nonlocal deterministic
        if deterministic is None:
            t0 = time.perf_counter()
            try:
                again, _ = eager_run(make_inputs(device))
                deterministic = oracle.bitwise_equal(eager_out, again)
            except Exception:
                deterministic = False
            timings["eager"] += time.perf_counter() - t0
        return deterministic

    if nondet:
        details["eager_deterministic"] = determinism_gate()

    # -- float64 reference (lazy: only computed when allclose fails)
    ref_cache: dict = {}

    def reference_outputs():
        if "v" not in ref_cache:
            t0 = time.perf_counter()
            ref_cache["v"] = (None, None)
            try:
                inputs = [_upcast(x) for x in make_inputs(ref_device)]
                with torch.set_grad_enabled(grad_enabled):
                    out, leaves = eager_run(inputs)
                    grads = None
                    if backward:
                        loss = backward_loss(out)
                        if loss is not None:
                            loss.backward()
                        grads = _grads(leaves)
                ref_cache["v"] = (out, grads)
            except Exception:
                pass
            timings["eager"] += time.perf_counter() - t0
        return ref_cache["v"]

    # -- compiled
    compile_kwargs = dict(ns["COMPILE_KWARGS"])
    if fault == "raise_compile":
        compile_kwargs["backend"] = _raising_backend
        compile_kwargs.pop("mode", None)

    def compiled_inputs():
        args = make_inputs(device)
        for index, dim in ns["MARK_DYNAMIC"]:
            torch._dynamo.mark_dynamic(args[index], dim)
        return args

    compiled_grads = None
    if collector is not None:
        t = time.perf_counter()
        collector.erase()
        collector.start()
        timings["coverage"] += time.perf_counter() - t
    try:
        with torch._inductor.config.patch(ns["INDUCTOR_CONFIG"]), \
                torch._dynamo.config.patch(ns["DYNAMO_CONFIG"]):
            target, call_args, leaves = bind(compiled_inputs())
            compiled = torch.compile(target, **compile_kwargs)
            try:
                with _timed(timings, "compile"):
                    if fault in ("segfault", "abort", "hang", "memory"):
                        _trigger(fault)
                    torch.manual_seed(case.seed % (1 << 32))
                    with torch.set_grad_enabled(grad_enabled):
                        compiled_out = compiled(*call_args)
            except Exception as exc:
                outcome = oracle.classify(exc, "compile")
                if outcome == "compile_crash" and oracle.is_specialized_mark_dynamic(exc):
                    details["note"] = ("mark_dynamic on a dim the program specializes "
                                       "(ConstraintViolationError): a case defect, not a bug")
                    outcome = "invalid"
                elif outcome == "compile_crash" and oracle.is_no_gemm_choice(exc):
                    details["note"] = ("max_autotune_gemm_backends leaves a matmul no choice "
                                       "(NoValidChoicesError): a settings defect, not a bug")
                    outcome = "invalid"
                raise _Failure(outcome, exc, "compile") from None
            if backward:
                try:
                    with _timed(timings, "backward"):
                        loss = backward_loss(compiled_out)
                        if loss is not None:
                            loss.backward()
                        compiled_grads = _grads(leaves)
                except Exception as exc:
                    raise _Failure(oracle.classify(exc, "backward"), exc,
                                   "compiled backward") from None
            try:
                with _timed(timings, "run"):
                    _, call_args, _ = bind(compiled_inputs())  # same module, fresh arguments
                    torch.manual_seed(case.seed % (1 << 32))
                    with torch.set_grad_enabled(grad_enabled):
                        second_out = compiled(*call_args)
            except Exception as exc:
                raise _Failure(oracle.classify(exc, "run"), exc, "run") from None
    finally:
        if collector is not None and collector.running:
            t = time.perf_counter()
            collector.stop()
            result["features"], result["n_lines"] = collector.features()
            collector.erase()
            timings["coverage"] += time.perf_counter() - t

    # -- oracle: forward
    mismatch = oracle.compare_outputs(eager_out, compiled_out, lambda: reference_outputs()[0])
    kind = "mismatch"
    if mismatch is None and backward:
        mismatch = oracle.compare_outputs(eager_grads or [], compiled_grads or [],
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
        again = oracle.compare_outputs(eager_out, second_out, lambda: reference_outputs()[0])
        if again is None:
            details.update(note="mismatch did not reproduce on a second compiled call",
                           first=mismatch)
            return
    if not determinism_gate():
        details.update(note="nondeterministic", suspected=mismatch)
        return
    out_index = mismatch.get("output")
    if kind == "mismatch" and out_index is not None:
        tainted = _f2i_cast_values(case)
        if case.graph.outputs[out_index] in tainted:
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
