"""Labels for divergences that are documented non-bugs (design brief section 6, issue 16 point 7).

Localization finds the culprit node of a mismatch: the first graph node whose compiled value
diverges from eager on inputs where eager and compiled agree (within the oracle's tolerance).
`label(ctx)` looks at that one node and says whether its divergence belongs to a class that is
not a bug: `(label, one-line reason)`, or None when it may be a real bug.

Every label is a small function `ctx -> reason | None` that must explain *every* differing
position (a label that explains some positions and not others does not apply). They run in
`ORDER`: exact, cheap and specific checks first; the heuristic ones (bounds from error
analysis) after; the one that needs a compilation (`rerun`) only when low precision is involved.

An *independent* reference matters: `ctx.reference` and `ctx.evaluate` run eager's own
algorithm in float64 and share its defects (a Welford mean that turns -inf and +max into NaN).
`compiled_closer` and `eager_not_ieee` therefore judge against `_NUMPY` (numpy float64 / Python
`math`), else the op's OpInfo ref (harness/references.py: PyTorch's own NumPy/SciPy reference
implementations, imported once per process when first needed), falling back to float64 eager
only where the op has neither. Reasons name the source that decided.

Pure functions of their inputs: torch, numpy and OpInfo's refs, nothing compiled here
(`ctx.rerun` is the caller's).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from covfuzz.ir import INT_CONVERSION_METHODS
from harness import oracle, references

# ----------------------------------------------------------------------------- constants

# Forward error bound of a reduction: recursive / pairwise summation of n terms is within
# gamma_n ~ n*u (u = eps/2) times sum|x| of the exact sum, so two summation orders differ by at
# most ~n*eps*sum|x|. Factor 2 of slack covers the extra roundings around the sum (mean's
# division, a fused multiply-add against a separate one, the final cast to the output dtype).
REDUCTION_BOUND_FACTOR = 2.0
# Overflow decided by summation order: a partial sum can only reach FLT_MAX when the sum of
# magnitudes does, give or take the rounding of n additions (this slack).
OVERFLOW_SLACK = 1.0
# A comparison/cast/rounding decision counts as flipped by noise when the floating inputs are
# within this many times the oracle's tolerance (rtol, atol of their dtype) of the decision
# boundary: localization guarantees only that the compiled inputs agree with eager's within
# that tolerance, so that is the size of the noise the decision may have seen.
FLIP_WINDOW_TOLERANCES = 1.0
# ... and never less than this many ulps of the input dtype (for float64 the tolerance is tight,
# but a re-associated upstream can still move the value by a few ulps).
FLIP_WINDOW_ULPS = 4.0
# ulp-noise amplified by an ill-conditioned op: |err| <= C * eps * (sum_a |x_a df/dx_a| + |f|):
# inputs perturbed by a few ulps (fused upstream, different libm) times the condition, plus the
# op's own rounding of its result. C = 8: a few ulps of input noise and a couple of the op's.
ILL_CONDITIONED_FACTOR = 8.0
# Relative step of the central finite difference used when autograd cannot differentiate the
# op: ~cbrt(eps64) minimises truncation + rounding error of a central difference.
FINITE_DIFF_STEP = 6e-6
# compiled_closer / eager_not_ieee: a finite value "matches" the independent reference when it
# is within the oracle tolerance of its dtype (the same yardstick the oracle uses).
# low_precision_intermediate: the rerun must agree with eager within the dtype's tolerance too.
LOW_PRECISION = (torch.float16, torch.bfloat16)

# ----------------------------------------------------------------------------- context


@dataclass
class CulpritContext:
    op: str                  # covfuzz catalog op name (covfuzz.ops.get_op(op) gives the OpDef)
    attrs: dict              # the node's literal attributes
    args: list               # argument values as EAGER computed them, detached
    eager: object            # eager output (tensor or Python scalar)
    compiled: object         # compiled output
    reference: object | None  # eager's algorithm on float64 upcasts (shares eager's defects)
    evaluate: Callable[[list], object]  # runs the op eagerly on the given args
    rerun: Callable[[dict], object] | None  # compiled output under extra inductor config
    grad: bool = False       # a gradient divergence rather than a forward one
    # Optional: the culprit's inputs as the COMPILED program computed them. When given,
    # rounding_flip checks that eager's op on these inputs reproduces the compiled output.
    compiled_args: list | None = None


# ----------------------------------------------------------------------------- helpers

def _tensor(x) -> torch.Tensor | None:
    """A detached CPU tensor for a tensor or Python number; None for anything else."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, bool):
        return torch.tensor(x)
    if isinstance(x, int):
        return torch.tensor(x, dtype=torch.int64)
    if isinstance(x, float):
        return torch.tensor(x, dtype=torch.float64)
    return None


def _f64(x) -> torch.Tensor | None:
    t = _tensor(x)
    return None if t is None else t.to(torch.float64)


def _tol_dtype(x) -> torch.dtype:
    """The dtype whose tolerance judges `x`: Python floats are judged as float32, as the
    oracle does (they come from `.item()` of float32 tensors)."""
    if isinstance(x, torch.Tensor):
        return x.dtype
    return torch.float32


def _eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps if dtype.is_floating_point else torch.finfo(torch.float32).eps


def _float_tensors(ctx: CulpritContext) -> list[torch.Tensor]:
    vals = list(ctx.args) + [ctx.eager, ctx.compiled]
    return [v for v in vals if isinstance(v, torch.Tensor) and v.is_floating_point()]


def _compute_dtype(ctx: CulpritContext) -> torch.dtype:
    """The least precise floating dtype the node touches (its rounding is the noise level)."""
    dtypes = [t.dtype for t in _float_tensors(ctx)]
    if not dtypes:
        return torch.float32 if isinstance(ctx.eager, float) else torch.float64
    return max(dtypes, key=_eps)


def _close(a64: torch.Tensor, b64: torch.Tensor, dtype: torch.dtype, scale=None) -> torch.Tensor:
    """Elementwise: same class and, where finite, within the oracle tolerance of `dtype`
    (relative to |b| or to `scale`)."""
    rtol, atol = oracle.tolerance(dtype)
    ca, cb = oracle.class_codes(a64), oracle.class_codes(b64)
    ref = b64.abs() if scale is None else scale
    finite = (ca == 0) & (cb == 0)
    diff = torch.where(finite, (a64 - b64).abs(), torch.zeros((), dtype=torch.float64))
    return (ca == cb) & (~finite | (diff <= atol + rtol * ref))


def _pair(ctx: CulpritContext):
    """(eager, compiled) as tensors of one shape and dtype, else None (shape/dtype/type
    mismatches are never one of these numeric classes)."""
    e, c = _tensor(ctx.eager), _tensor(ctx.compiled)
    if e is None or c is None or e.shape != c.shape:
        return None
    if e.is_floating_point() != c.is_floating_point():
        return None
    if isinstance(ctx.eager, torch.Tensor) and e.dtype != c.dtype:
        return None
    return e, c


def _differ(ctx: CulpritContext) -> torch.Tensor | None:
    """Mask of the positions where compiled diverges from eager: beyond the oracle's tolerance
    (or a different nan/inf class) for floating outputs, unequal for exact ones. When nothing
    is beyond tolerance, the bitwise-different positions (NaN == NaN). None when the outputs
    cannot be compared elementwise."""
    pair = _pair(ctx)
    if pair is None:
        return None
    e, c = pair
    if not e.is_floating_point():
        return e != c.to(e.dtype)
    e64, c64 = e.to(torch.float64), c.to(torch.float64)
    mask = ~_close(c64, e64, _tol_dtype(ctx.eager))
    if not mask.any():
        # bitwise: zeros and NaNs of different sign differ too
        same = ((e64 == c64) | (e64.isnan() & c64.isnan())) & (e64.signbit() == c64.signbit())
        mask = ~same
    return mask


def _diff_or_none(ctx):
    mask = _differ(ctx)
    if mask is None or not mask.any():
        return None
    return mask


def _op_def(name: str):
    try:
        from covfuzz.ops import get_op
        return get_op(name)
    except Exception:  # an op unknown to this torch: no catalog facts
        return None


