"""Graph-structure mutators: insert_node, delete_node, replace_op, splice."""

from __future__ import annotations

import dataclasses
import random

from covfuzz import ops
from covfuzz.ir import (FLOAT_DTYPES, MAX_INPUTS, MAX_NODES, MAX_OUTPUTS, ScalarSpec, TensorSpec,
                        TestCase)
from covfuzz.ops.base import OpDef

from mutators.base import (MAX_SPLICE_NODES, EGraph, MutationContext, arg_accepts, as_input,
                           build_args, fresh_input, probe, settle, tensor_edges)

# Categories whose ops usually keep the shape of argument 0: good candidates for edge insertion.
SHAPE_KEEPING = ("pointwise_unary", "activation", "softmax", "scan", "cast", "pointwise_binary",
                 "pointwise_ternary")


def _cast_node(eg: EGraph, pos: int, uid: int, dtype: str) -> int:
    return eg.insert_node(pos, "Tensor.to", [uid], {"dtype": dtype})


def _grad(case: TestCase) -> bool:
    return case.settings.backward


def _pick_op(rng: random.Random, ctx: MutationContext, spec, categories=None) -> OpDef | None:
    table = [op for op in ctx.allowed_ops() if op.out_kind == "tensor" and arg_accepts(op.args[0], spec)
             and (categories is None or op.category in categories)]
    if not table:
        return None
    return rng.choices(table, [op.weight for op in table])[0]


# ----------------------------------------------------------------------------- insert_node


def insert_node(case: TestCase, rng: random.Random, ctx: MutationContext) -> TestCase | None:
    """Insert a node on an edge (same shape; cast back when the dtype changes) or at an output."""
    if len(case.graph.nodes) >= MAX_NODES or len(case.graph.inputs) >= MAX_INPUTS - 3:
        return None
    eg = EGraph(case)
    edges = tensor_edges(eg)
    if edges and rng.random() < 0.6:
        for _ in range(6):
            p, a = rng.choice(edges)
            user = eg.nodes[p]
            uid = user.args[a]
            spec = eg.spec(uid)
            op = _pick_op(rng, ctx, spec, SHAPE_KEEPING if rng.random() < 0.8 else None)
            if op is None:
                continue
            trial = EGraph(case)
            built = build_args(rng, ctx, trial, op, uid, p, _grad(case))
            if built is None:
                continue
            args, attrs = built
            out = probe(op, [as_input(trial.spec(u)) for u in args], attrs)
            if not isinstance(out, TensorSpec) or out.shape != spec.shape:
                continue
            new = trial.insert_node(p, op.name, args, attrs)
            p += 1
            if out.dtype != spec.dtype:
                new = _cast_node(trial, p, new, spec.dtype)
                p += 1
            trial.nodes[p].args[a] = new
            return settle(trial)
        return None
    # at an output: a new node consuming any tensor value
    if len(eg.outputs) >= MAX_OUTPUTS:
        return None
    values = [u for u in eg.values_before(len(eg.nodes))
              if isinstance(eg.spec(u), TensorSpec) and not eg.is_index_input(u)]
    for _ in range(6 if values else 0):
        uid = rng.choice(values)
        op = _pick_op(rng, ctx, eg.spec(uid))
        if op is None:
            continue
        trial = EGraph(case)
        built = build_args(rng, ctx, trial, op, uid, len(trial.nodes), _grad(case))
        if built is None:
            continue
        args, attrs = built
        if probe(op, [as_input(trial.spec(u)) for u in args], attrs) is None:
            continue
        new = trial.insert_node(len(trial.nodes), op.name, args, attrs)
        trial.outputs.append(new)
        return settle(trial)
    return None


# ----------------------------------------------------------------------------- delete_node


def _broadcastable(src: tuple, dst: tuple) -> bool:
    if len(src) > len(dst):
        return False
    for s, d in zip(reversed(src), reversed(dst)):
        if s != d and s != 1:
            return False
    return True


