"""Higher-order ops and torch.func transforms: control flow, checkpointing, vmap, grad, scans,
flex attention, nested compile regions. Their bodies are lambdas over a fixed set of tensor
methods (a `Name` attribute), so Dynamo must speculate a subgraph for each body.
"""

from __future__ import annotations

from covfuzz.ops.base import Int, Name, OpDef, T, pick_dim, same_shape

try:  # a submodule: imported so that the catalog's availability check can see it
    import torch.nn.attention.flex_attention  # noqa: F401
except ImportError:
    pass

# Unary float methods a body may apply (every one is also a `torch.<name>` function).
METHODS = ("sin", "cos", "tanh", "sigmoid", "exp", "neg", "abs", "relu", "square")
COMBINE = ("add", "mul", "maximum", "minimum")
SCORE_MODS = ("score_scale", "score_causal", "score_relative")

FLOAT = T("float", 0, 4)
FLOAT_R1 = T("float", 1, 4)
QKV = T("float32_or_less", 4, 4)


def sample_two_methods(rng, first):
    return {"f": rng.choice(METHODS), "g": rng.choice(METHODS)}


def sample_method(rng, first):
    return {"f": rng.choice(METHODS)}


def sample_method_dim(rng, first):
    return {"f": rng.choice(METHODS), "dim": pick_dim(rng, first)}


def _cond_shape(rng, first):
    return {**sample_two_methods(rng, first), "k": rng.choice([0, 1, 4, 8, 16])}


def _while(rng, first):
    return {"f": rng.choice(METHODS), "n": rng.randint(0, 4)}


def _scan(rng, first):
    return {"c": rng.choice(COMBINE), "dim": pick_dim(rng, first)}


def _score(rng, first):
    return {"mod": rng.choice(SCORE_MODS)}


M = Name(*METHODS)
DIM = Int(-8, 7)

OPS: list[OpDef] = [
    OpDef("hop.cond", "hop",
          "torch.cond({0}.sum() > 0, lambda t: t.{f}(), lambda t: t.{g}(), ({0},))",
          (FLOAT,), {"f": M, "g": M}, sample_two_methods, target="torch.cond",
          check_template="{0}.{f}() + {0}.{g}()"),
    OpDef("hop.cond_shape", "hop",
          "torch.cond({0}.numel() > {k}, lambda t: t.{f}(), lambda t: t.{g}() * 2, ({0},))",
          (FLOAT,), {"f": M, "g": M, "k": Int(0, 1 << 16)}, _cond_shape, target="torch.cond",
          check_template="{0}.{f}() + {0}.{g}()"),
    OpDef("hop.cond_two", "hop",
          "torch.cond({1}.sum() > 0, lambda a, b: a * b.mean(), lambda a, b: a.{f}() - b.mean(), "
          "({0}, {1}))",
          (FLOAT, T("float", 0, 4)), {"f": M}, sample_method, target="torch.cond",
          check_template="{0}.{f}() * {1}.mean()"),
    OpDef("hop.while_loop", "hop",
          "torch._higher_order_ops.while_loop(lambda i, t: i < {n}, lambda i, t: (i + 1, t.{f}()), "
          "({0}.new_zeros((), dtype=torch.int64), {0}.contiguous()))[1]",
          (FLOAT,), {"f": M, "n": Int(0, 8)}, _while,
          # contiguous: the body's output must match the carried input's strides exactly
          target="torch._higher_order_ops.while_loop", check_template="{0}.contiguous().{f}()"),
    OpDef("hop.checkpoint", "hop",
          "torch.utils.checkpoint.checkpoint(lambda t: t.{f}().{g}(), {0}, use_reentrant=False)",
          (FLOAT,), {"f": M, "g": M}, sample_two_methods,
          target="torch.utils.checkpoint.checkpoint"),
    OpDef("hop.associative_scan", "hop",
          "torch._higher_order_ops.associative_scan(lambda a, b: torch.{c}(a, b), {0}, dim={dim}, "
          "combine_mode='generic')",
          (FLOAT_R1,), {"c": Name(*COMBINE), "dim": DIM}, _scan,
          target="torch._higher_order_ops.associative_scan",
          check_template="torch.{c}({0}, {0}).movedim({dim}, {dim})"),
    OpDef("hop.flex_attention", "hop",
          "torch.nn.attention.flex_attention.flex_attention({0}, {1}, {2}, score_mod={mod})",
          # Compiled flex_attention has no float64 lowering (a documented limit, not a bug).
          (QKV, T("float32_or_less", 4, 4, shape=same_shape, same_dtype=True),
           T("float32_or_less", 4, 4, shape=same_shape, same_dtype=True)),
          {"mod": Name(*SCORE_MODS)}, _score,
          target="torch.nn.attention.flex_attention.flex_attention", helpers=("score_mods",),
          check_template="flex_attention_check({0}, {1}, {2})"),
    OpDef("hop.nested_region", "hop", "region({0})", (FLOAT,),
          target="torch.compiler.nested_compile_region", helpers=("region",)),
    OpDef("func.vmap", "hop", "torch.vmap(lambda t: t.{f}() * t.sum(), in_dims={dim})({0})",
          (FLOAT_R1,), {"f": M, "dim": DIM}, sample_method_dim, target="torch.vmap"),
    OpDef("func.grad", "hop", "torch.func.grad(lambda t: t.{f}().sum())({0})",
          (FLOAT,), {"f": M}, sample_method, target="torch.func.grad"),
    OpDef("func.jvp", "hop", "torch.func.jvp(lambda t: t.{f}(), ({0},), ({1},))[1]",
          (FLOAT, T("float", 0, 4, shape=same_shape, same_dtype=True)), {"f": M}, sample_method,
          target="torch.func.jvp"),
]
