"""Catalog entries derived from PyTorch's OpInfo database (issue 18).

PyTorch's own tests describe ~700 operators in `torch.testing._internal.common_methods_invocations.
op_db` (shipped inside the torch wheel; importing it needs the small `expecttest` package and takes
seconds). For each op we keep: its public name, the dtypes it supports per device, and from a few
of its sample inputs (CPU, float32) the kinds, ranks and relative shapes of its tensor arguments
and the literal values of its other arguments (the attribute domains, in covfuzz's `AttrDomain`
kinds only). Propagation then checks every use, as for any op.

Derivation runs once per torch build, in a child process (`main`, run by `_build`:
importing PyTorch's test utilities changes global state a worker must not inherit, and a sample
generator that crashes must not take the caller with it), and is cached as JSON under the user's
cache directory. The cache is data, never code: every field is validated on load, the call
template is rebuilt from validated pieces (identifiers that resolve on `torch`, placeholders,
`None`), and attribute values reach programs only through `AttrDomain.render`. A file that fails
validation is ignored (and rebuilt when possible); an entry whose target this torch lacks is
skipped with a note.

Kept per op, though filtered until the IR has them: every dtype OpInfo lists per device (complex
and unsigned ones included), so widening `covfuzz.ir.DTYPES` later needs no new derivation.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import itertools
import json
import keyword
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import warnings

import torch

from covfuzz.ir import DTYPES, MAX_RANK, TensorSpec
from covfuzz.ops.base import ArgSpec, AttrDomain, OpDef, dtype_class_for
from covfuzz.sandbox import signal_name

FORMAT = "covfuzz-opinfo-catalog"
FORMAT_VERSION = 1
MAX_SAMPLES = 8          # sample inputs kept per op ("a few")
SAMPLES_READ = 64        # sample inputs read to choose them from (the first ones often repeat)
MAX_TENSOR_ARGS = 6
MAX_LIST = 4             # tensors in one list argument (torch.cat([...]))
MAX_CACHE_BYTES = 16 << 20
MAX_INT_LITERAL = 1 << 20
DERIVE_TIMEOUT_S = 900.0
DERIVING_ENV = "COVFUZZ_OPINFO_DERIVING"  # set in the deriving child: no recursion into itself
# An entry whose probing kills the deriving child (linalg.eigvals on NaN matrices segfaults in
# LAPACK on some machines) or hangs it is named by the child's journal; the child runs again,
# resuming from the journal, with the entries that killed it so far named in CRASHED_ENV.
CRASHED_ENV = "COVFUZZ_OPINFO_CRASHED"
CRASH_AT_ENV = "COVFUZZ_OPINFO_CRASH_AT"  # tests: the child kills itself (SIGSEGV) at this entry
MAX_DERIVE_CRASHES = 8
ENTRY_STALL_S = 60.0  # an entry probed this long is hung (special polynomials on inf degrees)
CRASHED = "killed or stalled the deriving process (a signal, e.g. LAPACK on NaN input; a hang)"

CATEGORIES = ("opinfo_unary", "opinfo_binary", "opinfo_reduction", "opinfo_spectral",
              "opinfo_shape", "opinfo_nn", "opinfo_linalg", "opinfo_special", "opinfo_fft",
              "opinfo_masked", "opinfo_other")
ATTR_KINDS = ("int", "float", "bool", "enum", "dtype", "ints", "floats")
ROLES = ("op", "long", "bool")  # a tensor argument's dtype: the op's own, int64 indices, a mask
ITEM_ATTR = "item"  # selects one tensor of a tuple output
SKEW = "target missing in this torch, or not a tensor function (version skew)"

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_SAFE_STR = re.compile(r"[A-Za-z0-9_\-]{0,32}")
_DTYPE_NAME = re.compile(r"[a-z][a-z0-9_]{0,23}")
_NAME = re.compile(r"(torch|Tensor|F)(\.[A-Za-z][A-Za-z0-9_]{0,63}){1,4}")
_OPINFO_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,120}")

_noted: set[str] = set()


def note(text: str) -> None:
    """A one-line note on stderr, once per process."""
    if text not in _noted:
        _noted.add(text)
        print(f"covfuzz: {text}", file=sys.stderr)


# ============================================================================ the cache file


def cache_path() -> str:
    """$XDG_CACHE_HOME/covfuzz (or ~/.cache/covfuzz)/opinfo-<torch build>.json."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    build = f"{torch.__version__}-{(torch.version.git_version or '')[:12]}"
    return os.path.join(root, "covfuzz", f"opinfo-{re.sub(r'[^A-Za-z0-9_.+-]', '_', build)}.json")


def _deriver() -> str:
    """A digest of this module: a cache written by other derivation code is rebuilt."""
    with open(__file__, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:16]


_DERIVER = _deriver()


def _torch_id() -> dict:
    return {"torch": torch.__version__, "git": torch.version.git_version or "",
            "deriver": _DERIVER}


