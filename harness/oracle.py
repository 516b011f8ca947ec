"""The oracle: compare compiled against eager outputs, classify exceptions into outcomes.

Numerics (see `compare_outputs`):
- integers and bools compare exactly; shapes, dtypes and Python types must agree;
- floating point is judged like `torch._dynamo.utils.same(..., fp64_ref=...)`: first
  `allclose(compiled, eager)` with per-dtype tolerances (TOLERANCES); when that fails a float64
  reference (eager on CPU with floating inputs upcast to float64) decides: a mismatch only when
  RMSE(ref, compiled) > k * RMSE(ref, eager) + atol / 10 over positions where all three are
  finite (k = 2; 3 for fp16/bf16 or tensors of <= 10 elements);
- NaN/Inf: a position where eager and compiled disagree on the class (finite / nan / +inf /
  -inf) is a mismatch only when the reference agrees with eager there (the compiled value is
  the one that deviates), or when no usable reference exists;
- complex: the real and imaginary parts are judged as above, each as a float of the parts'
  dtype (complex64: float32's tolerance; complex128: float64's), NaN/Inf classes per part;
  a mismatch names the element and the part.

Everything here is pure (tensors in, verdicts out) and needs no compilation.
"""

from __future__ import annotations

import math
import os
import re
import traceback

import torch

TOLERANCES = {  # dtype -> (rtol, atol)
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (1.6e-2, 1e-2),
    torch.float32: (1e-4, 1e-5),
    torch.float64: (1e-7, 1e-7),
    # float8: one unit in the last place (eps relative; the subnormal spacing absolute), since
    # a float32 value that differs in its last bit may round to the neighbouring float8
    torch.float8_e4m3fn: (0.125, 2 ** -9),
    torch.float8_e5m2: (0.25, 2 ** -16),
}
SMALL_NUMEL = 10


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    return TOLERANCES.get(dtype, (1e-4, 1e-5))


def multiplier(dtype: torch.dtype, numel: int) -> float:
    if dtype.itemsize <= 2 or numel <= SMALL_NUMEL:  # half precision and float8
        return 3.0
    return 2.0


class _LazyRef:
    """Calls `fn` (which returns the reference outputs, or None) at most once, on demand."""

    def __init__(self, ref):
        self._fn = ref if callable(ref) else None
        self._value = None if callable(ref) else ref
        self.computed = not callable(ref)

    def get(self):
        if not self.computed:
            self.computed = True
            try:
                self._value = self._fn()
            except Exception:  # a reference that cannot be computed is simply absent
                self._value = None
        return self._value


def _scalar(v):
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    return v


def _item(t: torch.Tensor, index):
    v = t[index].item() if t.dim() else t.item()
    return _scalar(v)


def _unravel(flat_index: int, shape) -> tuple:
    out = []
    for size in reversed(shape):
        out.append(flat_index % size if size else 0)
        flat_index //= max(size, 1)
    return tuple(reversed(out))


def class_codes(t64: torch.Tensor) -> torch.Tensor:
    """0 finite, 1 nan, 2 +inf, 3 -inf (elementwise)."""
    cls = torch.zeros(t64.shape, dtype=torch.int8)
    cls[t64.isnan()] = 1
    cls[t64 == math.inf] = 2
    cls[t64 == -math.inf] = 3
    return cls


def _ref_tensor(ref, i, e: torch.Tensor):
    if ref is None or i >= len(ref):
        return None
    r = ref[i]
    if not isinstance(r, torch.Tensor) or tuple(r.shape) != tuple(e.shape):
        return None
    if not (r.is_floating_point() or not e.is_floating_point()):
        return None
    return r.detach().to("cpu", torch.float64)


def parts(t: torch.Tensor) -> torch.Tensor:
    """A complex tensor as a real one with a last dim of 2 (real, imaginary), on the CPU."""
    return torch.view_as_real(t.detach().cpu().resolve_conj().resolve_neg())


