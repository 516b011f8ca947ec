"""Independent references for a catalog op from PyTorch's OpInfo database (issue 18 point 4).

Many OpInfo entries carry `ref`: the op written again in NumPy/SciPy for PyTorch's own tests.
Labels (harness/labels.py) judge "compiled is closer to the exact result" and "eager deviates
from IEEE" against such a ref instead of eager's float64 run, which shares eager's algorithm
and its defects. `reference(op, args, attrs, shape)` runs it on float64 upcasts of a culprit's
arguments.

Which refs are independent: a ref runs under recorders of torch calls (a TorchFunctionMode and
a TorchDispatchMode); one that calls any torch function or operator, or returns a tensor, is
not independent and is not used again in this process. Module names cannot tell: most NumPy
refs live in torch's test modules, and some refs there call torch (conv_transpose's runs torch's
conv, floor_divide's promotes dtypes through torch).

Which catalog ops have one: a derived op (covfuzz/ops/opinfo.py) names its OpInfo entry in the
derivation cache, whose call parameters mirror OpInfo's ref(input, *args, **kwargs); a
hand-written op whose target is the very callable an OpInfo entry tests, and whose template is
plain placeholders, passes them in template order.

A float64 result counts only where it does not depend on the dtype: the ref runs once more at
the inputs' own precision and must give the same class (finite / NaN / +-inf) everywhere
(nan_to_num's posinf is the dtype's max: float64's overflows float32, float32's does not).

op_db is imported once per process, on the first call that needs it (about 5 s and 100 MB), and
its import's global changes are undone (measured on torch 2.13: torch.backends.
disable_global_flags(), two warnings filters, a sys.path entry; the default dtype is checked
too): labels run inside a triage worker that goes on compiling. Without `expecttest` there are
no OpInfo references (noted once) and labels fall back as before.
"""

from __future__ import annotations

import re
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from covfuzz.ops import get_op, opinfo

# Refs are NumPy, some of them Python loops: inputs beyond this many elements get no reference.
MAX_NUMEL = 1 << 20
# Inputs of these dtypes make the ref run a second time at their own precision (bfloat16 as
# float32: numpy lacks it), to check that its result does not depend on the dtype.
_OWN = (torch.float16, torch.bfloat16, torch.float32, torch.complex64)


@dataclass(frozen=True)
class Reference:
    value: torch.Tensor  # float64 (complex128 for complex results), the culprit's output shape
    source: str          # e.g. "OpInfo angle ref numpy.angle"
    ieee_ufunc: bool     # the ref is one of numpy's own ufuncs (C99 Annex F on special values)


class NotIndependent(Exception):
    """The ref called torch (the message names what) or returned a tensor."""


# ----------------------------------------------------------------------------- op_db, once

_DB: dict | None = None
_ENTRIES: dict | None = None
# OpInfo name -> why its ref is not independent (seen calling torch in this process).
REJECTED: dict[str, str] = {}


def _import_op_db():
    """op_db, imported with the process-wide state it changes put back."""
    frozen = torch.backends.flags_frozen()
    path = list(sys.path)
    dtype = torch.get_default_dtype()
    with warnings.catch_warnings():  # restores the filters the import adds
        warnings.simplefilter("ignore")  # its deprecation notes are not the campaign's
        try:
            from torch.testing._internal.common_methods_invocations import op_db
        finally:
            sys.path[:] = path
            if not frozen:  # undo disable_global_flags(): its module global, which torch has
                # no setter for (torch.backends in sys.modules is not that module's namespace)
                torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True
            torch.set_default_dtype(dtype)
    return op_db


def _opinfos() -> dict:
    """OpInfo name ('special.i0e', 'round.decimals_3') -> OpInfo; {} without expecttest."""
    global _DB
    if _DB is None:
        _DB = {}
        try:
            db = _import_op_db()
        except Exception as exc:  # noqa: BLE001 - ImportError (no expecttest) or a broken torch
            opinfo.note(f"no OpInfo references for labels ({type(exc).__name__}: "
                        f"{str(exc)[:80]}): they judge against numpy tables and float64 eager")
            return _DB
        # named as covfuzz/ops/opinfo.py names derived entries ("opinfo" in its cache)
        _DB = {info.name + (f".{info.variant_test_name}" if info.variant_test_name else ""): info
               for info in db}
    return _DB


