"""torch.nn.functional: linear, convolution, pooling, normalization, activations, attention."""

from __future__ import annotations

from covfuzz.ops.base import (DIM, Bool, Enum, Float, Int, Ints, OpDef, T, pick_dim, same_shape)

F = "torch.nn.functional"
SIZES = (1, 2, 3, 4, 8, 16)


def _shape(spec) -> list[int]:
    return list(getattr(spec, "shape", ()))


FC = "float+complex"  # the ops below that take complex tensors too (checked per op)


def _fn(name, category, call, args, attrs=None, sample=None, **kw):
    return OpDef(f"F.{name}", category, f"{F}.{call}", args, attrs or {}, sample,
                 target=f"torch.nn.functional.{name}", **kw)


# ----------------------------------------------------------------------------- linear / conv


def _linear_weight(rng, specs, attrs):
    x = _shape(specs[0])
    return (rng.choice(SIZES), x[-1] if x else 1)


def _linear_bias(rng, specs, attrs):
    return (_shape(specs[1])[0],)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0] or [1]


def _conv_attrs(rng, first):
    channels = _shape(first)[1] if len(_shape(first)) > 1 else 1
    return {"stride": rng.choice([1, 1, 2]), "padding": rng.choice([0, 0, 1, 2]),
            "dilation": rng.choice([1, 1, 2]), "groups": rng.choice(_divisors(max(channels, 1)))}