def value_classes(x) -> list[str]:
    """The special value classes present in a tensor or Python scalar, sorted. Floats: "nan",
    "+inf", "-inf", "huge" (finite, |x| >= finfo.max / 4), "denormal" (nonzero, |x| <
    finfo.tiny), "-0.0"; complex: those of either part; integers: "int_min" (signed dtypes),
    "int_max" (Python ints: of int64), "zero", "negative"; bools: none. [] = ordinary values
    only."""
    if isinstance(x, bool):
        return []
    if isinstance(x, int):
        x = torch.tensor([max(min(x, 2 ** 63 - 1), -2 ** 63)], dtype=torch.int64)
    elif isinstance(x, float):
        x = torch.tensor([x], dtype=torch.float64)
    if isinstance(x, torch.Tensor) and x.is_complex():
        x = parts(x)
    if not isinstance(x, torch.Tensor) or x.dtype == torch.bool:
        return []
    x = x.detach()
    found = []
    if x.is_floating_point():
        info = torch.finfo(x.dtype)
        v = x.to("cpu", torch.float64)
        a = v.abs()
        finite = v.isfinite()
        checks = {"nan": v.isnan(), "+inf": v == math.inf, "-inf": v == -math.inf,
                  "huge": finite & (a >= info.max / 4),
                  "denormal": (v != 0) & (a < info.tiny),
                  "-0.0": (v == 0) & v.signbit()}
    else:
        info = torch.iinfo(x.dtype)
        v = x.cpu()  # compared in its own dtype: uint64's max has no int64 value
        checks = {"zero": v == 0, "int_max": v == info.max}
        if info.min < 0:  # an unsigned minimum is 0: "zero" says it (and none is negative)
            checks["int_min"] = v == info.min
            checks["negative"] = v < 0
    for name, mask in checks.items():
        if bool(mask.any()):
            found.append(name)
    return sorted(found)


class _PartsRef:
    """The reference outputs with output i's complex tensor as its parts (`parts`)."""

    def __init__(self, lazy_ref: _LazyRef, i: int):
        self.lazy_ref, self.i = lazy_ref, i

    def get(self):
        ref = self.lazy_ref.get()
        if ref is None or self.i >= len(ref):
            return None
        r = ref[self.i]
        out = [None] * (self.i + 1)
        out[self.i] = parts(r) if isinstance(r, torch.Tensor) and r.is_complex() else None
        return out


def _compare_complex(i: int, e: torch.Tensor, c: torch.Tensor, lazy_ref: _LazyRef) -> dict | None:
    """A complex output judged by its parts: each a float of the parts' dtype (its tolerance,
    its NaN/Inf classes); the details name the element's index and the part."""
    d = compare_tensor(i, parts(e), parts(c), _PartsRef(lazy_ref, i))
    if d is None:
        return None
    d.update(dtype=str(e.dtype).removeprefix("torch."), shape=list(e.shape))
    if "index" in d:
        d["part"] = ("real", "imag")[d["index"][-1]]
        d["index"] = d["index"][:-1]
    return d


def compare_tensor(i: int, e: torch.Tensor, c, lazy_ref: _LazyRef) -> dict | None:
    """None when compiled output `c` matches eager output `e`; else mismatch details."""
    base = {"output": i}
    if not isinstance(c, torch.Tensor):
        return {**base, "kind": "type", "eager": f"Tensor {e.dtype}", "compiled": type(c).__name__}
    if e.dtype != c.dtype:
        return {**base, "kind": "dtype", "eager": str(e.dtype), "compiled": str(c.dtype)}
    if tuple(e.shape) != tuple(c.shape):
        return {**base, "kind": "shape", "eager": list(e.shape), "compiled": list(c.shape)}
    base.update(dtype=str(e.dtype).removeprefix("torch."), shape=list(e.shape))
    if e.numel() == 0:
        return None
    if e.is_complex():
        return _compare_complex(i, e, c, lazy_ref)
    e = e.detach().cpu()
    c = c.detach().cpu()
    if not e.is_floating_point():  # ints and bools: exact
        neq = e != c
        if not neq.any():
            return None
        flat = int(neq.reshape(-1).nonzero()[0, 0])
        index = _unravel(flat, e.shape)
        err = (e.to(torch.float64) - c.to(torch.float64)).abs()
        return {**base, "kind": "value", "exact": True, "index": list(index),
                "max_abs_err": float(err.max()), "n_diff": int(neq.sum()),
                "eager": _item(e, index), "compiled": _item(c, index), "reference": None,
                "rtol": 0.0, "atol": 0.0}

    rtol, atol = tolerance(e.dtype)
    k = multiplier(e.dtype, e.numel())
    e64, c64 = e.to(torch.float64), c.to(torch.float64)
    ce, cc = class_codes(e64), class_codes(c64)
    diff_class = ce != cc
    both_finite = (ce == 0) & (cc == 0)
    err = torch.where(both_finite, (e64 - c64).abs(), torch.zeros((), dtype=torch.float64))
    not_close = both_finite & (err > atol + rtol * e64.abs())
    if not diff_class.any() and not not_close.any():
        return None

    ref = lazy_ref.get()
    r64 = _ref_tensor(ref, i, e)
    if r64 is not None:
        cr = class_codes(r64)
        bad_class = diff_class & (cr == ce)
    else:
        cr = None
        bad_class = diff_class
    rmse_c = rmse_e = None
    bad_values = False
    if not_close.any():
        if r64 is None:
            bad_values = True
        else:
            m = both_finite & (cr == 0)
            if m.any():
                rmse_c = float(((r64 - c64)[m] ** 2).mean().sqrt())
                rmse_e = float(((r64 - e64)[m] ** 2).mean().sqrt())
                bad_values = rmse_c > k * rmse_e + atol / 10
    if not bad_class.any() and not bad_values:
        return None

    if bad_class.any():
        flat = int(bad_class.reshape(-1).nonzero()[0, 0])
        kind = "nonfinite"
    else:
        flat = int(err.reshape(-1).argmax())
        kind = "value"
    index = _unravel(flat, e.shape)
    return {**base, "kind": kind, "exact": False, "index": list(index),
            "max_abs_err": float(err.max()), "n_diff": int((not_close | bad_class).sum()),
            "eager": _item(e64, index), "compiled": _item(c64, index),
            "reference": _item(r64, index) if r64 is not None else None,
            "rtol": rtol, "atol": atol, "k": k, "rmse_compiled": rmse_c, "rmse_eager": rmse_e,
            "has_reference": r64 is not None}