def write_cache(path: str, table: dict) -> None:
    """Write `table` (derive()'s result) atomically: a reader sees the old file or the new one."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".opinfo-", suffix=".tmp", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"format": FORMAT, "version": FORMAT_VERSION, **_torch_id(), **table},
                      handle, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_cache(path: str) -> dict | None:
    """The table in `path` if it is a well-formed cache of this torch build, else None (missing,
    corrupt, foreign: never trusted beyond validated plain data)."""
    try:
        if os.path.getsize(path) > MAX_CACHE_BYTES:
            return None
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    try:
        return _validate_table(raw)
    except Exception:  # noqa: BLE001 - whatever is wrong with it, the file is not ours
        return None


class _Bad(Exception):
    """A cache field that is not what derive() writes."""


def _need(cond, what: str) -> None:
    if not cond:
        raise _Bad(what)


def _is_int(v, lo, hi) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_num(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and abs(v) <= 1e12)


def _validate_table(raw) -> dict:
    _need(isinstance(raw, dict), "not an object")
    _need(raw.get("format") == FORMAT and raw.get("version") == FORMAT_VERSION, "format")
    _need(all(raw.get(key) == value for key, value in _torch_id().items()), "torch build")
    entries = raw.get("entries")
    _need(isinstance(entries, list) and len(entries) <= 2000, "entries")
    seen = set()
    clean = []
    for entry in entries:
        e = _validate_entry(entry)
        _need(e["name"] not in seen, "duplicate name")
        seen.add(e["name"])
        clean.append(e)
    skipped = raw.get("skipped")
    _need(isinstance(skipped, dict) and len(skipped) <= 64, "skipped")
    clean_skipped = {}
    for reason, names in skipped.items():
        _need(isinstance(reason, str) and len(reason) <= 120 and reason.isprintable(), "reason")
        _need(isinstance(names, list) and len(names) <= 2000, "skipped names")
        _need(all(isinstance(n, str) and _OPINFO_NAME.fullmatch(n) for n in names), "opinfo name")
        clean_skipped[reason] = list(names)
    return {"entries": clean, "skipped": clean_skipped}


def _validate_domain(raw) -> dict:
    _need(isinstance(raw, dict) and set(raw) == {"kind", "lo", "hi", "choices", "max_len",
                                                 "optional"}, "domain keys")
    _need(raw["kind"] in ATTR_KINDS, "domain kind")
    _need(_is_num(raw["lo"]) and _is_num(raw["hi"]) and raw["lo"] <= raw["hi"], "domain bounds")
    _need(isinstance(raw["choices"], list) and len(raw["choices"]) <= 32, "choices")
    _need(all(isinstance(c, str) and _SAFE_STR.fullmatch(c) for c in raw["choices"]), "choice")
    _need(_is_int(raw["max_len"], 0, MAX_RANK), "max_len")
    _need(isinstance(raw["optional"], bool), "optional")
    if raw["kind"] == "enum":
        _need(len(raw["choices"]) >= 1, "empty enum")
    return dict(raw)


def domain_of(raw: dict) -> AttrDomain:
    return AttrDomain(raw["kind"], raw["lo"], raw["hi"], choices=tuple(raw["choices"]),
                      max_len=raw["max_len"], optional=raw["optional"])


def _attr_value(value, domain: AttrDomain):
    """A JSON attribute value as the IR holds it (lists become tuples), checked by the domain."""
    if isinstance(value, list):
        _need(all(not isinstance(v, (list, dict)) for v in value), "nested value")
        value = tuple(value)
    _need(domain.check(value) is None, "value outside its domain")
    return value


def _validate_entry(raw) -> dict:
    keys = {"name", "opinfo", "target", "call", "category", "dtypes", "args", "params", "attrs",
            "patterns", "real_only", "data_dependent"}
    _need(isinstance(raw, dict) and set(raw) == keys, "entry keys")
    _need(isinstance(raw["name"], str) and _NAME.fullmatch(raw["name"]), "name")
    _need(isinstance(raw["opinfo"], str) and _OPINFO_NAME.fullmatch(raw["opinfo"]), "opinfo")
    _need(raw["call"] in ("function", "method"), "call")
    target = raw["target"]
    _need(isinstance(target, str) and _NAME.fullmatch(target), "target")
    _need(target.startswith("Tensor.") == (raw["call"] == "method"), "call style")
    _need(raw["call"] == "function" or target.count(".") == 1, "a method's name")
    _need(not target.startswith("F."), "target spelled in full")
    _need(raw["category"] in CATEGORIES, "category")
    dtypes = raw["dtypes"]
    _need(isinstance(dtypes, dict) and set(dtypes) == {"cpu", "cuda"}, "dtypes")
    for names in dtypes.values():
        _need(isinstance(names, list) and len(names) <= 40, "dtype list")
        _need(all(isinstance(d, str) and _DTYPE_NAME.fullmatch(d) for d in names), "dtype name")
    _need(any(d in DTYPES for d in dtypes["cpu"]), "no IR dtype on the CPU")
    args = raw["args"]
    _need(isinstance(args, list) and 1 <= len(args) <= MAX_TENSOR_ARGS, "args")
    for arg in args:
        _need(isinstance(arg, dict) and set(arg) == {"role", "ranks"}, "arg keys")
        _need(arg["role"] in ROLES, "role")
        ranks = arg["ranks"]
        _need(isinstance(ranks, list) and len(ranks) == 2
              and all(_is_int(r, 0, MAX_RANK) for r in ranks) and ranks[0] <= ranks[1], "ranks")
    attrs = raw["attrs"]
    _need(isinstance(attrs, dict) and len(attrs) <= 16, "attrs")
    domains = {}
    for name, dom in attrs.items():
        _need(isinstance(name, str) and _IDENT.fullmatch(name) and not keyword.iskeyword(name),
              "attr name")
        domains[name] = domain_of(_validate_domain(dom))
    params = raw["params"]
    _need(isinstance(params, list) and len(params) <= 24, "params")
    used_tensors, used_attrs, kws = set(), set(), set()
    for p in params:
        _need(isinstance(p, dict) and set(p) == {"kw", "ref"}, "param keys")
        kw = p["kw"]
        _need(kw is None or (isinstance(kw, str) and _IDENT.fullmatch(kw)
                             and not keyword.iskeyword(kw) and kw not in kws), "kw")
        if kw is not None:
            kws.add(kw)
        else:
            _need(not kws, "positional after keyword")
        ref = p["ref"]
        _need(isinstance(ref, list) and 1 <= len(ref) <= 3, "ref")
        if ref[0] == "tensor":
            _need(len(ref) == 2 and _is_int(ref[1], 0, len(args) - 1)
                  and ref[1] not in used_tensors, "tensor ref")
            used_tensors.add(ref[1])
        elif ref[0] == "tensors":  # a list of tensors: arguments first .. first + count - 1
            _need(len(ref) == 3 and _is_int(ref[2], 1, MAX_LIST)
                  and _is_int(ref[1], 0, len(args) - ref[2]), "tensors ref")
            span = set(range(ref[1], ref[1] + ref[2]))
            _need(not span & used_tensors, "tensors ref reused")
            used_tensors |= span
        elif ref[0] == "attr":
            _need(len(ref) == 2 and ref[1] in domains and ref[1] != ITEM_ATTR
                  and ref[1] not in used_attrs, "attr ref")
            used_attrs.add(ref[1])
        else:
            _need(ref == ["none"], "ref kind")
    first_in_call = 0 if raw["call"] == "function" else 1
    _need(used_tensors == set(range(first_in_call, len(args))), "every tensor passed once")
    _need(used_attrs == set(domains) - {ITEM_ATTR}, "every attribute passed once")
    patterns = raw["patterns"]
    _need(isinstance(patterns, list) and 1 <= len(patterns) <= MAX_SAMPLES, "patterns")
    clean_patterns = []
    for pat in patterns:
        _need(isinstance(pat, dict) and set(pat) == {"shape0", "attrs", "shapes"}, "pattern keys")
        shape0 = pat["shape0"]
        _need(isinstance(shape0, list) and len(shape0) <= MAX_RANK
              and all(_is_int(s, 0, 1 << 12) for s in shape0), "shape0")
        _need(isinstance(pat["attrs"], dict) and set(pat["attrs"]) == set(domains), "pattern attrs")
        values = {k: _attr_value(v, domains[k]) for k, v in pat["attrs"].items()}
        shapes = pat["shapes"]
        _need(isinstance(shapes, list) and len(shapes) == len(args) - 1, "pattern shapes")
        for shape in shapes:
            _need(isinstance(shape, list) and len(shape) <= MAX_RANK, "shape")
            for dim in shape:
                _need(isinstance(dim, list) and len(dim) == 2, "dim")
                if dim[0] == "d":
                    _need(_is_int(dim[1], 0, len(shape0) - 1), "dim ref")
                else:
                    _need(dim[0] == "c" and _is_int(dim[1], 0, 1 << 12), "dim size")
        clean_patterns.append({"shape0": list(shape0), "attrs": values,
                               "shapes": [[list(d) for d in s] for s in shapes]})
    _need(isinstance(raw["real_only"], bool) and isinstance(raw["data_dependent"], bool), "flags")
    return {**raw, "patterns": clean_patterns}


# ============================================================================ entries -> OpDefs


def resolve(target: str):
    """The object `torch.a.b` / `Tensor.m` names in this torch, or None (no private names)."""
    parts = target.split(".")
    root = {"torch": torch, "Tensor": torch.Tensor}.get(parts[0])
    obj = root
    for part in parts[1:]:
        if root is None or not _IDENT.fullmatch(part) or part.startswith("_"):
            return None
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if callable(obj) else None


# Functions of these modules are plain tensor computations although torch.overrides does not
# list them (torch.masked's reductions, deprecated F.upsample_*).
_PURE_MODULES = ("torch.masked._ops", "torch.nn.functional")
_OVERRIDABLE: set[int] | None = None


def allowed_target(target: str):
    """The object `target` names if a derived entry may call it, else None: it must dispatch on
    tensor arguments (torch.overrides lists it: no torch.save, torch.hub.load or global setter
    can hide in a cache file), or be a function of _PURE_MODULES, or a Tensor.new_* method."""
    global _OVERRIDABLE
    obj = resolve(target)
    if obj is None:
        return None
    if _OVERRIDABLE is None:
        import torch.overrides
        _OVERRIDABLE = {id(f) for fs in torch.overrides.get_overridable_functions().values()
                        for f in fs}
    if id(obj) in _OVERRIDABLE:
        return obj
    if target.startswith("torch.") and getattr(obj, "__module__", None) in _PURE_MODULES:
        return obj
    if target.startswith("Tensor.new_"):
        return obj
    return None


def template_of(entry: dict) -> str:
    """The call expression, rebuilt from validated pieces only."""
    parts = []
    for p in entry["params"]:
        ref = p["ref"]
        if ref[0] == "tensor":
            text = "{%d}" % ref[1]
        elif ref[0] == "tensors":
            text = "[" + ", ".join("{%d}" % k for k in range(ref[1], ref[1] + ref[2])) + "]"
        else:
            text = "{%s}" % ref[1] if ref[0] == "attr" else "None"
        parts.append(text if p["kw"] is None else f"{p['kw']}={text}")
    target = entry["target"]
    head = target if entry["call"] == "function" else "{0}." + target.split(".", 1)[1]
    suffix = "[{%s}]" % ITEM_ATTR if ITEM_ATTR in entry["attrs"] else ""
    return f"{head}({', '.join(parts)}){suffix}"


def _pick_pattern(rng, patterns, spec, attrs=None):
    """A pattern fitting arg 0's spec (same shape, else same rank, else any) and the attrs
    already chosen; drawn with `rng`, so the generator stays deterministic."""
    shape = tuple(spec.shape) if isinstance(spec, TensorSpec) else None
    pool = patterns
    if attrs is not None:
        same = {k: v for k, v in attrs.items() if k != ITEM_ATTR}
        pool = [p for p in pool
                if {k: v for k, v in p["attrs"].items() if k != ITEM_ATTR} == same] or pool
    exact = [p for p in pool if shape is not None and tuple(p["shape0"]) == shape]
    ranked = [p for p in pool if shape is not None and len(p["shape0"]) == len(shape)]
    return rng.choice(exact or ranked or pool)


def _shape_of_arg(k: int, patterns):
    """ShapeFn of tensor argument k >= 1: the pattern's relation to argument 0 applied to its
    actual shape (a dim of arg 0, or a constant size from the sample)."""
    def propose(rng, specs, attrs):
        pat = _pick_pattern(rng, patterns, specs[0], attrs)
        shape0 = tuple(specs[0].shape) if isinstance(specs[0], TensorSpec) else ()
        out = []
        for kind, value in pat["shapes"][k - 1]:
            if kind == "d":
                out.append(shape0[value] if value < len(shape0) else pat["shape0"][value])
            else:
                out.append(value)
        return tuple(out)
    return propose


def _shape_of_first(patterns):
    def propose(rng, specs, attrs):
        return tuple(rng.choice(patterns)["shape0"])
    return propose


def _sampler(patterns, item: AttrDomain | None):
    def sample(rng, first):
        attrs = dict(_pick_pattern(rng, patterns, first)["attrs"])
        if item is not None:  # any element of a tuple output (propagation drops non-tensors)
            attrs[ITEM_ATTR] = rng.randint(int(item.lo), int(item.hi))
        return attrs
    return sample


def op_def(entry: dict) -> OpDef:
    """The OpDef of a validated entry."""
    patterns = entry["patterns"]
    ir_dtypes = {dev: tuple(d for d in DTYPES if d in names)
                 for dev, names in entry["dtypes"].items()}
    op_class = dtype_class_for(ir_dtypes["cpu"])
    args = []
    for k, arg in enumerate(entry["args"]):
        lo, hi = arg["ranks"]
        shape = _shape_of_first(patterns) if k == 0 else _shape_of_arg(k, patterns)
        if arg["role"] == "long":
            args.append(ArgSpec("tensor", "long", lo, hi, shape=shape, fresh=True, fill="index"))
        elif arg["role"] == "bool":
            args.append(ArgSpec("tensor", "bool", lo, hi, shape=shape, fresh=k > 0))
        else:
            args.append(ArgSpec("tensor", op_class, lo, hi, shape=shape, same_dtype=k > 0))
    domains = {k: domain_of(v) for k, v in entry["attrs"].items()}
    return OpDef(entry["name"], entry["category"], template_of(entry), tuple(args), domains,
                 _sampler(patterns, domains.get(ITEM_ATTR)) if domains else None,
                 target=entry["target"], real_only=entry["real_only"],
                 data_dependent=entry["data_dependent"], source="opinfo",
                 dtypes_by_device={dev: tuple(names) for dev, names in entry["dtypes"].items()})


class Derived:
    """The OpInfo-derived part of the catalog: its ops, and why the rest are not in it."""

    def __init__(self, ops: list[OpDef], skipped: dict[str, list[str]], complex_ops: int,
                 status: str):
        self.ops, self.skipped, self.complex_ops, self.status = ops, skipped, complex_ops, status


def derived_ops(taken_names: set[str], taken_objects: set[int]) -> Derived:
    """The derived OpDefs, from the cache (built first when missing or invalid). Entries whose
    name or target a hand-written op already has are left to it; entries whose target this
    torch lacks are skipped with a note. Never raises: at worst the catalog is hand-written only."""
    if os.environ.get(DERIVING_ENV):
        return Derived([], {}, 0, "deriving")
    path = cache_path()
    table = read_cache(path)
    if table is None:
        table = _build(path)
    if table is None:
        return Derived([], {}, 0, "unavailable")
    skipped = {reason: list(names) for reason, names in table["skipped"].items()}
    ops, complex_ops = [], 0
    for entry in table["entries"]:
        obj = allowed_target(entry["target"])
        if obj is None:
            skipped.setdefault(SKEW, []).append(
                entry["opinfo"])
            continue
        if entry["name"] in taken_names or id(obj) in taken_objects:
            skipped.setdefault("hand-written entry wins", []).append(entry["opinfo"])
            continue
        try:
            ops.append(op_def(entry))
        except Exception as exc:  # noqa: BLE001 - one odd entry never breaks the catalog
            skipped.setdefault("entry not usable here", []).append(entry["opinfo"])
            note(f"OpInfo entry {entry['name']} skipped: {type(exc).__name__}")
            continue
        if any(d.startswith("complex") for d in entry["dtypes"]["cpu"]):
            complex_ops += 1
    skew = skipped.get(SKEW)
    if skew:
        note(f"{len(skew)} OpInfo-derived entries skipped: their target is missing in torch "
             f"{torch.__version__} or not a tensor function there (e.g. {skew[0]})")
    return Derived(ops, skipped, complex_ops, "ok")


_CHILD = "import sys; from covfuzz.ops import opinfo; sys.exit(opinfo.main(sys.argv[1:]))"


def _die_with_parent() -> None:
    """In the derivation child, before it runs: SIGKILL it when its parent dies (a worker killed
    with its campaign must not leave a deriving child behind). Linux only; elsewhere nothing."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PDEATHSIG
    except (OSError, AttributeError):
        pass


