"""Parameter mutators: mutate_attrs, mutate_settings, mutate_values."""

from __future__ import annotations

import dataclasses
import random

from covfuzz import config_space, ops
from covfuzz.generator import cudagraph_friendly, with_params
from covfuzz.ir import FLOAT_DTYPES, MAX_SEED, ScalarSpec, TensorSpec, TestCase
from covfuzz.ops.base import AttrDomain

from mutators.base import CAPTURE_FLAGS, EGraph, MutationContext

# ----------------------------------------------------------------------------- mutate_attrs


def _nudge(rng: random.Random, domain: AttrDomain, value, ctx: MutationContext):
    if domain.optional and rng.random() < 0.1:
        return None
    kind = domain.kind
    if kind == "bool":
        return not value if isinstance(value, bool) else rng.random() < 0.5
    if kind == "enum":
        return rng.choice(domain.choices)
    if kind == "dtype":
        return rng.choice(ctx.dtypes())
    if kind == "int":
        base = value if isinstance(value, int) else int(max(domain.lo, 0))
        return int(min(max(base + rng.choice([-1, 1, -2, 2]), domain.lo), domain.hi))
    if kind == "float":
        base = float(value) if isinstance(value, (int, float)) else 0.0
        new = rng.choice([base * rng.choice([0.5, 2.0, -1.0]), base + rng.uniform(-1, 1),
                          domain.lo, domain.hi, 0.0, rng.uniform(domain.lo, domain.hi)])
        return float(min(max(new, domain.lo), domain.hi))
    if kind in ("ints", "floats"):
        items = list(value) if isinstance(value, tuple) else []
        roll = rng.random()
        if items and roll < 0.6:
            i = rng.randrange(len(items))
            items[i] = items[i] + rng.choice([-1, 1])
        elif items and roll < 0.8:
            del items[rng.randrange(len(items))]
        elif len(items) < domain.max_len:
            items.insert(rng.randrange(len(items) + 1), rng.choice(items) if items else 0)
        cast = int if kind == "ints" else float
        return tuple(cast(min(max(v, domain.lo), domain.hi)) for v in items)
    return value


def mutate_attrs(case: TestCase, rng: random.Random, ctx: MutationContext) -> TestCase | None:
    """Change one attribute: resample it with the op's sampler, or nudge it within its domain."""
    eg = EGraph(case)
    nodes = [n for n in eg.nodes if n.attrs]
    if not nodes:
        return None
    node = rng.choice(nodes)
    op = ops.get_op(node.op)
    key = rng.choice(sorted(node.attrs))
    domain = op.attrs[key]
    old = node.attrs[key]
    new = old
    for _ in range(4):
        if op.sample_attrs and rng.random() < 0.5:
            try:
                new = op.propose_attrs(rng, eg.spec(node.args[0])).get(key, old)
            except Exception:  # noqa: BLE001 - samplers expect generator-shaped inputs
                new = old
        else:
            new = _nudge(rng, domain, old, ctx)
        if new != old or type(new) is not type(old):
            break
    if new == old and type(new) is type(old):
        return None
    if domain.check(new) is not None:
        return None
    node.attrs[key] = new
    return eg.to_case()


# ----------------------------------------------------------------------------- mutate_settings

MODES = (None, "default", "max-autotune-no-cudagraphs")
# On the GPU also CUDA graphs ("reduce-overhead", and "max-autotune" which adds them).
CUDA_MODES = MODES + ("reduce-overhead", "max-autotune")


def modes_for(case: TestCase) -> tuple:
    """The compile modes a case may take: CUDA graphs only on cuda, and "reduce-overhead"
    only for graphs CUDA graphs can replay (`generator.cudagraph_friendly`)."""
    if case.settings.device != "cuda":
        return MODES
    if cudagraph_friendly(case.graph.nodes):
        return CUDA_MODES
    return tuple(m for m in CUDA_MODES if m != "reduce-overhead")


def _set_backward(case: TestCase, rng: random.Random, on: bool) -> TestCase:
    g = case.graph
    inputs = []
    for inp in g.inputs:
        spec = inp.spec
        if isinstance(spec, TensorSpec):
            want = on and spec.dtype in FLOAT_DTYPES and inp.fill != "index" and rng.random() < 0.8
            if want != spec.requires_grad:
                inp = dataclasses.replace(inp, spec=dataclasses.replace(spec, requires_grad=want))
        inputs.append(inp)
    graph = dataclasses.replace(g, inputs=tuple(inputs),
                                nodes=tuple(dataclasses.replace(n, out=None) for n in g.nodes))
    return case.replace(graph=graph, settings=dataclasses.replace(case.settings, backward=on))


