"""Shared machinery of the mutators: the context, an editable graph, probing and the validity check.

Mutators edit an `EGraph`: inputs and nodes keyed by stable uids instead of positional value
ids, so inserting or deleting a node never needs manual renumbering. `EGraph.to_case` renumbers
(inputs first, then nodes in list order), drops inputs nobody uses any more and remaps
`mark_dynamic`. Node output specs are cleared; `validate` re-propagates.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

from covfuzz import ops
from covfuzz.codegen import index_bound
from covfuzz.config_space import check_config_override
from covfuzz.errors import CovfuzzError, InvalidGraph
from covfuzz.generator import GenOptions, GraphBuilder
from covfuzz.ir import (DTYPES, literal_values_problem, FLOAT_DTYPES, MAX_INPUTS, MAX_NODES, MAX_NUMEL, MAX_OUTPUTS,
                        CompileSettings, Graph, Input, Node, ScalarSpec, TensorSpec, TestCase,
                        storage_numel)
from covfuzz.ops.base import DTYPE_CLASSES, ArgSpec, OpDef
from covfuzz.propagate import needs_real_tensors, propagate

CAPTURE_FLAGS = {"capture_scalar_outputs": True, "capture_dynamic_output_shape_ops": True}
MAX_SPLICE_NODES = 16


# ----------------------------------------------------------------------------- context


@dataclass
class MutationContext:
    """What a mutator may use besides the case: generator options and other corpus entries.

    `corpus`: cases to splice from (picked with the mutation's rng, so runs stay deterministic);
    `case_source`: alternatively a callable `rng -> TestCase | None` (e.g. the corpus manager);
    `choose_setting`: a callable `(moves) -> move` that picks which compile setting
    `mutate_settings` changes (a campaign learns which settings pay off); None: weighted random.
    The move made is reported by `mutators.stack` / `mutate` (`Applied.move`), for the reward.
    """

    options: GenOptions = field(default_factory=GenOptions)
    corpus: Sequence[TestCase] | None = None
    case_source: Callable[[random.Random], TestCase | None] | None = None
    choose_setting: Callable[[list[str]], str] | None = None

    def random_case(self, rng: random.Random | None = None) -> TestCase | None:
        rng = rng or random.Random()
        if self.case_source is not None:
            return self.case_source(rng)
        if self.corpus:
            return self.corpus[rng.randrange(len(self.corpus))]
        return None

    # ------------------------------------------------------------------ op / dtype choices
    def allowed_ops(self) -> list[OpDef]:
        device = self.options.device
        key = (tuple(sorted(self.options.op_weights or ())), self.options.data_dependent, device)
        cached = _OPS_CACHE.get(key)
        if cached is None:
            if self.options.op_weights:
                cached = [ops.get_op(n) for n in sorted(self.options.op_weights)]
            else:
                cached = [op for _, op in sorted(ops.AVAILABLE.items())
                          if self.options.data_dependent or not op.data_dependent]
            # Device-bound constructs (CUDA streams) only where the case runs on that device.
            cached = [op for op in cached if ops.allowed_on(op, device)]
            _OPS_CACHE[key] = cached
        return cached

    def op_allowed(self, name: str) -> bool:
        return any(op.name == name for op in self.allowed_ops())

    def dtypes(self) -> tuple[str, ...]:
        return tuple(self.options.dtypes) or DTYPES


_OPS_CACHE: dict = {}


# ----------------------------------------------------------------------------- editable graph


@dataclass
class ENode:
    op: str
    args: list[int]  # uids
    attrs: dict
    uid: int
    spec: object = None  # output spec of the original case (None for new nodes)


class EGraph:
    """A mutable copy of a graph keyed by uids (input k: uid k; node j: uid len(inputs) + j)."""

    def __init__(self, case: TestCase):
        g = case.graph
        self.case = case
        self.inputs: list[tuple[int, Input]] = [(i, inp) for i, inp in enumerate(g.inputs)]
        base = len(g.inputs)
        self.nodes: list[ENode] = [ENode(n.op, list(n.args), dict(n.attrs), base + j, n.out)
                                   for j, n in enumerate(g.nodes)]
        self.outputs: list[int] = list(g.outputs)
        self.next_uid = base + len(g.nodes)
        self.settings = case.settings
        self.seed = case.seed
        self.keep_inputs: set[int] = set()

    # ------------------------------------------------------------------ lookup
    def input_of(self, uid: int) -> Input | None:
        for u, inp in self.inputs:
            if u == uid:
                return inp
        return None

    def node_pos(self, uid: int) -> int | None:
        for pos, n in enumerate(self.nodes):
            if n.uid == uid:
                return pos
        return None

    def spec(self, uid: int):
        inp = self.input_of(uid)
        if inp is not None:
            return inp.spec
        pos = self.node_pos(uid)
        return self.nodes[pos].spec if pos is not None else None

    def is_index_input(self, uid: int) -> bool:
        inp = self.input_of(uid)
        return inp is not None and inp.fill == "index"

    def values_before(self, pos: int) -> list[int]:
        """uids usable by a node placed at node position `pos`."""
        return [u for u, _ in self.inputs] + [n.uid for n in self.nodes[:pos]]

    def uses(self) -> list[tuple[int, int]]:
        """(node position, arg position) of every edge."""
        return [(p, a) for p, n in enumerate(self.nodes) for a in range(len(n.args))]

    # ------------------------------------------------------------------ edits
    def new_uid(self) -> int:
        self.next_uid += 1
        return self.next_uid

    def add_input(self, inp: Input) -> int:
        uid = self.new_uid()
        self.inputs.append((uid, inp))
        return uid

    def set_input(self, uid: int, inp: Input) -> None:
        self.inputs = [(u, inp if u == uid else i) for u, i in self.inputs]

    def insert_node(self, pos: int, op: str, args, attrs: dict) -> int:
        uid = self.new_uid()
        self.nodes.insert(pos, ENode(op, list(args), dict(attrs), uid))
        return uid

    # ------------------------------------------------------------------ back to a TestCase
    def to_case(self, settings: CompileSettings | None = None, seed: int | None = None) -> TestCase:
        settings = settings or self.settings
        used = {a for n in self.nodes for a in n.args} | set(self.outputs) | self.keep_inputs
        kept = [(u, inp) for u, inp in self.inputs if u in used]
        old_index = {u: i for i, (u, _) in enumerate(self.inputs)}
        ids = {u: i for i, (u, _) in enumerate(kept)}
        base = len(kept)
        for j, n in enumerate(self.nodes):
            ids[n.uid] = base + j
        nodes = tuple(Node(n.op, tuple(ids[a] for a in n.args), dict(n.attrs)) for n in self.nodes)
        outputs = tuple(dict.fromkeys(ids[o] for o in self.outputs))
        # mark_dynamic names input positions: follow the inputs that stay, drop the others.
        remap = {old_index[u]: ids[u] for u, _ in kept}
        marks = []
        for i, d in settings.mark_dynamic:
            if i in remap:
                spec = kept[remap[i]][1].spec
                if isinstance(spec, TensorSpec) and d < spec.rank and spec.shape[d] >= 2:
                    marks.append((remap[i], d))
        settings = dataclasses.replace(settings, mark_dynamic=tuple(dict.fromkeys(marks)))
        graph = Graph(tuple(inp for _, inp in kept), nodes, outputs)
        return TestCase(graph, settings, self.seed if seed is None else seed)


# ----------------------------------------------------------------------------- helpers


def fresh_input(rng: random.Random, ctx: MutationContext, arg: ArgSpec, shape=None, dtype=None,
                requires_grad: bool = False) -> Input | None:
    """A fresh graph input for `arg`, chosen the way the generator chooses them."""
    builder = GraphBuilder(rng, ctx.options)
    try:
        vid = builder.fresh(arg, shape, dtype)
    except (CovfuzzError, ValueError, TypeError, IndexError):
        return None
    if vid is None:
        return None
    inp = builder.inputs[vid]
    if requires_grad and inp.spec.dtype in FLOAT_DTYPES and inp.fill != "index":
        inp = dataclasses.replace(inp, spec=dataclasses.replace(inp.spec, requires_grad=True))
    return inp


def fresh_scalar(rng: random.Random, ctx: MutationContext, kind: str) -> Input:
    builder = GraphBuilder(rng, ctx.options)
    return builder.inputs[builder.fresh_scalar(kind)]


def dtypes_for(arg: ArgSpec, ctx: MutationContext) -> list[str]:
    allowed = ctx.dtypes()
    return [d for d in DTYPE_CLASSES[arg.dtypes] if d in allowed or arg.dtypes == "long"]


def arg_accepts(arg: ArgSpec, spec) -> bool:
    """Whether an existing value with `spec` may be passed as `arg` (kind, dtype class, rank)."""
    if arg.fresh or arg.fill:
        return False
    if isinstance(spec, ScalarSpec):
        return arg.kind == "scalar" and spec.kind == arg.scalar_kind or (
            arg.kind == "tensor_or_scalar" and spec.kind in ("int", "float"))
    if not isinstance(spec, TensorSpec) or arg.kind == "scalar":
        return False
    return spec.dtype in DTYPE_CLASSES[arg.dtypes] and arg.min_rank <= spec.rank <= arg.max_rank


def probe(op: OpDef, arg_inputs: list[Input], attrs: dict, settings: CompileSettings | None = None):
    """The output spec of `op` applied to inputs shaped like `arg_inputs` (None when invalid)."""
    if op.check_attrs(attrs) is not None:
        return None
    n = len(arg_inputs)
    graph = Graph(tuple(arg_inputs), (Node(op.name, tuple(range(n)), dict(attrs)),), (n,))
    case = TestCase(graph, settings or CompileSettings())
    try:
        return propagate(case).graph.nodes[0].out
    except (InvalidGraph, CovfuzzError):
        return None
    except Exception:  # noqa: BLE001 - a probe must never crash a mutator
        return None


def as_input(spec) -> Input:
    """An Input carrying `spec` (used only for probing)."""
    if isinstance(spec, ScalarSpec):
        return Input(spec, "normal", {"int": 2, "float": 0.5, "bool": True}[spec.kind])
    return Input(spec, "normal")


def build_args(rng: random.Random, ctx: MutationContext, eg: EGraph, op: OpDef, first: int, pos: int,
               grad: bool) -> tuple[list[int], dict] | None:
    """Arguments for `op` with `first` as argument 0, for a node placed at position `pos`.

    Other arguments are existing values defined before `pos` of the proposed shape, or fresh
    inputs (always fresh for `fresh` args, as the generator does). Returns (uids, attrs).
    """
    spec0 = eg.spec(first)
    if not arg_accepts(op.args[0], spec0):
        return None
    attrs = op.propose_attrs(rng, spec0)
    args, specs = [first], [spec0]
    before = None
    for arg in op.args[1:]:
        if arg.kind == "scalar" or (arg.kind == "tensor_or_scalar" and rng.random() < 0.12):
            kind = arg.scalar_kind if arg.kind == "scalar" else rng.choice(["int", "float"])
            inp = fresh_scalar(rng, ctx, kind)
            args.append(eg.add_input(inp))
            specs.append(inp.spec)
            continue
        try:
            shape = arg.shape(rng, specs, attrs) if arg.shape else None
        except Exception:  # noqa: BLE001 - shape proposals may not fit odd first args
            return None
        dtype = specs[0].dtype if arg.same_dtype and isinstance(specs[0], TensorSpec) else None
        uid = None
        if not arg.fresh and not arg.fill and rng.random() < 0.5:
            if before is None:
                before = eg.values_before(pos)
            cands = [u for u in before if not eg.is_index_input(u) and arg_accepts(arg, eg.spec(u))
                     and (shape is None or getattr(eg.spec(u), 'shape', None) == tuple(shape))]
            if cands:
                uid = rng.choice(cands)
        if uid is None:
            inp = fresh_input(rng, ctx, arg, shape, dtype, requires_grad=grad and rng.random() < 0.8)
            if inp is None:
                return None
            uid = eg.add_input(inp)
        args.append(uid)
        specs.append(eg.spec(uid))
    return args, attrs


def with_capture_flags(settings: CompileSettings, op_names) -> CompileSettings:
    """Data-dependent ops need dynamo's capture flags (as the generator sets them)."""
    if any(ops.get_op(n).data_dependent for n in op_names):
        dyn = dict(settings.dynamo_config)
        dyn.update(CAPTURE_FLAGS)
        return dataclasses.replace(settings, dynamo_config=dyn)
    return settings


def settle(eg: EGraph) -> TestCase:
    """The edited graph as a TestCase, with the capture flags its data-dependent ops need
    (how every structural and tensor mutator finishes)."""
    return eg.to_case(with_capture_flags(eg.settings, [n.op for n in eg.nodes]))


def tensor_edges(eg: EGraph) -> list[tuple[int, int]]:
    """Edges (node pos, arg pos) carrying a tensor that may be rerouted (not index / fresh args)."""
    result = []
    for p, n in enumerate(eg.nodes):
        op = ops.get_op(n.op)
        for a, uid in enumerate(n.args):
            arg = op.args[a]
            if arg.fresh or arg.fill or eg.is_index_input(uid):
                continue
            if isinstance(eg.spec(uid), TensorSpec):
                result.append((p, a))
    return result


# ----------------------------------------------------------------------------- validity


def structural_problem(case: TestCase) -> str | None:
    """Invariants beyond what propagation checks (None when all hold)."""
    g = case.graph
    if not g.nodes or len(g.nodes) > MAX_NODES or len(g.inputs) > MAX_INPUTS:
        return "node/input bounds"
    if not g.outputs or len(g.outputs) > MAX_OUTPUTS:
        return "outputs"
    if any(not 0 <= o < g.num_values for o in g.outputs):
        return "output id"
    base = len(g.inputs)
    fills_needed: dict[int, set] = {}
    for j, node in enumerate(g.nodes):
        if node.op not in ops.AVAILABLE:
            return f"unknown op {node.op}"
        op = ops.get_op(node.op)
        if len(node.args) != len(op.args):
            return f"arity of {node.op}"
        if op.check_attrs(node.attrs) is not None:
            return f"attrs of {node.op}: {op.check_attrs(node.attrs)}"
        if op.data_dependent and not all(case.settings.dynamo_config.get(k) for k in CAPTURE_FLAGS):
            return "data-dependent op without capture flags"
        for a, vid in enumerate(node.args):
            if not 0 <= vid < base + j:
                return "arg id"
            arg = op.args[a]
            is_index = vid < base and g.inputs[vid].fill == "index"
            if arg.fill == "index" or is_index:
                if not (arg.fill == "index" and is_index):
                    return "index input used outside an index argument"
            if arg.fresh:
                if vid >= base:
                    return "fresh argument fed by a node"
                if arg.fill:
                    fills_needed.setdefault(vid, set()).add(arg.fill)
    for vid, fills in fills_needed.items():
        if g.inputs[vid].fill not in fills or len(fills) > 1:
            return "fresh input fill"
    for i, inp in enumerate(g.inputs):
        if i in g.outputs and inp.fill == "index":
            return "index input as output"
        if inp.param and not isinstance(inp.spec, TensorSpec):
            return "scalar parameter"
        spec = inp.spec
        if isinstance(spec, TensorSpec):
            if storage_numel(spec.shape, spec.stride, spec.offset) > MAX_NUMEL:
                return "input too large"
            if any(s < 0 for s in spec.shape) or any(s < 0 for s in spec.stride):
                return "negative size/stride"
    for i, d in case.settings.mark_dynamic:
        spec = g.inputs[i].spec if i < len(g.inputs) else None
        if not isinstance(spec, TensorSpec) or not 0 <= d < spec.rank or g.inputs[i].param:
            return "mark_dynamic"
    for section in ("inductor_config", "dynamo_config"):
        for k, v in getattr(case.settings, section).items():
            if check_config_override(section, k, v) is not None:
                return f"config {k}"
    return None


# Also propagate on small real CPU tensors (the case's own seeded inputs) after the meta check.
# It costs about as much as the meta pass and catches what meta kernels do not check: CPU kernels
# missing for a dtype, mixed-dtype in-place ops, index values out of range. Set False to measure
# the meta check alone (benchmarks/mutant_validity.py --meta-only).
REAL_CHECK = True


def validate(case: TestCase | None, real_check: bool | None = None) -> TestCase | None:
    """The (meta-)propagated `case` when it is a valid test case, else None."""
    if case is None or structural_problem(case) is not None:
        return None
    if any(inp.values is not None and literal_values_problem(inp.spec, inp.values)
           for inp in case.graph.inputs):
        return None  # a mutated spec that its literal values no longer fit
    try:
        checked = propagate(case)
    except (InvalidGraph, CovfuzzError):
        return None
    except Exception:  # noqa: BLE001 - e.g. a torch internal error while propagating
        return None
    g = checked.graph
    for i, inp in enumerate(g.inputs):
        if inp.fill == "index" and isinstance(inp.spec, TensorSpec) and inp.spec.numel > 0:
            if index_bound(g, i) < 1:
                return None  # an index into an empty dim: fails at run time, not on meta
    if (REAL_CHECK if real_check is None else real_check) and not real_ok(case):
        return None
    return checked


def real_ok(case: TestCase) -> bool:
    """Whether `case` also propagates on its real (seeded, CPU) inputs; see REAL_CHECK."""
    if needs_real_tensors(case.graph) or case.settings.device != "cpu":
        return True  # propagation already ran on real tensors (or cannot here)
    try:
        propagate(case, real=True)
    except Exception:  # noqa: BLE001 - InvalidGraph, or a torch internal error
        return False
    return True


def ensure_propagated(case: TestCase) -> TestCase:
    if any(n.out is None for n in case.graph.nodes):
        return propagate(case)
    return case