def _build(path: str, names: tuple[str, ...] = ()) -> dict | None:
    """Derive the table (of the entries in `names`; () = all) in a child process, one builder
    at a time, again without each entry that killed the child; None when OpInfo cannot be read
    here (no `expecttest`, a child that failed otherwise)."""
    try:
        importlib.import_module("expecttest")  # PyTorch's test utilities import it
    except ImportError:
        note("`expecttest` is not installed: the op catalog holds only its hand-written ops "
             "(install it for the ~300 more that covfuzz derives from PyTorch's OpInfo)")
        return None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lock = open(path + ".lock", "a")  # noqa: SIM115 - held for the derivation
    except OSError as exc:
        note(f"cannot write the OpInfo catalog cache ({exc}): hand-written ops only")
        return None
    with lock:
        try:
            import fcntl
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass
        table = read_cache(path)  # another process may have built it while we waited
        if table is not None:
            return table
        note(f"deriving op catalog entries from PyTorch's OpInfo (once per torch build) -> {path}")
        # The child imports this very covfuzz, wherever the caller found it.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, **{DERIVING_ENV: "1"},
                   PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        crashed: list[str] = []
        deadline = time.monotonic() + DERIVE_TIMEOUT_S
        with contextlib.suppress(OSError):  # a journal of some other run: not resumed
            os.unlink(_journal_path(path))
        while True:
            env[CRASHED_ENV] = ",".join(crashed)
            try:
                status, tail = _run_child([sys.executable, "-c", _CHILD, path, *names], env,
                                          path, deadline)
            except OSError as exc:
                note(f"deriving the OpInfo catalog failed ({type(exc).__name__}): "
                     "hand-written ops only")
                return None
            table = read_cache(path)
            if table is not None:
                with contextlib.suppress(OSError):
                    os.unlink(_journal_path(path))
                return table
            stalled = status is None
            culprit = _last_started(path) if stalled or status < 0 else None
            if (culprit is None or culprit in crashed or len(crashed) >= MAX_DERIVE_CRASHES
                    or time.monotonic() >= deadline):
                why = "out of time" if stalled else f"exit {status}: {tail[:200]}"
                note(f"deriving the OpInfo catalog failed ({why}): hand-written ops only")
                return None
            how = (f"stalled the deriving process for {ENTRY_STALL_S:.0f} s" if stalled
                   else f"killed the deriving process ({signal_name(status)})")
            note(f"OpInfo entry {culprit} {how}: deriving again without it")
            crashed.append(culprit)


