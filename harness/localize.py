"""Localization: the node where a mismatch is born (runs inside a worker: imports torch).

A mismatch is seen at a graph output, but it is born at one node: the *culprit*, the first node
whose compiled value diverges from eager although its own inputs agree. Naming a bucket after the
culprit (not after the output) keeps one root cause in one bucket whatever runs upstream and
downstream of it, and lets the reducer cut everything else.

How (forward mismatches):
1. One probe of the case with every ancestor of the diverging output returned as an extra
   output; the first diverging node whose arguments do not diverge is the candidate.
2. Extra outputs change fusion, so the candidate is confirmed by compiling the *prefix* that
   ends at it (the case cut down to that node, which becomes the only output). When the prefix
   does not reproduce, the ancestors are tried in graph order, each as its own prefix; the first
   that diverges is the culprit (every node before it, its arguments included, did not).
Gradient mismatches: the nodes are tried in graph order, each as a prefix with backward on; the
first whose gradients diverge is the culprit.

At the culprit the result records what a root-cause signature needs (op, the attributes that
matter, dtypes in and out, the special value classes in its inputs, whether its element count
runs a vectorized body, a scalar tail or both) and asks `harness.labels` whether the divergence
is a documented non-bug class. Probes are bounded in number and in time.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from covfuzz import codegen, serialize
from covfuzz.ir import (MAX_LITERAL_VALUES, Graph, Input, Node, ScalarSpec, TensorSpec, TestCase,
                        type_name)
from covfuzz.propagate import propagate
from covfuzz.subgraph import ancestors, sub_case
from harness import labels, oracle
from harness.execute import probe_case
from harness.values import regime  # which loop of a CPU kernel runs: tail / vec / vec+tail

MAX_PROBES = 12  # prefixes compiled per localization (each costs one compile, ~1.5 s on CPU)
MAX_CLASS_PROBES = 8  # more, to tell which value classes the culprit needs
DEFAULT_BUDGET = 180.0  # seconds


class _OutOfBudget(Exception):
    pass


def attr_class(value) -> object:
    """An attribute as a signature keeps it: categorical values as they are; numbers only as
    0 / 1 / -1 / other (alpha=1 and alpha=2 differ, alpha=2 and alpha=3 are the same bug);
    tuples by length (reduction dims)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value if value in (0, 1, -1) else "n"
    if isinstance(value, tuple):
        return f"len{len(value)}"
    return type(value).__name__


_ORDINARY_FLOAT = 0.5  # what a special float value is replaced by when testing if it matters
_ORDINARY_INT = 3


def _without_class(x, cls: str):
    """`x` with the elements of value class `cls` (oracle.value_classes) made ordinary."""
    if not isinstance(x, torch.Tensor) or cls not in oracle.value_classes(x):
        return x
    y = x.detach().resolve_conj().resolve_neg().clone()
    z = torch.view_as_real(y) if y.is_complex() else y  # a complex tensor's parts, in place
    if z.is_floating_point():
        info = torch.finfo(z.dtype)
        mask = {"nan": z.isnan(), "+inf": z == float("inf"), "-inf": z == float("-inf"),
                "huge": z.isfinite() & (z.abs() >= info.max / 4),
                "denormal": (z != 0) & (z.abs() < info.tiny),
                "-0.0": (z == 0) & torch.signbit(z)}[cls]
        z[mask] = _ORDINARY_FLOAT
    elif y.dtype != torch.bool:
        info = torch.iinfo(y.dtype)
        mask = {"int_min": y == info.min, "int_max": y == info.max, "zero": y == 0,
                "negative": y < 0}[cls]
        y[mask] = _ORDINARY_INT
    return y.requires_grad_(x.requires_grad) if x.requires_grad and y.is_floating_point() else y


def _one_node_fn(graph: Graph, node: Node):
    """A callable running `node` alone on given argument values (uncompiled)."""
    distinct = list(dict.fromkeys(node.args))
    inputs = tuple(Input(graph.spec_of(a)) if isinstance(graph.spec_of(a), TensorSpec)
                   else Input(graph.spec_of(a), value=1) for a in distinct)
    one = Graph(inputs, (Node(node.op, tuple(distinct.index(a) for a in node.args), node.attrs),),
                (len(inputs),))
    case = propagate(TestCase(one))
    ns: dict = {"__name__": "covfuzz_one_node"}
    exec(compile(codegen.program(case), "<covfuzz-one-node>", "exec"), ns)  # noqa: S102
    fn = ns["fn"]

    def evaluate(args: list):
        by_value = dict(zip(node.args, args))
        with torch.no_grad():
            out = fn(*[by_value[a] for a in distinct])
        return out[0] if isinstance(out, (tuple, list)) else out
    return evaluate


