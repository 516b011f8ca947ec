"""Seeded random graph generation.

Graphs grow forward: pick an op (by weight), take its first argument from the values built so far
(or a fresh input), let the op propose attributes for that argument, fill the other arguments
with existing values of the shape the op proposes (or fresh inputs of that shape), then ask torch
(meta propagation) whether the call is valid. Invalid proposals are dropped, never repaired by
hand-written shape rules. Depth, node count, op weights and dtypes are options.

Which ops (issue 18: ~700 of them once OpInfo's are in the catalog): each case has a *lead* op
that the seed alone picks, so that every op is tried early, and its other ops are drawn by
weight. Without a yield table the lead walks a fixed permutation of the op table (seeds
s .. s+n-1 lead with n different ops); with one (`GenOptions.op_yield`, from the campaign's
trait table, covfuzz/traits.py) the lead is one of the ops no execution has had yet, and the
weights are scaled by what each op has paid in new coverage per second.

Determinism: everything is drawn from one `random.Random(seed)` (and the lead from the seed and
the options), so the same seed with the same options and covfuzz version gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from dataclasses import dataclass, field

from covfuzz import config_space, ops
from covfuzz.errors import CovfuzzError, InvalidGraph
from covfuzz.ir import (DTYPES, FLOAT8_DTYPES, FLOAT_DTYPES, UINT_DTYPES, CompileSettings, Graph,
                        Input, Node, ScalarSpec, TensorSpec, TestCase, contiguous_stride,
                        dtype_class, permuted_stride)
from covfuzz.ops.base import DTYPE_CLASSES, ArgSpec, OpDef
from covfuzz.codegen import value_name
from covfuzz.ops.helpers import NAMESPACE
from covfuzz.propagate import WriteRules, eval_node, meta_value, needs_real_tensors, propagate

SIZES = (1, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33)
MAX_FRESH_NUMEL = 4096
LEAD_TRIES = 3          # proposals of the lead op before the case goes on without it
LEAD_ORDER_SEED = 18    # the fixed permutation the lead walks without a yield table
YIELD_RANGE = (0.1, 10.0)  # an op's yield scales its weight within these bounds
# Each case also has a lead dtype (the seed's, cycling through the allowed dtypes), so that the
# dtypes few ops take (float8, wide unsigned) appear too: the ops taking it are drawn at least
# this share of the time, and a fresh input whose argument allows it takes it with this
# probability.
LEAD_DTYPE_SHARE = 0.25
LEAD_DTYPE_PROB = 0.5
UNPROMOTED = UINT_DTYPES + FLOAT8_DTYPES  # dtypes torch promotes with no other


class OptionError(CovfuzzError, ValueError):
    """A generator option (e.g. --supported-ops, --dtypes) is malformed."""


@dataclass
class GenOptions:
    max_nodes: int = 10
    max_depth: int = 6
    max_inputs: int = 8
    op_weights: dict[str, float] | None = None  # None: every available op, default weights
    dtypes: tuple[str, ...] = DTYPES
    data_dependent: bool = False
    device: str = "cpu"
    backward_prob: float = 0.2
    config_prob: float = 0.1
    param_prob: float = 0.2  # share of cases whose inputs (not the first) may be Model parameters
    layouts: bool = True  # non-contiguous, gapped, stride-0 and offset inputs
    edge_values: bool = True
    extra_settings: dict = field(default_factory=dict)
    # What each op has paid (TraitYield.op_yield()): name -> (new features per second relative
    # to the mean execution, executions that had it). None: no feedback (a fixed lead order).
    op_yield: dict[str, tuple[float, int]] | None = None


def parse_supported_ops(text: str) -> dict[str, float]:
    """'torch.add,torch.matmul=5' -> {'torch.add': 1.0, 'torch.matmul': 5.0} (names checked)."""
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition("=")
        name = name.strip()
        reason = ops.unavailable_reason(name)
        if reason:
            raise OptionError(f"--supported-ops: {reason} (see `covfuzz ops`)")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise OptionError(f"--supported-ops: weight {weight!r} of {name} is not a number") from None
        if not value > 0:
            raise OptionError(f"--supported-ops: weight of {name} must be > 0")
        weights[name] = value
    if not weights:
        raise OptionError("--supported-ops: no op named")
    return weights


def parse_dtypes(text: str) -> tuple[str, ...]:
    names = tuple(filter(None, (p.strip().removeprefix("torch.") for p in text.split(","))))
    bad = [n for n in names if n not in DTYPES]
    if bad or not names:
        raise OptionError(f"--dtypes: unknown dtype(s) {bad or text!r}; choose from {', '.join(DTYPES)}")
    return names


class GraphBuilder:
    """A graph being drawn with `rng` under `opts`: `generate` grows one node at a time; the
    mutators use `fresh` / `fresh_scalar` to draw new inputs exactly as generation does."""

    def __init__(self, rng: random.Random, opts: GenOptions, seed: int = 0):
        self.rng, self.opts = rng, opts
        # The case's seed: real-tensor propagation draws the very values the program will.
        self.seed = seed
        self.inputs: list[Input] = []
        self.nodes: list[Node] = []
        self.depth: list[int] = []
        self.pending: list[int] = []  # args of the node being proposed (shifted with the rest)
        # Meta-tensor values of the inputs and nodes so far, so that a new node is checked by
        # evaluating it alone (re-propagating the whole graph at every step made drawing a graph
        # quadratic in its size). Once the graph needs real tensors, every step propagates it all.
        self.meta_inputs: list = []
        self.meta_nodes: list = []
        self.real = False
        # Which in-place writes the graph so far allows (see propagate.WriteRules); updated as
        # nodes are accepted on the meta path, as whole-graph propagation does.
        self.writes = WriteRules()
        self.first_existing = False  # the last proposal's first argument was an existing value
        self.lead_dtype: str | None = None  # preferred by fresh inputs (see LEAD_DTYPE_PROB)

    # ------------------------------------------------------------------ values
    def spec(self, vid: int):
        if vid < len(self.inputs):
            return self.inputs[vid].spec
        return self.nodes[vid - len(self.inputs)].out

    def graph(self, outputs=()) -> Graph:
        return Graph(tuple(self.inputs), tuple(self.nodes), tuple(outputs))

    def _allowed_dtypes(self, arg: ArgSpec, op: OpDef | None = None) -> list[str]:
        allowed = [d for d in DTYPE_CLASSES[arg.dtypes]
                   if d in self.opts.dtypes or arg.dtypes == "long"]
        # An OpInfo-derived op lists its dtypes per device: keep the device's own.
        on_device = (op.dtypes_by_device or {}).get(self.opts.device) if op is not None else None
        if on_device is not None and arg.dtypes not in ("long", "bool"):
            allowed = [d for d in allowed if d in on_device]
        return allowed

    # ------------------------------------------------------------------ fresh inputs
    def random_shape(self, min_rank: int, max_rank: int) -> tuple[int, ...]:
        rng = self.rng
        rank = rng.randint(min_rank, max(min_rank, min(max_rank, 4)))
        shape = [rng.choice(SIZES) for _ in range(rank)]
        if shape and rng.random() < 0.03:
            shape[rng.randrange(rank)] = 0
        while shape and _numel(shape) > MAX_FRESH_NUMEL:
            shape[shape.index(max(shape))] //= 2
        return tuple(shape)

    def layout(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
        """Strides and storage offset: contiguous, transposed, gapped, stride-0, offset."""
        rng = self.rng
        stride = list(contiguous_stride(shape))
        if not self.opts.layouts or not shape:
            return tuple(stride), 0
        roll = rng.random()
        if roll < 0.12 and len(shape) >= 2:  # transposed: dense, permuted order
            order = list(range(len(shape)))
            rng.shuffle(order)
            stride = list(permuted_stride(shape, order))
        elif roll < 0.22:  # gapped: a dim strides past unused elements
            d = rng.randrange(len(shape))
            factor = rng.choice([2, 3])
            for k in range(d + 1):
                stride[k] *= factor
        elif roll < 0.30:  # overlapping: a broadcast (stride-0) dim
            d = rng.randrange(len(shape))
            stride[d] = 0
        offset = rng.choice([1, 3, 7]) if rng.random() < 0.1 else 0
        return tuple(stride), offset

    def fill_for(self, dtype: str, forced: str | None) -> str:
        if forced:
            return forced
        roll = self.rng.random()
        if self.opts.edge_values and roll < 0.1:
            return "edge"
        if dtype_class(dtype) == "float" and roll < 0.2:
            return self.rng.choice(["uniform", "positive"])
        return "normal"

    def fresh(self, arg: ArgSpec, shape=None, dtype=None, op: OpDef | None = None) -> int | None:
        if len(self.inputs) >= self.opts.max_inputs and not arg.fresh:
            return None
        dtypes = self._allowed_dtypes(arg, op)
        if not dtypes:
            return None
        if dtype not in dtypes:
            lead = self.lead_dtype
            dtype = lead if lead in dtypes and self.rng.random() < LEAD_DTYPE_PROB else \
                self.rng.choice(dtypes)
        if shape is None:
            shape = self.random_shape(arg.min_rank, arg.max_rank)
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape) or _numel(shape) > MAX_FRESH_NUMEL * 4:
            return None
        if arg.fill == "index":
            stride, offset = contiguous_stride(shape), 0
        else:
            stride, offset = self.layout(shape)
        spec = TensorSpec(shape, stride, dtype, offset, self.opts.device)
        return self._add_input(Input(spec, self.fill_for(dtype, arg.fill)))

    def fresh_scalar(self, kind: str) -> int:
        value = {"int": self.rng.choice([1, 2, 3, 5, 8, 17]),
                 "float": self.rng.choice([0.5, -1.5, 2.0, 1e-3, 3.0]),
                 "bool": self.rng.random() < 0.5}[kind]
        return self._add_input(Input(ScalarSpec(kind), "normal", value))

    def _add_input(self, inp: Input) -> int:
        # Inputs come before nodes in value numbering: shift every node reference.
        index = len(self.inputs)
        self.inputs.append(inp)
        self.nodes = [dataclasses.replace(n, args=tuple(a + 1 if a >= index else a for a in n.args))
                      for n in self.nodes]
        self.pending[:] = [a + 1 if a >= index else a for a in self.pending]
        self.depth.insert(index, 0)
        return index

    # ------------------------------------------------------------------ existing values
    def existing(self, arg: ArgSpec, shape=None, op: OpDef | None = None,
                 dtype: str | None = None) -> int | None:
        dtypes = set(self._allowed_dtypes(arg, op)) if arg.dtypes != "any" else set(DTYPES)
        if dtype is not None:
            dtypes &= {dtype}
        candidates = []
        for vid in range(len(self.inputs) + len(self.nodes)):
            spec = self.spec(vid)
            if not isinstance(spec, TensorSpec) or spec.dtype not in DTYPE_CLASSES[arg.dtypes]:
                continue
            if spec.dtype not in dtypes and (arg.dtypes != "any" or dtype is not None):
                continue
            if not arg.min_rank <= spec.rank <= arg.max_rank or self.depth[vid] >= self.opts.max_depth:
                continue
            if shape is not None and spec.shape != tuple(shape):
                continue
            if vid < len(self.inputs) and self.inputs[vid].fill == "index":
                continue  # index inputs keep a single role so their bound stays meaningful
            candidates.append(vid)
        if not candidates:
            return None
        # Prefer recent values: it builds depth instead of a wide, shallow fan.
        weights = [1.0 + 3.0 * i / len(candidates) for i in range(len(candidates))]
        return self.rng.choices(candidates, weights)[0]

    def scalar_value(self, kind: str) -> int:
        existing = [v for v in range(len(self.inputs) + len(self.nodes))
                    if isinstance(self.spec(v), ScalarSpec) and self.spec(v).kind == kind]
        if existing and self.rng.random() < 0.7:
            return self.rng.choice(existing)
        return self.fresh_scalar(kind)

    # ------------------------------------------------------------------ nodes
    def propose(self, op: OpDef, fresh_first: bool = False) -> tuple[tuple[int, ...], dict] | None:
        rng = self.rng
        first = op.args[0]
        self.first_existing = False
        if first.kind == "scalar":
            a0 = self.scalar_value(first.scalar_kind)
        elif first.fresh:
            a0 = self.fresh(first, self._first_shape(op), op=op)
        else:
            a0 = self.existing(first, op=op) if not fresh_first and rng.random() < 0.85 else None
            self.first_existing = a0 is not None
            if a0 is None:
                a0 = self.fresh(first, self._first_shape(op), op=op)
        if a0 is None:
            return None
        args = self.pending = [a0]
        specs = [self.spec(a0)]
        attrs = op.propose_attrs(rng, specs[0])
        for arg in op.args[1:]:
            if arg.kind == "scalar" or (arg.kind == "tensor_or_scalar" and rng.random() < 0.12):
                kind = arg.scalar_kind if arg.kind == "scalar" else rng.choice(["int", "float"])
                vid = self.scalar_value(kind)
                args.append(vid)
                specs = [self.spec(a) for a in args]
                continue
            shape = arg.shape(rng, specs, attrs) if arg.shape else None
            dtype = specs[0].dtype if arg.same_dtype and isinstance(specs[0], TensorSpec) else None
            vid = None
            if not arg.fresh and rng.random() < 0.5:
                # OpInfo-derived ops: its samples share one dtype; meta kernels often do not
                # check it (hand-written ops keep drawing mixed dtypes, as they always have).
                vid = self.existing(arg, shape, op, dtype if op.source == "opinfo" else None)
                if vid is not None and _unpromoted(specs[0], self.spec(vid), arg):
                    vid = None
            if vid is None:
                vid = self.fresh(arg, shape, dtype, op)
            if vid is None:
                return None
            args.append(vid)
            specs = [self.spec(a) for a in args]
        return tuple(args), attrs

    def _first_shape(self, op: OpDef):
        """A fresh first argument's shape: the op's proposal when it has one (an OpInfo-derived
        op: a sample's shape, many of those ops want square matrices or matching channels;
        view_as_complex: a last dim of 2), else a random one."""
        first = op.args[0]
        return first.shape(self.rng, [], {}) if first.shape else None

    def try_add(self, op: OpDef) -> bool:
        if self._try_add(op):
            return True
        # An op proposing its first argument's shape (OpInfo-derived ones) whose first argument
        # was an existing value gets one more try on a fresh input of such a shape: its shape
        # rules are unknown to us, not to torch.
        return op.args[0].shape is not None and self.first_existing and self._try_add(op, True)

    def _try_add(self, op: OpDef, fresh_first: bool = False) -> bool:
        saved = (list(self.inputs), list(self.nodes), list(self.depth))
        self.pending = []
        proposal = self.propose(op, fresh_first)
        if proposal is not None:
            args, attrs = proposal
            node = Node(op.name, args, attrs)
            checked = self._check(Graph(tuple(self.inputs), tuple(self.nodes) + (node,), (0,)))
            if checked is not None:
                self.nodes.append(checked)
                self.depth.append(1 + max(self.depth[a] for a in args))
                return True
        self.inputs, self.nodes, self.depth = saved
        del self.meta_inputs[len(self.inputs):]  # inputs made for the rejected node
        return False

    def _check(self, graph: Graph) -> Node | None:
        """The last node of `graph` with its output spec, or None if torch rejects it."""
        if not self.real and not needs_real_tensors(graph):
            while len(self.meta_inputs) < len(graph.inputs):
                inp = graph.inputs[len(self.meta_inputs)]
                self.meta_inputs.append(meta_value(inp.spec, inp.value))
            env = dict(NAMESPACE)
            base = len(graph.inputs)
            for a in graph.nodes[-1].args:
                env[value_name(graph, a)] = (self.meta_inputs[a] if a < base
                                             else self.meta_nodes[a - base])
            try:
                value, spec = eval_node(graph, len(graph.nodes) - 1, env, self.opts.device,
                                        self.writes)
            except InvalidGraph as exc:
                if not getattr(exc, "no_meta", False):
                    return None
            else:
                self.meta_nodes.append(value)
                return dataclasses.replace(graph.nodes[-1], out=spec)
        try:  # real tensors (data-dependent ops, no meta kernel): the whole graph
            checked = propagate(TestCase(graph, CompileSettings(device=self.opts.device),
                                         self.seed))
        except (InvalidGraph, CovfuzzError):
            return None
        self.real = True
        return checked.graph.nodes[-1]


def _unpromoted(first, other, arg: ArgSpec) -> bool:
    """Whether `other` beside `first` mixes a dtype torch promotes with no other (wide unsigned,
    float8: eager refuses, meta kernels do not check) where the argument takes `first`'s."""
    if not (isinstance(first, TensorSpec) and isinstance(other, TensorSpec)) \
            or first.dtype == other.dtype or first.dtype not in DTYPE_CLASSES[arg.dtypes]:
        return False
    return first.dtype in UNPROMOTED or other.dtype in UNPROMOTED


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def op_table(opts: GenOptions) -> tuple[list[OpDef], list[float]]:
    """The ops a case may use, with their base weights."""
    if opts.op_weights:
        names = sorted(opts.op_weights)
        table = [ops.get_op(n) for n in names]
        weights = [opts.op_weights[n] for n in names]
    else:
        table = [op for _, op in sorted(ops.AVAILABLE.items())
                 if (opts.data_dependent or not op.data_dependent)
                 and ops.allowed_on(op, opts.device)]
        weights = [op.weight for op in table]
    return table, weights