def error_ratio(e, c) -> float | None:
    """How close compiled output `c` came to failing the first test of `compare_tensor`: the
    largest |e - c| / (atol + rtol * |e|) over positions where both are finite (0: equal; 1: at
    the allclose tolerance; above 1 only the float64 reference kept it from being a mismatch).
    None when there is nothing to measure (not floating tensors of one dtype and shape, empty)."""
    if not (isinstance(e, torch.Tensor) and isinstance(c, torch.Tensor)):
        return None
    if e.is_complex() and e.dtype == c.dtype and tuple(e.shape) == tuple(c.shape):
        e, c = parts(e), parts(c)  # each part against its dtype's tolerance
    if (not e.is_floating_point() or e.dtype != c.dtype or tuple(e.shape) != tuple(c.shape)
            or e.numel() == 0):
        return None
    rtol, atol = tolerance(e.dtype)
    with torch.no_grad():
        e64 = e.detach().to("cpu", torch.float64)
        c64 = c.detach().to("cpu", torch.float64)
        finite = e64.isfinite() & c64.isfinite()
        if not bool(finite.any()):
            return None
        ratio = (e64 - c64).abs() / (atol + rtol * e64.abs())
        return float(ratio[finite].max())


def compare_scalar(i: int, e, c, lazy_ref: _LazyRef) -> dict | None:
    base = {"output": i}
    if isinstance(e, bool) or isinstance(e, int) and not isinstance(c, float):
        if type(e) is type(c) and e == c:
            return None
        if isinstance(c, torch.Tensor) and c.numel() == 1 and c.item() == e:
            return None  # a 0-d tensor standing for the same Python number
        return {**base, "kind": "value", "exact": True, "eager": _scalar(e),
                "compiled": _scalar(c.item() if isinstance(c, torch.Tensor) and c.numel() == 1
                                    else c if isinstance(c, (int, float, bool)) else repr(c))}
    if isinstance(e, float):
        if isinstance(c, torch.Tensor) and c.numel() == 1:
            c = c.item()
        if not isinstance(c, (int, float)):
            return {**base, "kind": "type", "eager": "float", "compiled": type(c).__name__}
        et = torch.tensor([e], dtype=torch.float64)
        ct = torch.tensor([float(c)], dtype=torch.float64)

        class _Wrap:
            def get(self):
                ref = lazy_ref.get()
                if ref is None or i >= len(ref) or not isinstance(ref[i], (int, float)):
                    return None
                out = [None] * (i + 1)
                out[i] = torch.tensor([float(ref[i])], dtype=torch.float64)
                return out
        d = compare_tensor(i, et.to(torch.float32), ct.to(torch.float32), _Wrap())
        if d:
            d.update(eager=_scalar(e), compiled=_scalar(float(c)), shape=[], dtype="python float")
        return d
    if e != c:
        return {**base, "kind": "value", "eager": repr(e), "compiled": repr(c)}
    return None


