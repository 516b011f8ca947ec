"""Value and divergence features (issue 19, families "values" and "divergence").

Miscompiles live in values: the same compiler lines run whatever the inputs hold, so Python
coverage cannot see a NaN reaching a decomposition or a count that only runs the scalar tail.

- **values**: per node, `op x dtypes x the value classes of each input (and of its output) x
  the element-count regime` (`oracle.value_classes`; regime: whether the largest tensor fills
  no vector, whole vectors only, or vectors plus a tail, from Inductor's own vector width). The
  node values come from the eager run the harness makes anyway: `EagerValues` watches the
  generated `fn`'s frame (a trace function on that one code object) and reads its locals when
  it returns, so no extra run and no extra compile. And per data-flow edge, `producer op >
  consumer op x the classes it passed x the class that came out` (`flow:`).
- **divergence**: per output, `op x dtype x bucket` (and the same with the output's regime) for the compiled-vs-eager error ratio that
  stayed within the oracle's tolerance (`oracle.error_ratio`), log-bucketed: `DIVERGENCE_EDGES`
  split [1e-4, 1) into 8 buckets (1..8) and bucket 9 is a ratio past allclose that the float64
  reference let pass. A case emits every bucket up to the one it reached, so a case that comes
  closer to a mismatch than any before has a new feature (value-profile feedback).

Costs are bounded: at most MAX_NODES nodes, and value classes of at most MAX_CLASS_ELEMENTS
elements per tensor (a prefix of the flattened tensor beyond that).
"""

from __future__ import annotations

import math
import sys

import torch

from covfuzz import codegen
from covfuzz.features import family_id
from covfuzz.ir import TestCase, type_name
from harness import oracle

MAX_NODES = 128  # nodes whose values are judged per case
MAX_CLASS_ELEMENTS = 1 << 16  # elements of one tensor whose classes are computed
MAX_ARGS_PER_POSITION = 3  # nodes with more arguments get the union of their classes
DIVERGENCE_EDGES = tuple(10.0 ** (-4 + k / 2) for k in range(8))  # 1e-4 .. 10^-0.5
PAST_ALLCLOSE = len(DIVERGENCE_EDGES) + 1  # bucket of a ratio >= 1 the reference let pass


# --------------------------------------------------------------------------- element regime


def vector_lanes(dtype: torch.dtype) -> int:
    """Elements per vector in Inductor's CPU kernels for `dtype` (1: no vector ISA)."""
    try:
        from torch._inductor.cpu_vec_isa import pick_vec_isa
        isa = pick_vec_isa()
        if isa:
            return int(isa.nelements(dtype))
    except Exception:  # noqa: BLE001 - no vector ISA (or an older torch): scalar code only
        pass
    return 1


def regime(values: list, device: str) -> str:
    """`tail` (fewer elements than a vector), `vec` (whole vectors), `vec+tail`, `empty`,
    `scalar` (no tensor) or `gpu`, for the largest tensor among `values`."""
    if device != "cpu":
        return "gpu"
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    if not tensors:
        return "scalar"
    big = max(tensors, key=lambda t: t.numel())
    n = big.numel()
    if n == 0:
        return "empty"
    lanes = vector_lanes(big.dtype)
    if lanes <= 1 or n < lanes:
        return "tail"
    return "vec" if n % lanes == 0 else "vec+tail"