_LEAD_ORDERS: dict[tuple[str, ...], list[int]] = {}


def _lead_order(names: tuple[str, ...]) -> list[int]:
    """A fixed permutation of the table (so that neighbouring seeds lead with unrelated ops)."""
    order = _LEAD_ORDERS.get(names)
    if order is None:
        order = list(range(len(names)))
        random.Random(LEAD_ORDER_SEED).shuffle(order)
        if len(_LEAD_ORDERS) > 64:
            _LEAD_ORDERS.clear()
        _LEAD_ORDERS[names] = order
    return order


def _takes(op: OpDef, dtype: str | None, device: str) -> bool:
    """Whether `op`'s first argument takes a tensor of `dtype` on `device`."""
    first = op.args[0] if op.args else None
    if first is None or first.kind == "scalar" or dtype not in DTYPE_CLASSES[first.dtypes]:
        return False
    on_device = (op.dtypes_by_device or {}).get(device)
    return on_device is None or dtype in on_device


class OpDraw:
    """The ops of one case: its lead op (chosen by the seed: see the module docstring) and the
    weights of the rest (base weight x yield, when the options carry a yield table)."""

    def __init__(self, seed: int, opts: GenOptions):
        self.table, weights = op_table(opts)
        self.lead_dtype = opts.dtypes[seed % len(opts.dtypes)] if opts.dtypes else None
        takes = [_takes(op, self.lead_dtype, opts.device) for op in self.table]
        share = sum(w for w, t in zip(weights, takes) if t) / max(sum(weights), 1e-9)
        if 0 < share < LEAD_DTYPE_SHARE:
            weights = [w * LEAD_DTYPE_SHARE / share if t else w for w, t in zip(weights, takes)]
        paid = opts.op_yield
        if paid is None:
            order = _lead_order(tuple(op.name for op in self.table))
            self.lead = self.table[order[seed % len(order)]] if order else None
        else:
            lo, hi = YIELD_RANGE
            weights = [w * min(hi, max(lo, paid.get(op.name, (1.0, 0))[0]))
                       for op, w in zip(self.table, weights)]
            untried = [op for op in self.table if paid.get(op.name, (1.0, 0))[1] == 0]
            self.lead = untried[seed % len(untried)] if untried else None
        self.cum_weights = list(itertools.accumulate(weights))

    def draw(self, rng: random.Random) -> OpDef:
        return rng.choices(self.table, cum_weights=self.cum_weights)[0]