def _mutate_config(rng: random.Random, case: TestCase, section: str, key: str | None = None
                   ) -> dict | None:
    """The config overrides of `section` with one change: drop, flip/resample or add a flag
    (`key`, when given, is the flag to change)."""
    current = dict(getattr(case.settings, section))
    protected = set()
    if section == "dynamo_config" and any(ops.get_op(n.op).data_dependent for n in case.graph.nodes):
        protected = set(CAPTURE_FLAGS)
    if key is not None:
        if key in protected:
            return None
        if key in current and rng.random() < 0.4:
            del current[key]
        else:
            domain = config_space.SECTIONS[section][key]
            old = current.get(key)
            current[key] = (not old) if domain[0] == "bool" and isinstance(old, bool) else \
                config_space.sample_value(rng, section, key)
    else:
        flags = config_space.available_flags(section, case.settings.device)
        removable = sorted(set(current) - protected)
        roll = rng.random()
        if removable and roll < 0.3:
            del current[rng.choice(removable)]
        elif removable and roll < 0.6:
            key = rng.choice(removable)
            domain = config_space.SECTIONS[section][key]
            current[key] = (not current[key]) if domain[0] == "bool" else config_space.sample_value(
                rng, section, key)
        else:
            key = rng.choice(flags)
            if key in protected:
                return None
            current[key] = config_space.sample_value(rng, section, key)
    if current == getattr(case.settings, section):
        return None
    return current


# The kinds of settings change, with the weights of the default (unlearned) choice.
SETTING_KINDS = {"dynamic": 2, "mark_dynamic": 2, "mode": 1, "fullgraph": 1, "backward": 1.5,
                 "params": 1, "inductor": 3, "dynamo": 1}
SECTION_OF = {"inductor": "inductor_config", "dynamo": "dynamo_config"}


def _toggle_param(case: TestCase, rng: random.Random) -> TestCase | None:
    """One tensor input becomes a Model parameter, or a parameter a plain argument again."""
    marked = {i for i, _ in case.settings.mark_dynamic}
    choices = [i for i, inp in enumerate(case.graph.inputs)
               if isinstance(inp.spec, TensorSpec) and i not in marked]
    if not choices:
        return None
    i = rng.choice(choices)
    inputs = list(case.graph.inputs)
    inputs[i] = dataclasses.replace(inputs[i], param=not inputs[i].param)
    return case.replace(graph=dataclasses.replace(case.graph, inputs=tuple(inputs)))


def setting_moves(device: str = "cpu") -> list[str]:
    """Every move `mutate_settings` can make on cases for `device`, for a learning chooser: the
    plain kinds plus one move per config flag ("inductor:cpp_wrapper",
    "dynamo:specialize_int", ...; Triton flags on cuda, C++ flags on the CPU)."""
    moves = [k for k in SETTING_KINDS if k not in SECTION_OF]
    for kind, section in SECTION_OF.items():
        moves += [f"{kind}:{flag}" for flag in config_space.available_flags(section, device)]
    return moves


def mutate_settings(case: TestCase, rng: random.Random, ctx: MutationContext) -> TestCase | None:
    """dynamic / mark_dynamic / mode / fullgraph / backward / which inputs are model parameters /
    inductor and dynamo config flags (`choose_setting_move`, then `apply_setting_move`; the
    registry's step calls the two itself so that it can report the move)."""
    return apply_setting_move(case, rng, choose_setting_move(rng, ctx))


def choose_setting_move(rng: random.Random, ctx: MutationContext) -> str:
    """Which setting to change: the context's chooser decides, else a weighted draw of a kind."""
    if ctx.choose_setting is not None:
        return ctx.choose_setting(setting_moves(ctx.options.device))
    return rng.choices(list(SETTING_KINDS), list(SETTING_KINDS.values()))[0]


