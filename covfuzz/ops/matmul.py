"""The matmul family: mm, bmm, addmm, matmul, baddbmm, einsum, dot products."""

from __future__ import annotations

from covfuzz.ops.base import Enum, Float, OpDef, T

SIZES = (1, 2, 3, 4, 5, 8, 16, 17, 32)


def _dims(spec) -> list[int]:
    return list(getattr(spec, "shape", ()))


def _right_of(rng, specs, attrs):
    """[.., k] @ [k, n]: keeps batch dims of argument 0 for bmm/matmul."""
    shape = _dims(specs[0])
    k = shape[-1] if shape else 1
    return tuple(shape[:-2]) + (k, rng.choice(SIZES)) if len(shape) >= 2 else (k, rng.choice(SIZES))


def _addmm_left(rng, specs, attrs):
    """addmm(bias, a, b): a is [m, k] with m from the bias' rows (or free)."""
    shape = _dims(specs[0])
    m = shape[0] if len(shape) == 2 else rng.choice(SIZES)
    return (m, rng.choice(SIZES))


def _addmm_right(rng, specs, attrs):
    bias, left = _dims(specs[0]), _dims(specs[1])
    n = bias[-1] if bias else rng.choice(SIZES)
    return (left[-1] if left else 1, n)


def _baddbmm_left(rng, specs, attrs):
    shape = _dims(specs[0])
    if len(shape) == 3:
        return (shape[0], shape[1], rng.choice(SIZES))
    return (2, rng.choice(SIZES), rng.choice(SIZES))


def _baddbmm_right(rng, specs, attrs):
    bias, left = _dims(specs[0]), _dims(specs[1])
    n = bias[-1] if len(bias) == 3 else rng.choice(SIZES)
    return (left[0], left[-1], n)


def _same_k_vector(rng, specs, attrs):
    shape = _dims(specs[0])
    return (shape[-1],) if shape else (1,)


def _outer_partner(rng, specs, attrs):
    return (rng.choice(SIZES),)


def _scale(rng, first):
    return {"beta": rng.choice([1.0, 0.5, 0.0]), "alpha": rng.choice([1.0, 2.0, -1.0])}


# einsum equations with the operand shapes they need; argument 1 is shaped from argument 0.
EINSUM = {
    "ij,jk->ik": 2, "bij,bjk->bik": 3, "ij,ij->i": 2, "ij,kj->ik": 2, "bhqd,bhkd->bhqk": 4,
    "i,j->ij": 1, "ijk,ikl->ijl": 3,
}


def _einsum_partner(rng, specs, attrs):
    a = _dims(specs[0])
    eq = attrs["equation"]
    lhs = eq.split("->")[0].split(",")
    letters = dict(zip(lhs[0], a))
    return tuple(letters.get(c, rng.choice(SIZES)) for c in lhs[1])


def _einsum_attrs(rng, first):
    rank = getattr(first, "rank", 0)
    fitting = [eq for eq, r in EINSUM.items() if r == rank and "," in eq] or ["ij,jk->ik"]
    return {"equation": rng.choice(fitting)}


OPS: list[OpDef] = [
    OpDef("torch.mm", "matmul", "torch.mm({0}, {1})",
          (T("float+complex", 2, 2), T("float+complex", shape=_right_of, same_dtype=True)), weight=1.5),
    OpDef("torch.bmm", "matmul", "torch.bmm({0}, {1})",
          (T("float+complex", 3, 3), T("float+complex", shape=_right_of, same_dtype=True))),
    OpDef("torch.matmul", "matmul", "torch.matmul({0}, {1})",
          (T("float+complex", 1, 4), T("float+complex", shape=_right_of, same_dtype=True)), weight=1.5),
    OpDef("torch.addmm", "matmul", "torch.addmm({0}, {1}, {2}, beta={beta}, alpha={alpha})",
          (T("float+complex", 1, 2), T("float+complex", shape=_addmm_left, same_dtype=True),
           T("float+complex", shape=_addmm_right, same_dtype=True)),
          {"beta": Float(-10, 10), "alpha": Float(-10, 10)}, _scale),
    OpDef("torch.baddbmm", "matmul", "torch.baddbmm({0}, {1}, {2}, beta={beta}, alpha={alpha})",
          (T("float+complex", 3, 3), T("float+complex", shape=_baddbmm_left, same_dtype=True),
           T("float+complex", shape=_baddbmm_right, same_dtype=True)),
          {"beta": Float(-10, 10), "alpha": Float(-10, 10)}, _scale),
    OpDef("torch.einsum", "matmul", "torch.einsum({equation}, {0}, {1})",
          (T("float+complex", 1, 4), T("float+complex", shape=_einsum_partner, same_dtype=True)),
          {"equation": Enum(*EINSUM)},
          _einsum_attrs),
    OpDef("torch.einsum.unary", "matmul", "torch.einsum({equation}, {0})",
          (T("float+complex", 2, 2),), {"equation": Enum("ij->ji", "ij->i", "ii->i", "ij->")},
          lambda rng, s: {"equation": rng.choice(["ij->ji", "ij->i", "ij->"])},
          target="torch.einsum"),
    OpDef("torch.mv", "matmul", "torch.mv({0}, {1})",
          (T("float+complex", 2, 2), T("float+complex", shape=_same_k_vector, same_dtype=True))),
    OpDef("torch.dot", "matmul", "torch.dot({0}, {1})",
          (T("float+complex", 1, 1), T("float+complex", shape=_same_k_vector, same_dtype=True))),
    OpDef("torch.outer", "matmul", "torch.outer({0}, {1})",
          (T("float+complex", 1, 1), T("float+complex", shape=_outer_partner, same_dtype=True))),
]