def compare_outputs(eager, compiled, ref=None) -> dict | None:
    """None when `compiled` matches `eager`; else details of the first mismatching output.

    `ref` is the float64 reference outputs (a sequence), a zero-argument callable returning
    them (called at most once and only when needed), or None.
    """
    lazy = ref if isinstance(ref, _LazyRef) else _LazyRef(ref)
    if len(eager) != len(compiled):
        return {"output": None, "kind": "arity", "eager": len(eager), "compiled": len(compiled)}
    for i, (e, c) in enumerate(zip(eager, compiled)):
        if isinstance(e, torch.Tensor):
            d = compare_tensor(i, e, c, lazy)
        else:
            d = compare_scalar(i, e, c, lazy)
        if d is not None:
            return d
    return None


def bitwise_equal(a, b) -> bool:
    """Two output lists agree exactly (NaN == NaN at the same positions)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, torch.Tensor) != isinstance(y, torch.Tensor):
            return False
        if not isinstance(x, torch.Tensor):
            if not (x == y or (isinstance(x, float) and isinstance(y, float)
                               and math.isnan(x) and math.isnan(y))):
                return False
            continue
        if x.dtype != y.dtype or x.shape != y.shape:
            return False
        x, y = x.detach().cpu(), y.detach().cpu()
        if x.is_complex():
            x, y = parts(x), parts(y)
        if x.is_floating_point():
            if not bool(((x == y) | (x.isnan() & y.isnan())).all()):
                return False
        elif not torch.equal(x, y):
            return False
    return True


# ----------------------------------------------------------------------------- exceptions

_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))
_COMPILE_MARKERS = ("_dynamo/convert_frame.py", "_inductor/compile_fx.py",
                    "_dynamo/output_graph.py")
MAX_FRAMES = 8
MAX_MESSAGE = 2000


def _chain(exc: BaseException) -> list[BaseException]:
    seen, out = set(), []
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return out


def qualname(exc: BaseException) -> str:
    t = type(exc)
    mod = t.__module__
    return t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"


def torch_rel(path: str) -> str | None:
    path = os.path.abspath(path)
    if path.startswith(_TORCH_DIR + os.sep):
        return "torch/" + os.path.relpath(path, _TORCH_DIR).replace(os.sep, "/")
    return None


def torch_frames(exc: BaseException, limit: int = MAX_FRAMES) -> list[str]:
    """Innermost frames inside torch of the root cause (or the outer exception), as
    "torch/rel/path.py:line:function", outermost first."""
    for e in reversed(_chain(exc)):  # root cause first
        frames = []
        for fs in traceback.extract_tb(e.__traceback__):
            rel = torch_rel(fs.filename)
            if rel is not None:
                frames.append(f"{rel}:{fs.lineno}:{fs.name}")
        if frames:
            return frames[-limit:]
    return []


def all_frame_files(exc: BaseException) -> list[str]:
    files = []
    for e in _chain(exc):
        files.extend(fs.filename for fs in traceback.extract_tb(e.__traceback__))
    return files


def describe(exc: BaseException) -> tuple[str, str, list[str]]:
    """(exc_type, message, frames): message = type and first lines, root cause appended."""
    chain = _chain(exc)
    lines = [f"{qualname(exc)}: {str(exc).strip()}"]
    root = chain[-1]
    if root is not exc and str(root).strip() not in str(exc):
        lines.append(f"caused by {qualname(root)}: {str(root).strip()}")
    text = "\n".join("\n".join(part.splitlines()[:12]) for part in lines)
    return qualname(exc), text[:MAX_MESSAGE], torch_frames(exc)


def first_line(exc: BaseException, limit: int = 300) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else ""


# Exceptions that only wrap another one and carry its type and message as their own text,
# "<Type>: <message>" (Dynamo drops the chain, `raise Wrapper(e).with_traceback(e.__traceback__)
# from None`, so the root cause survives as text and as the traceback's innermost frames).
_WRAPPERS = ("BackendCompilerFailed", "InductorError", "LoweringException",
             "InternalTorchDynamoError")
_WRAPPER_HEAD = re.compile(r"^backend=.{0,200}? raised:\s*$")
_TYPE_PREFIX = re.compile(r"^([A-Za-z_][\w.]{0,200}): ?(.*)$", re.S)
_TAILS = ("\n\nSet TORCHDYNAMO_VERBOSE=1", "\nSet TORCHDYNAMO_VERBOSE=1", "\n  target: ",
          "\nFound from", "\n\nfrom user code:", "\n\nWhile executing")
MAX_CHECK_TEXT = 500


def _is_wrapper(exc: BaseException) -> bool:
    return any(t.__name__ in _WRAPPERS for t in type(exc).__mro__)


def _root(exc: BaseException) -> BaseException:
    """The innermost exception: the end of the cause/context chain, followed through the
    `inner_exception` that Dynamo's and Inductor's wrappers keep."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "inner_exception", None)
        nxt = inner if isinstance(inner, BaseException) else (
            exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__))
        if nxt is None:
            break
        exc = nxt
    return exc