def _run_child(argv: list[str], env: dict, path: str, deadline: float) -> tuple[int | None, str]:
    """Run the deriving child: (its exit status, or None when it was killed for making no
    progress in ENTRY_STALL_S or running past `deadline`; the last line of its stderr)."""
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as err:
        proc = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent,
                                stdout=subprocess.DEVNULL, stderr=err, text=True)
        started = time.time()
        status = None
        while status is None:
            try:
                status = proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                try:
                    progress = os.stat(_journal_path(path))
                except OSError:
                    progress = None
                # No entry started yet (the child imports torch and OpInfo): no stall clock.
                starting = progress is None or progress.st_size == 0 or progress.st_mtime < started
                stalled = not starting and time.time() - progress.st_mtime > ENTRY_STALL_S
                if stalled or time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    break
        err.seek(0)
        lines = [line for line in err.read()[-4000:].splitlines() if line.strip()]
    return status, (lines[-1] if lines else "no output")


def _journal_path(path: str) -> str:
    return path + ".journal"


def _journal_records(path: str) -> list[dict]:
    """The deriving children's journal for `path` (JSON lines: {"start": name} before an entry
    is probed, {"label": name, "entry": {...}} or {"label": name, "skipped": reason} after);
    malformed lines (one cut short by a crash) are left out. Entries taken from it are validated
    like the rest when the finished table is read (`read_cache`)."""
    out = []
    try:
        if os.path.getsize(_journal_path(path)) > MAX_CACHE_BYTES:
            return []
        with open(_journal_path(path), encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(rec, dict) and (
                (isinstance(rec.get("start"), str) and _OPINFO_NAME.fullmatch(rec["start"]))
                or (isinstance(rec.get("label"), str) and _OPINFO_NAME.fullmatch(rec["label"])
                    and (isinstance(rec.get("entry"), dict) or isinstance(rec.get("skipped"), str)))):
            out.append(rec)
    return out


def _last_started(path: str) -> str | None:
    """The entry the deriving child for `path` was probing when it stopped: its journal's last
    record, when that is a start."""
    records = _journal_records(path)
    return records[-1].get("start") if records else None


# ============================================================================ derivation


def _kind(value) -> str | None:
    """The literal kind of a sample value ('tensor', 'none', or an AttrDomain kind), None when
    covfuzz cannot express it."""
    if isinstance(value, torch.Tensor):
        ok = (value.layout == torch.strided and not value.is_quantized and not value.is_nested
              and not value.is_complex() and type(value) is torch.Tensor)
        return "tensor" if ok else None
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if abs(value) <= MAX_INT_LITERAL else None
    if isinstance(value, float):
        return "float" if math.isfinite(value) and abs(value) <= 1e6 else None
    if isinstance(value, str):
        return "enum" if _SAFE_STR.fullmatch(value) else None
    if isinstance(value, torch.dtype):
        return "dtype" if str(value).removeprefix("torch.") in DTYPES else None
    if (isinstance(value, (tuple, list)) and 1 <= len(value) <= MAX_LIST
            and all(_kind(v) == "tensor" for v in value)):
        return f"tensors{len(value)}"
    if isinstance(value, (tuple, list, torch.Size)) and len(value) <= MAX_RANK:
        if all(isinstance(v, int) and not isinstance(v, bool) and abs(v) <= MAX_INT_LITERAL
               for v in value):
            return "ints"
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               and abs(v) <= 1e6 for v in value):
            return "floats"
    return None


