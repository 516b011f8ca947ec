"""Codegen: a test case becomes a standalone Python program that imports only torch.

The program defines
- `make_tensor(...)`: the materializer (covfuzz/materialize.py, copied verbatim);
- `fn(x0, x1, ...)`: one line per node, the output spec as a comment; Dynamo traces this;
- `make_inputs(device)`: the inputs, drawn from the case's seed;
- `COMPILE_KWARGS`, `INDUCTOR_CONFIG`, `DYNAMO_CONFIG`, `MARK_DYNAMIC`, `BACKWARD`: settings;
- a `__main__` block that runs eager and compiled and prints the largest difference.
The harness executes exactly this text, so what is fuzzed is what a bug report shows.

Only catalog templates, value names generated here, and attribute literals that passed the
catalog's domain checks reach the program text: nothing from the test case is pasted as code.
"""

from __future__ import annotations

import inspect

from covfuzz import __version__, materialize, ops
from covfuzz.ir import Graph, Node, TensorSpec, TestCase
from covfuzz.serialize import SCHEMA_VERSION, case_id

SEED_STRIDE = 1_000_003  # input i of a case with seed s draws from seed s * SEED_STRIDE + i


def value_name(graph: Graph, value_id: int) -> str:
    return f"x{value_id}" if value_id < len(graph.inputs) else f"v{value_id}"


def node_expr(graph: Graph, node: Node) -> str:
    op = ops.get_op(node.op)
    return op.render([value_name(graph, a) for a in node.args], node.attrs)


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


def input_call(case: TestCase, index: int, device_expr: str = "device") -> str:
    """The Python expression that builds input `index` (a tensor or a scalar literal)."""
    inp = case.graph.inputs[index]
    spec = inp.spec
    if not isinstance(spec, TensorSpec):
        return repr(inp.value)
    extra = ""
    if spec.requires_grad:
        extra += ", requires_grad=True"
    if inp.fill == "index":
        extra += f", high={index_bound(case.graph, index)}"
    return (f"make_tensor({spec.shape!r}, {spec.stride!r}, {spec.offset}, torch.{spec.dtype}, "
            f"{inp.fill!r}, {input_seed(case, index)}, {device_expr}{extra})")


def _materializer_source() -> str:
    source = inspect.getsource(materialize)
    body = source.split("import torch\n", 1)[1]
    return body.strip() + "\n"


def _settings_lines(case: TestCase) -> list[str]:
    s = case.settings
    kwargs = {"backend": s.backend, "fullgraph": s.fullgraph, "dynamic": s.dynamic}
    if s.mode is not None:
        kwargs["mode"] = s.mode
    return [
        f"COMPILE_KWARGS = {kwargs!r}",
        f"INDUCTOR_CONFIG = {dict(sorted(s.inductor_config.items()))!r}",
        f"DYNAMO_CONFIG = {dict(sorted(s.dynamo_config.items()))!r}",
        f"MARK_DYNAMIC = {list(s.mark_dynamic)!r}  # (input index, dim)",
        f"BACKWARD = {s.backward!r}",
        f"DEVICE = {s.device!r}",
    ]


MAIN = '''
def compile_fn():
    """torch.compile(fn) with this case's settings (configs are patched around each call)."""
    import torch._dynamo.config
    import torch._inductor.config
    compiled = torch.compile(fn, **COMPILE_KWARGS)

    def run(*args):
        with torch._inductor.config.patch(INDUCTOR_CONFIG), torch._dynamo.config.patch(DYNAMO_CONFIG):
            return compiled(*args)
    return run


def mark_dynamic(args):
    for index, dim in MARK_DYNAMIC:
        torch._dynamo.mark_dynamic(args[index], dim)
    return args


if __name__ == "__main__":
    eager_out = fn(*make_inputs(DEVICE))
    compiled_out = compile_fn()(*mark_dynamic(make_inputs(DEVICE)))
    for i, (e, c) in enumerate(zip(eager_out, compiled_out)):
        if isinstance(e, torch.Tensor):
            same = e.shape == c.shape and torch.equal(e.isnan(), c.isnan()) if e.is_floating_point() else e.shape == c.shape
            diff = (e.double() - c.double()).abs().nan_to_num().max().item() if e.numel() and e.shape == c.shape else 0.0
            print(f"output {i}: {tuple(e.shape)} {e.dtype}  max |eager - compiled| = {diff:.3g}  nan/shape agree: {same}")
        else:
            print(f"output {i}: eager {e!r}  compiled {c!r}")
'''


def program(case: TestCase) -> str:
    """The whole standalone program for `case` (output specs must be filled by propagation)."""
    g = case.graph
    lines = [
        f"# covfuzz test case {case_id(case)} (covfuzz {__version__}, schema {SCHEMA_VERSION})",
        "import torch",
        "",
        "",
        _materializer_source(),
        "",
    ]
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
        lines.append(f"        {input_call(case, i)},  # x{i}: {inp.spec.short()}")
    lines += ["    ]", "", ""]
    lines += _settings_lines(case)
    lines.append(MAIN)
    return "\n".join(lines)