_ELEMENTWISE_CATEGORIES = ("pointwise_unary", "pointwise_binary", "pointwise_ternary",
                           "activation", "cast")
_NOT_ELEMENTWISE = ("F.glu", "torch.polygamma")  # glu halves a dim; polygamma's n is an attr


def _elementwise(op: str) -> bool:
    d = _op_def(op)
    return d is not None and d.category in _ELEMENTWISE_CATEGORIES and op not in _NOT_ELEMENTWISE


def _broadcast_args(args, shape) -> list[torch.Tensor] | None:
    """Every argument as a float64 tensor of the output shape (scalars filled), or None when
    one does not broadcast to it."""
    out = []
    for a in args:
        t = _f64(a)
        if t is None:
            return None
        try:
            out.append(t.broadcast_to(shape))
        except RuntimeError:
            return None
    return out


def _call(fn, *a):
    """Runs a caller-supplied callable; a failure means "no evidence", never an error here."""
    try:
        return fn(*a)
    except Exception:
        return None


def _upcast(args) -> list:
    """float64 upcasts of the floating arguments (tensors and Python floats); others as is."""
    out = []
    for a in args:
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            out.append(a.detach().to(torch.float64))
        else:
            out.append(a)
    return out


def _first(mask: torch.Tensor) -> tuple:
    flat = int(mask.reshape(-1).nonzero()[0, 0])
    return tuple(np.unravel_index(flat, tuple(mask.shape))) if mask.dim() else ()


def _fmt(v: torch.Tensor, idx) -> str:
    x = v[idx].item() if v.dim() else v.item()
    return repr(x)


def _reduced_rows(x: torch.Tensor, dim, out_numel: int) -> torch.Tensor | None:
    """x rearranged to (out_numel, n): row i holds the elements reduced into output i (dim:
    int, tuple, or None/() for all dims). None when that does not fit the output."""
    if x.dim() == 0:
        return x.reshape(1, 1) if out_numel == 1 else None
    if dim is None or dim == () or dim == []:
        dims = list(range(x.dim()))
    else:
        dims = [dim] if isinstance(dim, int) else list(dim)
        dims = sorted({d % x.dim() for d in dims})
    kept = [d for d in range(x.dim()) if d not in dims]
    rows = x.permute(kept + dims).reshape(math.prod(x.shape[d] for d in kept), -1)
    return rows if rows.shape[0] == out_numel else None


# ----------------------------------------------------------------------------- nan_sign

# Ops whose result reads the sign bit (or the bits) of an input: a NaN whose sign differs
# upstream (sign of NaN is unspecified by IEEE 754 for most operations) flips them.
_SIGN_READERS = {"torch.signbit": (0,), "torch.copysign": (1,), "Tensor.view.dtype": (0,)}


def nan_sign(ctx: CulpritContext) -> str | None:
    """The only difference is the sign bit (or payload) of NaN values."""
    mask = _diff_or_none(ctx)
    if mask is None:
        return None
    e, c = _pair(ctx)
    if e.is_floating_point():
        e64, c64 = e.to(torch.float64), c.to(torch.float64)
        if bool((e64.isnan() & c64.isnan())[mask].all()):
            return "eager and compiled are both NaN wherever they differ (NaN sign bit only)"
        return None
    readers = _SIGN_READERS.get(ctx.op)
    if not readers or ctx.op == "Tensor.view.dtype":
        return None  # bit views change shape/dtype; judged only on floating outputs above
    args = _broadcast_args(ctx.args, e.shape)
    if args is None:
        return None
    if all(bool(args[i].isnan()[mask].all()) for i in readers):
        return f"{ctx.op} reads the sign of a NaN input at every differing position"
    return None


# ----------------------------------------------------------------------------- float_to_int_cast

_CAST_OPS = ("Tensor.to", "Tensor.copy_", "Tensor.fill_", "torch.masked_fill",
             "Tensor.masked_fill_") + INT_CONVERSION_METHODS


def float_to_int_cast(ctx: CulpritContext) -> str | None:
    """Out-of-range (or NaN/inf) float -> integer conversion: undefined behaviour in C; eager
    wraps, compiled may saturate."""
    if ctx.op not in _CAST_OPS:
        return None
    mask = _diff_or_none(ctx)
    if mask is None:
        return None
    e, _ = _pair(ctx)
    if e.is_floating_point() or e.dtype == torch.bool:
        return None  # float -> bool is x != 0: defined for every input
    info = torch.iinfo(e.dtype)
    args = [a for a in ctx.args if (isinstance(a, torch.Tensor) and a.is_floating_point())
            or isinstance(a, float)]
    for a in args:
        t = _f64(a)
        try:
            t = t.broadcast_to(e.shape)
        except RuntimeError:
            continue
        vals = t[mask]
        # C converts by truncation toward zero: defined only when trunc(x) is representable.
        out = ~vals.isfinite() | (vals.trunc() < info.min) | (vals.trunc() > info.max)
        if bool(out.all()):
            idx = _first(mask)
            return (f"float -> {str(e.dtype).removeprefix('torch.')} cast of out-of-range value "
                    f"{_fmt(t, idx)} (eager {_fmt(e, idx)}, compiled "
                    f"{_fmt(_tensor(ctx.compiled), idx)})")
    return None


# ----------------------------------------------------------------------------- denormal_flush