def _plain(value, kind):
    if kind == "dtype":
        return str(value).removeprefix("torch.")
    if kind == "ints":
        return [int(v) for v in value]
    if kind == "floats":
        return [float(v) for v in value]
    if kind == "float":
        return float(value)
    return value


def _signature(sample):
    """(positional kinds, keyword kinds) of a sample, None when a positional value is not
    expressible; keyword values that are not are left out (the op's default applies)."""
    pos = [_kind(sample.input)] + [_kind(a) for a in sample.args]
    if any(k is None for k in pos) or not pos[0].startswith("tensor"):
        return None
    kw = tuple(sorted((k, _kind(v)) for k, v in sample.kwargs.items()
                      if _kind(v) is not None and not _kind(v).startswith("tensors")
                      and _IDENT.fullmatch(k) and not keyword.iskeyword(k)))
    return tuple(pos), kw


def _category(info) -> str:
    cls = type(info).__name__
    by_class = {"UnaryUfuncInfo": "opinfo_unary", "BinaryUfuncInfo": "opinfo_binary",
                "ReductionOpInfo": "opinfo_reduction", "SpectralFuncInfo": "opinfo_spectral",
                "ShapeFuncInfo": "opinfo_shape"}
    if cls in by_class:
        return by_class[cls]
    head = info.name.split(".")[0]
    return {"nn": "opinfo_nn", "linalg": "opinfo_linalg", "special": "opinfo_special",
            "fft": "opinfo_fft", "masked": "opinfo_masked"}.get(head, "opinfo_other")


def _public_call(info) -> tuple[str, str] | None:
    """(target, call style) naming the very callable OpInfo tests, on its public name."""
    parts = info.name.split(".")
    fn = allowed_target("torch." + info.name) if all(_IDENT.fullmatch(p) for p in parts) else None
    if fn is not None and fn is info.op:
        return "torch." + info.name, "function"
    if len(parts) == 1 and _IDENT.fullmatch(parts[0]) and info.method_variant is not None:
        method = allowed_target("Tensor." + parts[0])
        if method is not None and method is info.method_variant:
            return "Tensor." + parts[0], "method"
    return None


def _catalog_name(target: str, variant: str) -> str:
    name = target
    if name.startswith("torch.nn.functional."):
        name = "F." + name[len("torch.nn.functional."):]
    if variant:
        name += "." + re.sub(r"[^A-Za-z0-9_]", "_", variant).lstrip("_0123456789")[:40]
    return name


