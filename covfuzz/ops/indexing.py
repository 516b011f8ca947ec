"""Indexing ops: gather/scatter, index_select/index_add/index_put, masked_fill, advanced indexing.

Index tensors are always fresh graph inputs with fill='index': the materializer draws their
values in [0, bound) where the bound is read off the indexed tensor's current shape, so an index
stays in range however mutation reshapes the graph.
"""

from __future__ import annotations

from covfuzz.ops.base import (DIM, Bool, Enum, Float, Int, OpDef, T, broadcast_partner, pick_dim,
                              plus)


def _shape(spec) -> list[int]:
    return list(getattr(spec, "shape", ()))


def _dim(rng, first):
    return {"dim": pick_dim(rng, first)}


def _gather_index(rng, specs, attrs):
    """Same rank as the input, each dim no larger than the input's (the gathered dim is free)."""
    x = _shape(specs[0])
    dim = attrs["dim"] % max(len(x), 1)
    return tuple(rng.choice([1, 2, 3, 5]) if i == dim else rng.randint(min(1, s), s)
                 for i, s in enumerate(x))


def _like_index(rng, specs, attrs):
    return tuple(_shape(specs[1]))


def _vector_index(rng, specs, attrs):
    return (rng.choice([0, 1, 2, 3, 6]),)


def _index_add_source(rng, specs, attrs):
    x, idx = _shape(specs[0]), _shape(specs[1])
    dim = attrs["dim"] % max(len(x), 1)
    if not x:
        return tuple(idx)
    return tuple(idx[0] if i == dim else s for i, s in enumerate(x))


def _index_put_values(rng, specs, attrs):
    x, idx = _shape(specs[0]), _shape(specs[1])
    full = tuple(idx) + tuple(x[1:])
    return full if rng.random() < 0.7 else full[-1:]


def _masked_fill(rng, first):
    return {"value": rng.choice([0.0, -1.0, 3.5, -1e4])}


def _scatter_reduce(rng, first):
    return {"dim": pick_dim(rng, first), "reduce": rng.choice(["sum", "prod", "mean", "amax", "amin"]),
            "include_self": rng.random() < 0.5}


def _accumulate(rng, first):
    return {"accumulate": rng.random() < 0.5}


def _index(bound, shape, **kw):
    return T("long", shape=shape, fresh=True, fill="index", bound=bound, **kw)


OPS: list[OpDef] = [
    OpDef("torch.gather", "indexing", "torch.gather({0}, {dim}, {1})",
          (T("any+complex", 1, 4), _index((0, "dim"), _gather_index)), {"dim": DIM}, _dim),
    OpDef("torch.take_along_dim", "indexing", "torch.take_along_dim({0}, {1}, dim={dim})",
          (T("any+complex", 1, 4), _index((0, "dim"), _gather_index)), {"dim": DIM}, _dim),
    # Duplicate indices without a reduction leave the winner unspecified.
    OpDef("torch.scatter", "indexing", "torch.scatter({0}, {dim}, {1}, {2})",
          (T("any+complex", 1, 4), _index((0, "dim"), _gather_index),
           T("any+complex", shape=_like_index, same_dtype=True)), {"dim": DIM}, _dim,
          nondeterministic=True),
    OpDef("torch.scatter_add", "indexing", "torch.scatter_add({0}, {dim}, {1}, {2})",
          (T("numeric+complex", 1, 4), _index((0, "dim"), _gather_index),
           T("numeric+complex", shape=_like_index, same_dtype=True)), {"dim": DIM}, _dim),
    OpDef("torch.scatter_reduce", "indexing",
          "torch.scatter_reduce({0}, {dim}, {1}, {2}, reduce={reduce}, include_self={include_self})",
          (T("numeric", 1, 4), _index((0, "dim"), _gather_index),
           T("numeric", shape=_like_index, same_dtype=True)),
          {"dim": DIM, "reduce": Enum("sum", "prod", "mean", "amax", "amin"),
           "include_self": Bool()}, _scatter_reduce),
    OpDef("torch.index_select", "indexing", "torch.index_select({0}, {dim}, {1})",
          (T(plus("any", "complex", "float8"), 1, 4), _index((0, "dim"), _vector_index)), {"dim": DIM}, _dim),
    OpDef("torch.index_add", "indexing", "torch.index_add({0}, {dim}, {1}, {2})",
          (T("numeric+complex", 1, 4), _index((0, "dim"), _vector_index),
           T("numeric+complex", shape=_index_add_source, same_dtype=True)), {"dim": DIM}, _dim),
    OpDef("Tensor.index_put", "indexing", "{0}.index_put(({1},), {2}, accumulate={accumulate})",
          (T("numeric+complex", 1, 4), _index((0, 0), _vector_index),
           T("numeric+complex", shape=_index_put_values, same_dtype=True)),
          {"accumulate": Bool()}, _accumulate, nondeterministic=True),
    OpDef("Tensor.__getitem__.tensor", "indexing", "{0}[{1}]",
          (T("all", 1, 4), _index((0, 0), _vector_index)), target="torch.Tensor.__getitem__"),
    OpDef("torch.masked_fill", "indexing", "torch.masked_fill({0}, {1}, {value})",
          (T("numeric+complex", 0, 4), T("bool", shape=broadcast_partner)), {"value": Float(-1e6, 1e6)},
          _masked_fill),
    OpDef("F.one_hot", "indexing", "torch.nn.functional.one_hot({0}, {num_classes})",
          (_index(("attr", "num_classes"), None, max_rank=3),), {"num_classes": Int(1, 64)},
          lambda rng, s: {"num_classes": rng.randint(1, 8)}, target="torch.nn.functional.one_hot"),
]