def _entries() -> dict:
    global _ENTRIES
    if _ENTRIES is None:
        table = opinfo.read_cache(opinfo.cache_path())  # read only: never derived here
        _ENTRIES = {e["name"]: e for e in table["entries"]} if table else {}
    return _ENTRIES


# ----------------------------------------------------------------------------- the binding

@dataclass(frozen=True)
class _Binding:
    opinfo: str
    positional: tuple  # each ("tensor", i) | ("tensors", first, count) | ("attr", name) | ("none",)
    keywords: tuple    # (keyword, the same kinds)
    item: object       # None | ("attr", name) | ("const", int): which element of a tuple result


_BINDINGS: dict[str, _Binding | None] = {}
_PART = re.compile(r"(?:([A-Za-z_]\w*)=)?\{(\w+)\}")
_CALL = re.compile(r"([\w.]+)\((.*)\)(?:\[(?:\{(\w+)\}|(\d+))\])?")


def _from_entry(entry: dict) -> _Binding:
    positional = [("tensor", 0)] if entry["call"] == "method" else []  # the input, `{0}.m(..)`
    keywords = []
    for p in entry["params"]:
        if p["kw"] is None:
            positional.append(tuple(p["ref"]))
        else:
            keywords.append((p["kw"], tuple(p["ref"])))
    item = ("attr", opinfo.ITEM_ATTR) if opinfo.ITEM_ATTR in entry["attrs"] else None
    return _Binding(entry["opinfo"], tuple(positional), tuple(keywords), item)


def _from_template(template: str, target: str, db: dict) -> _Binding | None:
    """A hand-written op whose template is `target(placeholders...)[index]`, and the OpInfo
    entry testing the same callable (its unnamed variant first)."""
    m = _CALL.fullmatch(template)
    if m is None or m.group(1) != target or not target.startswith("torch."):
        return None
    obj = opinfo.resolve(target)
    infos = sorted((name for name, info in db.items()
                    if obj is not None and info.op is obj and info.ref is not None),
                   key=lambda n: ("." in n, n))  # plain names ('round') before variants
    if not infos:
        return None
    positional, keywords = [], []
    for part in filter(None, (p.strip() for p in m.group(2).split(","))):
        pm = _PART.fullmatch(part)
        if pm is None:
            return None  # lists, literals, expressions: no plain mapping
        key = pm.group(2)
        ref = ("tensor", int(key)) if key.isdigit() else ("attr", key)
        if pm.group(1):
            keywords.append((pm.group(1), ref))
        elif keywords:
            return None
        else:
            positional.append(ref)
    item = (("attr", m.group(3)) if m.group(3) else
            ("const", int(m.group(4))) if m.group(4) else None)
    return _Binding(infos[0], tuple(positional), tuple(keywords), item)


def _binding(op: str) -> _Binding | None:
    if op not in _BINDINGS:
        found = None
        try:
            d = get_op(op)
        except KeyError:  # not an op of this catalog
            d = None
        db = _opinfos() if d is not None else {}
        if d is not None and db:
            if d.source == "opinfo":
                entry = _entries().get(op)
                found = _from_entry(entry) if entry else None
            else:
                found = _from_template(d.template, d.target or d.name, db)
        if found is not None and (found.opinfo not in db or db[found.opinfo].ref is None):
            found = None
        _BINDINGS[op] = found
    return _BINDINGS[op]


def opinfo_of(op: str):
    """The OpInfo entry whose ref serves catalog op `op`, or None."""
    b = _binding(op)
    return None if b is None else _opinfos()[b.opinfo]


# ----------------------------------------------------------------------------- running a ref