def _same(a, b) -> bool:
    """Whether two op outputs are identical (NaN equal to NaN)."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.is_floating_point() or a.is_complex():
            return bool(torch.equal(torch.nan_to_num(a, 0.5, 7.0, -7.0),
                                    torch.nan_to_num(b, 0.5, 7.0, -7.0))
                        and torch.equal(a.isnan(), b.isnan()))
        return bool(torch.equal(a, b))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _tensor_items(out) -> list[int] | None:
    """Which elements of an output the IR can hold (one tensor of an IR dtype); [] for a plain
    tensor of one, None when none."""
    def ok(t):
        return isinstance(t, torch.Tensor) and str(t.dtype).removeprefix("torch.") in DTYPES
    if isinstance(out, torch.Tensor):
        return [] if ok(out) else None
    if isinstance(out, (tuple, list)) and out:
        picks = [i for i, t in enumerate(out) if ok(t)]
        return picks or None
    return None


class _Skip(Exception):
    """This OpInfo entry is not derived; the message is the counted reason."""


def _derive_one(info) -> dict:
    if getattr(info, "has_nondeterministic_output", False):
        raise _Skip("nondeterministic (random) output")
    if info.name.startswith("_") or "sparse" in info.name:
        raise _Skip("private or sparse op")
    cpu = sorted(str(d).removeprefix("torch.") for d in info.supported_dtypes("cpu"))
    cuda = sorted(str(d).removeprefix("torch.") for d in info.supported_dtypes("cuda"))
    if not cpu:
        raise _Skip("needs CUDA (no CPU dtypes)")
    if not any(d in DTYPES for d in cpu):
        raise _Skip("only dtypes the IR lacks (complex, unsigned >8-bit, float8)")
    if info.is_factory_function:
        raise _Skip("factory (no tensor input)")
    dtype = torch.float32 if "float32" in cpu else getattr(torch, next(d for d in cpu if d in DTYPES))
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = list(itertools.islice(info.sample_inputs("cpu", dtype, requires_grad=False),
                                        SAMPLES_READ))
    if samples and _random(info, samples[0]):
        raise _Skip("nondeterministic (random) output")
    call = _public_call(info)
    if call is None:
        raise _Skip("not a plain call on a public torch name (test wrapper, private or operator)")
    target, style = call
    groups: dict = {}
    for sample in samples:
        sig = _signature(sample)
        if sig is not None:
            groups.setdefault(sig, []).append(sample)
    if not groups:
        raise _Skip("no sample with only tensor and literal arguments")
    # The signature most samples share (the first such on ties).
    sig, group = max(groups.items(), key=lambda kv: len(kv[1]))
    group = _varied(group)[:MAX_SAMPLES]
    return _entry(info, target, style, sig, group, dtype, {"cpu": cpu, "cuda": cuda})


def _varied(group: list) -> list:
    """The group's distinct samples (by tensor shapes and literal values), non-empty first."""
    seen, out = set(), []
    for sample in group:
        values = [sample.input, *sample.args,
                  *(item for kv in sorted(sample.kwargs.items(), key=lambda kv: kv[0])
                    for item in kv)]
        key = repr([tuple(v.shape) if isinstance(v, torch.Tensor) else
                    [tuple(t.shape) for t in v] if _kind(v) and _kind(v).startswith("tensors")
                    else v for v in values])
        if key not in seen:
            seen.add(key)
            out.append(sample)
    def empty(sample):
        first = sample.input if isinstance(sample.input, torch.Tensor) else sample.input[0]
        return first.numel() == 0
    return sorted(out, key=empty)


def _entry(info, target, style, sig, group, dtype, dtypes) -> dict:
    pos_kinds, kw_kinds = sig
    # Tensor arguments in call order, and each call parameter's reference.
    params, tensor_slots, attr_slots = [], [], {}  # slot: ('pos', i) | ('kw', name)
    if style == "method" and pos_kinds[0] != "tensor":
        raise _Skip("no sample with only tensor and literal arguments")
    for i, kind in enumerate(pos_kinds):
        slot = ("pos", i)
        if kind == "tensor":
            ref = ["tensor", len(tensor_slots)]
            tensor_slots.append(slot)
        elif kind.startswith("tensors"):
            count = int(kind[len("tensors"):])
            ref = ["tensors", len(tensor_slots), count]
            tensor_slots += [("pos", i, m) for m in range(count)]
        elif kind == "none":
            ref = ["none"]
        else:
            name = f"p{i}"
            attr_slots[name] = (slot, kind)
            ref = ["attr", name]
        if not (style == "method" and i == 0):
            params.append({"kw": None, "ref": ref})
    for key, kind in kw_kinds:
        slot = ("kw", key)
        if kind == "tensor":
            ref = ["tensor", len(tensor_slots)]
            tensor_slots.append(slot)
        elif kind == "none":
            ref = ["none"]
        else:
            if key in attr_slots or key == ITEM_ATTR:
                raise _Skip("attribute name clash")
            attr_slots[key] = (slot, kind)
            ref = ["attr", key]
        params.append({"kw": key, "ref": ref})
    if len(tensor_slots) > MAX_TENSOR_ARGS:
        raise _Skip("too many tensor arguments")

    def value_at(sample, slot):
        where, key = slot[:2]
        if where == "kw":
            return sample.kwargs[key]
        value = sample.input if key == 0 else sample.args[key - 1]
        return value[slot[2]] if len(slot) == 3 else value

    tensors = [[value_at(s, slot) for slot in tensor_slots] for s in group]
    # Roles: the op's dtype, int64 indices, boolean masks (from the first sample).
    roles = []
    for t in tensors[0]:
        roles.append("long" if t.dtype == torch.int64 and dtype != torch.int64 else
                     "bool" if t.dtype == torch.bool and dtype != torch.bool else "op")
    if any(t.dtype not in (dtype, torch.int64, torch.bool) for t in tensors[0]):
        raise _Skip("tensor arguments of mixed dtypes")
    attrs_raw = {name: [_plain(value_at(s, slot), kind) for s in group]
                 for name, (slot, kind) in attr_slots.items()}
    domains = {name: _domain(kind, attrs_raw[name]) for name, (_, kind) in attr_slots.items()}
    entry = {"name": _catalog_name(target, info.variant_test_name), "opinfo": _opinfo_name(info),
             "target": target, "call": style, "category": _category(info), "dtypes": dtypes,
             "args": [], "params": params, "attrs": domains, "patterns": [],
             "real_only": False, "data_dependent": False}
    template = template_of(entry)
    good, outputs = [], []
    for j, sample in enumerate(group):
        values = {name: attrs_raw[name][j] for name in domains}
        try:
            out = _call(template, domains, values, tensors[j])
        except Exception:  # noqa: BLE001 - this sample does not go through the template
            continue
        items = _tensor_items(out)
        if items is None:
            continue
        good.append(j)
        outputs.append((out, items))
    if not good:
        raise _Skip("OpInfo's own samples fail through the rendered call (or give no IR tensor)")
    # One output structure (a tensor, or a tuple: max_pool's return_indices): the majority's.
    tuples = [bool(items) for _, items in outputs]
    majority = tuples.count(True) * 2 > len(tuples)
    good = [j for j, t in zip(good, tuples) if t == majority]
    outputs = [o for o, t in zip(outputs, tuples) if t == majority]
    group = [group[j] for j in good]
    tensors = [tensors[j] for j in good]
    attrs_raw = {name: [vals[j] for j in good] for name, vals in attrs_raw.items()}
    item_sets = [items for _, items in outputs]
    if any(item_sets):  # a tuple output: attribute `item` picks a tensor element
        common = sorted(set.intersection(*(set(s) for s in item_sets)))
        if not common:
            raise _Skip("tuple outputs without a common IR tensor element")
        domains[ITEM_ATTR] = _domain("int", common)
        attrs_raw[ITEM_ATTR] = [common[0]] * len(group)
        entry["attrs"] = domains
        template = template_of(entry)
    for j, ts in enumerate(tensors):
        if _writes_arguments(template, domains, {n: attrs_raw[n][j] for n in domains}, ts):
            raise _Skip("writes into its arguments (in-place: the hand-written family's)")
    # Determinism on the largest sample (an empty one would hide it); the value probes on
    # every sample: attributes change what a kernel checks (histc's min=max=0: the data's range).
    big = max(range(len(tensors)), key=lambda j: sum(t.numel() for t in tensors[j]))
    _check_determinism(template, domains, {n: attrs_raw[n][big] for n in domains}, tensors[big])
    for j, ts in enumerate(tensors):
        real_only, data_dependent = _value_checks(
            template, domains, {n: attrs_raw[n][j] for n in domains}, ts, roles,
            [d for d in DTYPES if d in dtypes["cpu"]])
        entry["real_only"] |= real_only
        entry["data_dependent"] |= data_dependent
    entry["args"] = [{"role": role, "ranks": [min(ts[k].dim() for ts in tensors),
                                              max(ts[k].dim() for ts in tensors)]}
                     for k, role in enumerate(roles)]
    for j, ts in enumerate(tensors):
        shape0 = list(ts[0].shape)
        if max(shape0, default=0) > 1 << 12:
            continue
        pattern = {"shape0": shape0, "attrs": {n: attrs_raw[n][j] for n in domains},
                   "shapes": [_relation(shape0, list(t.shape)) for t in ts[1:]]}
        if pattern not in entry["patterns"]:
            entry["patterns"].append(pattern)
    if not entry["patterns"]:
        raise _Skip("samples too large")
    return _validate_entry(json.loads(json.dumps(entry)))  # exactly what a reader will accept