class Localizer:
    def __init__(self, case: TestCase, device: str | None = None,
                 budget: float = DEFAULT_BUDGET, max_probes: int = MAX_PROBES):
        self.case = case
        self.device = device or case.settings.device
        self.deadline = time.monotonic() + budget
        self.max_probes = max_probes
        self.probes = 0
        self.alone: TestCase | None = None  # the culprit alone on literal inputs, when it diverges

    def probe(self, outputs: list[int], config: dict | None = None):
        if self.probes >= self.max_probes:
            raise _OutOfBudget("max probes")
        if time.monotonic() > self.deadline:
            raise _OutOfBudget("time budget")
        self.probes += 1
        return probe_case(propagate(sub_case(self.case, outputs)), self.device, config)

    # ------------------------------------------------------------------ search
    def forward_culprit(self, output: int | None):
        """(culprit value id, its prefix probe, (ancestor ids, their probe)); None for what
        was not found."""
        g = self.case.graph
        base = len(g.inputs)
        if output is None or not 0 <= output < len(g.outputs) or g.outputs[output] < base:
            return None, None, None
        chain = ancestors(g, g.outputs[output])
        everything = self.probe(chain)
        candidate = None
        if everything.compiled is not None and everything.verdicts:
            diverging = {v for v, verdict in zip(chain, everything.verdicts) if verdict is not None}
            for v in chain:
                if v in diverging and not any(a in diverging for a in g.node_of(v).args):
                    candidate = v
                    break
        order = ([candidate] if candidate is not None else []) + [v for v in chain if v != candidate]
        for v in order:
            p = self.probe([v])
            if p.verdicts and p.verdicts[0] is not None:
                return v, p, (chain, everything)
        return None, None, (chain, everything)

    def grad_culprit(self):
        g = self.case.graph
        base = len(g.inputs)
        live = sorted({v for o in g.outputs if o >= base for v in ancestors(g, o)})
        for v in live:
            p = self.probe([v])
            if p.grad_verdicts and any(d is not None for d in p.grad_verdicts):
                return v, p
        return None, None

    # ------------------------------------------------------------------ describing the culprit
    def arg_values(self, v: int, prefix, everything) -> list:
        """The culprit's arguments as eager computed them."""
        g = self.case.graph
        base = len(g.inputs)
        chain, probe = everything if everything is not None else ([], None)
        values = []
        for a in g.node_of(v).args:
            if a < base:
                values.append(prefix.inputs[a] if prefix.inputs and a < len(prefix.inputs) else None)
            elif probe is not None and probe.eager is not None and a in chain:
                values.append(probe.eager[chain.index(a)])
            else:
                values.append(None)
        if any(x is None for x in values):  # one more probe: the arguments as outputs
            args = [a for a in g.node_of(v).args if a >= base]
            p = self.probe(list(dict.fromkeys(args)))
            got = dict(zip(dict.fromkeys(args), p.eager or []))
            values = [prefix.inputs[a] if a < base else got.get(a) for a in g.node_of(v).args]
        return values

    def describe(self, v: int, prefix, args: list, grad: bool) -> dict:
        g = self.case.graph
        node = g.node_of(v)
        classes: set[str] = set()
        for x in args:
            if x is not None:
                classes.update(oracle.value_classes(x))
        eager = prefix.eager[0] if prefix.eager else None
        return {"found": True, "node": v - len(g.inputs), "op": node.op,
                "attrs": {k: attr_class(val) for k, val in sorted(node.attrs.items())},
                "dtypes_in": [type_name(g.spec_of(a)) for a in node.args],
                "dtype_out": type_name(node.out), "classes": sorted(classes),
                "regime": regime([*args, eager], self.device), "grad": grad}

    def compiled_args(self, v: int, prefix, everything) -> list | None:
        """The culprit's arguments as the compiled program computed them (graph inputs as
        given), from the all-ancestors probe; None when that probe has no compiled values."""
        g = self.case.graph
        base = len(g.inputs)
        chain, probe = everything if everything is not None else ([], None)
        if probe is None or probe.compiled is None:
            return None
        out = []
        for a in g.node_of(v).args:
            if a < base:
                out.append(prefix.inputs[a] if prefix.inputs and a < len(prefix.inputs) else None)
            elif a in chain:
                out.append(probe.compiled[chain.index(a)])
            else:
                return None
        return out

    def culprit_case(self, v: int, values: list) -> TestCase | None:
        """The culprit alone, on literal inputs holding `values` (its arguments), with the
        case's settings and parameters (a frozen parameter stays one); None when an argument is
        too large to hold as literal values."""
        g = self.case.graph
        node = g.node_of(v)
        distinct = list(dict.fromkeys(node.args))
        inputs = []
        for a in distinct:
            x = values[node.args.index(a)]
            param = a < len(g.inputs) and g.inputs[a].param
            if isinstance(x, torch.Tensor):
                if x.numel() > MAX_LITERAL_VALUES:
                    return None
                flat = tuple(x.detach().contiguous().reshape(-1).tolist())
                spec = TensorSpec.contiguous(tuple(x.shape), str(x.dtype).removeprefix("torch."),
                                             self.case.settings.device)
                inputs.append(Input(spec, "normal", values=flat, param=param))
            else:
                spec = g.spec_of(a)
                if not isinstance(spec, ScalarSpec):
                    return None
                inputs.append(Input(spec, value=x))
        one = Graph(tuple(inputs), (Node(node.op, tuple(distinct.index(a) for a in node.args),
                                         node.attrs),), (len(inputs),))
        settings = dataclasses.replace(self.case.settings, backward=False, mark_dynamic=())
        return TestCase(one, settings, self.case.seed)

    def needed_classes(self, v: int, args: list) -> list[str] | None:
        """The special value classes of the culprit's inputs that the divergence needs: each
        class present is made ordinary in turn (kept so when the culprit alone, on literal
        inputs with the case's settings, still diverges without it). None when that cannot be
        told (the culprit alone does not diverge: fusion with its neighbours matters; or its
        inputs are too large): then every class present counts."""
        def diverges(values: list) -> bool | None:
            case = self.culprit_case(v, values)
            if case is None:
                return None
            if self.probes >= self.max_probes + MAX_CLASS_PROBES:
                raise _OutOfBudget("max probes")
            self._check_time()
            self.probes += 1
            try:
                p = probe_case(propagate(case), self.device)
            except Exception:  # noqa: BLE001 - e.g. a value the op refuses: cannot tell
                return None
            if p.compiled is None or not p.verdicts:
                return None
            return p.verdicts[0] is not None

        values = [x.detach() if isinstance(x, torch.Tensor) else x for x in args]
        if diverges(values) is not True:
            return None
        self.alone = self.culprit_case(v, values)
        present = sorted({c for x in values for c in oracle.value_classes(x)})
        needed = []
        for cls in present:
            trial = [_without_class(x, cls) for x in values]
            if diverges(trial) is True:
                values = trial  # not needed: keep it ordinary for the next trials
                self.alone = self.culprit_case(v, values)
            else:
                needed.append(cls)  # the culprit agrees without it (or cannot tell): needed
        return needed

    def _check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise _OutOfBudget("time budget")

    def label(self, v: int, prefix, args: list, grad: bool, compiled_args: list | None = None):
        g = self.case.graph
        node = g.node_of(v)
        if grad:
            index = next(i for i, d in enumerate(prefix.grad_verdicts) if d is not None)
            eager, compiled = prefix.eager_grads[index], prefix.compiled_grads[index]
            reference = prefix.reference_grads[index] if prefix.reference_grads else None
        else:
            eager, compiled = prefix.eager[0], prefix.compiled[0]
            reference = prefix.reference[0] if prefix.reference else None

        def rerun(config: dict):
            return self.probe([v], config).compiled[0]

        ctx = labels.CulpritContext(op=node.op, attrs=dict(node.attrs), args=args, eager=eager,
                                    compiled=compiled, reference=reference,
                                    evaluate=_one_node_fn(g, node), rerun=rerun, grad=grad,
                                    compiled_args=compiled_args)
        return labels.label(ctx)