def _conv_weight(spatial):
    def shape(rng, specs, attrs):
        x = _shape(specs[0])
        channels = x[1] if len(x) > 1 else 1
        g = attrs["groups"]
        out_channels = g * rng.choice([1, 2, 4])
        return (out_channels, max(channels // g, 1)) + (rng.choice([1, 2, 3]),) * spatial
    return shape


def _conv_bias(rng, specs, attrs):
    return (_shape(specs[1])[0],)


def _conv(name, spatial):
    attrs = {"stride": Int(1, 8), "padding": Int(0, 8), "dilation": Int(1, 8), "groups": Int(1, 1024)}
    return _fn(name, "conv",
               f"{name}({{0}}, {{1}}, {{2}}, stride={{stride}}, padding={{padding}}, "
               "dilation={dilation}, groups={groups})",
               (T(FC, spatial + 2, spatial + 2), T(FC, shape=_conv_weight(spatial), same_dtype=True),
                T(FC, shape=_conv_bias, same_dtype=True)),
               attrs, _conv_attrs)


# ----------------------------------------------------------------------------- pooling


def _pool_attrs(rng, first):
    k = rng.choice([1, 2, 3])
    return {"kernel_size": k, "stride": rng.choice([1, 2, k]), "padding": rng.randint(0, k // 2),
            "ceil_mode": rng.random() < 0.3}


def _avg_pool_attrs(rng, first):
    return {**_pool_attrs(rng, first), "count_include_pad": rng.random() < 0.5}


def _adaptive_attrs(rng, first):
    return {"output_size": rng.choice([1, 2, 3, 5])}


_pool = {"kernel_size": Int(1, 16), "stride": Int(1, 16), "padding": Int(0, 8), "ceil_mode": Bool()}

# ----------------------------------------------------------------------------- norms


def _norm_shape_attrs(rng, first):
    shape = _shape(first)
    k = rng.randint(1, max(len(shape), 1)) if shape else 0
    return {"normalized_shape": tuple(shape[len(shape) - k:]), "eps": rng.choice([1e-5, 1e-6, 0.1])}


def _norm_weight(rng, specs, attrs):
    return tuple(attrs["normalized_shape"])


def _group_norm_attrs(rng, first):
    channels = _shape(first)[1] if len(_shape(first)) > 1 else 1
    return {"num_groups": rng.choice(_divisors(max(channels, 1))), "eps": rng.choice([1e-5, 0.1])}


def _channel_vector(rng, specs, attrs):
    x = _shape(specs[0])
    return (x[1] if len(x) > 1 else 1,)


# ----------------------------------------------------------------------------- misc


def _dim_attr(rng, first):
    return {"dim": pick_dim(rng, first)}


def _embedding_indices(rng, specs, attrs):
    return tuple(rng.choice([1, 2, 3, 5]) for _ in range(rng.randint(1, 2)))


def _sdpa_key(rng, specs, attrs):
    q = _shape(specs[0])
    return tuple(q[:-2]) + (rng.choice([1, 3, 4, 8]), q[-1])


def _sdpa_value(rng, specs, attrs):
    k = _shape(specs[1])
    return tuple(k[:-1]) + (rng.choice([k[-1], 4, 8]),)


def _interpolate_attrs(rng, first):
    rank = len(_shape(first))
    modes = {3: ["nearest", "linear", "nearest-exact"],
             4: ["nearest", "bilinear", "bicubic", "nearest-exact"]}.get(rank, ["nearest"])
    return {"scale_factor": rng.choice([0.5, 2.0, 1.5, 3.0]), "mode": rng.choice(modes)}


def _pad_attrs(rng, first):
    rank = len(_shape(first))
    pairs = rng.randint(1, max(min(rank, 3), 1))
    mode = rng.choice(["constant", "constant", "reflect", "replicate", "circular"])
    return {"pad": tuple(rng.randint(-1 if mode == "constant" else 0, 2) for _ in range(2 * pairs)),
            "mode": mode, "value": rng.choice([0.0, 1.0, -2.5]) if mode == "constant" else None}


def _cross_entropy_target(rng, specs, attrs):
    x = _shape(specs[0])
    return (x[0],) + tuple(x[2:]) if len(x) >= 2 else ()


def _reduction(rng, first):
    return {"reduction": rng.choice(["mean", "sum", "none"])}


def _act(name, attrs=None, sample=None, call=None):
    keys = ", ".join(f"{k}={{{k}}}" for k in (attrs or {}))
    dtypes = "float+complex" if name in COMPLEX_ACTIVATIONS else "float"
    return _fn(name, "activation", call or f"{name}({{0}}{', ' + keys if keys else ''})",
               (T(dtypes, 0, 4),), attrs, sample)


ACTIVATIONS = ["relu", "relu6", "silu", "mish", "selu", "hardswish", "hardsigmoid", "logsigmoid",
               "softsign", "tanhshrink"]
COMPLEX_ACTIVATIONS = {"silu", "softsign", "tanhshrink"}  # the ones that take complex too

OPS: list[OpDef] = (
    [_act(n) for n in ACTIVATIONS]
    + [
        _act("gelu", {"approximate": Enum("none", "tanh")},
             lambda rng, s: {"approximate": rng.choice(["none", "tanh"])}),
        _act("elu", {"alpha": Float(-10, 10)}, lambda rng, s: {"alpha": rng.choice([1.0, 0.5])}),
        _act("celu", {"alpha": Float(0.01, 10)}, lambda rng, s: {"alpha": rng.choice([1.0, 2.0])}),
        _act("leaky_relu", {"negative_slope": Float(-10, 10)},
             lambda rng, s: {"negative_slope": rng.choice([0.01, 0.2, -0.5])}),
        _act("hardtanh", {"min_val": Float(-10, 0), "max_val": Float(0, 10)},
             lambda rng, s: {"min_val": rng.choice([-1.0, -2.0]), "max_val": rng.choice([1.0, 6.0])}),
        _act("softplus", {"beta": Float(0.1, 10), "threshold": Float(0.1, 40)},
             lambda rng, s: {"beta": rng.choice([1.0, 2.0]), "threshold": rng.choice([20.0, 1.0])}),
        _act("hardshrink", {"lambd": Float(0, 10)}, lambda rng, s: {"lambd": rng.choice([0.5, 1.0])}),
        _act("softshrink", {"lambd": Float(0, 10)}, lambda rng, s: {"lambd": rng.choice([0.5, 1.0])}),
        _act("threshold", {"threshold": Float(-10, 10), "value": Float(-10, 10)},
             lambda rng, s: {"threshold": rng.choice([0.0, 0.5]), "value": rng.choice([0.0, -1.0])}),
        _fn("glu", "activation", "glu({0}, dim={dim})", (T("float", 1, 4),), {"dim": DIM}, _dim_attr),
        _fn("softmax", "softmax", "softmax({0}, dim={dim})", (T("float", 1, 4),), {"dim": DIM},
            _dim_attr, weight=1.5),
        _fn("log_softmax", "softmax", "log_softmax({0}, dim={dim})", (T("float", 1, 4),),
            {"dim": DIM}, _dim_attr),
        _fn("softmin", "softmax", "softmin({0}, dim={dim})", (T("float", 1, 4),), {"dim": DIM},
            _dim_attr),
        _fn("normalize", "norm", "normalize({0}, dim={dim})", (T(FC, 1, 4),), {"dim": DIM},
            _dim_attr),
        _fn("dropout", "activation", "dropout({0}, p={p}, training=False)", (T(FC, 0, 4),),
            {"p": Float(0, 1)}, lambda rng, s: {"p": rng.choice([0.1, 0.5])}),
        _fn("linear", "linear", "linear({0}, {1}, {2})",
            (T(FC, 1, 4), T(FC, shape=_linear_weight, same_dtype=True),
             T(FC, shape=_linear_bias, same_dtype=True)), weight=1.5),
        _conv("conv1d", 1),
        _conv("conv2d", 2),
        _fn("max_pool1d", "pool",
            "max_pool1d({0}, {kernel_size}, {stride}, {padding}, ceil_mode={ceil_mode})",
            (T("float", 2, 3),), _pool, _pool_attrs),
        _fn("max_pool2d", "pool",
            "max_pool2d({0}, {kernel_size}, {stride}, {padding}, ceil_mode={ceil_mode})",
            (T("float", 3, 4),), _pool, _pool_attrs),
        _fn("avg_pool1d", "pool",
            "avg_pool1d({0}, {kernel_size}, {stride}, {padding}, ceil_mode={ceil_mode}, "
            "count_include_pad={count_include_pad})",
            (T("float", 2, 3),), {**_pool, "count_include_pad": Bool()}, _avg_pool_attrs),
        _fn("avg_pool2d", "pool",
            "avg_pool2d({0}, {kernel_size}, {stride}, {padding}, ceil_mode={ceil_mode}, "
            "count_include_pad={count_include_pad})",
            (T("float", 3, 4),), {**_pool, "count_include_pad": Bool()}, _avg_pool_attrs),
        _fn("adaptive_avg_pool1d", "pool", "adaptive_avg_pool1d({0}, {output_size})",
            (T("float", 2, 3),), {"output_size": Int(1, 64)}, _adaptive_attrs),
        _fn("adaptive_avg_pool2d", "pool", "adaptive_avg_pool2d({0}, {output_size})",
            (T("float", 3, 4),), {"output_size": Int(1, 64)}, _adaptive_attrs),
        _fn("adaptive_max_pool2d", "pool", "adaptive_max_pool2d({0}, {output_size})",
            (T("float", 3, 4),), {"output_size": Int(1, 64)}, _adaptive_attrs),
        _fn("layer_norm", "norm", "layer_norm({0}, {normalized_shape}, {1}, {2}, eps={eps})",
            (T("float", 1, 4), T("float", shape=_norm_weight, same_dtype=True),
             T("float", shape=_norm_weight, same_dtype=True)),
            {"normalized_shape": Ints(0, 1 << 16), "eps": Float(0, 1)}, _norm_shape_attrs),
        _fn("rms_norm", "norm", "rms_norm({0}, {normalized_shape}, eps={eps})",
            (T(FC, 1, 4),), {"normalized_shape": Ints(0, 1 << 16), "eps": Float(0, 1)},
            _norm_shape_attrs),
        _fn("group_norm", "norm", "group_norm({0}, {num_groups}, eps={eps})",
            (T("float", 2, 4),), {"num_groups": Int(1, 1024), "eps": Float(0, 1)},
            _group_norm_attrs),
        _fn("batch_norm", "norm",
            "batch_norm({0}, {1}, {2}, training=False, eps={eps})",
            (T("float", 2, 4), T("float", shape=_channel_vector, same_dtype=True),
             T("float", shape=_channel_vector, fresh=True, fill="positive", same_dtype=True)),
            {"eps": Float(0, 1)}, lambda rng, s: {"eps": rng.choice([1e-5, 0.1])}),
        _fn("embedding", "indexing", "embedding({1}, {0})",
            (T(FC, 2, 2), T("long", shape=_embedding_indices, fresh=True, fill="index",
                                 bound=(0, 0)))),
        _fn("scaled_dot_product_attention", "attention",
            "scaled_dot_product_attention({0}, {1}, {2}, is_causal={is_causal})",
            (T("float", 3, 4), T("float", shape=_sdpa_key, same_dtype=True),
             T("float", shape=_sdpa_value, same_dtype=True)),
            {"is_causal": Bool()}, lambda rng, s: {"is_causal": rng.random() < 0.4}),
        _fn("interpolate", "resize", "interpolate({0}, scale_factor={scale_factor}, mode={mode})",
            (T("float", 3, 4),),
            {"scale_factor": Float(0.1, 8),
             "mode": Enum("nearest", "linear", "bilinear", "bicubic", "nearest-exact")},
            _interpolate_attrs),
        _fn("pad", "pad", "pad({0}, {pad}, mode={mode}, value={value})", (T("float", 1, 4),),
            {"pad": Ints(-64, 64), "mode": Enum("constant", "reflect", "replicate", "circular"),
             "value": Float(-1e4, 1e4, optional=True)}, _pad_attrs),
        _fn("mse_loss", "loss", "mse_loss({0}, {1}, reduction={reduction})",
            (T("float", 0, 4), T("float", shape=same_shape, same_dtype=True)),
            {"reduction": Enum("mean", "sum", "none")}, _reduction),
        _fn("smooth_l1_loss", "loss", "smooth_l1_loss({0}, {1}, reduction={reduction})",
            (T("float", 0, 4), T("float", shape=same_shape, same_dtype=True)),
            {"reduction": Enum("mean", "sum", "none")}, _reduction),
        _fn("binary_cross_entropy_with_logits", "loss",
            "binary_cross_entropy_with_logits({0}, {1}, reduction={reduction})",
            (T("float", 0, 4), T("float", shape=same_shape, fresh=True, fill="uniform",
                                 same_dtype=True)),
            {"reduction": Enum("mean", "sum", "none")}, _reduction),
        _fn("cross_entropy", "loss", "cross_entropy({0}, {1}, reduction={reduction})",
            (T("float", 2, 4), T("long", shape=_cross_entropy_target, fresh=True, fill="index",
                                 bound=(0, 1))),
            {"reduction": Enum("mean", "sum", "none")}, _reduction),
        _fn("cosine_similarity", "norm", "cosine_similarity({0}, {1}, dim={dim})",
            (T("float", 1, 4), T("float", shape=same_shape, same_dtype=True)), {"dim": DIM},
            _dim_attr),
    ]
)