def apply_setting_move(case: TestCase, rng: random.Random, move: str) -> TestCase | None:
    """`case` with the setting named by `move` (one of `setting_moves()`) changed; None when
    that move does not apply to it."""
    s = case.settings
    what, _, flag = move.partition(":")
    if what == "dynamic":
        return case.replace(settings=dataclasses.replace(
            s, dynamic=rng.choice([v for v in (None, True, False) if v is not s.dynamic])))
    if what == "mark_dynamic":
        marks = list(s.mark_dynamic)
        dims = [(i, d) for i, inp in enumerate(case.graph.inputs)
                if isinstance(inp.spec, TensorSpec) and not inp.param
                for d, size in enumerate(inp.spec.shape) if size >= 2 and (i, d) not in marks]
        if marks and (not dims or rng.random() < 0.4):
            marks.pop(rng.randrange(len(marks)))
        elif dims:
            marks.append(rng.choice(dims))
        else:
            return None
        return case.replace(settings=dataclasses.replace(s, mark_dynamic=tuple(marks)))
    if what == "mode":
        return case.replace(settings=dataclasses.replace(
            s, mode=rng.choice([m for m in modes_for(case) if m != s.mode])))
    if what == "fullgraph":
        return case.replace(settings=dataclasses.replace(s, fullgraph=not s.fullgraph))
    if what == "backward":
        return _set_backward(case, rng, not s.backward)
    if what == "params":
        return _toggle_param(case, rng)
    section = SECTION_OF[what]
    if flag and config_space.flag_device(flag) not in (None, s.device):
        return None  # a flag of another device's code generation changes nothing here
    new = _mutate_config(rng, case, section, flag or None)
    if new is None:
        return None
    out = case.replace(settings=dataclasses.replace(s, **{section: new}))
    if section == "inductor_config" and new.get("freezing") and not s.inductor_config.get("freezing"):
        out = _as_inference_model(out, rng)
    return out


def _as_inference_model(case: TestCase, rng: random.Random) -> TestCase:
    """Freezing folds a model's parameters in inference and does nothing else: a case that
    turns it on gets parameters if it had none, and runs forward only."""
    if case.settings.backward:
        case = _set_backward(case, rng, False)
    if any(inp.param for inp in case.graph.inputs):
        return case
    inputs = tuple(with_params(rng, case.graph.inputs, case.settings))
    return case.replace(graph=dataclasses.replace(case.graph, inputs=inputs))


# ----------------------------------------------------------------------------- mutate_values

VALUE_FILLS = ("normal", "uniform", "positive", "edge", "zeros", "ones", "nonzero")
INT_SCALARS = (0, 1, 2, 3, -1, -2, 5, 8, 17, 127, 1024)
FLOAT_SCALARS = (0.0, 0.5, -1.5, 2.0, 1e-3, 3.0, -0.0, 1e-30, 1e30, -7.25)


def _fixed_fill_inputs(case: TestCase) -> set[int]:
    """Inputs whose fill an argument depends on (index, nonzero divisors, positive variances...)."""
    fixed = set()
    for node in case.graph.nodes:
        op = ops.get_op(node.op)
        for a, vid in enumerate(node.args):
            if op.args[a].fill or op.args[a].fresh:
                fixed.add(vid)
    return fixed


def mutate_values(case: TestCase, rng: random.Random, ctx: MutationContext) -> TestCase | None:
    """Change the value family (fill) of an input, a scalar input's value, or the case seed."""
    g = case.graph
    fixed = _fixed_fill_inputs(case)
    tensors = [i for i, inp in enumerate(g.inputs) if isinstance(inp.spec, TensorSpec)
               and i not in fixed and inp.fill != "index" and inp.spec.dtype != "bool"]
    scalars = [i for i, inp in enumerate(g.inputs) if isinstance(inp.spec, ScalarSpec)]
    roll = rng.random()
    if tensors and roll < 0.6:
        i = rng.choice(tensors)
        inp = g.inputs[i]
        fills = [f for f in VALUE_FILLS if f != inp.fill and (ctx.options.edge_values or f != "edge")]
        new = dataclasses.replace(inp, fill=rng.choice(fills))
    elif scalars and roll < 0.75:
        i = rng.choice(scalars)
        inp = g.inputs[i]
        kind = inp.spec.kind
        if kind == "bool":
            value = not inp.value
        elif kind == "int":
            value = rng.choice([v for v in INT_SCALARS if v != inp.value]) if rng.random() < 0.7 \
                else int(inp.value) + rng.choice([-1, 1])
        else:
            value = rng.choice([v for v in FLOAT_SCALARS if v != inp.value])
        new = dataclasses.replace(inp, value=value)
    else:
        seed = rng.randrange(MAX_SEED) if rng.random() < 0.7 else min(case.seed + 1, MAX_SEED)
        if seed == case.seed:
            return None
        return case.replace(seed=seed)
    inputs = list(g.inputs)
    inputs[i] = new
    return case.replace(graph=dataclasses.replace(g, inputs=tuple(inputs)))