def _adapt(eg: EGraph, pos: int, uid: int, want) -> tuple[int, int] | None:
    """Make value `uid` look like spec `want` with nodes inserted at `pos`: (uid, nodes added)."""
    have = eg.spec(uid)
    if isinstance(want, ScalarSpec) or isinstance(have, ScalarSpec):
        ok = isinstance(want, ScalarSpec) and isinstance(have, ScalarSpec) and want.kind == have.kind
        return (uid, 0) if ok else None
    added = 0
    if have.shape != want.shape:
        if have.numel == want.numel and have.numel > 0:
            uid = eg.insert_node(pos + added, "torch.reshape", [uid], {"shape": tuple(want.shape)})
        elif _broadcastable(have.shape, want.shape):
            uid = eg.insert_node(pos + added, "Tensor.expand", [uid], {"sizes": tuple(want.shape)})
        else:
            return None
        added += 1
    if have.dtype != want.dtype:
        uid = _cast_node(eg, pos + added, uid, want.dtype)
        added += 1
    return uid, added


def delete_node(case: TestCase, rng: random.Random, ctx: MutationContext) -> TestCase | None:
    """Delete a node; its users (and outputs) take one of its arguments, adapted when needed."""
    if len(case.graph.nodes) < 2:
        return None
    eg0 = EGraph(case)
    order = list(range(len(eg0.nodes)))
    rng.shuffle(order)
    for p in order[:6]:
        eg = EGraph(case)
        node = eg.nodes[p]
        cands = [u for u in dict.fromkeys(node.args) if not eg.is_index_input(u)
                 and isinstance(eg.spec(u), type(node.spec))]
        if not cands or node.spec is None:
            continue
        src = rng.choice(cands)
        del eg.nodes[p]
        adapted = _adapt(eg, p, src, node.spec)
        if adapted is None:
            continue
        repl, added = adapted
        for n in eg.nodes[p + added:]:
            n.args = [repl if a == node.uid else a for a in n.args]
        if node.uid in eg.outputs:
            if eg.input_of(repl) is not None:  # an input is no output: copy it
                if isinstance(eg.spec(repl), TensorSpec):
                    repl = eg.insert_node(p + added, "torch.clone", [repl], {})
                else:
                    repl = None
            eg.outputs = [o for o in (repl if o == node.uid else o for o in eg.outputs)
                          if o is not None]
            if not eg.outputs:
                continue
        if not eg.nodes:
            continue
        return settle(eg)
    return None


# ----------------------------------------------------------------------------- replace_op


def _kinds_match(old: OpDef, new: OpDef) -> bool:
    if len(old.args) != len(new.args) or old.out_kind != new.out_kind:
        return False
    for a, b in zip(old.args, new.args):
        if (a.kind == "scalar") != (b.kind == "scalar"):
            return False
        if (a.fill == "index") != (b.fill == "index"):
            return False
    return True


def replace_op(case: TestCase, rng: random.Random, ctx: MutationContext) -> TestCase | None:
    """Replace a node's op by one of the same category and arity; attrs re-sampled."""
    order = list(range(len(case.graph.nodes)))
    rng.shuffle(order)
    for p in order[:6]:
        eg = EGraph(case)
        node = eg.nodes[p]
        old = ops.get_op(node.op)
        same_cat = rng.random() < 0.8
        table = [op for op in ctx.allowed_ops() if op.name != old.name and _kinds_match(old, op)
                 and (op.category == old.category or not same_cat)]
        if not table:
            continue
        new = rng.choices(table, [op.weight for op in table])[0]
        specs = [eg.spec(u) for u in node.args]
        ok = True
        for a, (arg, uid) in enumerate(zip(new.args, node.args)):
            inp = eg.input_of(uid)
            if arg.fresh or arg.fill:
                if inp is not None and (arg.fill is None or inp.fill == arg.fill):
                    continue
                try:
                    shape = arg.shape(rng, specs, node.attrs) if arg.shape else None
                except Exception:  # noqa: BLE001
                    ok = False
                    break
                fresh = fresh_input(rng, ctx, arg, shape,
                                    specs[0].dtype if arg.same_dtype and isinstance(specs[0], TensorSpec)
                                    else None)
                if fresh is None:
                    ok = False
                    break
                node.args[a] = eg.add_input(fresh)
                specs[a] = fresh.spec
            elif not arg_accepts(arg, specs[a]):
                ok = False
                break
        if not ok:
            continue
        node.op = new.name
        node.attrs = new.propose_attrs(rng, specs[0])
        return settle(eg)
    return None


