"""Layout and view ops: reshapes, permutations, slicing, concatenation, memory formats."""

from __future__ import annotations

from covfuzz.ir import TensorSpec
from covfuzz.ops.base import (DIM, Dtype, Enum, Int, Ints, OpDef, T, dtype_class_for, pick_dim,
                              pick_dims, rank_of, same_shape)

SIZES = (1, 2, 3, 4, 5, 7, 8, 16, 17)


def _shape(spec) -> list[int]:
    return list(spec.shape) if isinstance(spec, TensorSpec) else []


def _reshape(rng, first):
    shape = _shape(first)
    roll = rng.random()
    if roll < 0.25 or len(shape) < 2:
        new = [first.numel] if isinstance(first, TensorSpec) else [1]
        if rng.random() < 0.5 and new[0] % 2 == 0 and new[0]:
            new = [2, new[0] // 2]
    elif roll < 0.6:  # merge two adjacent dims
        i = rng.randrange(len(shape) - 1)
        new = shape[:i] + [shape[i] * shape[i + 1]] + shape[i + 2:]
    else:  # split a dim into two factors
        i = rng.randrange(len(shape))
        size = shape[i]
        factors = [f for f in (2, 3, 4, 8) if size and size % f == 0] or [1]
        f = rng.choice(factors)
        new = shape[:i] + [f, size // f] + shape[i + 1:]
    if new and rng.random() < 0.3 and all(new):
        new[rng.randrange(len(new))] = -1
    return {"shape": tuple(new)}


def _permute(rng, first):
    dims = list(range(rank_of(first)))
    rng.shuffle(dims)
    return {"dims": tuple(dims)}


def _transpose(rng, first):
    return {"dim0": pick_dim(rng, first), "dim1": pick_dim(rng, first)}


def _expand(rng, first):
    shape = _shape(first)
    new = [rng.choice([2, 3, 5]) if s == 1 and rng.random() < 0.7 else s for s in shape]
    if rng.random() < 0.3:
        new = [rng.choice([2, 3])] + new
    return {"sizes": tuple(new)}


def _slice(rng, first):
    dim = pick_dim(rng, first, allow_negative=False)
    size = _shape(first)[dim] if rank_of(first) else 1
    start = rng.randint(0, max(size - 1, 0))
    stop = rng.choice([None, rng.randint(start, max(size, start))])
    return {"dim": dim, "start": start, "stop": stop, "step": rng.choice([1, 2, 3])}


def _narrow(rng, first):
    dim = pick_dim(rng, first)
    size = _shape(first)[dim] if rank_of(first) else 1
    start = rng.randint(0, size)
    return {"dim": dim, "start": start, "length": rng.randint(0, size - start)}


def _as_strided(rng, first):
    n = max(first.numel, 1) if isinstance(first, TensorSpec) else 1
    rank = rng.randint(1, 3)
    size = [rng.choice([1, 2, 3, 4]) for _ in range(rank)]
    stride = [rng.choice([0, 1, 2, 3]) for _ in range(rank)]
    span = sum((s - 1) * st for s, st in zip(size, stride))
    while span >= n and any(stride):  # shrink until it fits in the input's elements
        i = max(range(rank), key=lambda k: (size[k] - 1) * stride[k])
        stride[i] = max(stride[i] - 1, 0)
        span = sum((s - 1) * st for s, st in zip(size, stride))
    offset = rng.randint(0, max(n - 1 - span, 0))
    return {"size": tuple(size), "stride": tuple(stride), "offset": offset}


def _squeeze(rng, first):
    ones = [i for i, s in enumerate(_shape(first)) if s == 1]
    return {"dim": rng.choice(ones) if ones else pick_dim(rng, first)}


def _unsqueeze(rng, first):
    return {"dim": rng.randint(-(rank_of(first) + 1), rank_of(first))}


def _flatten(rng, first):
    rank = max(rank_of(first), 1)
    start = rng.randrange(rank)
    return {"start_dim": start, "end_dim": rng.randint(start, rank - 1)}


def _cat(rng, first):
    return {"dim": pick_dim(rng, first)}


def _cat_partner(rng, specs, attrs):
    shape = _shape(specs[0])
    if shape:
        shape[attrs["dim"]] = rng.choice([0, 1, 2, 3, 5])
    return tuple(shape)


def _split(rng, first):
    dim = pick_dim(rng, first)
    size = _shape(first)[dim] if rank_of(first) else 1
    split_size = rng.randint(1, max(size, 1))
    chunks = max(-(-size // split_size), 1)
    return {"split_size": split_size, "dim": dim, "index": rng.randrange(chunks)}


def _chunk(rng, first):
    dim = pick_dim(rng, first)
    chunks = rng.randint(1, 4)
    size = _shape(first)[dim] if rank_of(first) else 1
    per = -(-size // chunks) if size else 1
    actual = max(-(-size // per), 1) if size else 1
    return {"chunks": chunks, "dim": dim, "index": rng.randrange(actual)}


def _flip(rng, first):
    return {"dims": pick_dims(rng, first)}


def _roll(rng, first):
    dims = pick_dims(rng, first)
    return {"shifts": tuple(rng.randint(-5, 5) for _ in dims), "dims": dims}


def _movedim(rng, first):
    return {"source": pick_dim(rng, first), "destination": pick_dim(rng, first)}


def _repeat(rng, first):
    return {"repeats": tuple(rng.choice([1, 1, 2, 3]) for _ in range(max(rank_of(first), 1)))}


def _diagonal(rng, first):
    rank = rank_of(first)
    d1, d2 = rng.sample(range(rank), 2) if rank >= 2 else (0, 1)
    return {"offset": rng.randint(-2, 2), "dim1": d1, "dim2": d2}


def _tri(rng, first):
    return {"diagonal": rng.randint(-2, 2)}


def _select(rng, first):
    dim = pick_dim(rng, first)
    size = _shape(first)[dim] if rank_of(first) else 1
    return {"dim": dim, "index": rng.randint(-size, size - 1) if size else 0}


def _unbind(rng, first):
    dim = pick_dim(rng, first)
    size = _shape(first)[dim] if rank_of(first) else 1
    return {"dim": dim, "index": rng.randrange(max(size, 1))}


def _view_dtype(rng, first):
    # Same element size keeps the shape; a different one needs a contiguous last dim (complex64
    # as float32: the last dim doubles, the real and imaginary parts side by side).
    same = {"float16": "bfloat16", "bfloat16": "int16", "int16": "float16", "float32": "int32",
            "int32": "float32", "float64": "int64", "int64": "float64", "int8": "uint8",
            "uint8": "int8", "bool": "uint8", "complex64": "float32", "complex128": "float64",
            "uint16": "int16", "uint32": "int32", "uint64": "int64", "float8_e4m3fn": "uint8",
            "float8_e5m2": "int8"}
    dtype = getattr(first, "dtype", "float32")
    return {"dtype": same[dtype] if rng.random() < 0.8 else
            rng.choice(["uint8", "int16", "float32", "complex64"])}


def _pairs(rng, specs, attrs) -> tuple:
    """A shape whose last dim holds (real, imaginary) pairs: what view_as_complex reads."""
    return tuple(rng.choice(SIZES) for _ in range(rng.randint(0, 3))) + (2,)


def _unfold(rng, first):
    dim = pick_dim(rng, first)
    size = _shape(first)[dim] if rank_of(first) else 1
    return {"dimension": dim, "size": rng.randint(1, max(size, 1)), "step": rng.randint(1, 3)}


def _memory_format(rng, first):
    return {"format": rng.choice(["channels_last", "contiguous_format"])}


SHAPE = Ints(-1, 1 << 16)
# Views and copies move any dtype's bits as they are: they take every IR dtype ("all"); tril,
# triu and flip (on a dim but the first; rot90 flips) have no wide unsigned or float8 kernel.
SIZES_ATTR = Ints(-1, 1 << 12)

OPS: list[OpDef] = [
    OpDef("Tensor.view", "view", "{0}.view({shape})", (T("all", 0, 4),), {"shape": SHAPE}, _reshape,
          weight=1.5),
    OpDef("torch.reshape", "view", "torch.reshape({0}, {shape})", (T("all", 0, 4),),
          {"shape": SHAPE}, _reshape, weight=1.5),
    OpDef("torch.permute", "view", "torch.permute({0}, {dims})", (T("all", 1, 4),),
          {"dims": Ints(-8, 7)}, _permute, weight=1.5),
    OpDef("torch.transpose", "view", "torch.transpose({0}, {dim0}, {dim1})", (T("all", 1, 4),),
          {"dim0": DIM, "dim1": DIM}, _transpose, weight=1.5),
    OpDef("Tensor.t", "view", "{0}.t()", (T("all", 0, 2),)),
    OpDef("Tensor.expand", "view", "{0}.expand({sizes})", (T("all", 0, 4),), {"sizes": SIZES_ATTR},
          _expand),
    OpDef("Tensor.__getitem__.slice", "view",
          "{0}[(slice(None),) * {dim} + (slice({start}, {stop}, {step}),)]", (T("all", 1, 4),),
          {"dim": Int(0, 7), "start": Int(0, 1 << 16), "stop": Int(0, 1 << 16, optional=True),
           "step": Int(1, 16)}, _slice, target="torch.Tensor.__getitem__", weight=1.5),
    OpDef("torch.narrow", "view", "torch.narrow({0}, {dim}, {start}, {length})", (T("all", 1, 4),),
          {"dim": DIM, "start": Int(0, 1 << 16), "length": Int(0, 1 << 16)}, _narrow),
    OpDef("torch.as_strided", "view", "torch.as_strided({0}, {size}, {stride}, {offset})",
          (T("all", 0, 4),),
          {"size": Ints(0, 1 << 12), "stride": Ints(0, 1 << 12), "offset": Int(0, 1 << 20)},
          _as_strided),
    OpDef("torch.squeeze", "view", "torch.squeeze({0}, {dim})", (T("all", 1, 4),), {"dim": DIM},
          _squeeze),
    OpDef("torch.unsqueeze", "view", "torch.unsqueeze({0}, {dim})", (T("all", 0, 3),),
          {"dim": DIM}, _unsqueeze),
    OpDef("torch.flatten", "view", "torch.flatten({0}, {start_dim}, {end_dim})", (T("all", 1, 4),),
          {"start_dim": DIM, "end_dim": DIM}, _flatten),
    OpDef("torch.cat", "concat", "torch.cat([{0}, {1}], dim={dim})",
          (T("all", 1, 4), T("all", shape=_cat_partner, same_dtype=True)), {"dim": DIM}, _cat),
    OpDef("torch.stack", "concat", "torch.stack([{0}, {1}], dim={dim})",
          (T("all", 0, 3), T("all", shape=same_shape, same_dtype=True)), {"dim": DIM}, _unsqueeze),
    OpDef("torch.split", "view", "torch.split({0}, {split_size}, dim={dim})[{index}]",
          (T("all", 1, 4),), {"split_size": Int(1, 1 << 16), "dim": DIM, "index": Int(0, 1 << 16)},
          _split),
    OpDef("torch.chunk", "view", "torch.chunk({0}, {chunks}, dim={dim})[{index}]",
          (T("all", 1, 4),), {"chunks": Int(1, 64), "dim": DIM, "index": Int(0, 64)}, _chunk),
    OpDef("torch.unbind", "view", "torch.unbind({0}, dim={dim})[{index}]", (T("all", 1, 4),),
          {"dim": DIM, "index": Int(0, 1 << 16)}, _unbind),
    OpDef("torch.flip", "copy", "torch.flip({0}, {dims})", (T("any+complex", 1, 4),), {"dims": Ints(-8, 7)},
          _flip),
    OpDef("torch.roll", "copy", "torch.roll({0}, {shifts}, {dims})", (T("all", 1, 4),),
          {"shifts": Ints(-64, 64), "dims": Ints(-8, 7)}, _roll),
    OpDef("Tensor.contiguous", "copy", "{0}.contiguous()", (T("all", 0, 4),)),
    OpDef("Tensor.contiguous.memory_format", "copy",
          "{0}.contiguous(memory_format={format})", (T("all", 4, 4),),
          {"format": Enum("channels_last", "contiguous_format", torch_name=True)}, _memory_format,
          target="torch.Tensor.contiguous"),
    OpDef("torch.clone", "copy", "torch.clone({0})", (T("all", 0, 4),)),
    OpDef("torch.movedim", "view", "torch.movedim({0}, {source}, {destination})",
          (T("all", 1, 4),), {"source": DIM, "destination": DIM}, _movedim),
    OpDef("Tensor.repeat", "copy", "{0}.repeat({repeats})", (T("all", 1, 3),),
          {"repeats": Ints(0, 8)}, _repeat),
    OpDef("torch.diagonal", "view", "torch.diagonal({0}, {offset}, {dim1}, {dim2})",
          (T("all", 2, 4),), {"offset": Int(-64, 64), "dim1": DIM, "dim2": DIM}, _diagonal),
    OpDef("torch.tril", "copy", "torch.tril({0}, {diagonal})", (T("any+complex", 2, 4),),
          {"diagonal": Int(-64, 64)}, _tri),
    OpDef("torch.triu", "copy", "torch.triu({0}, {diagonal})", (T("any+complex", 2, 4),),
          {"diagonal": Int(-64, 64)}, _tri),
    OpDef("torch.select", "view", "torch.select({0}, {dim}, {index})", (T("all", 1, 4),),
          {"dim": DIM, "index": Int(-(1 << 16), 1 << 16)}, _select),
    OpDef("Tensor.view.dtype", "view", "{0}.view({dtype})", (T("all", 1, 4),), {"dtype": Dtype()},
          _view_dtype, target="torch.Tensor.view"),
    # Views between real and complex: the parts of a complex tensor as a last dim of 2, and back
    # (float32 / float64, that last dim of stride 1).
    OpDef("torch.view_as_real", "view", "torch.view_as_real({0})", (T("complex", 0, 4),)),
    OpDef("torch.view_as_complex", "view", "torch.view_as_complex({0})",
          (T(dtype_class_for(("float32", "float64")), 1, 4, shape=_pairs),)),
    OpDef("torch.imag", "view", "torch.imag({0})", (T("complex", 0, 4),)),
    OpDef("Tensor.unfold", "view", "{0}.unfold({dimension}, {size}, {step})", (T("all", 1, 3),),
          {"dimension": DIM, "size": Int(0, 1 << 16), "step": Int(1, 64)}, _unfold),
    OpDef("torch.broadcast_to", "view", "torch.broadcast_to({0}, {sizes})", (T("all", 0, 4),),
          {"sizes": SIZES_ATTR}, _expand),
    OpDef("torch.rot90", "copy", "torch.rot90({0}, {k}, {dims})", (T("any+complex", 2, 4),),
          {"k": Int(-4, 4), "dims": Ints(-8, 7, max_len=2)},
          lambda rng, s: {"k": rng.randint(-2, 3), "dims": tuple(rng.sample(range(s.rank), 2))}),
    OpDef("torch.tile", "copy", "torch.tile({0}, {repeats})", (T("all", 1, 3),),
          {"repeats": Ints(0, 8)}, _repeat),
    OpDef("torch.repeat_interleave", "copy", "torch.repeat_interleave({0}, {repeats}, dim={dim})",
          (T("all", 1, 3),), {"repeats": Int(0, 8), "dim": DIM},
          lambda rng, s: {"repeats": rng.randint(1, 3), "dim": pick_dim(rng, s)}),
]