class _Calls(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def run_independent(ref, args: list, kwargs: dict):
    """ref(*args, **kwargs) with floating-point warnings off; raises NotIndependent when it
    calls any torch function or operator, or returns a tensor."""
    calls, ops = _Calls(), _Ops()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        with calls, ops:
            out = ref(*args, **kwargs)
    seen = calls.seen + ops.seen
    if seen:
        raise NotIndependent(f"calls torch ({', '.join(dict.fromkeys(seen))})"[:160])
    if isinstance(out, torch.Tensor) or (isinstance(out, (tuple, list))
                                         and any(isinstance(o, torch.Tensor) for o in out)):
        raise NotIndependent("returns a torch tensor")
    return out


def _np(x, own: bool):
    """A culprit argument for the ref: floating tensors as float64 / complex128 numpy arrays
    (`own`: at their own precision, as far as numpy has it), other tensors as they are; always
    a copy (a ref may write into its input, the culprit's values must stay as they are)."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().resolve_conj().resolve_neg()
        if t.is_floating_point() or t.is_complex():
            if own:
                t = t.to(torch.float32 if t.dtype == torch.bfloat16 else t.dtype)
            else:
                t = t.to(torch.complex128 if t.is_complex() else torch.float64)
        return t.numpy().copy()
    if isinstance(x, (tuple, list)):
        return type(x)(_np(v, own) for v in x)
    return x


def _value(kind, args, attrs, own: bool):
    if kind[0] == "tensor":
        return _np(args[kind[1]], own)
    if kind[0] == "tensors":
        return [_np(args[k], own) for k in range(kind[1], kind[1] + kind[2])]
    if kind[0] == "attr":
        return attrs[kind[1]]
    return None


def _call(b: _Binding, ref, args, attrs, own: bool):
    pos = [_value(k, args, attrs, own) for k in b.positional]
    kw = {name: _value(k, args, attrs, own) for name, k in b.keywords}
    out = run_independent(ref, pos, kw)
    if b.item is not None:
        index = attrs[b.item[1]] if b.item[0] == "attr" else b.item[1]
        if not isinstance(out, (tuple, list)) or not isinstance(index, int):
            return None
        out = out[index]
    out = np.asarray(out)
    return out if out.dtype.kind in "biufc" else None


def _classes(a: np.ndarray) -> np.ndarray:
    """0 finite, 1 +inf, 2 -inf, 3 NaN (of the real part)."""
    r = a.real if a.dtype.kind == "c" else a
    return np.where(np.isnan(r), 3, np.where(np.isposinf(r), 1, np.where(np.isneginf(r), 2, 0)))


def _source(ref) -> str:
    name = getattr(ref, "__name__", type(ref).__name__)
    if isinstance(ref, np.ufunc):
        special = getattr(sys.modules.get("scipy.special"), name, None)
        return f"numpy.{name}" if getattr(np, name, None) is ref else \
            f"scipy.special.{name}" if special is ref else name
    module = getattr(ref, "__module__", None) or ""
    return f"{module.rsplit('.', 1)[-1]}.{getattr(ref, '__qualname__', name)}" if module else name


def reference(op: str, args: list, attrs: dict, shape) -> Reference | None:
    """The OpInfo ref of catalog op `op` on the culprit's arguments (`args` as eager computed
    them, `attrs` its literal attributes) upcast to float64, or None: no ref, a ref that is not
    independent, fails, gives another shape, or depends on the dtype."""
    b = _binding(op)
    if b is None or b.opinfo in REJECTED:
        return None
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if sum(t.numel() for t in tensors) > MAX_NUMEL:
        return None
    ref = _opinfos()[b.opinfo].ref
    try:
        out = _call(b, ref, args, attrs, own=False)
        if out is None or tuple(out.shape) != tuple(shape):
            return None
        if any(t.dtype in _OWN for t in tensors) and out.dtype.kind in "fc":
            mine = _call(b, ref, args, attrs, own=True)
            if mine is None or mine.shape != out.shape:
                return None
            with np.errstate(all="ignore"):  # float64 -> float32 overflow is the point
                rounded = out.astype(mine.dtype)
            if mine.dtype.kind in "fc" and not np.array_equal(_classes(rounded), _classes(mine)):
                return None  # the result depends on the dtype: not a float64 reference
    except NotIndependent as why:
        REJECTED[b.opinfo] = str(why)
        return None
    except Exception:  # noqa: BLE001 - a ref that refuses these arguments: no reference
        return None
    value = torch.from_numpy(np.ascontiguousarray(out))
    value = value.to(torch.complex128 if value.is_complex() else torch.float64)
    ieee = isinstance(ref, np.ufunc) and getattr(np, getattr(ref, "__name__", ""), None) is ref
    return Reference(value, f"OpInfo {b.opinfo} ref {_source(ref)}", ieee)