def _unwrap_text(type_name: str, text: str, wrapped: bool) -> tuple[str, str]:
    """(type, message) beneath wrapper messages: "backend='x' raised:\nT: msg\n\nSet ..."."""
    for _ in range(4):  # wrappers nest (LoweringException inside InductorError ...)
        lines = text.strip().splitlines()
        if lines and _WRAPPER_HEAD.match(lines[0]):
            text = "\n".join(lines[1:])
            wrapped = True
        m = _TYPE_PREFIX.match(text.strip())
        if not (wrapped and m and re.search(r"(Error|Exception|Failed|Failure|Interrupt)$",
                                            m.group(1))):
            break
        type_name, text, wrapped = m.group(1), m.group(2), m.group(1) in _WRAPPERS
    for tail in _TAILS:
        text = text.split(tail, 1)[0]
    return type_name, text.strip()


def _generated(path: str) -> bool:
    """Files whose names change from run to run: Inductor's generated code, covfuzz's
    programs, `<string>` sources."""
    base = os.path.basename(path)
    return (path.startswith("<") or base.startswith("covfuzz_case_") or "torchinductor" in path
            or "inductor_cache" in path)


def _frame_name(path: str) -> str:
    rel = torch_rel(path)
    if rel is not None:
        return rel
    norm = path.replace(os.sep, "/")
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in norm:
            return norm.split(marker, 1)[1]
    return os.path.basename(norm)


def failing_check(exc: BaseException) -> dict:
    """The check that failed, beneath the wrappers: {"where": "torch/rel/path.py:line:function"
    of the frame that raised (the innermost frame of the root exception's traceback, or the
    innermost torch frame when that one is generated code), "source": its source line (the
    `assert` or `raise`), "root_type", "root_message"}. Strings bounded; '' when unknown."""
    root = _root(exc)
    root_type, root_message = _unwrap_text(type(root).__name__, str(root), _is_wrapper(root))
    where = source = ""
    stack = traceback.extract_tb(root.__traceback__)
    pick = None
    for fs in reversed(stack):
        if not _generated(fs.filename):
            pick = fs
            break
    if pick is not None and torch_rel(pick.filename) is None and not os.path.exists(pick.filename):
        pick = None
    if pick is None:  # generated code raised: name the innermost torch frame that called it
        pick = next((fs for fs in reversed(stack) if torch_rel(fs.filename)), None)
    if pick is not None:
        where = f"{_frame_name(pick.filename)}:{pick.lineno}:{pick.name}"
        source = (pick.line or "").strip()
    return {"where": where[:MAX_CHECK_TEXT], "source": source[:MAX_CHECK_TEXT],
            "root_type": root_type[:200], "root_message": root_message[:MAX_CHECK_TEXT]}


def is_oom(exc: BaseException) -> bool:
    for e in _chain(exc):
        if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
            return True
        if isinstance(e, RuntimeError) and ("can't allocate memory" in str(e)
                                            or "CUDA out of memory" in str(e)):
            return True
    return False


# CUDA errors after which the process's CUDA context is unusable: every later CUDA call fails
# with the same "sticky" error, so the worker must be replaced (an asynchronous kernel fault
# may also surface at a later call than the one that caused it).
CUDA_FATAL_ERRORS = ("an illegal memory access was encountered", "device-side assert triggered",
                     "unspecified launch failure", "misaligned address",
                     "an illegal instruction was encountered", "CUDA error: unknown error",
                     "uncorrectable ECC error")


def is_cuda_fatal(exc: BaseException) -> bool:
    """A CUDA error that leaves the CUDA context unusable (the worker must be restarted)."""
    for e in _chain(exc):
        text = str(e)
        if "CUDA error" in text and any(marker in text for marker in CUDA_FATAL_ERRORS):
            return True
        if "device-side assert triggered" in text:
            return True
    return False