# GPU cases: compile modes drawn for a share of them (CPU cases keep mode None: CUDA graphs and
# Triton autotuning do nothing there).
GPU_MODE_PROB = 0.3
GPU_MODES = ("reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "default")


def cudagraph_friendly(nodes) -> bool:
    """Whether CUDA graphs (mode="reduce-overhead") can replay this graph rather than skip it:
    a graph that writes in place can mutate its inputs, and CUDA graphs copy inputs into
    static buffers, so torch skips graphs that mutate them (no CUDA graph would be fuzzed)."""
    return not any(ops.get_op(n.op).category == "inplace" for n in nodes)


def generate(seed: int, opts: GenOptions | None = None) -> TestCase:
    """A valid (propagated) random test case, determined by `seed` and `opts`."""
    opts = opts or GenOptions()
    rng = random.Random(seed)
    draw = OpDraw(seed, opts)
    builder = GraphBuilder(rng, opts, seed)
    builder.lead_dtype = draw.lead_dtype
    target = rng.randint(1, max(opts.max_nodes, 1))
    lead_at = rng.randrange(target)  # the lead may read values made before it
    attempts = 0
    while len(builder.nodes) < target and attempts < target * 10:
        if draw.lead is not None and len(builder.nodes) == lead_at:
            for _ in range(LEAD_TRIES):
                if builder.try_add(draw.lead):
                    break
            lead_at = -1
            continue
        attempts += 1
        builder.try_add(draw.draw(rng))
    if not builder.nodes:  # keep the contract "at least one node": a plain copy of an input
        arg = ArgSpec("tensor", "any", 0, 3)
        vid = builder.existing(arg) if builder.inputs else None
        if vid is None:
            vid = builder.fresh(arg, dtype="float32") if "float32" in opts.dtypes else builder.fresh(arg)
        builder.nodes.append(Node("torch.clone", (vid,), {}))
        builder.depth.append(1)

    outputs = _pick_outputs(builder)
    settings = _sample_settings(rng, opts, builder)
    inputs = builder.inputs
    if settings.backward:
        inputs = [dataclasses.replace(i, spec=dataclasses.replace(i.spec, requires_grad=True))
                  if isinstance(i.spec, TensorSpec) and i.spec.dtype in FLOAT_DTYPES
                  and i.fill != "index" and rng.random() < 0.8 else i
                  for i in inputs]
    # Drawn last, so cases without parameters are unchanged. Freezing acts only on parameters:
    # a case that sets it is a model.
    if rng.random() < opts.param_prob or settings.inductor_config.get("freezing"):
        inputs = with_params(rng, inputs, settings)
    case = TestCase(Graph(tuple(inputs), tuple(builder.nodes), outputs), settings, seed)
    try:
        return propagate(case)
    except InvalidGraph:
        # requires_grad can make an op invalid: fall back to the forward-only variant.
        plain = dataclasses.replace(settings, backward=False)
        return propagate(TestCase(Graph(tuple(builder.inputs), tuple(builder.nodes), outputs),
                                  plain, seed))


def with_params(rng: random.Random, inputs, settings: CompileSettings) -> list[Input]:
    """Some tensor inputs after the first (the only one, if it is alone) become Model parameters
    (the weights of a model), never one whose dims are marked dynamic: parameters have static
    shapes."""
    marked = {i for i, _ in settings.mark_dynamic}
    tensors = [i for i, inp in enumerate(inputs) if isinstance(inp.spec, TensorSpec) and i not in marked]
    candidates = tensors[1:] or tensors
    if not candidates:
        return inputs
    chosen = {i for i in candidates if rng.random() < 0.5} or {rng.choice(candidates)}
    return [dataclasses.replace(inp, param=True) if i in chosen else inp for i, inp in enumerate(inputs)]


def _pick_outputs(builder: GraphBuilder) -> tuple[int, ...]:
    """The sinks (node values nobody uses), newest first, at most 4; always the last node."""
    base = len(builder.inputs)
    used = {a for n in builder.nodes for a in n.args}
    sinks = [base + j for j in range(len(builder.nodes)) if base + j not in used]
    last = base + len(builder.nodes) - 1
    chosen = sorted(set(sinks[-4:]) | {last})
    return tuple(chosen)


def _sample_settings(rng: random.Random, opts: GenOptions, builder: GraphBuilder) -> CompileSettings:
    dynamic = rng.choices([None, True, False], [0.7, 0.15, 0.15])[0]
    marks = []
    tensor_inputs = [(i, inp.spec) for i, inp in enumerate(builder.inputs)
                     if isinstance(inp.spec, TensorSpec)]
    if tensor_inputs and rng.random() < 0.15:
        i, spec = rng.choice(tensor_inputs)
        dims = [d for d, s in enumerate(spec.shape) if s >= 2]
        if dims:
            marks.append((i, rng.choice(dims)))
    dynamo_config = {}
    if any(ops.get_op(n.op).data_dependent for n in builder.nodes):
        dynamo_config = {"capture_scalar_outputs": True, "capture_dynamic_output_shape_ops": True}
    inductor_config = {}
    if rng.random() < opts.config_prob:
        flags = config_space.available_flags("inductor_config", opts.device)
        key = rng.choice(flags)
        inductor_config[key] = config_space.sample_value(rng, "inductor_config", key)
    breaks = any(ops.get_op(n.op).graph_break for n in builder.nodes)
    mode = None
    if opts.device == "cuda" and rng.random() < GPU_MODE_PROB:
        friendly = cudagraph_friendly(builder.nodes)
        mode = rng.choice([m for m in GPU_MODES if friendly or m != "reduce-overhead"])
    settings = CompileSettings(
        backend="inductor", mode=mode, dynamic=dynamic, fullgraph=rng.random() < 0.5 and not breaks,
        mark_dynamic=tuple(marks), inductor_config=inductor_config, dynamo_config=dynamo_config,
        device=opts.device,
        # Freezing acts only in inference (see with_params): a frozen model runs forward only.
        backward=rng.random() < opts.backward_prob and not inductor_config.get("freezing"))
    return dataclasses.replace(settings, **opts.extra_settings)