def _subnormal(t64: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    tiny = torch.finfo(dtype).tiny  # smallest normal number
    return (t64 != 0) & (t64.abs() < tiny)


def _flush(a):
    """Subnormal floating values replaced by a zero of the same sign (what DAZ/FTZ does)."""
    if isinstance(a, torch.Tensor) and a.is_floating_point():
        sub = _subnormal(a.to(torch.float64), a.dtype)
        return torch.where(sub, a * 0, a)
    return a


def denormal_flush(ctx: CulpritContext) -> str | None:
    """The differing positions are explained by flushing denormals to zero on one path: the
    outputs there are both below the smallest normal, or eager's op on the inputs with
    denormals flushed reproduces the compiled output there."""
    mask = _diff_or_none(ctx)
    if mask is None:
        return None
    e, c = _pair(ctx)
    if e.is_floating_point():
        tiny = torch.finfo(e.dtype).tiny
        e64, c64 = e.to(torch.float64), c.to(torch.float64)
        # both below the smallest normal and not both zero (+0 vs -0 is a sign question)
        tiny_pair = (e64.abs() < tiny) & (c64.abs() < tiny) & ((e64 != 0) | (c64 != 0))
        if bool(tiny_pair[mask].all()):
            return "differing outputs are all zero or denormal (one path flushed to zero)"
    if ctx.grad:
        return None
    has_sub = any(isinstance(a, torch.Tensor) and a.is_floating_point()
                  and bool(_subnormal(a.to(torch.float64), a.dtype).any()) for a in ctx.args)
    if not has_sub:
        return None
    flushed = _tensor(_call(ctx.evaluate, [_flush(a) for a in ctx.args]))
    if flushed is None or flushed.shape != e.shape:
        return None
    if e.is_floating_point():
        agree = _close(flushed.to(torch.float64), c.to(torch.float64), _tol_dtype(ctx.eager))
    else:
        agree = flushed == c
    if bool(agree[mask].all()):
        return "eager's op on the inputs with denormals flushed to zero gives the compiled value"
    return None


# ----------------------------------------------------------------------------- nondeterministic

# Ops whose result is unspecified by contract when indices repeat (the winning write).
_DUPLICATE_WRITE_OPS = ("torch.scatter", "Tensor.index_put")


def _multiply_written(ctx: CulpritContext, shape) -> torch.Tensor | None:
    """Mask of output positions written more than once (duplicate indices), or None."""
    try:
        if ctx.op == "torch.scatter":
            x, index = ctx.args[0], ctx.args[1]
            counts = torch.zeros(x.shape, dtype=torch.int64)
            counts.scatter_add_(ctx.attrs["dim"], index, torch.ones_like(index))
            return counts > 1
        if ctx.op == "Tensor.index_put" and not ctx.attrs.get("accumulate", False):
            x, index = ctx.args[0], ctx.args[1]
            rows = torch.bincount(index.reshape(-1) % x.shape[0], minlength=x.shape[0]) > 1
            return rows.reshape((-1,) + (1,) * (x.dim() - 1)).expand(shape)
    except Exception:  # malformed arguments: no evidence
        return None
    return None


def nondeterministic(ctx: CulpritContext) -> str | None:
    """The op's result is not determined: two eager runs differ, or the differing positions
    are written more than once through duplicate indices of an op that leaves the winner
    unspecified."""
    mask = _diff_or_none(ctx)
    if mask is None:
        return None
    if not ctx.grad:
        first = _call(ctx.evaluate, list(ctx.args))
        second = _call(ctx.evaluate, list(ctx.args))
        if first is not None and second is not None and not oracle.bitwise_equal([first], [second]):
            return "two eager runs of the op on the same inputs differ"
    if ctx.op in _DUPLICATE_WRITE_OPS:
        dup = _multiply_written(ctx, mask.shape)
        if dup is not None and dup.shape == mask.shape and bool(dup[mask].all()):
            return f"{ctx.op} with duplicate indices: which write wins is unspecified"
    return None


# ----------------------------------------------------------------------------- rounding_flip

_COMPARISONS = ("torch.eq", "torch.ne", "torch.lt", "torch.le", "torch.gt", "torch.ge")
_FINITE_TESTS = ("torch.isfinite", "torch.isinf", "torch.isposinf", "torch.isneginf")
_INTEGER_BOUNDARY = ("torch.ceil", "torch.floor", "torch.trunc", "torch.frac")
_ZERO_BOUNDARY = ("torch.signbit", "torch.sign", "torch.heaviside", "torch.logical_not",
                  "torch.logical_and", "torch.logical_or", "torch.logical_xor")
_ZERO_BOUNDARY_REDUCTIONS = ("torch.any", "torch.all", "torch.count_nonzero")
_QUOTIENT_BOUNDARY = ("torch.floor_divide", "torch.div.rounding", "torch.remainder", "torch.fmod")
_INDEX_REDUCTIONS = ("torch.argmax", "torch.argmin")
# Ops whose exact result depends on every bit of a floating input (a hash of the bit pattern):
# any rounding difference upstream, however far within tolerance, changes it. No boundary to be
# near, so only the strong form can label them: the compiled program's own inputs, within noise
# of eager's, make eager's op give the compiled answer.
_BIT_READERS = ("torch.hash_tensor",)


def _window(x64: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """How far rounding noise may have moved a value of this magnitude (see the constants)."""
    rtol, atol = oracle.tolerance(dtype)
    tol = FLIP_WINDOW_TOLERANCES * (atol + rtol * x64.abs())
    ulps = FLIP_WINDOW_ULPS * _eps(dtype) * x64.abs()
    return torch.maximum(tol, ulps)


def _arg_dtype(ctx) -> torch.dtype:
    for a in ctx.args:
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            return a.dtype
    return torch.float32


def _near_boundary(ctx: CulpritContext, mask: torch.Tensor, e, c) -> str | None:
    """Per-op: are all flipped positions within noise of the op's decision boundary?"""
    op, dt = ctx.op, _arg_dtype(ctx)
    if op in _INDEX_REDUCTIONS or op == "torch.argsort":
        x = _f64(ctx.args[0])
        dim = ctx.attrs.get("dim")
        if x.dim() == 0:
            return None
        if op == "torch.argsort" or dim is not None:
            d = dim % x.dim()
            ei = e if e.dim() == x.dim() else e.unsqueeze(d)
            ci = c if c.dim() == x.dim() else c.unsqueeze(d)
            ve, vc = x.gather(d, ei), x.gather(d, ci)
            m = mask if mask.dim() == x.dim() else mask.unsqueeze(d)
        else:
            flat = x.reshape(-1)
            ve, vc, m = flat[e.reshape(-1)], flat[c.reshape(-1)], mask.reshape(-1)
        tie = ((ve - vc).abs() <= _window(torch.maximum(ve.abs(), vc.abs()), dt)) | (
            ve.isnan() & vc.isnan())
        return "indices of values tied within rounding noise" if bool(tie[m].all()) else None
    if op == "torch.sort" or op == "torch.topk":
        return None  # values, not indices: a value error is a value error
    if op in _BIT_READERS:
        pairs = [(_f64(a), _f64(b)) for a, b in zip(ctx.args, ctx.compiled_args or [])
                 if isinstance(a, torch.Tensor) and a.is_floating_point()
                 and isinstance(b, torch.Tensor) and a.shape == b.shape]
        if not pairs or not all(bool((((a - b).abs() <= _window(a, dt)) | (a.isnan() & b.isnan())
                                      | (a == b)).all()) for a, b in pairs):
            return None
        return "reads the exact bits of floating inputs that differ within rounding noise"
    args = _broadcast_args(ctx.args, e.shape)
    if op in _ZERO_BOUNDARY_REDUCTIONS:
        rows = _reduced_rows(_f64(ctx.args[0]), ctx.attrs.get("dim"), e.numel())
        if rows is None:
            return None
        near = (rows.abs() <= _window(rows, dt)).any(dim=1) & rows.isfinite().all(dim=1)
        return ("a reduced element sits within rounding noise of zero"
                if bool(near[mask.reshape(-1)].all()) else None)
    if args is None:
        return None
    if op in _COMPARISONS:
        a, b = args[0], args[1]
        near = (a - b).abs() <= _window(torch.maximum(a.abs(), b.abs()), dt)
        return "compared values equal within rounding noise" if bool(near[mask].all()) else None
    if op == "torch.isclose":
        a, b = args[0], args[1]
        thr = 1e-8 + 1e-5 * b.abs()  # torch.isclose's default atol, rtol
        near = ((a - b).abs() - thr).abs() <= _window(torch.maximum(a.abs(), b.abs()), dt)
        ok = bool(near[mask].all())
        return "|a-b| within rounding noise of isclose's threshold" if ok else None
    if op in _FINITE_TESTS:
        x = args[0]
        big = torch.finfo(dt).max
        near = x.isinf() | (x.abs() >= big - _window(torch.tensor(big), dt))
        return "input at the edge of overflow (inf vs max)" if bool(near[mask].all()) else None
    if op in _ZERO_BOUNDARY:
        near = torch.zeros(e.shape, dtype=torch.bool)
        for a in args[:2] if op.startswith("torch.logical_") else args[:1]:
            near |= a.abs() <= _window(a, dt)
        return "input within rounding noise of zero" if bool(near[mask].all()) else None
    if op in _INTEGER_BOUNDARY or op in ("torch.round", "torch.round.decimals", "Tensor.to"):
        x = args[0]
        if op == "Tensor.to" and (e.is_floating_point() or not (
                isinstance(ctx.args[0], torch.Tensor) and ctx.args[0].is_floating_point())):
            return None  # only float -> integer casts decide by truncation
        scale = 10.0 ** ctx.attrs.get("decimals", 0) if op == "torch.round.decimals" else 1.0
        y = x * scale
        # round: half-integers decide; the others: integers.
        half = 0.5 if op in ("torch.round", "torch.round.decimals") else 0.0
        dist = (y - half - (y - half).round()).abs()
        near = dist <= _window(x, dt) * scale  # noise of x, seen in units of the last digit
        # one step apart at most (frac jumps by ~1, the others by one unit of the last digit)
        step = (e.to(torch.float64) - c.to(torch.float64)).abs() * scale
        one_step = step <= 1.0 + _window(torch.tensor(1.0), dt)
        ok = near & one_step
        ok = bool(ok[mask].all())
        return "input within rounding noise of a rounding boundary" if ok else None
    if op in _QUOTIENT_BOUNDARY:
        a, b = args[0], args[1]
        q = a / b
        # both operands carry noise, so the quotient carries about twice their relative noise
        near = (q - q.round()).abs() <= 2 * _window(q, dt)
        return "quotient within rounding noise of an integer" if bool(near[mask].all()) else None
    return None


def rounding_flip(ctx: CulpritContext) -> str | None:
    """Exact-valued outputs (bools, integers, indices, ceil/floor/round results, hashes of the
    bits) from floating inputs that flipped where those inputs sit within rounding noise of the
    decision boundary (for a hash: anywhere, shown by the compiled program's own inputs)."""
    if ctx.grad or not any((isinstance(a, torch.Tensor) and a.is_floating_point())
                           or isinstance(a, float) for a in ctx.args):
        return None
    if ctx.op in _BIT_READERS and ctx.compiled_args is None:
        return None  # see _BIT_READERS: nothing but the strong form can tell
    mask = _diff_or_none(ctx)
    if mask is None:
        return None
    e, c = _pair(ctx)
    if ctx.compiled_args is not None:
        # Strong form: the compiled program's own inputs (within tolerance of eager's, as
        # localization ensures) make eager's op give the compiled answer.
        again = _tensor(_call(ctx.evaluate, list(ctx.compiled_args)))
        if again is None or again.shape != c.shape or not bool(
                (again.to(torch.float64) == c.to(torch.float64))[mask].all()):
            return None
    try:
        why = _near_boundary(ctx, mask, e, c)
    except (RuntimeError, IndexError, TypeError):  # arguments of an unexpected form
        return None
    if why is None:
        return None
    idx = _first(mask)
    return f"{ctx.op}: {why} (e.g. eager {_fmt(e, idx)}, compiled {_fmt(c, idx)})"


# ----------------------------------------------------------------------------- reduction bound

_SUM_LIKE = ("torch.sum", "torch.nansum", "torch.mean", "torch.cumsum", "Tensor.item",
             "torch.mm", "torch.bmm", "torch.matmul", "torch.mv", "torch.dot", "torch.einsum",
             "torch.einsum.unary", "F.linear", "torch.addmm", "torch.baddbmm",
             "F.conv1d", "F.conv2d", "F.avg_pool1d", "F.avg_pool2d", "F.adaptive_avg_pool1d",
             "F.adaptive_avg_pool2d", "F.interpolate", "torch.var_mean", "torch.index_add",
             "torch.scatter_add")
_LOG_SUM = ("torch.logsumexp", "torch.logcumsumexp", "F.log_softmax")
_PRODUCT = ("torch.prod", "torch.cumprod")
_LOSSES = ("F.mse_loss", "F.smooth_l1_loss", "F.binary_cross_entropy_with_logits",
           "F.cross_entropy")
REDUCTION_OPS = (_SUM_LIKE + _LOG_SUM + _PRODUCT + _LOSSES
                 + ("torch.var", "torch.std", "torch.linalg.vector_norm", "F.softmax",
                    "F.softmin", "F.normalize", "F.cosine_similarity", "F.layer_norm",
                    "F.rms_norm", "F.group_norm"))


def _terms(ctx: CulpritContext, out_numel: int) -> int:
    """How many terms one output element sums (an upper bound where it is not simple)."""
    x = ctx.args[0] if ctx.args and isinstance(ctx.args[0], torch.Tensor) else None
    op = ctx.op
    if x is not None and op in ("torch.sum", "torch.nansum", "torch.mean", "torch.var",
                                "torch.std", "torch.var_mean", "torch.linalg.vector_norm",
                                "torch.logsumexp", "torch.prod", "Tensor.item"):
        return max(1, x.numel() // max(out_numel, 1))
    if x is not None and op in ("torch.cumsum", "torch.cumprod", "torch.logcumsumexp",
                                "F.softmax", "F.softmin", "F.log_softmax", "F.normalize",
                                "F.cosine_similarity") and x.dim():
        return x.shape[ctx.attrs.get("dim", -1) % x.dim()]
    if x is not None and op in ("torch.mm", "torch.bmm", "torch.matmul", "torch.mv",
                                "torch.dot", "F.linear") and x.dim():
        return x.shape[-1] + 1  # + 1: the bias of linear
    sizes = [a.numel() for a in ctx.args if isinstance(a, torch.Tensor)]
    return max(sizes + [1])  # any one output sums at most this many distinct terms


def _magnitude(ctx: CulpritContext, e64: torch.Tensor, exact: torch.Tensor | None):
    """Per output element, the scale S such that two evaluation orders differ by at most
    ~n*eps*S (the 'sum of |terms|' of the error analysis), or None when unknown."""
    op, x = ctx.op, _f64(ctx.args[0]) if ctx.args else None
    shape = e64.shape
    if op in _SUM_LIKE:
        # The same linear computation on |inputs| is sum |terms| (products of |factors|).
        absargs = [a.abs() if isinstance(a, torch.Tensor) and a.is_floating_point() else
                   (abs(a) if isinstance(a, float) else a) for a in _upcast(ctx.args)]
        s = _tensor(_call(ctx.evaluate, absargs))
        return None if s is None or s.shape != shape else s.to(torch.float64).abs()
    if op in _LOG_SUM:
        return 1.0 + e64.abs() / max(_terms(ctx, e64.numel()), 1)  # relative error of the sum
    if op in _PRODUCT or op in ("F.softmax", "F.softmin", "F.normalize"):
        return e64.abs()  # relative error n*eps of a product / of x_i / sum
    if op in _LOSSES:
        extra = 1.0 if op == "F.cross_entropy" else 0.0  # its inner logsumexp
        return e64.abs() + extra  # nonnegative terms: sum|terms| = |sum|
    if x is None:
        return None
    dim = ctx.attrs.get("dim")
    if op in ("torch.var", "torch.std"):
        rows = _reduced_rows(x, dim, e64.numel())
        if rows is None:
            return None
        dof = max(rows.shape[1] - ctx.attrs.get("correction", 1), 1)
        s_var = ((rows ** 2).sum(1) / dof).reshape(shape)
        return s_var if op == "torch.var" else s_var.sqrt()  # |sqrt a - sqrt b| <= sqrt|a - b|
    if op == "torch.linalg.vector_norm":
        return e64.abs() if exact is None else torch.maximum(e64.abs(), exact.abs())
    if op == "F.cosine_similarity":
        return torch.ones(shape, dtype=torch.float64)
    if op in ("F.layer_norm", "F.rms_norm", "F.group_norm"):
        # (x - mean)/sigma: mean's error ~n eps mean|x|, sigma's relative error ~n eps mean(x^2)
        # / sigma^2; in units of the output: (mean|x|/sigma + |y| mean(x^2)/sigma^2) * |w|.
        # Bounded crudely by (1 + |y|) * max|x|^2/sigma^2 with sigma from the output's spread.
        xs = x.abs().max()
        spread = e64[e64.isfinite()].std() if e64.isfinite().sum() > 1 else torch.tensor(1.0)
        sigma = x.std() if x.numel() > 1 else torch.tensor(1.0)
        ratio = (xs / sigma.clamp_min(1e-300)) ** 2 if bool(sigma > 0) else torch.tensor(1.0)
        return (1.0 + e64.abs()) * ratio * max(float(spread), 1.0)
    return None


def reduction_error_bound(ctx: CulpritContext) -> str | None:
    """A reduction whose compiled result differs from eager by no more than the forward error
    bound of summing its terms in another order: ~2 * n * eps * sum|terms| (data dependent);
    or that overflowed on one path only while the sum of magnitudes reaches the dtype's max,
    so that the summation order decides the overflow."""
    if ctx.grad or ctx.op not in REDUCTION_OPS:
        return None
    mask = _diff_or_none(ctx)
    if mask is None:
        return None
    e, c = _pair(ctx)
    if not e.is_floating_point():
        return None
    e64, c64 = e.to(torch.float64), c.to(torch.float64)
    exact = _tensor(_call(ctx.evaluate, _upcast(ctx.args)))
    if exact is None and ctx.reference is not None:
        exact = _tensor(ctx.reference)
    if exact is not None:
        exact = exact.to(torch.float64) if exact.shape == e.shape else None
    s = _magnitude(ctx, e64, exact)
    if s is None:
        return None
    dt = _compute_dtype(ctx)
    n = _terms(ctx, e64.numel())
    bound = REDUCTION_BOUND_FACTOR * n * _eps(dt) * s
    rtol, atol = oracle.tolerance(_tol_dtype(ctx.eager))
    slack = bound + atol + rtol * e64.abs()
    finite = e64.isfinite() & c64.isfinite()
    within = finite & ((c64 - e64).abs() <= slack)
    if exact is not None:
        within &= ~exact.isfinite() | ((c64 - exact).abs() <= slack)
    # Overflow decided by order: all inputs finite, and the sum of magnitudes reaches max (a
    # partial sum can get there in some order); the finite side, if any, within the bound.
    fmax = torch.finfo(dt).max
    inputs_finite = all(bool(_f64(a).isfinite().all()) for a in ctx.args
                        if isinstance(a, torch.Tensor) and a.is_floating_point())
    can_overflow = _partial_sum_scale(ctx, s, e64) * (1 + OVERFLOW_SLACK * n * _eps(dt)) >= fmax
    side_ok = torch.ones(e.shape, dtype=torch.bool)
    if exact is not None:
        for v in (e64, c64):
            side_ok &= ~v.isfinite() | ~exact.isfinite() | ((v - exact).abs() <= slack)
    overflow = can_overflow & (~e64.isfinite() | ~c64.isfinite()) & side_ok & inputs_finite
    overflow |= _overflow_meets_infinity(ctx, e64, c64, exact, dt)
    if not bool((within | overflow)[mask].all()):
        return None
    idx = _first(mask)
    b = bound[idx].item() if bound.dim() else bound.item()
    kind = "overflow decided by summation order" if bool(overflow[mask].any()) else (
        "within the reduction's error bound")
    return (f"{ctx.op} over ~{n} terms: {kind} (|compiled-eager| <= {b:.3g} = "
            f"{REDUCTION_BOUND_FACTOR:g}*n*eps*sum|terms|; eager {_fmt(e64, idx)}, "
            f"compiled {_fmt(c64, idx)})")


# Ops that divide their sum by the number of terms: `_magnitude` gives the mean of |terms|,
# while an overflow happens in the partial sums before the division.
_AVERAGING = ("torch.mean", "torch.var_mean", "F.avg_pool1d", "F.avg_pool2d",
              "F.adaptive_avg_pool1d", "F.adaptive_avg_pool2d")


def _partial_sum_scale(ctx: CulpritContext, s, e64: torch.Tensor):
    """The magnitude partial sums reach: `s` itself, or `s` times the terms an output element
    averages (input elements per output element) for averaging ops."""
    x = ctx.args[0] if ctx.args and isinstance(ctx.args[0], torch.Tensor) else None
    if ctx.op not in _AVERAGING or x is None:
        return s
    return s * max(1, x.numel() // max(e64.numel(), 1))


def _overflow_meets_infinity(ctx: CulpritContext, e64, c64, exact, dt) -> torch.Tensor:
    """Positions where the exact result is an infinity (its infinite terms all of one sign),
    eager has it, and compiled has NaN or the opposite infinity, while the *finite* terms there
    alone can overflow (their magnitudes sum past the dtype's max): a partial sum of finite
    terms overflowed to the other infinity in compiled's order and met the true one. Summation
    order decides it, as in the all-finite case."""
    none = torch.zeros(e64.shape, dtype=torch.bool)
    if exact is None or ctx.op not in _SUM_LIKE:
        return none
    finite_args = [torch.where(a.isfinite(), a, torch.zeros((), dtype=a.dtype))
                   if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                   for a in ctx.args]
    s_finite = _magnitude(dataclasses.replace(ctx, args=finite_args), e64, exact)
    if s_finite is None or not isinstance(s_finite, torch.Tensor):
        return none
    n = _terms(ctx, e64.numel())
    reaches_max = (_partial_sum_scale(ctx, s_finite, e64)
                   * (1 + OVERFLOW_SLACK * n * _eps(dt)) >= torch.finfo(dt).max)
    exact_inf = exact.isinf()
    eager_right = exact_inf & (e64 == exact)
    compiled_other = c64.isnan() | (c64.isinf() & (c64 != exact))
    return reaches_max & eager_right & compiled_other


# ----------------------------------------------------------------------------- independent refs


def _np_unary(fn):
    return lambda a, attrs: fn(a[0])


def _np_binary(fn):
    return lambda a, attrs: fn(a[0], a[1])


def _vec(fn):
    return np.vectorize(fn, otypes=[np.float64])


def _m(fn):
    """A Python `math` function (C99 on special values) made elementwise and total: a domain
    error gives NaN, an overflow inf."""
    def f(x):
        try:
            return fn(x)
        except ValueError:
            return math.nan
        except OverflowError:
            return math.inf
    return _vec(f)


def _sigmoid(x):
    z = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def _softplus(x, beta, threshold):
    bx = beta * x
    return np.where(bx > threshold, x, np.logaddexp(0.0, bx) / beta)


def _xlogy(x, y):
    return np.where((x == 0) & ~np.isnan(y), 0.0, x * np.log(y))


def _axis(attrs):
    dim = attrs.get("dim")
    if dim is None or dim == ():
        return None
    return tuple(dim) if isinstance(dim, (tuple, list)) else dim


def _keep(attrs):
    return bool(attrs.get("keepdim", False))


def _logsumexp(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


_GELU_C = math.sqrt(2 / math.pi)

# covfuzz op name -> f(args as float64 numpy arrays / Python numbers, attrs) -> numpy array.
# Independent of eager's kernels: numpy float64 / Python math, which follow C99 Annex F.
_NUMPY: dict[str, Callable] = {
    "torch.exp": _np_unary(np.exp), "torch.exp2": _np_unary(np.exp2),
    "torch.expm1": _np_unary(np.expm1), "torch.log": _np_unary(np.log),
    "torch.log2": _np_unary(np.log2), "torch.log10": _np_unary(np.log10),
    "torch.log1p": _np_unary(np.log1p), "torch.sqrt": _np_unary(np.sqrt),
    "torch.rsqrt": _np_unary(lambda x: 1 / np.sqrt(x)), "torch.sin": _np_unary(np.sin),
    "torch.cos": _np_unary(np.cos), "torch.tan": _np_unary(np.tan),
    "torch.asin": _np_unary(np.arcsin), "torch.acos": _np_unary(np.arccos),
    "torch.atan": _np_unary(np.arctan), "torch.sinh": _np_unary(np.sinh),
    "torch.cosh": _np_unary(np.cosh), "torch.tanh": _np_unary(np.tanh),
    "torch.asinh": _np_unary(np.arcsinh), "torch.acosh": _np_unary(np.arccosh),
    "torch.atanh": _np_unary(np.arctanh), "torch.sigmoid": _np_unary(_sigmoid),
    "torch.erf": _np_unary(_m(math.erf)), "torch.erfc": _np_unary(_m(math.erfc)),
    "torch.lgamma": _np_unary(_m(math.lgamma)), "torch.reciprocal": _np_unary(lambda x: 1 / x),
    "torch.sinc": _np_unary(np.sinc), "torch.deg2rad": _np_unary(np.deg2rad),
    "torch.i0": _np_unary(np.i0), "torch.abs": _np_unary(np.abs),
    "torch.neg": _np_unary(np.negative), "torch.square": _np_unary(np.square),
    "torch.ceil": _np_unary(np.ceil), "torch.floor": _np_unary(np.floor),
    "torch.round": _np_unary(np.round), "torch.trunc": _np_unary(np.trunc),
    "torch.frac": _np_unary(lambda x: x - np.trunc(x)),
    "torch.mul": _np_binary(np.multiply), "torch.div": _np_binary(np.divide),
    "torch.true_divide": _np_binary(np.divide),
    "torch.add": lambda a, at: a[0] + at.get("alpha", 1) * a[1],
    "torch.sub": lambda a, at: a[0] - at.get("alpha", 1) * a[1],
    "torch.maximum": _np_binary(np.maximum), "torch.minimum": _np_binary(np.minimum),
    "torch.fmax": _np_binary(np.fmax), "torch.fmin": _np_binary(np.fmin),
    "torch.atan2": _np_binary(np.arctan2), "torch.hypot": _np_binary(np.hypot),
    "torch.copysign": _np_binary(np.copysign), "torch.logaddexp": _np_binary(np.logaddexp),
    "torch.xlogy": _np_binary(_xlogy), "torch.pow": _np_binary(np.power),
    "torch.fmod": _np_binary(np.fmod), "torch.remainder": _np_binary(np.mod),
    "torch.floor_divide": _np_binary(np.floor_divide),
    "F.relu": _np_unary(lambda x: np.where(x > 0, x, np.where(np.isnan(x), x, 0.0))),
    "F.silu": _np_unary(lambda x: x * _sigmoid(x)),
    "F.mish": _np_unary(lambda x: x * np.tanh(_softplus(x, 1.0, 20.0))),
    "F.softsign": _np_unary(lambda x: x / (1 + np.abs(x))),
    "F.tanhshrink": _np_unary(lambda x: x - np.tanh(x)),
    "F.logsigmoid": _np_unary(lambda x: -np.logaddexp(0.0, -x)),
    "F.softplus": lambda a, at: _softplus(a[0], at.get("beta", 1.0), at.get("threshold", 20.0)),
    "F.elu": lambda a, at: np.where(a[0] > 0, a[0], at.get("alpha", 1.0) * np.expm1(a[0])),
    "F.leaky_relu": lambda a, at: np.where(a[0] > 0, a[0], at.get("negative_slope", 0.01) * a[0]),
    "F.softshrink": lambda a, at: np.where(
        a[0] > at.get("lambd", 0.5), a[0] - at.get("lambd", 0.5),
        np.where(a[0] < -at.get("lambd", 0.5), a[0] + at.get("lambd", 0.5),
                 np.where(np.isnan(a[0]), a[0], 0.0))),
    "F.gelu": lambda a, at: (0.5 * a[0] * (1 + _m(math.erf)(a[0] / math.sqrt(2)))
                             if at.get("approximate", "none") == "none" else
                             0.5 * a[0] * (1 + np.tanh(_GELU_C * (a[0] + 0.044715 * a[0] ** 3)))),
    "torch.sum": lambda a, at: np.sum(a[0], axis=_axis(at), keepdims=_keep(at)),
    "torch.nansum": lambda a, at: np.nansum(a[0], axis=_axis(at), keepdims=_keep(at)),
    "torch.mean": lambda a, at: np.mean(a[0], axis=_axis(at), keepdims=_keep(at)),
    "torch.var_mean": lambda a, at: np.mean(a[0], axis=_axis(at), keepdims=_keep(at)),
    "torch.var": lambda a, at: np.var(a[0], axis=_axis(at), keepdims=_keep(at),
                                      ddof=at.get("correction", 1)),
    "torch.std": lambda a, at: np.std(a[0], axis=_axis(at), keepdims=_keep(at),
                                      ddof=at.get("correction", 1)),
    "torch.amax": lambda a, at: np.max(a[0], axis=_axis(at), keepdims=_keep(at)),
    "torch.amin": lambda a, at: np.min(a[0], axis=_axis(at), keepdims=_keep(at)),
    "torch.prod": lambda a, at: np.prod(a[0], axis=_axis(at), keepdims=_keep(at)),
    "torch.logsumexp": lambda a, at: _logsumexp(a[0], _axis(at), _keep(at)),
    "torch.cumsum": lambda a, at: np.cumsum(a[0], axis=at.get("dim", 0)),
    "torch.cumprod": lambda a, at: np.cumprod(a[0], axis=at.get("dim", 0)),
    "torch.mm": _np_binary(np.matmul), "torch.bmm": _np_binary(np.matmul),
    "torch.matmul": _np_binary(np.matmul), "torch.mv": _np_binary(np.matmul),
    "torch.dot": _np_binary(np.dot), "torch.outer": _np_binary(np.outer),
}
# Ops whose numpy entry is elementwise (special-value inputs can be located per position).
_NUMPY_ELEMENTWISE = {k for k in _NUMPY if k.startswith(("F.",)) or _elementwise(k)}


def _numpy_reference(ctx: CulpritContext, shape) -> torch.Tensor | None:
    fn = _NUMPY.get(ctx.op)
    if fn is None:
        return None
    args = []
    for a in ctx.args:
        if isinstance(a, torch.Tensor):
            args.append(a.detach().cpu().to(torch.float64).numpy())
        elif isinstance(a, (int, float)) and not isinstance(a, bool):
            args.append(float(a))
        else:
            return None
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(fn(args, ctx.attrs), dtype=np.float64)
        out = torch.from_numpy(out.copy()).reshape(shape)
    except Exception:  # shapes numpy reads differently: no independent reference
        return None
    return out


def _float64_eager(ctx: CulpritContext, shape) -> torch.Tensor | None:
    r = _tensor(_call(ctx.evaluate, _upcast(ctx.args)))
    if r is None and ctx.reference is not None:
        r = _tensor(ctx.reference)
    return r.to(torch.float64) if r is not None and r.shape == shape else None


def _opinfo_reference(ctx: CulpritContext, shape, mask) -> references.Reference | None:
    """The op's OpInfo ref (harness/references.py), trusted only where it agrees with eager's
    float64 run (eager itself when that fails) at every position where eager and compiled
    agree, and there is one: evidence on these very arguments that the ref computes this op
    as the catalog calls it (OpInfo's tests translate some calls for their refs)."""
    r = references.reference(ctx.op, ctx.args, ctx.attrs, shape)
    if r is None or r.value.is_complex():  # the labels compare real values
        return None
    agree = ~mask
    if not bool(agree.any()):
        return None
    base = _float64_eager(ctx, shape)
    if base is None:
        base = _tensor(ctx.eager).to(torch.float64)
    if not bool(_matches(base, r.value, _tol_dtype(ctx.eager))[agree].all()):
        return None
    return r


def _independent(ctx: CulpritContext, shape, mask) -> tuple[torch.Tensor | None, str]:
    """The most independent exact result there is for the culprit, and where it comes from:
    the hand-written numpy table, else the op's OpInfo ref, else eager's float64 run."""
    ref = _numpy_reference(ctx, shape)
    if ref is not None:
        return ref, "numpy float64"
    r = _opinfo_reference(ctx, shape, mask)
    if r is not None:
        return r.value, r.source
    r = _float64_eager(ctx, shape)
    return (r, "float64 eager") if r is not None else (None, "")


def _matches(v64: torch.Tensor, r64: torch.Tensor, dtype) -> torch.Tensor:
    """v equals reference r as well as `dtype` can hold it: same class, zeros of the same sign,
    finite values within the dtype's tolerance of r rounded to the dtype."""
    if dtype.is_floating_point:
        r_rounded = r64.to(dtype).to(torch.float64)
    else:
        r_rounded = r64
    zero_sign = ~((v64 == 0) & (r_rounded == 0)) | (v64.signbit() == r_rounded.signbit())
    return _close(v64, r_rounded, dtype) & zero_sign


# ----------------------------------------------------------------------------- eager_not_ieee


def _special(t64: torch.Tensor) -> torch.Tensor:
    return ~t64.isfinite() | ((t64 == 0) & t64.signbit())


def eager_not_ieee(ctx: CulpritContext) -> str | None:
    """At special-value inputs (inf, -inf, nan, -0.0), eager deviates from the IEEE 754 / C99
    result while compiled follows it. The reference: the hand-written numpy/math table, else
    an OpInfo ref that is one of numpy's own ufuncs (elementwise, C99 Annex F on special
    values; scipy's functions and Python refs have their own conventions there)."""
    if ctx.grad:
        return None
    mask = _diff_or_none(ctx)
    if mask is None:
        return None
    e, c = _pair(ctx)
    args = _broadcast_args(ctx.args, e.shape)
    if args is None:
        return None
    special = torch.zeros(e.shape, dtype=torch.bool)
    for a in args:
        special |= _special(a)
    if not bool(special[mask].all()):
        return None
    if ctx.op in _NUMPY:
        ref, source = (_numpy_reference(ctx, e.shape), "numpy") \
            if ctx.op in _NUMPY_ELEMENTWISE else (None, "")
    else:
        r = _opinfo_reference(ctx, e.shape, mask)
        ref, source = (r.value, r.source) if r is not None and r.ieee_ufunc else (None, "")
    if ref is None:
        return None
    dt = e.dtype if isinstance(ctx.eager, torch.Tensor) else torch.float32
    e64, c64 = e.to(torch.float64), c.to(torch.float64)
    ok = special & _matches(c64, ref, dt) & ~_matches(e64, ref, dt)
    if not bool(ok[mask].all()):
        return None
    idx = _first(mask)
    ins = ", ".join(_fmt(a, idx) for a in args)
    return (f"{ctx.op}({ins}): C99/IEEE gives {_fmt(ref, idx)} ({source}); compiled "
            f"{_fmt(c64, idx)} follows it, eager gives {_fmt(e64, idx)}")


# ----------------------------------------------------------------------------- compiled_closer


def compiled_closer(ctx: CulpritContext) -> str | None:
    """Compiled is at least as close as eager to an independent exact result at every
    differing position, and strictly closer somewhere (eager NaN where the exact result is
    finite, or eager's error larger)."""
    if ctx.grad:
        return None
    mask = _diff_or_none(ctx)
    if mask is None:
        return None
    e, c = _pair(ctx)
    ref, source = _independent(ctx, e.shape, mask)
    if ref is None:
        return None
    dt = e.dtype if isinstance(ctx.eager, torch.Tensor) else torch.float32
    e64, c64 = e.to(torch.float64), c.to(torch.float64)
    rc = oracle.class_codes(ref)
    c_ok, e_ok = _matches(c64, ref, dt), _matches(e64, ref, dt)
    # Same class as the reference on both sides: compare errors; class: compiled must match.
    both_class = (oracle.class_codes(c64) == rc) & (oracle.class_codes(e64) == rc)
    zero = torch.zeros((), dtype=torch.float64)
    err_c = torch.where(both_class & (rc == 0), (c64 - ref).abs(), zero)
    err_e = torch.where(both_class & (rc == 0), (e64 - ref).abs(), zero)
    compiled_class_right = (oracle.class_codes(c64) == rc) & (oracle.class_codes(e64) != rc)
    not_worse = c_ok | compiled_class_right | (both_class & (err_c <= err_e))
    if not bool(not_worse[mask].all()):
        return None
    strictly = (c_ok & ~e_ok) | compiled_class_right | (both_class & (err_c < err_e))
    if not bool(strictly[mask].any()):
        return None
    idx = _first(mask)
    return (f"compiled {_fmt(c64, idx)} is closer than eager {_fmt(e64, idx)} to the exact "
            f"{_fmt(ref, idx)} ({source})")


# ----------------------------------------------------------------------------- ill_conditioned


def _sensitivity(ctx: CulpritContext, shape) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(f(x) in float64, sum over args of |x_a * df/dx_a|) per output position, for an
    elementwise op: autograd through `evaluate` on float64 upcasts, else central differences."""
    args = _broadcast_args(ctx.args, shape)
    if args is None:
        return None
    floating = [i for i, a in enumerate(ctx.args)
                if (isinstance(a, torch.Tensor) and a.is_floating_point()) or isinstance(a, float)]
    leaves = [a.clone().requires_grad_(i in floating) for i, a in enumerate(args)]
    call_args = [leaves[i] if i in floating else ctx.args[i] for i in range(len(args))]
    try:
        with torch.enable_grad():
            y = ctx.evaluate(call_args)
            if not isinstance(y, torch.Tensor) or y.shape != shape or not y.requires_grad:
                raise RuntimeError("no autograd")
            grads = torch.autograd.grad(y.sum(), [leaves[i] for i in floating], allow_unused=True)
        f = y.detach().to(torch.float64)
        sens = torch.zeros(shape, dtype=torch.float64)
        for i, g in zip(floating, grads):
            if g is not None:
                sens += (args[i] * g).abs()
        return f, sens
    except Exception:
        pass
    base = _tensor(_call(ctx.evaluate, [args[i] if i in floating else ctx.args[i]
                                        for i in range(len(args))]))
    if base is None or base.shape != shape:
        return None
    f = base.to(torch.float64)
    sens = torch.zeros(shape, dtype=torch.float64)
    for i in floating:
        h = FINITE_DIFF_STEP * args[i].abs().clamp_min(1.0)
        plus = [args[j] + h if j == i else (args[j] if j in floating else ctx.args[j])
                for j in range(len(args))]
        minus = [args[j] - h if j == i else (args[j] if j in floating else ctx.args[j])
                 for j in range(len(args))]
        fp, fm = _tensor(_call(ctx.evaluate, plus)), _tensor(_call(ctx.evaluate, minus))
        if fp is None or fm is None:
            return None
        sens += (args[i] * (fp.to(torch.float64) - fm.to(torch.float64)) / (2 * h)).abs()
    return f, sens


def _amplified_input_noise(ctx: CulpritContext) -> str | None:
    """The strong form, for any op: the compiled program's own inputs to this node are within
    the oracle's tolerance of eager's, and eager's op on them gives the compiled output (within
    tolerance). The node computed right on what it was given; the divergence is tolerated
    upstream noise that this op amplifies (a cos of 3e6, a log near 0), whatever the op."""
    if ctx.compiled_args is None or len(ctx.compiled_args) != len(ctx.args):
        return None
    mask = _diff_or_none(ctx)
    pair = _pair(ctx)
    if mask is None or pair is None or not pair[0].is_floating_point():
        return None  # exact outputs flipped by noise are rounding_flip's to judge
    moved = False
    for a, b in zip(ctx.args, ctx.compiled_args):
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            if not (isinstance(b, torch.Tensor) and b.shape == a.shape and b.dtype == a.dtype):
                return None
            a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
            if not bool(_close(b64, a64, a.dtype).all()):
                return None
            moved |= not bool(((a64 == b64) | (a64.isnan() & b64.isnan())).all())
        elif isinstance(a, torch.Tensor):
            if not (isinstance(b, torch.Tensor) and torch.equal(a, b)):
                return None
        elif a != b:
            return None
    if not moved:
        return None  # the same inputs, another output: the op itself diverges
    again = _tensor(_call(ctx.evaluate, list(ctx.compiled_args)))
    c = pair[1]
    if again is None or again.shape != c.shape or again.dtype != c.dtype:
        return None
    if not bool(_close(c.to(torch.float64), again.to(torch.float64), c.dtype)[mask].all()):
        return None
    idx = _first(mask)
    return (f"{ctx.op} amplifies input noise within tolerance: eager's {ctx.op} on the compiled "
            f"program's own inputs gives the compiled output (e.g. eager {_fmt(pair[0], idx)}, "
            f"compiled {_fmt(c, idx)})")


def ill_conditioned(ctx: CulpritContext) -> str | None:
    """An op whose divergence is input noise amplified: shown directly by the compiled
    program's own inputs (`_amplified_input_noise`), or, for an elementwise op, by its condition
    number |x f'(x)/f(x)| times the ulp noise: |compiled - eager| <= C * eps * (sum_a |x_a
    df/dx_a| + |f|)."""
    if ctx.grad:
        return None
    strong = _amplified_input_noise(ctx)
    if strong:
        return strong
    if not _elementwise(ctx.op):
        return None
    mask = _diff_or_none(ctx)
    if mask is None:
        return None
    e, c = _pair(ctx)
    if not e.is_floating_point():
        return None
    got = _sensitivity(ctx, e.shape)
    if got is None:
        return None
    f, sens = got
    dt = _compute_dtype(ctx)
    bound = ILL_CONDITIONED_FACTOR * _eps(dt) * (sens + f.abs())
    e64, c64 = e.to(torch.float64), c.to(torch.float64)
    ok = e64.isfinite() & c64.isfinite() & bound.isfinite() & ((c64 - e64).abs() <= bound)
    if not bool(ok[mask].all()):
        return None
    idx = _first(mask)
    cond = (sens / f.abs())[idx].item() if f.dim() else (sens / f.abs()).item()
    return (f"{ctx.op} ill-conditioned here: condition {cond:.3g}, |compiled-eager| "
            f"{abs(_tensor(c64)[idx].item() - _tensor(e64)[idx].item()):.3g} <= "
            f"{ILL_CONDITIONED_FACTOR:g}*eps*(|x f'|+|f|) = {bound[idx].item():.3g}")


# ----------------------------------------------------------------------------- resampling_special

# Ops that compute each output from neighbouring input taps with weights. With an infinite or
# NaN tap, the formula decides the result, and eager and Inductor use different ones that agree
# on finite values: eager may skip a tap whose weight is exactly 0 (bicubic on a grid point)
# where compiled code multiplies it (0*inf = NaN); eager sums w0*a + w1*b where Inductor's
# decomposition uses the equal-for-finite-values lerp a + t*(b - a) (inf - inf = NaN).
_RESAMPLING_OPS = ("F.interpolate",)
# Finite stand-ins for the special inputs: two different ones, so an output that does not move
# between them does not depend on those inputs at all.
_STAND_INS = (0.0, 1.0)


# Taps per output along one spatial dim, as offsets from floor(source coordinate).
_TAPS = {"linear": (0, 1), "bilinear": (0, 1), "trilinear": (0, 1), "bicubic": (-1, 0, 1, 2)}


def _tap_windows_hold(specials: torch.Tensor, out_shape, attrs: dict) -> torch.Tensor:
    """Per output position: whether a special input lies among the taps that position reads
    (F.interpolate without align_corners: source = (o + 0.5) / scale - 0.5 along every
    spatial dim, taps at floor(source) + offsets, clamped to the edge)."""
    offsets = _TAPS.get(attrs.get("mode"))
    scale = attrs.get("scale_factor")
    spatial = specials.dim() - 2
    held = torch.zeros(out_shape, dtype=torch.bool)
    if offsets is None or not isinstance(scale, (int, float)) or scale <= 0 or spatial < 1:
        return held
    # reads[d][o, i]: output index o along spatial dim d reads input index i
    reads = []
    for d in range(spatial):
        n_in, n_out = specials.shape[2 + d], out_shape[2 + d]
        src = (torch.arange(n_out, dtype=torch.float64) + 0.5) / scale - 0.5
        base = src.floor().long()
        r = torch.zeros(n_out, n_in, dtype=torch.bool)
        for k in offsets:
            r[torch.arange(n_out), (base + k).clamp(0, n_in - 1)] = True
        reads.append(r.to(torch.float64))
    s = specials.to(torch.float64)
    for d in range(spatial):  # contract input dim 2+d with reads[d]: (.., in, ..) -> (.., out, ..)
        s = torch.movedim(torch.movedim(s, 2 + d, -1) @ reads[d].T, -1, 2 + d)
    return (s > 0).broadcast_to(out_shape)


def resampling_special(ctx: CulpritContext) -> str | None:
    """A resampling op whose input holds NaN/inf, where compiled is NaN/inf at positions with a
    special input among their taps, and at each of them either
    - eager is finite and stays bitwise the same with the special inputs replaced by finite
      stand-ins (the tap's weight is 0: compiled multiplied 0 by inf or NaN), or
    - eager is +-inf and compiled NaN with an infinity among the taps (the lerp form)."""
    if ctx.grad or ctx.op not in _RESAMPLING_OPS or not ctx.args:
        return None
    mask = _diff_or_none(ctx)
    x = ctx.args[0]
    if mask is None or not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return None
    e, c = _pair(ctx)
    if not e.is_floating_point():
        return None
    e64, c64 = e.to(torch.float64), c.to(torch.float64)
    specials = ~x.isfinite()
    if not bool(specials.any()):
        return None
    if not bool(_tap_windows_hold(specials, e.shape, ctx.attrs)[mask].all()):
        return None  # a NaN away from every special input is the compiled code's own doing
    zero_weight = e64.isfinite() & ~c64.isfinite()
    lerp = e64.isinf() & c64.isnan() & _tap_windows_hold(x.isinf(), e.shape, ctx.attrs)
    if not bool((zero_weight | lerp)[mask].all()):
        return None
    if bool((zero_weight & mask).any()):
        for value in _STAND_INS:
            other = _tensor(_call(ctx.evaluate, [x.masked_fill(specials, value), *ctx.args[1:]]))
            if other is None or other.shape != e.shape:
                return None
            if not bool((other.to(torch.float64) == e64)[zero_weight & mask].all()):
                return None
    idx = _first(mask)
    head = f"{ctx.op}: compiled {_fmt(c64, idx)} where eager gives {_fmt(e64, idx)}"
    if bool(zero_weight[idx]):
        return (f"{head}; eager's value does not depend on the {int(specials.sum())} NaN/inf "
                "input(s) (same with them replaced by 0 and 1): a zero-weight tap, 0*inf = NaN")
    return (f"{head}; an infinite tap: eager's weighted sum w0*a + w1*b gives inf, the "
            "decomposition's lerp a + t*(b - a), equal for finite values, gives inf - inf = NaN")


# ----------------------------------------------------------------------------- low precision

# The inductor setting that makes compiled code round to fp16/bf16 after every op, as eager does.
EMULATE = {"emulate_precision_casts": True}


def low_precision_intermediate(ctx: CulpritContext) -> str | None:
    """fp16/bf16 is involved and recompiling with emulate_precision_casts=True gives eager's
    result (within the dtype's tolerance, NaN positions equal): the divergence is Inductor
    keeping float32 intermediates, by design."""
    if ctx.rerun is None:
        return None
    involved = [v for v in list(ctx.args) + [ctx.eager, ctx.compiled]
                if isinstance(v, torch.Tensor) and v.dtype in LOW_PRECISION]
    if not involved:
        return None
    if _diff_or_none(ctx) is None:
        return None
    r = _tensor(_call(ctx.rerun, dict(EMULATE)))
    e = _tensor(ctx.eager)
    if r is None or e is None or r.shape != e.shape or r.dtype != e.dtype:
        return None
    if e.is_floating_point():
        agree = bool(_close(r.to(torch.float64), e.to(torch.float64), _tol_dtype(ctx.eager)).all())
    else:
        agree = torch.equal(r, e)
    if not agree:
        return None
    names = sorted({str(v.dtype).removeprefix("torch.") for v in involved})
    return (f"{'/'.join(names)} involved; with emulate_precision_casts=True compiled agrees "
            "with eager")


# ----------------------------------------------------------------------------- the labeller

LABELS: dict[str, str] = {
    "nan_sign": "only the sign bit of NaN values differs",
    "float_to_int_cast": "out-of-range, NaN or inf float -> integer cast (undefined in C)",
    "denormal_flush": "denormals flushed to zero on one path and not the other",
    "nondeterministic": "op nondeterministic by contract (eager runs differ / duplicate writes)",
    "rounding_flip": "exact output (bool/int/index/rounded/bit hash) flipped by rounding "
                     "noise at a decision boundary",
    "reduction_error_bound": "reduction within its forward error bound (~n*eps*sum|x|) or "
                             "summation-order overflow",
    "eager_not_ieee": "eager deviates from IEEE 754 / C99 on special values; compiled follows it",
    "compiled_closer": "compiled closer than eager to an independent exact result",
    "low_precision_intermediate": "fp16/bf16 intermediates kept in float32; agrees under "
                                  "emulate_precision_casts=True",
    "resampling_special": "NaN/inf among a resampling op's taps, where eager's formula and "
                          "compiled's (0*inf at a zero-weight tap, the lerp form) differ",
    "ill_conditioned": "ulp noise amplified by the op's condition number at these inputs",
}

# Exact and specific checks first, error-analysis bounds after. low_precision_intermediate needs
# a compilation (rerun), so it comes late and only runs with fp16/bf16 involved; it still comes
# before ill_conditioned, the most general bound, because when both hold (an fp16 cancellation)
# the rerun names the actual cause.
ORDER: tuple[tuple[str, Callable[[CulpritContext], str | None]], ...] = (
    ("nan_sign", nan_sign),
    ("float_to_int_cast", float_to_int_cast),
    ("denormal_flush", denormal_flush),
    ("nondeterministic", nondeterministic),
    ("rounding_flip", rounding_flip),
    ("reduction_error_bound", reduction_error_bound),
    ("eager_not_ieee", eager_not_ieee),
    ("compiled_closer", compiled_closer),
    ("low_precision_intermediate", low_precision_intermediate),
    ("resampling_special", resampling_special),
    ("ill_conditioned", ill_conditioned),
)
assert [name for name, _ in ORDER] == list(LABELS)


def label(ctx: CulpritContext) -> tuple[str, str] | None:
    """(label, one-line reason) when the divergence is a documented non-bug class, else None."""
    for name, check in ORDER:
        try:
            reason = check(ctx)
        except Exception:  # a labeller that cannot decide gives no label (never hides a bug)
            reason = None
        if reason:
            return name, reason.replace("\n", " ")
    return None
