"""Tensor-property mutators: retype, perturb_layout, perturb_shape."""

from __future__ import annotations

import dataclasses
import random

from covfuzz import ops
from covfuzz.generator import MAX_FRESH_NUMEL, SIZES
from covfuzz.ir import (FLOAT8_DTYPES, FLOAT_DTYPES, MAX_NODES, MAX_NUMEL, UINT_DTYPES, TensorSpec,
                        TestCase, contiguous_stride, permuted_stride, storage_numel)
from covfuzz.ops.base import DTYPE_CLASSES

from mutators.base import EGraph, MutationContext, settle, tensor_edges

# ----------------------------------------------------------------------------- retype


def _consumer_classes(eg: EGraph, uid: int) -> list[set]:
    classes = []
    for n in eg.nodes:
        op = ops.get_op(n.op)
        for a, u in enumerate(n.args):
            if u == uid:
                classes.append(set(DTYPE_CLASSES[op.args[a].dtypes]))
    return classes


# Dtypes torch promotes with no other (eager refuses the mix; meta kernels let it pass): a value
# that shares a node with other arguments is not retyped to them.
UNPROMOTED = set(UINT_DTYPES + FLOAT8_DTYPES)


def _shares_a_node(eg: EGraph, uid: int) -> bool:
    return any(uid in n.args and len(set(n.args)) > 1 for n in eg.nodes)


def retype(case: TestCase, rng: random.Random, ctx: MutationContext) -> TestCase | None:
    """Change an input's dtype (within what its consumers accept) or cast an edge."""
    eg = EGraph(case)
    allowed = set(ctx.dtypes())
    if rng.random() < 0.5:
        inputs = [(u, inp) for u, inp in eg.inputs
                  if isinstance(inp.spec, TensorSpec) and inp.fill != "index"]
        rng.shuffle(inputs)
        for uid, inp in inputs[:4]:
            ok = set(allowed)
            for cls in _consumer_classes(eg, uid):
                ok &= cls
            if inp.spec.requires_grad:
                ok &= set(FLOAT_DTYPES)
            if inp.fill in ("nonzero", "positive", "uniform"):
                ok.discard("bool")
            if _shares_a_node(eg, uid):
                ok -= UNPROMOTED
            ok.discard(inp.spec.dtype)
            if not ok:
                continue
            dtype = rng.choice(sorted(ok))
            eg.set_input(uid, dataclasses.replace(inp, spec=dataclasses.replace(inp.spec, dtype=dtype)))
            return settle(eg)
        return None
    if len(eg.nodes) >= MAX_NODES:
        return None
    edges = tensor_edges(eg)
    rng.shuffle(edges)
    for p, a in edges[:4]:
        node = eg.nodes[p]
        arg = ops.get_op(node.op).args[a]
        have = eg.spec(node.args[a]).dtype
        ok = sorted(set(DTYPE_CLASSES[arg.dtypes]) & allowed - {have}
                    - (UNPROMOTED if len(set(node.args)) > 1 else set()))
        if not ok:
            continue
        dtype = rng.choice(ok)
        new = eg.insert_node(p, "Tensor.to", [node.args[a]], {"dtype": dtype})
        node.args[a] = new
        return settle(eg)
    return None


# ----------------------------------------------------------------------------- perturb_layout


def random_layout(rng: random.Random, shape: tuple, current=None) -> tuple[tuple, int]:
    """A (stride, offset) for `shape`: contiguous, transposed, gapped, stride-0 or offset."""
    stride = list(contiguous_stride(shape))
    offset = 0
    kind = rng.choice(["contiguous", "transposed", "gapped", "broadcast", "offset"])
    if kind == "transposed" and len(shape) >= 2:
        order = list(range(len(shape)))
        rng.shuffle(order)
        stride = list(permuted_stride(shape, order))
    elif kind == "gapped" and shape:
        d = rng.randrange(len(shape))
        factor = rng.choice([2, 3])
        for k in range(d + 1):
            stride[k] *= factor
    elif kind == "broadcast" and shape:
        stride[rng.randrange(len(shape))] = 0
    elif kind == "offset":
        if current is not None:
            stride = list(current[0])
        offset = rng.choice([1, 3, 7, 16])
    return tuple(stride), offset