def _opinfo_name(info) -> str:
    return info.name + (f".{info.variant_test_name}" if info.variant_test_name else "")


def _domain(kind: str, values: list) -> dict:
    dom = {"kind": kind, "lo": 0, "hi": 0, "choices": [], "max_len": 0, "optional": False}
    if kind in ("int", "float"):
        dom["lo"], dom["hi"] = min(values), max(values)
    elif kind in ("ints", "floats"):
        flat = [v for value in values for v in value] or [0]
        dom["lo"], dom["hi"] = min(flat), max(flat)
        dom["max_len"] = max(len(v) for v in values)
    elif kind == "enum":
        dom["choices"] = sorted(set(values))
    if kind == "float":
        dom["lo"], dom["hi"] = float(dom["lo"]), float(dom["hi"])
    return dom


def _relation(shape0: list, shape: list) -> list:
    """Each dim of `shape` as a dim of arg 0's shape (same size, aligned from the end first)
    or a constant (sizes 0 and 1 stay constant: they broadcast)."""
    out = []
    for j, size in enumerate(shape):
        aligned = j - len(shape) + len(shape0)
        if size in (0, 1):
            out.append(["c", size])
        elif 0 <= aligned < len(shape0) and shape0[aligned] == size:
            out.append(["d", aligned])
        elif size in shape0:
            out.append(["d", shape0.index(size)])
        else:
            out.append(["c", size])
    return out


