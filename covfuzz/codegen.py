"""Codegen: a test case becomes a standalone Python program that imports only torch.

The program defines
- `make_tensor(...)`: the materializer (covfuzz/materialize.py, copied verbatim);
- the Python helpers the case's ops call (covfuzz/ops/helpers.py, copied verbatim), if any;
- `fn(x0, x1, ...)`: one line per node, the output spec as a comment; Dynamo traces this;
- `make_inputs(device)`: the inputs, drawn from the case's seed, or for inputs with literal
  `values`, `torch.tensor([...], dtype=...)` viewed with the spec's strides (so a reader sees the
  NaN that matters);
- `bind(inputs)`: what is called with which arguments: `fn` itself, or, when some inputs are
  parameters (`PARAMS`), a `Model` holding those as nn.Parameters whose forward calls `fn`;
- `COMPILE_KWARGS`, `INDUCTOR_CONFIG`, `DYNAMO_CONFIG`, `MARK_DYNAMIC`, `BACKWARD`, `NO_GRAD`:
  settings (`NO_GRAD`: a model with parameters and no backward runs as in inference, under
  torch.no_grad(), where Inductor's `freezing` applies);
- a `__main__` block that runs eager and compiled and prints the largest difference; for a
  case whose settings name a metamorphic variant (issue 19), the `VARIANT_*` settings and a
  block that compiles under both and compares the two compiled results (METAMORPHIC_MAIN).
The harness executes exactly this text, so what is fuzzed is what a bug report shows.

Only catalog templates, value names generated here, attribute literals that passed the
catalog's domain checks, and input values re-checked here (`literal_values_problem`) and spelled
by `literal` reach the program text: nothing from the test case is pasted as code.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import math

import torch

from covfuzz import __version__, config_space, materialize, ops
from covfuzz.errors import TestCaseFormatError
from covfuzz.ops import helpers
from covfuzz.ir import (Graph, Node, TensorSpec, TestCase, contiguous_stride, literal_values_problem,
                        metamorphic_case, numel, storage_numel)
from covfuzz.serialize import SCHEMA_VERSION, case_id

SEED_STRIDE = 1_000_003  # input i of a case with seed s draws from seed s * SEED_STRIDE + i


def value_name(graph: Graph, value_id: int) -> str:
    return f"x{value_id}" if value_id < len(graph.inputs) else f"v{value_id}"


def node_expr(graph: Graph, node: Node, check: bool = False) -> str:
    op = ops.get_op(node.op)
    return op.render([value_name(graph, a) for a in node.args], node.attrs, check)


def input_seed(case: TestCase, index: int) -> int:
    return (case.seed * SEED_STRIDE + index) % (1 << 63)


def index_bound(graph: Graph, input_index: int) -> int:
    """Upper bound (exclusive) for an index input: the smallest size it indexes into."""
    bounds = []
    for node in graph.nodes:
        op = ops.get_op(node.op)
        for position, arg in enumerate(node.args):
            bound = op.args[position].bound if position < len(op.args) else None
            if arg != input_index or bound is None:
                continue
            source, dim_ref = bound
            if source == "attr":
                bounds.append(int(node.attrs[dim_ref]))
                continue
            spec = graph.spec_of(node.args[source])
            if not isinstance(spec, TensorSpec):
                continue
            if spec.rank == 0:
                bounds.append(1)
                continue
            dim = node.attrs[dim_ref] if isinstance(dim_ref, str) else dim_ref
            bounds.append(spec.shape[dim % spec.rank])
    return min(bounds) if bounds else 1


def literal(value) -> str:
    """Python source for one validated input value: exact types only, floats by their exact
    shortest repr, non-finite ones spelled `float('nan')` / `float('inf')` / `float('-inf')`;
    complex numbers as `complex(real, imag)` of two such floats."""
    if type(value) is bool or type(value) is int:
        return repr(value)
    if type(value) is complex:
        return f"complex({literal(value.real)}, {literal(value.imag)})"
    if type(value) is float:
        if math.isnan(value):
            return "float('nan')"
        if math.isinf(value):
            return "float('inf')" if value > 0 else "float('-inf')"
        return repr(value)  # shortest round-tripping form; -0.0 keeps its sign
    raise TestCaseFormatError(f"not an input value literal: {type(value).__name__}")


VALUES_PER_LINE = 8


def literal_tensor_expr(spec: TensorSpec, values: tuple, device_expr: str = "device",
                        indent: str = "        ") -> str:
    """`torch.tensor([...], dtype=...)` on the CPU, moved to the device and viewed strided, as
    make_tensor builds a seeded input (so both paths give the same layout and leaf-ness)."""
    problem = literal_values_problem(spec, values)
    if problem:  # a case built in-process never went through the decoder: check here too
        raise TestCaseFormatError(f"input values: {problem}")
    items = [literal(v) for v in values]
    if len(items) <= VALUES_PER_LINE:
        body = ", ".join(items)
    else:
        rows = [", ".join(items[i:i + VALUES_PER_LINE]) for i in range(0, len(items), VALUES_PER_LINE)]
        body = "\n" + ",\n".join(indent + "    " + row for row in rows) + ",\n" + indent
    expr = (f"torch.tensor([{body}], dtype=torch.{spec.dtype}).to({device_expr})"
            f".as_strided({spec.shape!r}, {spec.stride!r}, {spec.offset})")
    if spec.requires_grad:
        expr += ".detach().requires_grad_(True)"
    return expr


def build_input(case: TestCase, index: int, device: str = "cpu", high: int | None = None):
    """Input `index` as the program's `make_inputs(device)` builds it (same values, bit for bit:
    tests compare the two): a scalar, a literal tensor, or a tensor drawn from the seed
    (`high`: the index bound, default `index_bound` of the whole graph)."""
    inp = case.graph.inputs[index]
    spec = inp.spec
    if not isinstance(spec, TensorSpec):
        return inp.value
    dtype = getattr(torch, spec.dtype)
    if inp.values is not None:
        problem = literal_values_problem(spec, inp.values)
        if problem:
            raise TestCaseFormatError(f"input values: {problem}")
        tensor = torch.tensor(list(inp.values), dtype=dtype).to(device).as_strided(
            spec.shape, spec.stride, spec.offset)
        return tensor.detach().requires_grad_(True) if spec.requires_grad else tensor
    if high is None:
        high = index_bound(case.graph, index) if inp.fill == "index" else 1
    return materialize.make_tensor(spec.shape, spec.stride, spec.offset, dtype, inp.fill,
                                   input_seed(case, index), device, spec.requires_grad, high)


def input_call(case: TestCase, index: int, device_expr: str = "device") -> str:
    """The Python expression that builds input `index` (a tensor or a scalar literal)."""
    inp = case.graph.inputs[index]
    spec = inp.spec
    if not isinstance(spec, TensorSpec):
        return repr(inp.value)
    if inp.values is not None:
        return literal_tensor_expr(spec, inp.values, device_expr)
    extra = ""
    if spec.requires_grad:
        extra += ", requires_grad=True"
    if inp.fill == "index":
        extra += f", high={index_bound(case.graph, index)}"
    return (f"make_tensor({spec.shape!r}, {spec.stride!r}, {spec.offset}, torch.{spec.dtype}, "
            f"{inp.fill!r}, {input_seed(case, index)}, {device_expr}{extra})")


_MODULE_CHAIN = re.compile(r"\btorch(?:\.[A-Za-z_]\w*)+")
_IS_MODULE: dict[str, bool] = {}


def _is_module(name: str) -> bool:
    if name not in _IS_MODULE:
        try:
            _IS_MODULE[name] = importlib.util.find_spec(name) is not None
        except (ImportError, AttributeError, ValueError):  # a function's name, not a module
            _IS_MODULE[name] = False
    return _IS_MODULE[name]


def submodule_imports(texts) -> list[str]:
    """`import torch.a.b` lines for the submodules that `torch.a.b.c` references in `texts` (the
    catalog's rendered expressions) need: `import torch` alone does not load every submodule
    (`torch.nn.attention.flex_attention`), and a standalone repro must not rely on whatever
    the worker happened to import."""
    needed = set()
    for text in texts:
        for chain in _MODULE_CHAIN.findall(text):
            parts = chain.split(".")
            for k in range(len(parts), 2, -1):  # the longest prefix that is a module
                prefix = ".".join(parts[:k])
                if _is_module(prefix):
                    needed.add(prefix)
                    break
    return [f"import {name}" for name in sorted(needed)]


def helpers_used(graph: Graph) -> list[str]:
    return sorted({h for node in graph.nodes for h in ops.get_op(node.op).helpers})


def _materializer_source() -> str:
    source = inspect.getsource(materialize)
    body = source.split("import torch\n", 1)[1]
    return body.strip() + "\n"


def param_indices(graph: Graph) -> list[int]:
    return [i for i, inp in enumerate(graph.inputs) if inp.param]


def no_grad(case: TestCase) -> bool:
    """Whether the forward runs under torch.no_grad(): a model's inference, not its training."""
    return bool(param_indices(case.graph)) and not case.settings.backward


def _bind_lines(graph: Graph) -> list[str]:
    """`bind(args)`, and the `Model` class when some inputs are parameters."""
    names = [value_name(graph, i) for i in range(len(graph.inputs))]
    params = param_indices(graph)
    if not params:
        return ["def bind(args):",
                '    """(callable, its arguments, the tensors whose .grad backward fills)."""',
                "    return fn, list(args), list(args)"]
    plain = [names[i] for i in range(len(names)) if i not in params]
    lines = ["class Model(torch.nn.Module):",
             '    """fn with the inputs in PARAMS held as this module\'s parameters (weights)."""',
             "",
             f"    def __init__(self, {', '.join(names[i] for i in params)}):",
             "        super().__init__()"]
    lines += [f"        self.{names[i]} = torch.nn.Parameter({names[i]}, "
              f"requires_grad={names[i]}.requires_grad)" for i in params]
    call = ", ".join(f"self.{n}" if i in params else n for i, n in enumerate(names))
    lines += ["", f"    def forward(self, {', '.join(plain)}):", f"        return fn({call})", "", "",
              "def bind(args):",
              '    """(callable, its arguments, the tensors whose .grad backward fills)."""',
              f"    model = Model({', '.join(f'args[{i}]' for i in params)})",
              f"    plain = [{', '.join(f'args[{i}]' for i in range(len(names)) if i not in params)}]",
              f"    leaves = [{', '.join(f'model.{n}' if i in params else f'args[{i}]' for i, n in enumerate(names))}]",
              "    return model, plain, leaves"]
    return lines


def _config_literal(section: str, overrides: dict) -> dict:
    return {k: config_space.torch_value(section, k, v) for k, v in sorted(overrides.items())}


def _compile_kwargs(s) -> dict:
    kwargs = {"backend": s.backend, "fullgraph": s.fullgraph, "dynamic": s.dynamic}
    if s.mode is not None:
        kwargs["mode"] = s.mode
    return kwargs


def _settings_lines(case: TestCase) -> list[str]:
    s = case.settings
    kwargs = _compile_kwargs(s)
    return [
        f"COMPILE_KWARGS = {kwargs!r}",
        f"INDUCTOR_CONFIG = {_config_literal('inductor_config', s.inductor_config)!r}",
        f"DYNAMO_CONFIG = {_config_literal('dynamo_config', s.dynamo_config)!r}",
        f"MARK_DYNAMIC = {list(s.mark_dynamic)!r}  # (input index, dim)",
        f"BACKWARD = {s.backward!r}",
        f"PARAMS = {param_indices(case.graph)!r}  # inputs held as Model parameters",
        f"NO_GRAD = {no_grad(case)!r}  # forward under torch.no_grad() (a model's inference)",
        f"DEVICE = {s.device!r}",
    ]


MAIN = r'''
def compile_fn(target):
    """torch.compile(target) with this case's settings (configs are patched around each call)."""
    import torch._dynamo.config
    import torch._inductor.config
    compiled = torch.compile(target, **COMPILE_KWARGS)

    def run(*args):
        with torch._inductor.config.patch(INDUCTOR_CONFIG), torch._dynamo.config.patch(DYNAMO_CONFIG), \
                torch.set_grad_enabled(not NO_GRAD):
            return compiled(*args)
    return run


def mark_dynamic(args):
    for index, dim in MARK_DYNAMIC:
        torch._dynamo.mark_dynamic(args[index], dim)
    return args


def float64_inputs(args):
    """The reference inputs: the same values on the CPU, floating point upcast to float64."""
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu()
            a = a.double() if a.is_floating_point() else a.cdouble() if a.is_complex() else a
        out.append(a)
    return out


def rmse(a, b, mask):
    return ((a - b)[mask] ** 2).mean().sqrt().item() if mask.any() else 0.0


def divergences(eager, compiled, reference):
    """Like torch._dynamo.utils.same(fp64_ref=...): exact for ints/bools; for floats, a
    difference counts only when compiled is clearly worse than eager against float64."""
    problems = []
    for i, (e, c) in enumerate(zip(eager, compiled)):
        r = reference[i] if reference is not None else None
        if not isinstance(e, torch.Tensor):
            if e != c:
                problems.append(f"output {i}: eager {e!r} != compiled {c!r}")
            continue
        if e.dtype != c.dtype or e.shape != c.shape:
            problems.append(f"output {i}: eager {e.dtype}{list(e.shape)} vs compiled {c.dtype}{list(c.shape)}")
            continue
        e, c, what = e.detach().cpu(), c.detach().cpu(), f"{e.dtype}{list(e.shape)}"
        if e.is_complex():  # judged by parts: a last dim of [real, imaginary], each a float
            e, c = (torch.view_as_real(t.resolve_conj().resolve_neg()) for t in (e, c))
            r = torch.view_as_real(r.detach().cpu().resolve_conj().resolve_neg()) \
                if isinstance(r, torch.Tensor) and r.is_complex() else None
        if not e.is_floating_point():
            if not torch.equal(e, c):
                problems.append(f"output {i}: {int((e != c).sum())} integer elements differ")
            continue
        e64, c64 = e.double(), c.double()
        r64 = r.detach().cpu().double() if isinstance(r, torch.Tensor) and r.shape == e.shape else None
        rtol, atol = {torch.float16: (1e-2, 1e-2), torch.bfloat16: (1.6e-2, 1e-2),
                      torch.float64: (1e-7, 1e-7), torch.float8_e4m3fn: (0.125, 2 ** -9),
                      torch.float8_e5m2: (0.25, 2 ** -16)}.get(e.dtype, (1e-4, 1e-5))
        if torch.allclose(e64, c64, rtol=rtol, atol=atol, equal_nan=True):
            continue
        if r64 is None:  # as covfuzz's oracle: no float64 reference, no verdict
            print(f"output {i}: differs, but no float64 reference to judge it against")
            continue
        finite = e64.isfinite() & c64.isfinite() & r64.isfinite()
        nan_diff = ((e64.isnan() != c64.isnan()) | (e64.isinf() != c64.isinf())) & \
            (r64.isnan() == e64.isnan()) & (r64.isinf() == e64.isinf())
        k = 3.0 if e.element_size() <= 2 or e.numel() <= 10 else 2.0
        worse = rmse(r64, c64, finite) > k * rmse(r64, e64, finite) + atol / 10
        max_err = (e64 - c64).abs()[finite].max().item() if finite.any() else 0.0
        if nan_diff.any() or worse:
            bad = nan_diff if nan_diff.any() else ~torch.isclose(e64, c64, rtol=rtol, atol=atol)
            at = tuple(bad.nonzero()[0].tolist())  # the first differing position
            where = f"{what} {('real', 'imaginary')[at[-1]]} part at {list(at[:-1])}" \
                if what.startswith("torch.complex") else f"{what} at {list(at)}"
            problems.append(f"output {i}: {where}: eager {e64[at].item()}, "
                            f"compiled {c64[at].item()}, float64 reference {r64[at].item()}; "
                            f"max finite |eager - compiled| = {max_err:.4g}, "
                            f"NaN/Inf positions differing: {int(nan_diff.sum())}, "
                            f"RMSE vs float64: compiled {rmse(r64, c64, finite):.4g}, "
                            f"eager {rmse(r64, e64, finite):.4g}")
    return problems


def grads(outputs, leaves):
    """The gradient of the summed float outputs for every leaf that requires grad. A leaf the
    loss does not reach has no gradient in autograd (None) but may get zeros from compiled
    code: None counts as all zeros, so the two are judged alike, as covfuzz's harness does."""
    leaves = [a for a in leaves if isinstance(a, torch.Tensor) and a.requires_grad]
    terms = [o.double().sum() for o in outputs
             if isinstance(o, torch.Tensor) and o.requires_grad and o.is_floating_point()]
    found = torch.autograd.grad(sum(terms), leaves, allow_unused=True) if terms and leaves else []
    found = list(found) + [None] * (len(leaves) - len(found))
    return [g if g is not None else torch.zeros_like(a) for g, a in zip(found, leaves)]


def eager(args):
    """(outputs, grad leaves) of the uncompiled program on inputs `args`."""
    target, call_args, leaves = bind(args)
    with torch.set_grad_enabled(not NO_GRAD):
        return target(*call_args), leaves


if __name__ == "__main__":
    print(f"torch {torch.__version__}, device {DEVICE}, torch.compile({COMPILE_KWARGS})")
    eager_args = make_inputs(DEVICE)
    eager_out, eager_leaves = eager(eager_args)
    compiled_target, compiled_args, compiled_leaves = bind(mark_dynamic(make_inputs(DEVICE)))
    compiled_out = compile_fn(compiled_target)(*compiled_args)  # compile errors surface here
    try:
        reference, _ = eager(float64_inputs(make_inputs("cpu")))
    except Exception as exc:  # some ops have no float64 kernel: judge without a reference
        print(f"(no float64 reference: {type(exc).__name__})")
        reference = None
    problems = divergences(eager_out, compiled_out, reference)
    if BACKWARD:
        eager_grads = grads(eager_out, eager_leaves)  # None gradients come back as zeros
        compiled_grads = grads(compiled_out, compiled_leaves)
        ref_args = [a.detach() if isinstance(a, torch.Tensor) else a for a in float64_inputs(eager_args)]
        for a, orig in zip(ref_args, eager_args):
            if isinstance(a, torch.Tensor) and isinstance(orig, torch.Tensor):
                a.requires_grad_(orig.requires_grad)
        try:
            ref_out, ref_leaves = eager(ref_args)
            ref_grads = grads(ref_out, ref_leaves)
        except Exception:
            ref_grads = None
        problems += ["grad " + p for p in divergences(eager_grads, compiled_grads, ref_grads)]
    for i, (e, c) in enumerate(zip(eager_out, compiled_out)):
        if isinstance(e, torch.Tensor) and e.shape == c.shape and e.numel():
            e64, c64 = (torch.view_as_real(t.detach().cpu().resolve_conj().resolve_neg()).double()
                        if t.is_complex() else t.detach().cpu().double() for t in (e, c))  # by parts
            both = e64.isfinite() & c64.isfinite()
            diff = (e64 - c64).abs()[both].max().item() if both.any() else 0.0
            differ = int((~torch.isclose(e64, c64, rtol=0, atol=0, equal_nan=True)).sum())
            print(f"output {i}: {tuple(e.shape)} {e.dtype}  max |eager - compiled| = {diff:.4g} "
                  f"where both are finite; {differ} of {e.numel()} elements differ")
        else:
            print(f"output {i}: eager {e!r:.60}  compiled {c!r:.60}")
    if problems:
        raise AssertionError("compiled diverges from eager:\n  " + "\n  ".join(problems))
    print("eager and compiled agree")
'''


def program(case: TestCase) -> str:
    """The whole standalone program for `case` (output specs must be filled by propagation)."""
    g = case.graph
    lines = [
        f"# covfuzz test case {case_id(case)} (covfuzz {__version__}, schema {SCHEMA_VERSION})",
        "import torch",
        *submodule_imports(node_expr(g, node) for node in g.nodes),
        "",
        "",
        _materializer_source(),
        "",
    ]
    helper_text = helpers.source_for(helpers_used(g))
    if helper_text:
        lines += [helper_text, ""]
    params = ", ".join(value_name(g, i) for i in range(len(g.inputs)))
    lines.append(f"def fn({params}):")
    base = len(g.inputs)
    for j, node in enumerate(g.nodes):
        spec = node.out.short() if node.out is not None else "?"
        lines.append(f"    {value_name(g, base + j)} = {node_expr(g, node)}  # {spec}")
    outs = ", ".join(value_name(g, v) for v in g.outputs)
    lines.append(f"    return ({outs},)")
    lines += ["", "", 'def make_inputs(device="cpu"):', "    return ["]
    for i, inp in enumerate(g.inputs):
        lines.append(f"        {input_call(case, i)},  # x{i}: {inp.spec.short()}"
                     + (" (a Model parameter)" if inp.param else ""))
    lines += ["    ]", "", ""]
    lines += _bind_lines(g) + ["", ""]
    lines += _settings_lines(case)
    variant = metamorphic_case(case)
    if variant is None:
        lines.append(MAIN)
    else:  # both compiles, compared with each other (issue 19's metamorphic check)
        lines += _variant_lines(case, variant)
        lines.append(MAIN.split(_MAIN_GUARD, 1)[0] + METAMORPHIC_MAIN)
    return "\n".join(lines)


def _variant_lines(case: TestCase, variant: TestCase) -> list[str]:
    """The settings of the case's metamorphic variant (`variant`: the case under them)."""
    s = variant.settings
    return [
        f"METAMORPHIC = {case.settings.metamorphic!r}  # compiled under this variant too: "
        "the two compiled results must agree",
        f"VARIANT_COMPILE_KWARGS = {_compile_kwargs(s)!r}",
        f"VARIANT_INDUCTOR_CONFIG = {_config_literal('inductor_config', s.inductor_config)!r}",
        f"VARIANT_DYNAMO_CONFIG = {_config_literal('dynamo_config', s.dynamo_config)!r}",
        f"VARIANT_MARK_DYNAMIC = {list(s.mark_dynamic)!r}",
        f"SEED = {case.seed % (1 << 32)}  # torch.manual_seed before each call, as covfuzz seeds",
    ]


_MAIN_GUARD = '\nif __name__ == "__main__":'
# The main of a case whose settings name a metamorphic variant (after MAIN's helpers): the case
# compiled with its own settings and with the variant's, each afresh on fresh inputs, and the two
# results compared as covfuzz compares them where eager cannot decide (harness/metamorphic.py):
# integers and bools exactly, floats within the dtype's tolerance and in the same value class.
METAMORPHIC_MAIN = r'''
def compile_variant(target):
    """torch.compile(target) under the metamorphic variant's settings."""
    compiled = torch.compile(target, **VARIANT_COMPILE_KWARGS)

    def run(*args):
        with torch._inductor.config.patch(VARIANT_INDUCTOR_CONFIG), \
                torch._dynamo.config.patch(VARIANT_DYNAMO_CONFIG), torch.set_grad_enabled(not NO_GRAD):
            return compiled(*args)
    return run


def compiled_outputs(compile_with, marks):
    """The outputs of one compiled call on fresh inputs, compiled afresh (Dynamo's cache reset)."""
    torch._dynamo.reset()
    args = make_inputs(DEVICE)
    for index, dim in marks:
        torch._dynamo.mark_dynamic(args[index], dim)
    target, call_args, _ = bind(args)
    torch.manual_seed(SEED)
    return [o.detach().clone() if isinstance(o, torch.Tensor) else o
            for o in compile_with(target)(*call_args)]


def disagreements(default, variant, eager):
    """Where the two compiled results differ: integers and bools exactly, floats beyond the
    dtype's tolerance or in their class (finite, NaN, +inf, -inf); eager shown beside them."""
    problems = []
    for i, (d, v, e) in enumerate(zip(default, variant, eager)):
        if not isinstance(d, torch.Tensor):
            if d != v and not (d != d and v != v):  # NaN equals NaN
                problems.append(f"output {i}: compiled {d!r}, under {METAMORPHIC} {v!r}, eager {e!r}")
            continue
        if not isinstance(v, torch.Tensor) or (d.dtype, d.shape) != (v.dtype, v.shape):
            problems.append(f"output {i}: compiled {d.dtype}{list(d.shape)}, under {METAMORPHIC} {v!r:.80}")
            continue
        d, v = d.detach().cpu(), v.detach().cpu()
        if d.is_complex():  # by parts: a last dim of [real, imaginary]
            d, v = (torch.view_as_real(t.resolve_conj().resolve_neg()) for t in (d, v))
            e = torch.view_as_real(e.detach().cpu().resolve_conj().resolve_neg()) \
                if isinstance(e, torch.Tensor) and e.is_complex() else e
        if d.is_floating_point():
            rtol, atol = {torch.float16: (1e-2, 1e-2), torch.bfloat16: (1.6e-2, 1e-2),
                          torch.float64: (1e-7, 1e-7), torch.float8_e4m3fn: (0.125, 2 ** -9),
                          torch.float8_e5m2: (0.25, 2 ** -16)}.get(d.dtype, (1e-4, 1e-5))
            bad = ~torch.isclose(d.double(), v.double(), rtol=rtol, atol=atol, equal_nan=True)
        else:
            bad = d != v
        if bad.any():
            at = tuple(bad.nonzero()[0].tolist())
            e_at = e.detach().cpu()[at].item() if isinstance(e, torch.Tensor) and e.shape == d.shape else e
            problems.append(f"output {i}: {d.dtype}{list(d.shape)} at {list(at)} ({int(bad.sum())} of "
                            f"{bad.numel()} differ): compiled {d[at].item()}, under {METAMORPHIC} "
                            f"{v[at].item()}, eager {e_at}")
    return problems


if __name__ == "__main__":
    print(f"torch {torch.__version__}, device {DEVICE}: torch.compile({COMPILE_KWARGS}) vs the "
          f"metamorphic variant {METAMORPHIC!r}: torch.compile({VARIANT_COMPILE_KWARGS}), "
          f"inductor config {VARIANT_INDUCTOR_CONFIG}")
    torch.manual_seed(SEED)
    eager_out, _ = eager(make_inputs(DEVICE))
    default = compiled_outputs(compile_fn, MARK_DYNAMIC)
    variant = compiled_outputs(compile_variant, VARIANT_MARK_DYNAMIC)
    problems = disagreements(default, variant, eager_out)
    if problems:
        raise AssertionError(f"compiled under the metamorphic variant {METAMORPHIC!r} differs from "
                             "the default compile:\n  " + "\n  ".join(problems))
    print("the two compiled results agree")
'''


# ----------------------------------------------------------------------------- compact programs

# The check of a compact program, for the outputs and then the gradients (the loop's header,
# written by `compact_program`, zips names with eager, compiled and float64 reference values):
# harness/oracle.py's `compare_tensor` in a few lines, so the script fails exactly when covfuzz
# reports. Integers and bools exactly; floats: a NaN/inf class where compiled differs from eager
# and the reference agrees with eager, or values beyond the dtype's tolerance with
# RMSE(ref, compiled) > k * RMSE(ref, eager) + atol / 10 (torch._dynamo.utils.same with
# fp64_ref); it names the first such position.
COMPACT_TOL = ("TOL = {torch.float16: (1e-2, 1e-2), torch.bfloat16: (1.6e-2, 1e-2),\n"
               "       torch.float32: (1e-4, 1e-5), torch.float64: (1e-7, 1e-7),\n"
               "       torch.float8_e4m3fn: (0.125, 2 ** -9), torch.float8_e5m2: (0.25, 2 ** -16)}")
COMPACT_CHECK = r'''
    e, c, r = (torch.as_tensor(t).detach() for t in (e, c, r))
    parts = e.is_complex() and c.is_complex()  # judged by parts: a last dim of [real, imaginary]
    if parts:
        e, c, r = (torch.view_as_real(t.resolve_conj().resolve_neg()) for t in (e, c, r))
    assert (e.dtype, e.shape) == (c.dtype, c.shape), f"{name}: eager {e.dtype} {list(e.shape)}, compiled {c.dtype} {list(c.shape)}"
    bad = e != c  # integers and bools: exactly
    if e.is_floating_point():  # a NaN/inf where float64 agrees with eager, or clearly worse values
        (rtol, atol), k = TOL.get(e.dtype, (1e-4, 1e-5)), 3 if e.numel() <= 10 or e.element_size() <= 2 else 2
        e, c, r = e.double(), c.double(), r.double()
        kind = [t.isnan() + 2 * t.isposinf() + 3 * t.isneginf() for t in (e, c, r)]
        bad, both = (kind[0] != kind[1]) & (kind[2] == kind[0]), e.isfinite() & c.isfinite()
        far, m = both & ((e - c).abs() > atol + rtol * e.abs()), both & r.isfinite()
        if not bad.any() and far.any() and m.any() and (c - r)[m].pow(2).mean().sqrt() > k * (e - r)[m].pow(2).mean().sqrt() + atol / 10:
            bad = far  # root mean square errors against float64: compiled's more than k times eager's
    if bad.any():
        at, n = tuple(bad.nonzero()[0].tolist()), bad.any(-1) if parts else bad
        where = f"{name}: {('real', 'imaginary')[at[-1]]} part at {list(at[:-1])}" if parts else f"{name} at {list(at)}"
        raise AssertionError(f"{where} ({int(n.sum())} of {n.numel()} differ): eager {e[at].item()}, compiled {c[at].item()}, float64 reference {r[at].item()}")
print("eager and compiled agree")
'''

# What a compact program of a backward case runs: the call, then the gradients harness/execute.py
# compares: of covfuzz.propagate.backward_loss (the float64 sum of every float output that
# requires grad; none: no backward), a gradient autograd leaves None counted as zeros (compiled
# code may hand back zeros).
COMPACT_RUN = r'''
def run(f, args, leaves=None):  # f's outputs, then the gradients of the leaves (the args needing them)
    out, leaves = f(*args), leaves or [a for a in args if torch.is_tensor(a) and a.requires_grad]
    loss = sum(o.double().sum() for o in out if torch.is_tensor(o) and o.requires_grad and o.is_floating_point())
    found = torch.autograd.grad(loss, leaves, allow_unused=True) if torch.is_tensor(loss) else [None] * len(leaves)
    return [*out, *(torch.zeros_like(a) if g is None else g for a, g in zip(leaves, found))]  # None: zeros
'''


ROW_WIDTH = 88  # characters of literal values per row of a compact program


def _rows(items: list[str]) -> list[str]:
    """Comma-separated rows of `items` of at most ROW_WIDTH characters each."""
    rows: list[list[str]] = [[]]
    for item in items:
        if rows[-1] and sum(len(i) + 2 for i in rows[-1]) + len(item) > ROW_WIDTH:
            rows.append([])
        rows[-1].append(item)
    return [", ".join(r) for r in rows]


def _compact_tensor(spec: TensorSpec, values: tuple, indent: str) -> str:
    """A literal tensor as short as it can be written: `torch.tensor(v)` for a 0-d tensor, a
    flat list reshaped for a contiguous one, `as_strided` only when the layout matters."""
    dense = spec.stride == contiguous_stride(spec.shape) and spec.offset == 0 \
        and len(values) == numel(spec.shape)
    if dense and not spec.shape:
        grad = ", requires_grad=True" if spec.requires_grad else ""
        return f"torch.tensor({literal(values[0])}, dtype=torch.{spec.dtype}{grad})"
    items = [literal(v) for v in values]
    if len(items) <= VALUES_PER_LINE and sum(len(i) + 2 for i in items) <= ROW_WIDTH:
        items = ", ".join(items)
    else:  # rows of at most ROW_WIDTH characters: the value that triggers the bug stays visible
        items = f"\n{indent}    " + f",\n{indent}    ".join(_rows(items)) + f",\n{indent}"
    view = (f".as_strided({spec.shape!r}, {spec.stride!r}, {spec.offset})" if not dense
            else f".reshape({spec.shape!r})" if len(spec.shape) > 1 else "")
    grad = ".requires_grad_(True)" if spec.requires_grad else ""
    return f"torch.tensor([{items}], dtype=torch.{spec.dtype}){view}{grad}"


def _compact_tensor_lines(name: str, spec: TensorSpec, values: tuple, indent: str) -> list[str]:
    """The statements that build literal input `name`: one expression, or, when it is shorter
    and the tensor is contiguous, a tensor of its most common value with the other elements
    set one by one at their positions (`x1[2, 1] = float('-inf')`: where the NaN sits shows)."""
    whole = [f"{indent}{name} = {_compact_tensor(spec, values, indent)}"]
    dense = spec.shape and spec.stride == contiguous_stride(spec.shape) and spec.offset == 0 \
        and len(values) == numel(spec.shape)
    if not dense or not values:  # an empty tensor has no common value
        return whole
    items = [literal(v) for v in values]  # by spelling: -0.0 and nan are values of their own
    common = max(dict.fromkeys(items), key=items.count)
    others = [(k, item) for k, item in enumerate(items) if item != common]
    if 2 + len(others) >= len("\n".join(whole).splitlines()):
        return whole
    fill = "torch.zeros" if values[items.index(common)] == 0 and common != "-0.0" else None
    make = (f"torch.zeros({spec.shape!r}, dtype=torch.{spec.dtype})" if fill else
            f"torch.full({spec.shape!r}, {common}, dtype=torch.{spec.dtype})")
    lines = [f"{indent}{name} = {make}"]
    for k, item in others:
        at, rest = [], k
        for size in reversed(spec.shape):
            at.append(rest % size)
            rest //= size
        lines.append(f"{indent}{name}[{', '.join(str(a) for a in reversed(at))}] = {item}")
    if spec.requires_grad:
        lines.append(f"{indent}{name}.requires_grad_(True)")
    return lines


def _seeded_draw(fill: str, dtype: torch.dtype, n: int, gen: str, high: int) -> tuple[list[str], str]:
    """(statements, expression): the storage `materialize.make_tensor` draws for `fill`, as
    int64/float64/bool values before the cast to `dtype`; the same torch calls in the same order
    on generator `gen` (an expression, or `g` set by the statements). The expression takes a
    method suffix (`.to(...)`) as it is: a product comes parenthesized."""
    if dtype == torch.bool:
        return [], f"torch.randint(0, 2, ({n},), generator={gen}).bool()"
    if dtype.is_complex:  # materialize._draw_complex: real parts, then imaginary parts
        part = torch.float32 if dtype == torch.complex64 else torch.float64
        pre_re, real = _seeded_draw(fill, part, n, "g", high)
        pre_im, imag = ([], f"torch.zeros({n}, dtype=torch.float64)") \
            if fill in ("zeros", "ones") else _seeded_draw(fill, part, n, "g", high)
        steps = [f"g = {gen}", *pre_re, f"re = {real}", *pre_im, f"im = {imag}"]
        return [s for s in steps if s != "g = g"], "torch.complex(re, im)"
    if fill in ("zeros", "ones"):
        return [], f"torch.{fill}({n}, dtype=torch.{'float64' if dtype.is_floating_point else 'int64'})"
    pre = [f"g = {gen}"]
    if dtype.is_floating_point:
        if fill == "uniform":
            return [], f"torch.rand({n}, generator={gen}, dtype=torch.float64)"
        if fill == "positive":
            return [], f"(torch.rand({n}, generator={gen}, dtype=torch.float64) * 2 + 0.05)"
        if fill == "nonzero":
            return pre, (f"((torch.rand({n}, generator=g, dtype=torch.float64) + 0.5) * "
                         f"(torch.randint(0, 2, ({n},), generator=g) * 2 - 1))")
        if fill != "edge":
            return [], f"torch.randn({n}, generator={gen}, dtype=torch.float64)"
        first, table = f"torch.randn({n}, generator=g, dtype=torch.float64)", \
            materialize._edge_floats(dtype)
        table_dtype = "float64"
    else:
        signed = dtype.is_signed
        if fill == "index":
            return ([], f"torch.zeros({n}, dtype=torch.int64)") if high <= 0 else \
                ([], f"torch.randint(0, {high}, ({n},), generator={gen})")
        if fill in ("positive", "uniform"):
            return [], f"torch.randint(1, {10 if fill == 'positive' else 100}, ({n},), generator={gen})"
        if fill == "nonzero":
            if not signed:
                return [], f"torch.randint(1, 9, ({n},), generator={gen})"
            return pre, (f"(torch.randint(1, 9, ({n},), generator=g) * "
                         f"(torch.randint(0, 2, ({n},), generator=g) * 2 - 1))")
        first = f"torch.randint({-8 if signed else 0}, {9 if signed else 17}, ({n},), generator=g)"
        if fill != "edge":
            return [], first.replace("generator=g", f"generator={gen}")
        table = materialize._edge_ints(dtype) if signed else materialize._edge_uints(dtype)
        table_dtype = "int64"
    # `edge`: half the elements (where a uniform draw < 0.5) become one of the table's values
    rows = _rows([literal(v) for v in table])
    return (["special = torch.tensor([  # covfuzz's edge values"] + ["    " + r + "," for r in rows[:-1]]
            + [f"    {rows[-1]}], dtype=torch.{table_dtype})"] + pre
            + [f"v, pick = {first}, torch.randint(0, {len(table)}, ({n},), generator=g)"],
            f"torch.where(torch.rand({n}, generator=g) < 0.5, special[pick], v)")


def _seeded_tensor_lines(case: TestCase, index: int, name: str, indent: str) -> list[str]:
    """The statements that build seeded input `index` (too large to spell out) exactly as the
    full program's `make_tensor` does on the CPU: a generator seeded as covfuzz seeds it, the
    same draws in the same order, the same cast and strides (tests compare them bit for bit)."""
    inp = case.graph.inputs[index]
    spec = inp.spec
    dtype = getattr(torch, spec.dtype)
    n = storage_numel(spec.shape, spec.stride, spec.offset)
    high = index_bound(case.graph, index) if inp.fill == "index" else 1
    gen = f"torch.Generator().manual_seed({input_seed(case, index)})"
    pre, expr = _seeded_draw(inp.fill, dtype, n, gen, high)
    if spec.dtype not in ("float64", "int64", "bool"):
        expr += f".to(torch.{spec.dtype})"
    dense = spec.stride == contiguous_stride(spec.shape) and spec.offset == 0 and n == numel(spec.shape)
    if not dense:
        expr += f".as_strided({spec.shape!r}, {spec.stride!r}, {spec.offset})"
    elif len(spec.shape) != 1:
        expr += f".reshape({spec.shape!r})"
    if spec.requires_grad:
        expr += ".requires_grad_(True)"
    return [indent + s for s in pre] + [f"{indent}{name} = {expr}  # covfuzz's draw"]


_DEFINES = re.compile(r"^(?:def|class)\s+(\w+)|^(\w+)\s*=", re.M)


def used_helper_source(helper_text: str, body: str) -> tuple[list[str], str]:
    """(import lines, definitions): the helpers (and standard-library imports) `body` uses, directly or
    through other helpers: a catalog family's helpers come as one text (the three score_mods of
    flex_attention), a repro needs only its own."""
    blocks: list[str] = []  # top-level statements, a decorator joined to what it decorates
    decorated = False
    for line in helper_text.splitlines():
        if line and not line[0].isspace() and not decorated:
            blocks.append(line)
        elif blocks:
            blocks[-1] += "\n" + line
        decorated = line.startswith("@")
    imports = [b.strip() for b in blocks if b.startswith("import ")]
    defs = {}
    for block in blocks:
        match = None if block.startswith("import ") else _DEFINES.search(block)
        if match is not None:
            defs[match.group(1) or match.group(2)] = block.strip("\n")
    kept: set[str] = set()
    text = body
    while True:
        new = [n for n in defs if n not in kept and re.search(rf"\b{n}\b", text)]
        if not new:
            break
        kept.update(new)
        text += "\n" + "\n".join(defs[n] for n in new)
    used_imports = [i for i in imports if re.search(rf"\b{i.split()[1]}\.", text)]
    return used_imports, "\n\n\n".join(defs[n] for n in defs if n in kept)


def compact_program(case: TestCase) -> str | None:
    """A short standalone program for a CPU case (a reduced one): the inputs spelled out as
    literal values, or for an input too large to print drawn exactly as covfuzz draws it (inputs
    no node reads left out); the function; the compile call with only the settings that differ
    from torch's defaults (parameters in a small Model, run under no_grad as in inference, where
    `freezing` applies, unless the case runs backward); for a backward case the gradients of the
    inputs that require grad, with the harness's loss; and one check (COMPACT_CHECK) that names
    the first differing position with eager, compiled and float64 values. None when the case
    needs the full program (a device other than the CPU, literal values that do not fit)."""
    g, s = case.graph, case.settings
    if s.device != "cpu" or metamorphic_case(case) is not None:  # a metamorphic check: full
        return None
    for inp in g.inputs:
        if inp.values is not None and literal_values_problem(inp.spec, inp.values):
            return None
    read = {a for node in g.nodes for a in node.args} | set(g.outputs)
    used = [i for i in range(len(g.inputs)) if i in read]
    params = [i for i in param_indices(g) if i in read]
    names = [value_name(g, i) for i in used]
    # the inputs the harness differentiates (an input no node reads gets zeros in both runs)
    grad = [i for i in used if s.backward and isinstance(g.inputs[i].spec, TensorSpec)
            and g.inputs[i].spec.requires_grad]
    body = [f"def fn({', '.join(names)}):"]
    base = len(g.inputs)
    body += [f"    {value_name(g, base + j)} = {node_expr(g, node)}" for j, node in enumerate(g.nodes)]
    body.append(f"    return ({', '.join(value_name(g, v) for v in g.outputs)},)")
    helper_imports, helper_text = used_helper_source(helpers.source_for(helpers_used(g)),
                                                     "\n".join(body))
    lines = [f"# covfuzz test case {case_id(case)}: eager vs torch.compile on the CPU",
             *helper_imports, "import torch",
             *submodule_imports(node_expr(g, node) for node in g.nodes)]
    if helper_text:
        lines += ["", helper_text]
    lines += [""] + body + [""]
    target = "fn"
    if params:  # the weights a model holds: static to Dynamo, constants to Inductor's freezing
        pnames = [value_name(g, i) for i in params]
        lines += ["class Model(torch.nn.Module):", f"    def __init__(self, {', '.join(pnames)}):",
                  "        super().__init__()"]
        lines += [f"        self.{n} = torch.nn.Parameter({n}, requires_grad={n}.requires_grad)"
                  for n in pnames]
        lines += ["", f"    def forward(self, {', '.join(value_name(g, i) for i in used if i not in params)}):",
                  f"        return fn({', '.join(('self.' + n) if i in params else n for i, n in zip(used, names))})",
                  ""]
        target = "model" if grad else f"Model({', '.join(pnames)})"
    lines.append("def make_args():  # fresh inputs for each run: in-place ops mutate them")
    for i, name in zip(used, names):
        inp = g.inputs[i]
        if not isinstance(inp.spec, TensorSpec):
            lines.append(f"    {name} = {inp.value!r}")
        elif inp.values is not None:
            lines += _compact_tensor_lines(name, inp.spec, inp.values, "    ")
        else:
            lines += _seeded_tensor_lines(case, i, name, "    ")
    lines += [f"    return [{', '.join(names)}]", ""]
    if grad:
        lines += [COMPACT_RUN.strip("\n"), ""]
    kwargs = {}
    if s.backend != "inductor":
        kwargs["backend"] = s.backend
    if s.fullgraph:
        kwargs["fullgraph"] = True
    if s.dynamic is not None:
        kwargs["dynamic"] = s.dynamic
    if s.mode is not None:
        kwargs["mode"] = s.mode
    settings = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    plain = ", ".join(value_name(g, i) for i in used if i not in params)
    unpack = f"[{', '.join(names)}] = make_args()"
    model = [f"model = Model({', '.join(value_name(g, i) for i in params)})"] if params and grad else []
    ind = "    " if params and not grad else ""
    if ind:  # no backward: the harness runs a model as in inference
        lines.append("with torch.no_grad():  # a model's inference, where Inductor's freezing applies")
    marks = [f"{ind}torch._dynamo.mark_dynamic({value_name(g, i)}, {d})"
             for i, d in s.mark_dynamic if i in used]
    if grad:  # run(): the outputs, then the gradients of the inputs that require grad
        leaves = ", [" + ", ".join(f"model.{value_name(g, i)}" if i in params else value_name(g, i)
                                   for i in grad) + "]" if params else ""
        held = bool(params or marks)  # the inputs are named: a model holds some, or marks
        eager = f"run({target}, [{plain}]{leaves})" if held else "run(fn, make_args())"
        lines += [unpack, *model, f"eager = {eager}"] if params else [f"eager = {eager}"]
        lines += [unpack, *model, *marks] if held else []
        call = (f"compiled = run(torch.compile({target}{settings}), [{plain}]{leaves})" if held else
                f"compiled = run(torch.compile(fn{settings}), make_args())")
    elif params or marks:
        lines += [ind + unpack, f"{ind}eager = {target}({plain})", ind + unpack, *marks]
        call = f"compiled = torch.compile({target}{settings})({plain})"
    else:  # the function on fresh inputs, nothing else to hold on to
        lines.append("eager = fn(*make_args())")
        call = f"compiled = torch.compile(fn{settings})(*make_args())"
    patches = []  # only the settings the case needs: reduction made them 1-minimal
    if s.inductor_config:
        patches.append(f"torch._inductor.config.patch({_config_literal('inductor_config', s.inductor_config)!r})")
    if s.dynamo_config:
        patches.append(f"torch._dynamo.config.patch({_config_literal('dynamo_config', s.dynamo_config)!r})")
    lines += [f"{ind}with {', '.join(patches)}:", f"{ind}    {call}"] if patches else [ind + call]
    upcast = ("[a.double() if torch.is_tensor(a) and a.is_floating_point() else "
              "a.cdouble() if torch.is_tensor(a) and a.is_complex() else a for a in make_args()]")
    labels = [f"output {k}" for k in range(len(g.outputs))]
    if grad:  # the float64 copies of the inputs that require grad are the reference's leaves
        lines.append(f"reference = run(fn, {upcast})")
        labels += [f"gradient of {value_name(g, i)}" for i in grad]
    else:
        lines.append(f"reference = fn(*{upcast})")
    lines += [COMPACT_TOL,
              f"for name, e, c, r in zip({labels!r}, eager, compiled, reference):  # judged as covfuzz judges"]
    lines.append(COMPACT_CHECK.strip("\n"))
    return "\n".join(lines) + "\n"