def _layout_node(rng: random.Random, eg: EGraph, p: int, uid: int) -> int | None:
    """Insert nodes before position `p` giving value `uid` another layout, same shape and dtype."""
    spec = eg.spec(uid)
    shape = spec.shape
    choices = ["transpose", "slice", "expand"]
    if len(shape) == 4:
        choices.append("channels_last")
    kind = rng.choice(choices)
    if kind == "channels_last":
        fmt = "channels_last" if rng.random() < 0.8 else "contiguous_format"
        return eg.insert_node(p, "Tensor.contiguous.memory_format", [uid], {"format": fmt})
    if kind == "transpose" and len(shape) >= 2:
        d0, d1 = rng.sample(range(len(shape)), 2)
        # a contiguous copy of the transposed value, transposed back: permuted strides
        t = eg.insert_node(p, "torch.transpose", [uid], {"dim0": d0, "dim1": d1})
        c = eg.insert_node(p + 1, "Tensor.contiguous", [t], {})
        return eg.insert_node(p + 2, "torch.transpose", [c], {"dim0": d0, "dim1": d1})
    if kind == "slice" and shape:
        d = rng.randrange(len(shape))
        k = rng.choice([2, 3])
        if spec.numel * k > MAX_FRESH_NUMEL * 4:
            return None
        r = eg.insert_node(p, "torch.repeat_interleave", [uid], {"repeats": k, "dim": d})
        return eg.insert_node(p + 1, "Tensor.__getitem__.slice", [r],
                              {"dim": d, "start": 0, "stop": None, "step": k})
    big = [d for d, s in enumerate(shape) if s > 1]
    if kind == "expand" and big:
        d = rng.choice(big)
        n = eg.insert_node(p, "torch.narrow", [uid], {"dim": d, "start": rng.randrange(shape[d]),
                                                       "length": 1})
        return eg.insert_node(p + 1, "Tensor.expand", [n], {"sizes": tuple(shape)})
    return None


def perturb_layout(case: TestCase, rng: random.Random, ctx: MutationContext) -> TestCase | None:
    """New strides/offset for an input, or a layout-changing detour on an intermediate edge."""
    eg = EGraph(case)
    if rng.random() < 0.5:
        inputs = [(u, inp) for u, inp in eg.inputs if isinstance(inp.spec, TensorSpec)
                  and inp.fill != "index" and inp.spec.rank >= 1]
        if not inputs:
            return None
        uid, inp = rng.choice(inputs)
        spec = inp.spec
        stride, offset = random_layout(rng, spec.shape, (spec.stride, spec.offset))
        if (stride, offset) == (spec.stride, spec.offset):
            return None
        if storage_numel(spec.shape, stride, offset) > MAX_NUMEL:
            return None
        eg.set_input(uid, dataclasses.replace(inp, spec=dataclasses.replace(
            spec, stride=stride, offset=offset)))
        return settle(eg)
    if len(eg.nodes) + 3 > MAX_NODES:
        return None
    edges = [(p, a) for p, a in tensor_edges(eg) if eg.spec(eg.nodes[p].args[a]).rank >= 1]
    rng.shuffle(edges)
    for p, a in edges[:4]:
        node = eg.nodes[p]
        new = _layout_node(rng, eg, p, node.args[a])
        if new is None:
            continue
        node.args[a] = new
        return settle(eg)
    return None


# ----------------------------------------------------------------------------- perturb_shape

_SHAPE_ATTRS = ("shape", "sizes", "normalized_shape")


def _new_size(rng: random.Random, s: int) -> int:
    return rng.choice([0, 1, 1, 2, s + 1, max(s - 1, 0), 2 * s, max(s // 2, 1),
                       rng.choice(SIZES), rng.choice(SIZES)])


def perturb_shape(case: TestCase, rng: random.Random, ctx: MutationContext) -> TestCase | None:
    """Change one dim size in every input sharing it at broadcast-aligned positions (or set it to 1)."""
    eg = EGraph(case)
    tensors = [(u, inp) for u, inp in eg.inputs if isinstance(inp.spec, TensorSpec) and inp.spec.rank]
    if not tensors:
        return None
    uid, inp = rng.choice(tensors)
    d = rng.randrange(inp.spec.rank)
    old = inp.spec.shape[d]
    from_right = inp.spec.rank - d
    broadcast_only = rng.random() < 0.2 and old != 1
    new = 1 if broadcast_only else _new_size(rng, old)
    if new == old:
        return None
    changed = False
    for u, other in eg.inputs:
        spec = other.spec
        if not isinstance(spec, TensorSpec) or (broadcast_only and u != uid):
            continue
        pos = spec.rank - from_right
        if pos < 0 or spec.shape[pos] != old:
            continue
        shape = list(spec.shape)
        shape[pos] = new
        shape = tuple(shape)
        n = 1
        for s in shape:
            n *= s
        if n > MAX_FRESH_NUMEL * 4:
            return None
        stride = contiguous_stride(shape)
        eg.set_input(u, dataclasses.replace(other, spec=dataclasses.replace(spec, shape=shape,
                                                                             stride=stride)))
        changed = True
    if not changed:
        return None
    if not broadcast_only:
        for node in eg.nodes:
            for key in _SHAPE_ATTRS:
                value = node.attrs.get(key)
                if isinstance(value, tuple) and old in value and new >= 0:
                    node.attrs[key] = tuple(new if v == old else v for v in value)
    return settle(eg)