def is_compile_error(exc: BaseException) -> bool:
    """Raised while dynamo/AOTAutograd/inductor compiled (not while compiled code ran)."""
    try:
        from torch._dynamo.exc import TorchDynamoException
    except Exception:  # pragma: no cover
        TorchDynamoException = ()
    for e in _chain(exc):
        if TorchDynamoException and isinstance(e, TorchDynamoException):
            return True
    return any(f.replace(os.sep, "/").endswith(m) for f in all_frame_files(exc)
               for m in _COMPILE_MARKERS)


def is_specialized_mark_dynamic(exc: BaseException) -> bool:
    """torch's documented refusal of mark_dynamic on a dim the code specializes."""
    return any(type(e).__name__ == "ConstraintViolationError" for e in _chain(exc))


def is_no_gemm_choice(exc: BaseException) -> bool:
    """Inductor's documented refusal when max_autotune_gemm_backends leaves a matmul no
    implementation (e.g. "CPP" alone for weights that are not constant): a settings defect."""
    return any(type(e).__name__ == "NoValidChoicesError" or "NoValidChoicesError" in str(e)
               for e in _chain(exc))


def classify(exc: BaseException, stage: str) -> str:
    """Outcome for an exception raised at `stage`:
    'eager' -> invalid; 'compile' (first compiled call, or compiled backward) -> compile_crash
    when the error comes from compilation, else runtime_crash; 'run' -> runtime_crash.
    Out-of-memory anywhere -> oom. A fatal CUDA error after the eager run -> process_crash
    (the worker is restarted: its CUDA context cannot be trusted); in the eager run it is the
    case's own fault (e.g. an out-of-range index on the GPU) -> invalid, worker restarted too."""
    if is_oom(exc):
        return "oom"
    if is_cuda_fatal(exc) and stage != "eager":
        return "process_crash"
    if stage == "eager":
        return "invalid"
    if stage in ("compile", "backward") and is_compile_error(exc):
        return "compile_crash"
    return "runtime_crash"


# ----------------------------------------------------------------------------- GPU reference

# Where the float64 reference runs, and what eager means (`covfuzz fuzz --reference`):
# auto: on the case's GPU when its estimated size fits, else on the CPU; cpu / cuda: there;
# cpu-eager: the compiled GPU result is compared with eager *on the CPU* (reference as auto).
REFERENCE_CHOICES = ("auto", "cpu", "cuda", "cpu-eager")
REFERENCE_GPU_SHARE = 0.5  # of the GPU memory free for this worker a float64 run may take


def float64_bytes(case) -> int:
    """An upper bound of the memory a float64 run of `case` holds: every input's storage and
    every node's output at 8 bytes an element, all alive at once; twice that with backward
    (a gradient per value)."""
    from covfuzz.ir import TensorSpec
    specs = [inp.spec for inp in case.graph.inputs] + [n.out for n in case.graph.nodes]
    elements = 0
    for spec in specs:
        if isinstance(spec, TensorSpec):
            if any(s == 0 for s in spec.shape):
                continue
            elements += spec.offset + 1 + sum((s - 1) * abs(st)
                                              for s, st in zip(spec.shape, spec.stride))
    return elements * 8 * (2 if case.settings.backward else 1)


def free_gpu_bytes(device: str) -> int | None:
    """GPU memory this process can still take on `device` (free on the device plus what its
    caching allocator holds unused); None when `device` is not a usable CUDA device."""
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return None
    try:
        free, _total = torch.cuda.mem_get_info()
        return int(free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated())
    except RuntimeError:
        return None


def reference_device(device: str, reference: str | None, needed: int,
                     free: int | None) -> str:
    """Where the float64 reference of a case on `device` runs: 'cpu' or 'cuda' when
    `reference` names one; otherwise on the case's GPU when `needed` bytes fit in
    REFERENCE_GPU_SHARE of `free` (None: unknown, so the CPU), and on the CPU for CPU cases."""
    if reference in ("cpu", "cuda"):
        return reference
    if str(device).startswith("cuda") and free is not None and needed <= free * REFERENCE_GPU_SHARE:
        return device
    return "cpu"


def eager_device(device: str, reference: str | None) -> str:
    """The device eager runs on: the case's, or the CPU under `--reference cpu-eager`."""
    return "cpu" if reference == "cpu-eager" else device
