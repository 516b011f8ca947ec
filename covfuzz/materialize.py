"""Input materialization: tensor values drawn from a seed, viewed with the test case's strides.

This module imports only torch, and codegen copies its source verbatim into every generated
program, so a standalone repro builds bit-identical inputs without covfuzz installed.
"""

import torch


def _storage_numel(shape, stride, offset):
    if any(s == 0 for s in shape):
        return offset
    return offset + 1 + sum((s - 1) * st for s, st in zip(shape, stride))


def _edge_floats(dtype):
    info = torch.finfo(dtype)
    tiny = info.tiny
    return [0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan"), info.max, -info.max,
            tiny, tiny / 4, -tiny / 4, info.eps, 1e4, -1e4, 0.5]


def _edge_ints(dtype):
    info = torch.iinfo(dtype)
    return [0, 1, -1, 2, info.min, info.max, info.min + 1, info.max - 1, 7, -8]


def _edge_uints(dtype):
    if dtype == torch.uint8:
        return [0, 1, 2, 127, 128, 254, 255]
    # Drawn as int64, then cast: -2 and -1 wrap to the dtype's max - 1 and max (uint64's max
    # has no int64 value).
    return [0, 1, 2, 255, 256, -2, -1]


def _draw_float(fill, n, gen, dtype):
    if fill == "zeros":
        return torch.zeros(n, dtype=torch.float64)
    if fill == "ones":
        return torch.ones(n, dtype=torch.float64)
    if fill == "uniform":
        return torch.rand(n, generator=gen, dtype=torch.float64)
    if fill == "positive":
        return torch.rand(n, generator=gen, dtype=torch.float64) * 2 + 0.05
    if fill == "nonzero":
        mag = torch.rand(n, generator=gen, dtype=torch.float64) + 0.5
        sign = torch.randint(0, 2, (n,), generator=gen) * 2 - 1
        return mag * sign
    values = torch.randn(n, generator=gen, dtype=torch.float64)
    if fill == "edge":  # half the elements become special values
        table = torch.tensor(_edge_floats(dtype), dtype=torch.float64)
        pick = torch.randint(0, len(table), (n,), generator=gen)
        use = torch.rand(n, generator=gen) < 0.5
        values = torch.where(use, table[pick], values)
    return values


def _draw_complex(fill, n, gen, dtype):
    """Real parts, then imaginary parts, each drawn as floats of the parts' dtype (so either
    part may hold a special value); `ones` is 1 + 0j."""
    part = torch.float32 if dtype == torch.complex64 else torch.float64
    real = _draw_float(fill, n, gen, part)
    if fill in ("zeros", "ones"):
        return torch.complex(real, torch.zeros(n, dtype=torch.float64))
    return torch.complex(real, _draw_float(fill, n, gen, part))


def _draw_int(fill, n, gen, dtype, high):
    signed = dtype.is_signed
    if fill == "zeros":
        return torch.zeros(n, dtype=torch.int64)
    if fill == "ones":
        return torch.ones(n, dtype=torch.int64)
    if fill == "index":
        if high <= 0:
            return torch.zeros(n, dtype=torch.int64)
        return torch.randint(0, high, (n,), generator=gen)
    if fill in ("positive", "uniform"):
        return torch.randint(1, 10 if fill == "positive" else 100, (n,), generator=gen)
    if fill == "nonzero":
        mag = torch.randint(1, 9, (n,), generator=gen)
        if not signed:
            return mag
        return mag * (torch.randint(0, 2, (n,), generator=gen) * 2 - 1)
    values = torch.randint(-8 if signed else 0, 9 if signed else 17, (n,), generator=gen)
    if fill == "edge":
        table = torch.tensor(_edge_ints(dtype) if signed else _edge_uints(dtype),
                             dtype=torch.int64)
        pick = torch.randint(0, len(table), (n,), generator=gen)
        use = torch.rand(n, generator=gen) < 0.5
        values = torch.where(use, table[pick], values)
    return values


def make_tensor(shape, stride, offset, dtype, fill, seed, device="cpu", requires_grad=False, high=1):
    """Draw the storage from `seed` on the CPU, move it to `device`, view it strided."""
    n = _storage_numel(shape, stride, offset)
    gen = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        base = torch.randint(0, 2, (n,), generator=gen).bool()
    elif dtype.is_floating_point:
        base = _draw_float(fill, n, gen, dtype)
    elif dtype.is_complex:
        base = _draw_complex(fill, n, gen, dtype)
    else:
        base = _draw_int(fill, n, gen, dtype, high)
    base = base.to(dtype=dtype).to(device)
    tensor = base.as_strided(shape, stride, offset)
    if requires_grad:
        tensor = tensor.detach().requires_grad_(True)
    return tensor
