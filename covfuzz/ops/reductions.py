"""Reductions and scans: dim/keepdim reductions, cumulative ops, sort/topk values."""

from __future__ import annotations

from covfuzz.ops.base import DIM, Bool, Int, Ints, OpDef, T, pick_dim, pick_dims, plus, rank_of


def _dims_keepdim(rng, first):
    return {"dim": pick_dims(rng, first), "keepdim": rng.random() < 0.4}


def _dim_keepdim(rng, first):
    return {"dim": pick_dim(rng, first), "keepdim": rng.random() < 0.4}


def _dim(rng, first):
    return {"dim": pick_dim(rng, first)}


def _var(rng, first):
    return {"dim": pick_dims(rng, first), "keepdim": rng.random() < 0.4,
            "correction": rng.choice([0, 1])}


def _topk(rng, first):
    dim = pick_dim(rng, first)
    size = first.shape[dim] if rank_of(first) else 1
    return {"k": rng.randint(0, max(size, 0)) if size else 0, "dim": dim,
            "largest": rng.random() < 0.7}


def _sort(rng, first):
    return {"dim": pick_dim(rng, first), "descending": rng.random() < 0.5,
            "stable": rng.random() < 0.5}


def _norm(rng, first):
    return {"ord": rng.choice([2, 1, 3]), "dim": pick_dims(rng, first),
            "keepdim": rng.random() < 0.4}


DIMS = Ints(-8, 7)
_reduce_attrs = {"dim": DIMS, "keepdim": Bool()}
_dim_attrs = {"dim": DIM, "keepdim": Bool()}


def _multi(name, dtypes):
    return OpDef(f"torch.{name}", "reduction", f"torch.{name}({{0}}, dim={{dim}}, keepdim={{keepdim}})",
                 (T(dtypes, 1, 4),), _reduce_attrs, _dims_keepdim)


def _single(name, dtypes, suffix=""):
    return OpDef(f"torch.{name}", "reduction",
                 f"torch.{name}({{0}}, dim={{dim}}, keepdim={{keepdim}}){suffix}",
                 (T(dtypes, 1, 4),), _dim_attrs, _dim_keepdim)


def _scan(name, dtypes, suffix=""):
    return OpDef(f"torch.{name}", "scan", f"torch.{name}({{0}}, dim={{dim}}){suffix}",
                 (T(dtypes, 1, 4),), {"dim": DIM}, _dim)


OPS: list[OpDef] = [
    _multi("sum", plus("any", "complex", "uint")),
    _multi("mean", "float+complex"),
    _multi("amax", "numeric"),
    _multi("amin", "numeric"),
    _multi("logsumexp", "float+complex"),
    _multi("nansum", "float"),
    _multi("any", "all"),
    _multi("all", "all"),
    OpDef("torch.count_nonzero", "reduction", "torch.count_nonzero({0}, dim={dim})",
          (T("all", 1, 4),), {"dim": DIMS}, lambda rng, s: {"dim": pick_dims(rng, s)}),
    _single("prod", plus("numeric", "complex", "uint")),
    _single("argmax", "numeric"),
    _single("argmin", "numeric"),
    _single("max", "numeric", "[0]"),
    _single("min", "numeric", "[0]"),
    _single("median", "numeric", "[0]"),
    _single("nanmedian", "float", "[0]"),
    _single("mode", "numeric", "[0]"),
    _scan("cumsum", plus("numeric", "complex", "uint")),
    _scan("cumprod", "numeric+complex"),
    _scan("cummax", "numeric", "[0]"),
    _scan("cummin", "numeric", "[0]"),
    _scan("logcumsumexp", "float+complex"),
    OpDef("torch.var", "reduction",
          "torch.var({0}, dim={dim}, keepdim={keepdim}, correction={correction})",
          (T("float+complex", 1, 4),), {**_reduce_attrs, "correction": Int(0, 2)}, _var),
    OpDef("torch.std", "reduction",
          "torch.std({0}, dim={dim}, keepdim={keepdim}, correction={correction})",
          (T("float+complex", 1, 4),), {**_reduce_attrs, "correction": Int(0, 2)}, _var),
    OpDef("torch.var_mean", "reduction",
          "torch.var_mean({0}, dim={dim}, keepdim={keepdim}, correction={correction})[1]",
          (T("float+complex", 1, 4),), {**_reduce_attrs, "correction": Int(0, 2)}, _var),
    OpDef("torch.linalg.vector_norm", "reduction",
          "torch.linalg.vector_norm({0}, ord={ord}, dim={dim}, keepdim={keepdim})",
          (T("float+complex", 1, 4),), {"ord": Int(1, 4), "dim": DIMS, "keepdim": Bool()}, _norm),
    OpDef("torch.sort", "sort", "torch.sort({0}, dim={dim}, descending={descending}, stable={stable})[0]",
          (T(plus("numeric", "uint"), 1, 4),), {"dim": DIM, "descending": Bool(), "stable": Bool()}, _sort),
    OpDef("torch.argsort", "sort",
          "torch.argsort({0}, dim={dim}, descending={descending}, stable={stable})",
          (T(plus("numeric", "uint"), 1, 4),), {"dim": DIM, "descending": Bool(), "stable": Bool()}, _sort),
    OpDef("torch.topk", "sort", "torch.topk({0}, {k}, dim={dim}, largest={largest})[0]",
          (T("numeric", 1, 4),), {"k": Int(0, 1 << 16), "dim": DIM, "largest": Bool()}, _topk),
]