# ----------------------------------------------------------------------------- splice


def _ancestors(case: TestCase, vid: int) -> set[int]:
    g = case.graph
    seen, stack = set(), [vid]
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        node = g.node_of(v)
        if node is not None:
            stack.extend(node.args)
    return seen


def splice(case: TestCase, rng: random.Random, ctx: MutationContext) -> TestCase | None:
    """Graft a donor node and its ancestors into this case, at an output or on a compatible edge."""
    donor = ctx.random_case(rng)
    if donor is None or not donor.graph.nodes:
        return None
    dg = donor.graph
    base = len(dg.inputs)
    sinks = [base + j for j, n in enumerate(dg.nodes) if isinstance(n.out, TensorSpec)]
    if not sinks:
        return None
    rng.shuffle(sinks)
    top = None
    for cand in sinks[:8]:
        anc = _ancestors(donor, cand)
        if sum(1 for v in anc if v >= base) <= MAX_SPLICE_NODES:
            top = cand
            break
    if top is None:
        return None
    sub_inputs = sorted(v for v in anc if v < base)
    sub_nodes = sorted(v for v in anc if v >= base)
    if (len(case.graph.inputs) + len(sub_inputs) > MAX_INPUTS
            or len(case.graph.nodes) + len(sub_nodes) + 1 > MAX_NODES):
        return None
    eg = EGraph(case)
    top_spec = dg.nodes[top - base].out
    # where the grafted value goes: an output, or an edge of the same shape
    pos, edge = len(eg.nodes), None
    if rng.random() < 0.4:
        edges = [(p, a) for p, a in tensor_edges(eg)
                 if eg.spec(eg.nodes[p].args[a]).shape == top_spec.shape]
        if edges:
            edge = rng.choice(edges)
            pos = edge[0]
    if edge is None and len(eg.outputs) >= MAX_OUTPUTS:
        return None
    grad = case.settings.backward
    mapping: dict[int, int] = {}
    before = eg.values_before(pos)
    for v in sub_inputs:
        inp = dg.inputs[v]
        # reuse a recipient value of the same spec (not for index / fixed-fill inputs)
        if inp.fill in ("normal", "uniform", "edge") and isinstance(inp.spec, TensorSpec) \
                and rng.random() < 0.5:
            same = [u for u in before if not eg.is_index_input(u) and isinstance(eg.spec(u), TensorSpec)
                    and eg.spec(u).shape == inp.spec.shape and eg.spec(u).dtype == inp.spec.dtype]
            if same:
                mapping[v] = rng.choice(same)
                continue
        if isinstance(inp.spec, TensorSpec):
            want = grad and inp.spec.dtype in FLOAT_DTYPES and inp.fill != "index" and (
                inp.spec.requires_grad or rng.random() < 0.5)
            inp = dataclasses.replace(inp, spec=dataclasses.replace(
                inp.spec, requires_grad=bool(want), device=case.settings.device))
        mapping[v] = eg.add_input(inp)
    for k, v in enumerate(sub_nodes):
        n = dg.nodes[v - base]
        mapping[v] = eg.insert_node(pos + k, n.op, [mapping[a] for a in n.args], n.attrs)
    new = mapping[top]
    if edge is None:
        eg.outputs.append(new)
    else:
        p, a = edge
        p += len(sub_nodes)
        want = eg.spec(eg.nodes[p].args[a])
        if want.dtype != top_spec.dtype:
            new = _cast_node(eg, p, new, want.dtype)
            p += 1
        eg.nodes[p].args[a] = new
    return settle(eg)
