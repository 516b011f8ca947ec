"""Test-case reduction: shrink a failing case while the *same failure* keeps reproducing (the
same signature, or what an `accept` predicate asks: triage keeps a mismatch's culprit).

Greedy passes run to a fixed point (a round of all passes that accepts nothing ends it):
  outputs   remove one output at a time (dead nodes and unused inputs go with it)
  nodes     delete a node: bypass it (its users take an argument of the same spec) or cut it
            (its users take a fresh graph input of its output spec, drawn normal or from edge
            values); last node first
  settings  backward->False (and requires_grad off), fullgraph->False, dynamic->None,
            mode->None, drop mark_dynamic (all, then one at a time), drop config overrides
            (all, then halves/quarters/... down to one at a time: a ddmin-style bisection like
            ConfigFuzzer's)
  shapes    smaller tensor inputs cut from the values they hold (a block of the same values at
            the same positions, literal once it fits MAX_LITERAL_VALUES): inputs too large to
            print halved until they fit, a size shared by several inputs to 1 / halved in all,
            each dim of each input to 1 / halved, each dim dropped; a window keeps the most
            special values
  values    small inputs become explicit literal values (the same values), then ordinary
            values move to 0 / 1 and special ones (NaN, inf, limits) go where not needed
            (covfuzz/triage/reduce_values.py)
  unused    drop the inputs no node uses
  inputs    per tensor input: dtype -> float32 (complex128 -> complex64), requires_grad off,
            contiguous (the same values), fill -> normal
Every candidate passes the validity check (`mutators.base.validate`, or plain propagation for
cases that were never structurally valid) before it costs a run; it is then run in an isolated
worker (one WorkerHandle, `WorkerSpec.for_reducer`, reused across steps) and accepted only
when it fails as asked. Verdicts are cached by case id. Runs are bounded by `max_steps` and the whole
reduction by a wall-clock `budget`, so it always ends.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from covfuzz import codegen, ops, serialize, subgraph
from covfuzz.errors import CovfuzzError
from covfuzz.ir import (FLOAT_DTYPES, MAX_LITERAL_VALUES, Input, ScalarSpec, TensorSpec, TestCase,
                        contiguous_stride, numel, permuted_stride, with_spec)
from covfuzz.outcomes import FAILURE_KINDS
from covfuzz.propagate import propagate
from covfuzz.triage.reduce_values import pass_values, special_mask
from covfuzz.triage.signature import signature_of
from harness.pool import WorkerHandle, WorkerSpec, start_worker
from mutators.base import validate


class _OutOfBudget(Exception):
    pass


@dataclass
class ReduceResult:
    original: TestCase
    case: TestCase
    signature: str
    nodes_before: int
    nodes_after: int
    runs: int = 0
    steps: int = 0  # accepted reductions
    seconds: float = 0.0
    stopped: str = "fixed point"  # or "max steps" / "time budget"
    accepted: list = field(default_factory=list)  # pass names, in order

    def to_dict(self) -> dict:
        return {"signature": self.signature, "nodes_before": self.nodes_before,
                "nodes_after": self.nodes_after, "inputs_before": len(self.original.graph.inputs),
                "inputs_after": len(self.case.graph.inputs), "runs": self.runs,
                "steps": self.steps, "seconds": round(self.seconds, 3), "stopped": self.stopped,
                "original_id": serialize.case_id(self.original),
                "reduced_id": serialize.case_id(self.case), "accepted": self.accepted}


# ----------------------------------------------------------------------------- graph helpers


def _graph_case(case: TestCase, inputs, nodes, outputs, settings=None) -> TestCase:
    """Rebuild from (inputs, nodes, outputs): dead nodes and unused inputs removed."""
    return subgraph.rebuild(case, inputs, nodes, outputs, settings)


def _same_spec(a, b) -> bool:
    if isinstance(a, TensorSpec) and isinstance(b, TensorSpec):
        return a.shape == b.shape and a.dtype == b.dtype
    return isinstance(a, ScalarSpec) and isinstance(b, ScalarSpec) and a.kind == b.kind


def _fresh_input_for(case: TestCase, value: int) -> Input | None:
    """A graph input that can stand in for node value `value` (same spec, contiguous)."""
    g = case.graph
    spec = g.spec_of(value)
    if isinstance(spec, ScalarSpec):
        return Input(spec, "normal", {"int": 2, "float": 0.5, "bool": True}[spec.kind])
    if not isinstance(spec, TensorSpec):
        return None
    fill = "bool" if spec.dtype == "bool" else "normal"
    for j, node in enumerate(g.nodes):
        op = ops.get_op(node.op)
        for a, arg in enumerate(node.args):
            if arg == value and a < len(op.args) and op.args[a].fill:
                fill = op.args[a].fill
    grad = case.settings.backward and spec.dtype in FLOAT_DTYPES and fill != "index"
    return Input(TensorSpec.contiguous(spec.shape, spec.dtype, spec.device, grad), fill)


# ----------------------------------------------------------------------------- passes


def pass_outputs(case: TestCase) -> Iterator[TestCase]:
    g = case.graph
    if len(g.outputs) < 2:
        return
    for i in range(len(g.outputs) - 1, -1, -1):
        outs = [o for k, o in enumerate(g.outputs) if k != i]
        yield _graph_case(case, g.inputs, g.nodes, outs)


def pass_nodes(case: TestCase) -> Iterator[TestCase]:
    g = case.graph
    if len(g.nodes) < 2:
        return
    base = len(g.inputs)
    for j in range(len(g.nodes) - 1, -1, -1):
        node = g.nodes[j]
        value = base + j
        replacements: list[tuple[int, Input | None]] = []
        for a in dict.fromkeys(node.args):
            if a < base and g.inputs[a].fill == "index":
                continue
            if _same_spec(g.spec_of(a), node.out):
                replacements.append((a, None))
        fresh = _fresh_input_for(case, value)
        if fresh is not None:
            replacements.append((-1, fresh))
            if fresh.fill == "normal" and isinstance(fresh.spec, TensorSpec) \
                    and fresh.spec.dtype != "bool":
                # Special values (NaN, inf, int limits) often reach a culprit from the node cut
                # here: an `edge` input carries them, and the values pass then keeps the few
                # that matter.
                replacements.append((-1, dataclasses.replace(fresh, fill="edge")))
        for repl, new_input in replacements:
            inputs = list(g.inputs)
            shift = 0
            if new_input is not None:
                inputs.append(new_input)
                repl = base  # the new input's id; node ids move up by one
                shift = 1

            def remap(v, repl=repl, shift=shift):
                if v == value:
                    return repl
                return v + shift if v >= base else v

            nodes = []
            for k, n in enumerate(g.nodes):
                if k == j:
                    nodes.append(None)
                    continue
                nodes.append(dataclasses.replace(n, args=tuple(remap(a) for a in n.args)))
            outputs = []
            for o in g.outputs:
                r = remap(o)
                if r < len(inputs) and o == value:  # an input cannot be an output: drop it
                    continue
                outputs.append(r)
            if not outputs:
                continue
            # drop the deleted node's slot: ids above it move down by one
            removed = len(inputs) + j
            nodes = [n for n in nodes if n is not None]
            fix = (lambda v, removed=removed: v - 1 if v > removed else v)
            nodes = [dataclasses.replace(n, args=tuple(fix(a) for a in n.args)) for n in nodes]
            outputs = [fix(o) for o in outputs]
            if not nodes:
                continue
            yield _graph_case(case, inputs, nodes, outputs)


def _settings(case: TestCase, **changes) -> TestCase:
    return case.replace(settings=dataclasses.replace(case.settings, **changes))


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _drop_configs(case: TestCase) -> Iterator[TestCase]:
    s = case.settings
    items = [("inductor_config", k) for k in sorted(s.inductor_config)] + \
            [("dynamo_config", k) for k in sorted(s.dynamo_config)]
    if not items:
        return
    size = len(items)
    while size >= 1:  # all, then halves, quarters, ... singles (bisection)
        for chunk in _chunks(items, size):
            gone = set(chunk)
            yield _settings(case, inductor_config={k: v for k, v in s.inductor_config.items()
                                                   if ("inductor_config", k) not in gone},
                            dynamo_config={k: v for k, v in s.dynamo_config.items()
                                           if ("dynamo_config", k) not in gone})
        size //= 2
    for key, value in sorted(s.inductor_config.items()):  # pass lists: one pass fewer
        if isinstance(value, tuple) and len(value) > 1:
            for name in value:
                yield _settings(case, inductor_config={
                    **s.inductor_config, key: tuple(v for v in value if v != name)})


def _unparam(case: TestCase, indices) -> TestCase:
    inputs = tuple(dataclasses.replace(inp, param=False) if i in indices else inp
                   for i, inp in enumerate(case.graph.inputs))
    return case.replace(graph=dataclasses.replace(case.graph, inputs=inputs))


def pass_settings(case: TestCase) -> Iterator[TestCase]:
    s = case.settings
    if s.backward:
        inputs = tuple(with_spec(i, dataclasses.replace(i.spec, requires_grad=False))
                       if isinstance(i.spec, TensorSpec) else i for i in case.graph.inputs)
        yield case.replace(graph=dataclasses.replace(case.graph, inputs=inputs),
                           settings=dataclasses.replace(s, backward=False))
        yield _settings(case, backward=False)
    if s.fullgraph:
        yield _settings(case, fullgraph=False)
    if s.dynamic is not None:
        yield _settings(case, dynamic=None)
    if s.mode is not None:
        yield _settings(case, mode=None)
    if s.mark_dynamic:
        yield _settings(case, mark_dynamic=())
        for k in range(len(s.mark_dynamic)):
            yield _settings(case, mark_dynamic=tuple(m for i, m in enumerate(s.mark_dynamic) if i != k))
    params = [i for i, inp in enumerate(case.graph.inputs) if inp.param]
    if params:  # plain arguments instead of model parameters: all, then one at a time
        yield _unparam(case, set(params))
        if len(params) > 1:
            for i in params:
                yield _unparam(case, {i})
    yield from _drop_configs(case)


def _with_input(case: TestCase, i: int, inp: Input) -> TestCase:
    inputs = list(case.graph.inputs)
    inputs[i] = inp
    return case.replace(graph=dataclasses.replace(case.graph, inputs=tuple(inputs)))


def _relaid(inp: Input, t: torch.Tensor, order_of: tuple | None) -> Input:
    """Input `inp` holding exactly tensor `t` (its values at the same positions), dense, with
    the dims laid out in memory in the order of strides `order_of` (a transposed input stays
    transposed), or contiguous when None. Literal when it fits MAX_LITERAL_VALUES; else drawn
    again from the seed with the new shape (other values: the run decides)."""
    shape = tuple(t.shape)
    if order_of is None:
        stride = contiguous_stride(shape)
    else:
        stride = permuted_stride(shape, sorted(range(len(shape)), key=lambda d: (-order_of[d], d)))
    spec = dataclasses.replace(inp.spec, shape=shape, stride=stride, offset=0)
    n = numel(shape)
    if not 0 < n <= MAX_LITERAL_VALUES:
        return dataclasses.replace(inp, spec=spec, values=None)
    dense = torch.empty_strided(shape, stride, dtype=t.dtype)
    dense.copy_(t)
    return dataclasses.replace(inp, spec=spec, values=tuple(dense.as_strided((n,), (1,)).tolist()))


def _window(members: list[tuple[torch.Tensor, int]], new: int) -> int:
    """Where a window of `new` elements along each (tensor, dim) of `members` (all of one size)
    starts: the one holding the most special values (NaN, inf, limits: what a bug needs most
    often), the first on ties; a halved dim keeps its first or its last half."""
    size = members[0][0].shape[members[0][1]]
    starts = range(size) if new == 1 else sorted({0, size - new})
    def specials(start: int) -> int:
        return sum(int(special_mask(t.narrow(d, start, new)).sum()) for t, d in members)
    return max(starts, key=lambda start: (specials(start), -start))


def _cut(case: TestCase, cuts: dict[int, torch.Tensor]) -> TestCase:
    """`case` with each input i in `cuts` holding the block `cuts[i]` of its values."""
    inputs = list(case.graph.inputs)
    for i, t in cuts.items():
        inputs[i] = _relaid(inputs[i], t, inputs[i].spec.stride)
    return case.replace(graph=dataclasses.replace(case.graph, inputs=tuple(inputs)))


def pass_shapes(case: TestCase) -> Iterator[TestCase]:
    """Smaller tensor inputs, cut from the values they hold now (a block of the same values at
    the same positions; literal once it fits, so the repro can print it):
    1. when an input is too large to print (MAX_LITERAL_VALUES): its largest dims halved until
       every input fits, in one candidate;
    2. a size several inputs share at the same dim (counted from the last, as broadcasting
       does: attention's batch and heads, a conv's channels): to 1, then halved, in all of them;
    3. each input alone, each dim: to 1, then halved;
    4. each input alone, each dim dropped (rank - 1).
    A window keeps the most special values (see `_window`). A dim marked dynamic does not go to 1
    (Dynamo specializes sizes 0 and 1)."""
    g = case.graph
    now = {i: codegen.build_input(case, i, "cpu").detach() for i, inp in enumerate(g.inputs)
           if isinstance(inp.spec, TensorSpec) and inp.spec.numel > 0}
    if not now:
        return
    marked = set(case.settings.mark_dynamic)

    def shared(tensors: dict, p: int, size: int) -> list[int]:
        """The inputs whose dim `p` from the last has `size`."""
        return [i for i, t in tensors.items() if t.dim() > p and t.shape[-1 - p] == size]

    def narrowed(tensors: dict, members: list[int], p: int, new: int) -> dict:
        dims = [(tensors[i], tensors[i].dim() - 1 - p) for i in members]
        start = _window(dims, new)
        return {i: t.narrow(d, start, new) for i, (t, d) in zip(members, dims)}

    fit = dict(now)
    while any(t.numel() > MAX_LITERAL_VALUES for t in fit.values()):
        big = max(fit.values(), key=lambda t: t.numel())
        d = max(range(big.dim()), key=lambda d: big.shape[d])
        p, size = big.dim() - 1 - d, big.shape[d]
        fit.update(narrowed(fit, shared(fit, p, size), p, size // 2))
    if any(fit[i] is not now[i] for i in fit):
        yield _cut(case, {i: t for i, t in fit.items() if t is not now[i]})
    groups = {(p, t.shape[-1 - p]) for t in now.values() for p in range(t.dim()) if t.shape[-1 - p] > 1}
    for p, size in sorted(groups, key=lambda ps: (-ps[1], ps[0])):
        members = shared(now, p, size)
        if len(members) < 2:
            continue
        for new in (1, size // 2) if size > 3 else (1,):
            if new == 1 and any((i, now[i].dim() - 1 - p) in marked for i in members):
                continue
            yield _cut(case, narrowed(now, members, p, new))
    for i, t in now.items():
        for d, size in enumerate(t.shape):
            for new in (1, size // 2) if size > 3 else (1,) if size > 1 else ():
                if not (new == 1 and (i, d) in marked):
                    yield _cut(case, narrowed({i: t}, [i], t.dim() - 1 - d, new))
    for i, t in now.items():
        for d in range(t.dim()):
            start = _window([(t, d)], 1)
            inp = g.inputs[i]
            order = inp.spec.stride[:d] + inp.spec.stride[d + 1:]
            cand = _with_input(case, i, _relaid(inp, t.select(d, start), order))
            marks = tuple((k, m if m < d else m - 1) for k, m in case.settings.mark_dynamic
                          if not (k == i and m == d))
            yield _settings(cand, mark_dynamic=marks) if marks != case.settings.mark_dynamic else cand


def pass_inputs(case: TestCase) -> Iterator[TestCase]:
    """Per tensor input: dtype -> float32, requires_grad off, contiguous (the same values),
    fill -> normal (a seeded input)."""
    for i, inp in enumerate(case.graph.inputs):
        spec = inp.spec
        if not isinstance(spec, TensorSpec):
            continue
        if spec.dtype in FLOAT_DTYPES and spec.dtype != "float32":
            yield _with_input(case, i, with_spec(inp, dataclasses.replace(spec, dtype="float32")))
        if spec.dtype == "complex128":
            yield _with_input(case, i, with_spec(inp, dataclasses.replace(spec, dtype="complex64")))
        if spec.requires_grad:
            yield _with_input(case, i, with_spec(inp, dataclasses.replace(spec, requires_grad=False)))
        if spec.stride != contiguous_stride(spec.shape) or spec.offset:
            values = codegen.build_input(case, i, "cpu").detach()
            yield _with_input(case, i, _relaid(inp, values, None))
        if inp.fill not in ("normal", "index", "bool") and inp.values is None:
            yield _with_input(case, i, dataclasses.replace(inp, fill="normal"))


def pass_unused(case: TestCase) -> Iterator[TestCase]:
    """The case without the inputs no node uses (a cut or a prefix leaves them). Seeded inputs
    after a dropped one move to another position and so draw other values: the candidate then
    fails differently and is not kept; literal inputs and scalars keep their values."""
    g = case.graph
    used = {a for node in g.nodes for a in node.args}
    if all(i in used for i in range(len(g.inputs))):
        return
    yield _graph_case(case, g.inputs, g.nodes, g.outputs)


# `shapes` before `values`: a reduction that runs out of time has small inputs the repro can
# print, and the values pass has fewer values to simplify. `values` before `inputs`: small
# inputs become literal first, so later passes that drop an input (renumbering the rest, whose
# seeded values would change) keep the values that matter.
PASSES: list[tuple[str, Callable[[TestCase], Iterator[TestCase]]]] = [
    ("outputs", pass_outputs), ("nodes", pass_nodes), ("settings", pass_settings),
    ("shapes", pass_shapes), ("values", pass_values), ("unused", pass_unused),
    ("inputs", pass_inputs)]


# ----------------------------------------------------------------------------- reducer


class Reducer:
    """Reduce one case; `worker` (a harness WorkerHandle) is reused and not closed here."""

    def __init__(self, worker: WorkerHandle, timeout: float = 60.0, max_steps: int = 300,
                 budget: float = 600.0, log: Callable[[str], None] | None = None):
        self.worker = worker
        self.timeout = timeout
        self.max_steps = max_steps
        self.budget = budget
        self.log = log or (lambda text: None)
        self.cache: dict[str, bool] = {}
        self.runs = 0
        self._deadline = 0.0
        self.strict = True
        self.accept = None

    def run_case(self, case: TestCase):
        result = self.worker.run(case, timeout=self.timeout, coverage=False)
        return result, signature_of(case, result)[0]

    def _valid(self, case: TestCase) -> TestCase | None:
        if self.strict:
            return validate(case)
        try:
            return propagate(case)
        except Exception:  # noqa: BLE001 - InvalidGraph or a torch internal error
            return None

    def check(self, case: TestCase, target: str) -> TestCase | None:
        """The (propagated) case when it fails with `target`, else None."""
        cid = serialize.case_id(case)
        if self.cache.get(cid) is False:
            return None
        checked = self._valid(case)
        if checked is None:
            self.cache[cid] = False
            return None
        if self.runs >= self.max_steps:
            raise _OutOfBudget("max steps")
        if time.monotonic() > self._deadline:
            raise _OutOfBudget("time budget")
        self.runs += 1
        result, sig = self.run_case(checked)
        ok = result.outcome in FAILURE_KINDS and (
            self.accept(checked, result) if self.accept is not None else sig == target)
        self.cache[cid] = ok
        return checked if ok else None

    def reduce(self, case: TestCase, target: str | None = None,
               accept: Callable[[TestCase, object], bool] | None = None) -> ReduceResult:
        """Reduce `case`. `target`: the signature to keep (default: the one the case shows now).
        `accept(case, result)`: instead of a signature, what a failing candidate must show to
        be kept (triage keeps a mismatch's culprit this way: the raw signature names the graph
        output, which reduction is meant to change).
        Raises CovfuzzError when the case does not fail (with `target`, or as `accept` asks)."""
        self.accept = accept
        started = time.monotonic()
        self._deadline = started + self.budget
        self.strict = validate(case) is not None
        if not self.strict:
            try:
                case = propagate(case)
            except Exception:  # noqa: BLE001
                pass
        result, sig = self.run_case(case)
        self.runs += 1
        if result.outcome not in FAILURE_KINDS:
            raise CovfuzzError(f"the case does not fail any more (outcome {result.outcome}); "
                               "nothing to reduce")
        if accept is not None and not accept(case, result):
            raise CovfuzzError(f"the case does not fail as asked (outcome {result.outcome}: "
                               f"{sig[:120]}); nothing to reduce")
        if target is not None and sig != target:
            self.log(f"note: signature changed since it was recorded: {target} -> {sig}; "
                     "reducing the current one")
        target = sig
        self.cache[serialize.case_id(case)] = True
        current = case
        res = ReduceResult(case, case, target, len(case.graph.nodes), len(case.graph.nodes))
        try:
            progress = True
            while progress:
                progress = False
                for name, make in PASSES:
                    restart = True
                    while restart:
                        restart = False
                        current_id = serialize.case_id(current)
                        for cand in make(current):
                            if serialize.case_id(cand) == current_id:
                                continue
                            checked = self.check(cand, target)
                            if checked is not None:
                                current = checked
                                res.steps += 1
                                res.accepted.append(name)
                                self.log(f"  {name}: {len(current.graph.nodes)} nodes, "
                                         f"{len(current.graph.inputs)} inputs ({self.runs} runs)")
                                progress = restart = True
                                break
        except _OutOfBudget as exc:
            res.stopped = str(exc)
        res.case = current
        res.nodes_after = len(current.graph.nodes)
        res.runs = self.runs
        res.seconds = time.monotonic() - started
        return res


def reduce_case(case: TestCase, target: str | None = None, timeout: float = 60.0,
                max_steps: int = 300, budget: float = 600.0, worker: WorkerHandle | None = None,
                log=None, cache_dir: str | None = None) -> ReduceResult:
    """Reduce `case` on `worker`, or on a reducer's worker started (and closed) here."""
    own = worker is None
    if own:
        worker = start_worker(WorkerSpec.for_reducer(timeout=timeout, cache_dir=cache_dir))
    try:
        return Reducer(worker, timeout, max_steps, budget, log).reduce(case, target)
    finally:
        if own:
            worker.close()
