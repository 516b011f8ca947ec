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
- a `__main__` block that runs eager and compiled and prints the largest difference.
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
                        numel)
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
    shortest repr, non-finite ones spelled `float('nan')` / `float('inf')` / `float('-inf')`."""
    if type(value) is bool or type(value) is int:
        return repr(value)
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


def _settings_lines(case: TestCase) -> list[str]:
    s = case.settings
    kwargs = {"backend": s.backend, "fullgraph": s.fullgraph, "dynamic": s.dynamic}
    if s.mode is not None:
        kwargs["mode"] = s.mode
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
            a = a.double() if a.is_floating_point() else a
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
        e, c = e.detach().cpu(), c.detach().cpu()
        if not e.is_floating_point():
            if not torch.equal(e, c):
                problems.append(f"output {i}: {int((e != c).sum())} integer elements differ")
            continue
        e64, c64 = e.double(), c.double()
        r64 = r.detach().cpu().double() if isinstance(r, torch.Tensor) and r.shape == e.shape else None
        rtol, atol = {torch.float16: (1e-2, 1e-2), torch.bfloat16: (1.6e-2, 1e-2),
                      torch.float64: (1e-7, 1e-7)}.get(e.dtype, (1e-4, 1e-5))
        if torch.allclose(e64, c64, rtol=rtol, atol=atol, equal_nan=True):
            continue
        if r64 is None:  # as covfuzz's oracle: no float64 reference, no verdict
            print(f"output {i}: differs, but no float64 reference to judge it against")
            continue
        finite = e64.isfinite() & c64.isfinite() & r64.isfinite()
        nan_diff = ((e64.isnan() != c64.isnan()) | (e64.isinf() != c64.isinf())) & \
            (r64.isnan() == e64.isnan()) & (r64.isinf() == e64.isinf())
        k = 3.0 if e.dtype in (torch.float16, torch.bfloat16) or e.numel() <= 10 else 2.0
        worse = rmse(r64, c64, finite) > k * rmse(r64, e64, finite) + atol / 10
        max_err = (e64 - c64).abs()[finite].max().item() if finite.any() else 0.0
        if nan_diff.any() or worse:
            problems.append(f"output {i}: {e.dtype}{list(e.shape)} max |eager - compiled| = {max_err:.4g}, "
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
            diff = (e.detach().cpu().double() - c.detach().cpu().double()).abs().nan_to_num().max().item()
            print(f"output {i}: {tuple(e.shape)} {e.dtype}  max |eager - compiled| = {diff:.4g}")
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
    lines.append(MAIN)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- compact programs

COMPACT_CHECK = r'''
args = [{args}]
eager = fn(*args)
{compile_lines}
reference = fn(*[a.double() if torch.is_tensor(a) and a.is_floating_point() else a for a in args])
for i, (e, c, r) in enumerate(zip(eager, compiled, reference)):
    if torch.is_tensor(e) and e.is_floating_point():
        tol = {{torch.float16: 1e-2, torch.bfloat16: 1.6e-2}}.get(e.dtype, 1e-4)
        bad = ~torch.isclose(e.double(), c.double(), rtol=tol, atol=tol, equal_nan=True)
    else:
        bad = torch.as_tensor(e != c)
    if bad.any():
        at = tuple(int(k) for k in bad.nonzero()[0]) if bad.dim() else ()
        raise AssertionError(f"output {{i}} at {{list(at)}}: eager {{e[at].item()}}, "
                             f"compiled {{c[at].item()}}, float64 reference {{r[at].item()}}")
print("eager and compiled agree")
'''


def _compact_tensor(spec: TensorSpec, values: tuple) -> str:
    """A literal tensor as short as it can be written: `torch.tensor(v)` for a 0-d tensor, a
    flat list reshaped for a contiguous one, `as_strided` only when the layout matters."""
    dense = spec.stride == contiguous_stride(spec.shape) and spec.offset == 0 \
        and len(values) == numel(spec.shape)
    if not dense:
        return literal_tensor_expr(spec, values, '"cpu"', indent="")
    grad = ", requires_grad=True" if spec.requires_grad else ""
    if not spec.shape:
        return f"torch.tensor({literal(values[0])}, dtype=torch.{spec.dtype}{grad})"
    items = [literal(v) for v in values]
    if len(items) <= VALUES_PER_LINE:
        items = ", ".join(items)
    else:  # a few values per line: the one that triggers the bug stays visible
        rows = [", ".join(items[i:i + VALUES_PER_LINE]) for i in range(0, len(items), VALUES_PER_LINE)]
        items = "\n    " + ",\n    ".join(rows) + ",\n"
    shape = f".reshape({spec.shape!r})" if len(spec.shape) > 1 else ""
    if grad:
        return f"torch.tensor([{items}], dtype=torch.{spec.dtype}){shape}.requires_grad_(True)"
    return f"torch.tensor([{items}], dtype=torch.{spec.dtype}){shape}"


def compact_program(case: TestCase) -> str | None:
    """A short standalone program for a small case whose tensor inputs are all literal values
    (a reduced case): the inputs spelled out, the function, the compile call with only the
    settings that differ from torch's defaults, and one check that names the first differing
    position with eager, compiled and float64 values. None when the case needs the full program
    (seeded inputs, parameters, backward, marked dynamic dims, a device other than the CPU)."""
    g, s = case.graph, case.settings
    literal_inputs = all(inp.values is not None or not isinstance(inp.spec, TensorSpec)
                         for inp in g.inputs)
    if (not literal_inputs or param_indices(g) or s.backward or s.mark_dynamic
            or s.device != "cpu" or s.dynamo_config):
        return None
    for inp in g.inputs:
        if inp.values is not None and literal_values_problem(inp.spec, inp.values):
            return None
    lines = [f"# covfuzz test case {case_id(case)}: eager vs torch.compile on the CPU", "import torch",
             *submodule_imports(node_expr(g, node) for node in g.nodes)]
    helper_text = helpers.source_for(helpers_used(g))
    if helper_text:
        lines += [helper_text]
    lines += ["", ""]
    params = ", ".join(value_name(g, i) for i in range(len(g.inputs)))
    lines.append(f"def fn({params}):")
    base = len(g.inputs)
    for j, node in enumerate(g.nodes):
        lines.append(f"    {value_name(g, base + j)} = {node_expr(g, node)}")
    lines.append(f"    return ({', '.join(value_name(g, v) for v in g.outputs)},)")
    lines += ["", ""]
    for i, inp in enumerate(g.inputs):
        expr = repr(inp.value) if not isinstance(inp.spec, TensorSpec) else \
            _compact_tensor(inp.spec, inp.values)
        lines.append(f"{value_name(g, i)} = {expr}")
    kwargs = {"backend": s.backend}
    if s.fullgraph:
        kwargs["fullgraph"] = True
    if s.dynamic is not None:
        kwargs["dynamic"] = s.dynamic
    if s.mode is not None:
        kwargs["mode"] = s.mode
    settings = "".join(f", {k}={v!r}" for k, v in kwargs.items() if (k, v) != ("backend", "inductor"))
    compile_lines = f"compiled = torch.compile(fn{settings})(*args)"
    if s.inductor_config:  # only the settings the case needs: reduction made them 1-minimal
        config = _config_literal("inductor_config", s.inductor_config)
        compile_lines = (f"with torch._inductor.config.patch({config!r}):\n    "
                         + compile_lines)
    lines.append(COMPACT_CHECK.format(args=params, compile_lines=compile_lines).rstrip())
    return "\n".join(lines) + "\n"