def _call(template, domains, values, tensors):
    rendered = {k: domain_of(domains[k]).render(_as_ir(v)) for k, v in values.items()}
    names = [f"v{i}" for i in range(len(tensors))]
    expr = template.format(*names, **rendered)
    env = {"torch": torch, **dict(zip(names, tensors))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return eval(expr, env)  # noqa: S307 - built from validated pieces, as covfuzz renders it


def _as_ir(value):
    return tuple(value) if isinstance(value, list) else value


def _pick(out, values):
    return out[values[ITEM_ATTR]] if ITEM_ATTR in values and isinstance(out, (tuple, list)) else out


def _random(info, sample) -> bool:
    """Whether OpInfo's own callable draws random numbers: it reseeds them itself
    (`wrapper_set_seed`, how OpInfo wraps random ops), or differs under two RNG seeds."""
    code = getattr(info.op, "__code__", None)
    if code is not None and "wrapper_set_seed" in code.co_names:
        return True
    outs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outs.append(info.op(sample.input, *sample.args, **sample.kwargs))
        except Exception:  # noqa: BLE001 - the template check below decides
            return False
    return not _same(*outs)


def _check_determinism(template, domains, values, tensors) -> None:
    torch.manual_seed(0)
    a = _call(template, domains, values, tensors)
    torch.manual_seed(0)
    b = _call(template, domains, values, tensors)
    torch.manual_seed(1)
    c = _call(template, domains, values, tensors)
    if not _same(a, b):
        raise _Skip("nondeterministic (two runs with one seed differ)")
    if not _same(a, c):
        raise _Skip("nondeterministic (random) output")


_EDGE = (float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1e30, -1e30, 1e-40)


def _probe_tensor(t: torch.Tensor, role: str, gen: torch.Generator, edge=None) -> torch.Tensor:
    """A tensor like `t` with values as covfuzz draws them (normal floats, small ints, index
    zeros), not the OpInfo sample's tailored ones; `edge`: floats all of that value, or (True)
    half of them special values."""
    if role == "long":
        return torch.zeros(t.shape, dtype=t.dtype)
    if t.dtype == torch.bool:
        return torch.randint(0, 2, t.shape, generator=gen).bool()
    if t.is_floating_point():
        values = torch.randn(t.shape, generator=gen, dtype=torch.float64)
        if isinstance(edge, float):
            values = torch.full(t.shape, edge, dtype=torch.float64)
        elif edge:
            table = torch.tensor(_EDGE, dtype=torch.float64)
            pick = torch.randint(0, len(_EDGE), t.shape, generator=gen)
            values = torch.where(torch.rand(t.shape, generator=gen) < 0.5, table[pick], values)
        return values.to(t.dtype)
    return torch.randint(-8, 9, t.shape, generator=gen).to(t.dtype)


def _value_checks(template, domains, values, tensors, roles, dtypes) -> tuple[bool, bool]:
    """(real_only, data_dependent). real_only when meta tensors cannot stand in for real ones
    (no meta kernel, another output spec) or when covfuzz-drawn values make the call raise
    (propagation must then run on the real values); data_dependent when the output's shape
    follows the values, not the shapes."""
    real_out = _pick(_call(template, domains, values, tensors), values)
    real_only = False
    try:
        metas = [torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")
                 for t in tensors]
        meta_out = _pick(_call(template, domains, values, metas), values)
        if (not isinstance(meta_out, torch.Tensor) or meta_out.shape != real_out.shape
                or meta_out.dtype != real_out.dtype):
            real_only = True
    except Exception:  # noqa: BLE001 - no meta kernel (or one that refuses): real tensors
        real_only = True
    gen = torch.Generator().manual_seed(0)
    shapes = {tuple(real_out.shape)}
    # Three draws of plain values (their output shapes tell data dependence), then edge values:
    # all NaN, all inf, all zero (a singular matrix), half special values.
    for trial in range(7):
        edge = (None, None, None, float("nan"), float("inf"), 0.0, True)[trial]
        probe = [_probe_tensor(t, role, gen, edge) for t, role in zip(tensors, roles)]
        try:
            out = _pick(_call(template, domains, values, probe), values)
        except Exception:  # noqa: BLE001 - value-sensitive: propagation checks real values
            real_only = True
            continue
        if isinstance(out, torch.Tensor) and trial < 3:
            shapes.add(tuple(out.shape))
    data_dependent = real_only and len(shapes) > 1
    return real_only or _meta_lenient(template, domains, values, tensors, roles, dtypes), \
        data_dependent


def _meta_lenient(template, domains, values, tensors, roles, dtypes) -> bool:
    """Whether the meta kernel accepts calls the real one refuses, among those covfuzz makes:
    an argument one element longer, an empty first dim, non-contiguous arguments, the op's
    other dtypes. Propagation must then run on real tensors, or the generator would keep calls
    that fail in eager."""
    gen = torch.Generator().manual_seed(1)
    plain = [_probe_tensor(t, role, gen) for t, role in zip(tensors, roles)]
    variants = []
    for k, t in enumerate(plain):
        if t.dim() >= 1:
            longer = list(plain)
            longer[k] = _probe_tensor(torch.empty(tuple(t.shape[:-1]) + (t.shape[-1] + 1,),
                                                  dtype=t.dtype), roles[k], gen)
            variants.append(longer)
    if plain[0].dim() >= 1 and plain[0].shape[0] > 0:
        variants.append([plain[0][:0]] + plain[1:])
    # Gapped layouts: every other element of a storage twice the size.
    variants.append([torch.stack([t, t], -1)[..., 0] if t.dim() else t for t in plain])
    for name in dtypes:
        if name != str(plain[0].dtype).removeprefix("torch."):
            dtype = getattr(torch, name)
            variants.append([t.to(dtype) if role == "op" else t for t, role in zip(plain, roles)])
    for real in variants:
        metas = [torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")
                 for t in real]
        try:
            _pick(_call(template, domains, values, metas), values)
        except Exception:  # noqa: BLE001 - meta refuses too: consistent
            continue
        try:
            _pick(_call(template, domains, values, real), values)
        except Exception:  # noqa: BLE001 - only the real kernel refuses
            return True
    return False


def _writes_arguments(template, domains, values, tensors) -> bool:
    """Whether the call writes into its arguments (batch norm's running statistics): such ops
    belong to the hand-written in-place family, whose write rules propagation enforces."""
    before = [t.clone() for t in tensors]
    _call(template, domains, values, tensors)
    return not all(_same(a, b) for a, b in zip(before, tensors))


def derive(names: set[str] | None = None, crashed: frozenset[str] = frozenset(),
           journal=None, resume: list[dict] = ()) -> dict:
    """The table of derived entries (and skip reasons) for OpInfo entries named in `names`
    (catalog-style `opinfo` names, e.g. 'special.entr'; None: all). Needs `expecttest`.
    Entries in `crashed` are left out (CRASHED). Each entry's start and outcome are written to
    the text file `journal` (`_journal_records`), so a parent can tell which entry killed this
    process, and a child run again takes the outcomes an earlier one journaled (`resume`)
    instead of probing those entries again."""
    from torch.testing._internal.common_methods_invocations import op_db

    earlier = {rec["label"]: rec for rec in resume if "label" in rec}
    entries, skipped, used = [], {}, set()
    for info in op_db:
        label = _opinfo_name(info)
        if names is not None and label not in names:
            continue
        if label in crashed:
            skipped.setdefault(CRASHED, []).append(label)
            continue
        rec = earlier.get(label)
        if rec is None:
            _journal(journal, {"start": label})
            if os.environ.get(CRASH_AT_ENV) == label:
                os.kill(os.getpid(), signal.SIGSEGV)
            if os.environ.get(CRASH_AT_ENV) == f"hang:{label}":
                time.sleep(3600)
            rec = _outcome(info, label)
            _journal(journal, rec)
        if "skipped" in rec:
            skipped.setdefault(rec["skipped"], []).append(label)
        elif rec["entry"].get("name") in used:
            skipped.setdefault("duplicate catalog name", []).append(label)
        else:
            used.add(rec["entry"].get("name"))
            entries.append(rec["entry"])
    return {"entries": entries, "skipped": skipped}


def _outcome(info, label: str) -> dict:
    """One OpInfo entry derived: {"label", "entry"} or {"label", "skipped": reason}."""
    try:
        return {"label": label, "entry": _derive_one(info)}
    except _Skip as why:
        return {"label": label, "skipped": str(why)}
    except Exception as exc:  # noqa: BLE001 - one odd OpInfo never stops the derivation
        return {"label": label, "skipped": f"derivation error ({type(exc).__name__})"}


def _journal(journal, record: dict) -> None:
    if journal is not None:
        journal.write(json.dumps(record, sort_keys=True) + "\n")
        journal.flush()


def main(argv: list[str]) -> int:
    """The deriving child: derive the table (of the entries named after the cache file, or all)
    without the entries named in CRASHED_ENV, and write it to the cache file argv[0]."""
    if not argv or not all(_OPINFO_NAME.fullmatch(name) for name in argv[1:]):
        print("usage: python -m covfuzz.ops.opinfo CACHE_FILE [OPINFO_NAME ...]", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    crashed = frozenset(n for n in os.environ.get(CRASHED_ENV, "").split(",")
                        if _OPINFO_NAME.fullmatch(n))
    resume = _journal_records(argv[0])  # what an earlier child of this build derived
    with open(_journal_path(argv[0]), "a", encoding="utf-8") as journal:
        table = derive(set(argv[1:]) or None, crashed, journal, resume)
    write_cache(argv[0], table)
    return 0