def classes(value) -> str:
    """The value classes of a tensor or Python scalar, '+'-joined ('-': ordinary values)."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.is_sparse or value.layout != torch.strided:
            return "?"
        if value.numel() > MAX_CLASS_ELEMENTS:
            value = value.reshape(-1)[:MAX_CLASS_ELEMENTS]
    elif not isinstance(value, (bool, int, float)):
        return "?"
    try:
        found = oracle.value_classes(value)
    except Exception:  # noqa: BLE001 - a tensor subclass or a device the check cannot read
        return "?"
    return "+".join(found) or "-"


# --------------------------------------------------------------------------- eager values


class EagerValues:
    """Watches one call of the generated `fn` (the eager run) and keeps its frame's locals.

    `with EagerValues(fn_code) as watch: ...eager call...`, then `watch.values` maps local
    names (x0.., v5..) to the values `fn` held when it returned and `watch.input_classes` the
    classes of its inputs when it was called (before any in-place op changed them). A trace
    function is installed only for this block and only follows `fn`'s own frame."""

    def __init__(self, fn_code):
        self.code = fn_code
        self.values: dict | None = None
        self.input_classes: dict[str, str] = {}
        self._previous = None

    def _local(self, frame, event, arg):
        if event == "return" and self.values is None:
            self.values = dict(frame.f_locals)
        return self._local

    def _global(self, frame, event, arg):
        if frame.f_code is not self.code or self.values is not None:
            return None
        frame.f_trace_lines = False  # only the call and the return matter
        names = frame.f_code.co_varnames[:frame.f_code.co_argcount]
        self.input_classes = {name: classes(frame.f_locals.get(name)) for name in names}
        return self._local

    def __enter__(self) -> "EagerValues":
        self._previous = sys.gettrace()
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc) -> None:
        sys.settrace(self._previous)


def value_texts(case: TestCase, watch: EagerValues, device: str) -> set[str]:
    """The "values" feature texts of one eager run (empty when `fn` did not return)."""
    if watch.values is None:
        return set()
    g = case.graph
    base = len(g.inputs)
    cache: dict[int, str] = {}

    def value_of(vid: int):
        return watch.values.get(codegen.value_name(g, vid))

    def classes_of(vid: int) -> str:
        if vid not in cache:
            name = codegen.value_name(g, vid)
            cache[vid] = (watch.input_classes.get(name, "?") if vid < base
                          else classes(value_of(vid)))
        return cache[vid]

    out = set()
    for j, node in enumerate(g.nodes[:MAX_NODES]):
        vid = base + j
        args = list(node.args)
        dtypes = ",".join(type_name(g.spec_of(a)) for a in args)
        if len(args) <= MAX_ARGS_PER_POSITION:
            ins = ",".join(classes_of(a) for a in args)
        else:
            ins = "+".join(sorted({c for a in args for c in classes_of(a).split("+")})) or "-"
        values = [value_of(a) for a in args] + [value_of(vid)]
        out.add(f"node:{node.op}|{dtypes}>{type_name(node.out)}|{ins}>{classes_of(vid)}|"
                f"{regime(values, device)}")
        # Data-flow edges: which op fed this one which class of values, and what came out (a
        # NaN made upstream and met here is another path through this op's lowering).
        for a in args[:MAX_ARGS_PER_POSITION]:
            src = g.nodes[a - base].op if a >= base else "input"
            out.add(f"flow:{src}>{node.op}|{type_name(g.spec_of(a))}|{classes_of(a)}>"
                    f"{classes_of(vid)}")
    return out


# --------------------------------------------------------------------------- divergence


def divergence_bucket(ratio: float | None, past_allclose: bool = False) -> int:
    """0 (no error to speak of), 1..8 (log buckets of [1e-4, 1)), PAST_ALLCLOSE."""
    if ratio is None or math.isnan(ratio):
        return 0
    if ratio >= 1.0 or past_allclose:
        return PAST_ALLCLOSE
    return sum(1 for edge in DIVERGENCE_EDGES if ratio >= edge)


def divergence_texts(case: TestCase, eager: list, compiled: list) -> tuple[set[str], int]:
    """(the "divergence" feature texts, the best bucket) of a run whose outputs matched: one
    text per output node op, dtype and bucket up to the one its error ratio reached."""
    g = case.graph
    out, best = set(), 0
    for i, (e, c) in enumerate(zip(eager, compiled)):
        if i >= len(g.outputs):
            break
        ratio = oracle.error_ratio(e, c)
        bucket = divergence_bucket(ratio)
        if not bucket:
            continue
        vid = g.outputs[i]
        node = g.node_of(vid)
        op = node.op if node is not None else "input"
        dtype = type_name(g.spec_of(vid))
        where = regime([e], case.settings.device)  # vectorized body, scalar tail, both
        for b in range(1, bucket + 1):
            out.add(f"div:{op}|{dtype}|{b}")
            out.add(f"divr:{op}|{dtype}|{where}|{b}")
        best = max(best, bucket)
    return out, best


def ids(family: str, texts: set[str]) -> list[int]:
    return sorted({family_id(family, t) for t in texts})
