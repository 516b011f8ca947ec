"""Python-level constructs around tensor calls: containers, comprehensions, closures, user
classes and dataclasses, autograd.Function, nn.Module, context managers, loops, try/except,
global side effects and graph breaks. They exercise Dynamo's variable tracking rather than
Inductor's lowering. Helpers are defined in covfuzz/ops/helpers.py and copied into programs.
"""

from __future__ import annotations

from covfuzz.ops.base import Enum, Float, Int, Name, OpDef, T, broadcast_partner
from covfuzz.ops.hops import (COMBINE, METHODS, sample_method, sample_method_dim,
                              sample_two_methods)

FLOAT = T("float", 0, 4)
NUMERIC = T("numeric", 0, 4)
PARTNER = T("numeric", 0, 4, shape=broadcast_partner, same_dtype=True)
FLOAT_PARTNER = T("float", 0, 4, shape=broadcast_partner, same_dtype=True)
METHOD = Enum(*METHODS)  # passed to a helper as a string (getattr inside the helper)


def _method_n(rng, first):
    return {"f": rng.choice(METHODS), "n": rng.randint(1, 4)}


def _n(rng, first):
    return {"n": rng.randint(1, 4)}


def _affine(rng, first):
    return {"scale": rng.choice([0.5, 2.0, -1.0]), "shift": rng.choice([0.0, 1.0, -0.25])}


def _combine(rng, first):
    return {"c": rng.choice(COMBINE)}


def _alpha(rng, first):
    return {"alpha": rng.choice([1, 2, -1])}


def _helper(name, template, args, helpers, attrs=None, sample=None, **kw):
    return OpDef(name, "python", template, args, attrs or {}, sample, target="__builtins__",
                 helpers=helpers, **kw)


OPS: list[OpDef] = [
    _helper("py.listcomp", "sum([{0} * (i + 1) for i in range({n})])", (NUMERIC,), (),
            {"n": Int(1, 8)}, _n),
    _helper("py.map_unbind", "torch.stack(list(map(torch.{f}, {0}.unbind({dim}))), {dim})",
            (T("float", 1, 4),), (), {"f": Name(*METHODS), "dim": Int(-8, 7)}, sample_method_dim),
    _helper("py.dict", "(lambda d: d['a'] * d['b'])({{'a': {0}, 'b': {1}}})",
            (NUMERIC, PARTNER), ()),
    _helper("py.closure", "scaled_by({1}.mean())({0})", (FLOAT, FLOAT_PARTNER), ("scaled_by",)),
    _helper("py.user_class", "Affine({scale}, {shift})({0})", (NUMERIC,), ("Affine",),
            {"scale": Float(-1e3, 1e3), "shift": Float(-1e3, 1e3)}, _affine),
    _helper("py.dataclass", "Pair({0}, {1}).total()", (NUMERIC, PARTNER), ("Pair",)),
    _helper("py.namedtuple", "Point({0}, {1})[1] * Point({0}, {1}).x", (NUMERIC, PARTNER),
            ("Point",)),
    _helper("py.autograd_function", "Square.apply({0})", (FLOAT,), ("Square",)),
    _helper("py.module", "ScaleModule({0}.shape[-1], {0}.device)({0})", (T("float", 1, 4),),
            ("ScaleModule",), graph_break=True),  # nn.Parameter() inside Dynamo breaks
    _helper("py.compiler_disable", "eager_only({0})", (NUMERIC,), ("eager_only",),
            graph_break=True),
    _helper("py.graph_break", "with_graph_break({0}, {f})", (FLOAT,), ("with_graph_break",),
            {"f": METHOD}, sample_method, graph_break=True),
    _helper("py.data_branch", "({0}.{f}() if {0}.sum() > 0 else {0}.{g}())", (FLOAT,), (),
            {"f": Name(*METHODS), "g": Name(*METHODS)}, sample_two_methods, graph_break=True,
            check_template="{0}.{f}() + {0}.{g}()"),
    _helper("py.loop", "apply_n({0}, {f}, {n})", (FLOAT,), ("apply_n",),
            {"f": METHOD, "n": Int(0, 8)}, _method_n),
    _helper("py.try_except", "try_apply({0}, {f})", (FLOAT,), ("try_apply",),
            {"f": METHOD}, sample_method),
    _helper("py.enumerate", "weighted_sum([{0}, {1}, {0}.{f}()])", (FLOAT, FLOAT_PARTNER),
            ("weighted_sum",), {"f": Name(*METHODS)}, sample_method),
    _helper("py.side_effect", "logged({0})", (NUMERIC,), ("logged",)),
    _helper("py.autocast", "autocast_matmul({0})", (T("float", 2, 4),), ("autocast_matmul",),
            # CPU autocast computes matmul in bfloat16 but leaves float64 as it is
            check_template="torch.matmul({0}, {0}.transpose(-1, -2)).to(torch.float64 if "
                           "{0}.dtype == torch.float64 else torch.bfloat16)"),
    _helper("py.no_grad", "no_grad_apply({0}, {f})", (FLOAT,), ("no_grad_apply",),
            {"f": METHOD}, sample_method),
    _helper("py.reduce", "functools.reduce(torch.{c}, [{0}, {1}, {0}])", (NUMERIC, PARTNER),
            ("stdlib",), {"c": Name(*COMBINE)}, _combine),
    _helper("py.partial", "functools.partial(torch.add, alpha={alpha})({0}, {1})",
            (NUMERIC, PARTNER), ("stdlib",), {"alpha": Int(-8, 8)}, _alpha),
]