def localize(case: TestCase, kind: str, output: int | None, device: str | None = None,
             budget: float = DEFAULT_BUDGET) -> dict:
    """Where mismatch `kind` ("mismatch" / "grad_mismatch", seen at graph output `output`) is
    born: {"found": True, "node", "op", "attrs", "dtypes_in", "dtype_out", "classes", "regime",
    "grad", "label": [name, reason] or None, "needed_classes" (None: not known),
    "culprit_case" (JSON form of the culprit alone on literal inputs, when that diverges),
    "probes", "seconds"}, or {"found": False, "why", "probes", "seconds"}."""
    t0 = time.monotonic()
    loc = Localizer(case, device, budget)
    try:
        if kind == "grad_mismatch":
            v, prefix = loc.grad_culprit()
            everything = None
        else:
            v, prefix, everything = loc.forward_culprit(output)
        if v is None:
            out = {"found": False, "why": "no prefix of the graph reproduces the divergence"}
        else:
            grad = kind == "grad_mismatch"
            args = loc.arg_values(v, prefix, everything)
            out = loc.describe(v, prefix, args, grad)
            try:
                found = loc.label(v, prefix, args, grad,
                                  None if grad else loc.compiled_args(v, prefix, everything))
            except _OutOfBudget:
                found = None
            out["label"] = list(found) if found else None
            if not grad and not found:
                try:
                    needed = loc.needed_classes(v, args)
                except _OutOfBudget:
                    needed = None
                # None: the culprit alone does not show it, or its inputs are too large to
                # try: which classes matter is not known (and not guessed from those present).
                out["needed_classes"] = needed
                if loc.alone is not None:  # a one-node case that shows it: reduction starts there
                    out["culprit_case"] = serialize.to_json(loc.alone)
    except _OutOfBudget as exc:
        out = {"found": False, "why": f"stopped: {exc}"}
    out.update(probes=loc.probes, seconds=round(time.monotonic() - t0, 3))
    return out
