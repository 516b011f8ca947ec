"""Python helpers that the catalog's `python` ops call: user classes, closures, loops, context
managers, graph breaks. They are what Dynamo must trace beyond straight-line tensor calls.

Each helper is kept as source text: codegen copies the text of the helpers a case uses into its
program (a repro stays standalone, importing only torch and the standard library), and
propagation evaluates node expressions against the very objects that text defines. The text is
the package's own, never taken from a test case.
"""

from __future__ import annotations

import torch

IMPORTS = "import collections\nimport dataclasses\nimport functools\n"

SOURCES: dict[str, str] = {
    "stdlib": "",  # only the imports (functools.reduce, functools.partial)
    "Affine": '''
class Affine:
    """A plain user class with state and __call__."""

    def __init__(self, scale, shift):
        self.scale, self.shift = scale, shift

    def __call__(self, t):
        return t * self.scale + self.shift
''',
    "Pair": '''
@dataclasses.dataclass
class Pair:
    first: torch.Tensor
    second: torch.Tensor

    def total(self):
        return self.first + self.second
''',
    "Point": '''
Point = collections.namedtuple("Point", "x y")
''',
    "Square": '''
class Square(torch.autograd.Function):
    """A custom autograd.Function with a hand-written backward."""

    @staticmethod
    def forward(ctx, t):
        ctx.save_for_backward(t)
        return t * t

    @staticmethod
    def backward(ctx, grad):
        (t,) = ctx.saved_tensors
        return 2 * t * grad
''',
    "ScaleModule": '''
class ScaleModule(torch.nn.Module):
    """An nn.Module built inside the compiled function: a parameter and a buffer."""

    def __init__(self, n, device):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.linspace(0.5, 1.5, n, device=device))
        self.register_buffer("bias", torch.linspace(-1.0, 1.0, n, device=device))

    def forward(self, t):
        return t * self.weight.to(t.dtype) + self.bias.to(t.dtype)
''',
    "eager_only": '''
@torch.compiler.disable
def eager_only(t):
    """Dynamo must not trace this: a graph break around the call."""
    return t * 2 + 1
''',
    "with_graph_break": '''
def with_graph_break(t, method):
    t = getattr(t, method)()
    torch._dynamo.graph_break()
    return t * 2
''',
    "apply_n": '''
def apply_n(t, method, n):
    for _ in range(n):
        t = getattr(t, method)()
    return t
''',
    "scaled_by": '''
def scaled_by(s):
    def apply(t):
        return t * s
    return apply
''',
    "try_apply": '''
def try_apply(t, method):
    try:
        return getattr(t, method)()
    except RuntimeError:
        return t
''',
    "weighted_sum": '''
def weighted_sum(parts):
    return sum(i * p for i, p in enumerate(parts, 1))
''',
    "logged": '''
LOG = []


def logged(t):
    """A side effect on a global list that the compiled code must replay."""
    if len(LOG) > 8:
        LOG.clear()
    LOG.append(t.shape)
    return t * 2
''',
    "autocast_matmul": '''
def autocast_matmul(t):
    with torch.autocast(t.device.type, dtype=torch.bfloat16):
        return torch.matmul(t, t.transpose(-1, -2))
''',
    "no_grad_apply": '''
def no_grad_apply(t, method):
    with torch.no_grad():
        u = getattr(t, method)()
    return t + u
''',
    "region": '''
@torch.compiler.nested_compile_region
def region(t):
    """A subgraph Dynamo compiles once and invokes (invoke_subgraph)."""
    return t.sin() * t.cos() + 1
''',
    "on_streams": '''
def on_streams(a, b, n, f, g):
    """f(a) on a side stream, g(b) on a second side stream (n == 3) or on the current one
    (n == 2); the current stream joins the first with wait_stream, the second with an event."""
    if a.device.type != "cuda":
        raise RuntimeError("covfuzz: CUDA stream constructs need tensors on a CUDA device")
    main = torch.cuda.current_stream()
    side = torch.cuda.Stream()
    side.wait_stream(main)  # a and b were made on the current stream
    with torch.cuda.stream(side):
        x = f(a)
    if n == 3:
        other = torch.cuda.Stream()
        other.wait_stream(main)
        with torch.cuda.stream(other):
            y = g(b)
        done = torch.cuda.Event()
        done.record(other)
        main.wait_event(done)
    else:
        y = g(b)
    main.wait_stream(side)
    return x + y


def stream_chain(a, f):
    """f(a) on one side stream and its consumer on another, ordered by an event, joined back
    on the current stream by a second event."""
    if a.device.type != "cuda":
        raise RuntimeError("covfuzz: CUDA stream constructs need tensors on a CUDA device")
    main = torch.cuda.current_stream()
    producer, consumer = torch.cuda.Stream(), torch.cuda.Stream()
    producer.wait_stream(main)
    with torch.cuda.stream(producer):
        x = f(a)
        made = producer.record_event()
    consumer.wait_event(made)
    with torch.cuda.stream(consumer):
        y = x * 2
    done = torch.cuda.Event()
    done.record(consumer)
    main.wait_event(done)
    return y
''',
    "score_mods": '''
def score_scale(score, b, h, q, kv):
    return score * 0.5


def score_causal(score, b, h, q, kv):
    return torch.where(q >= kv, score, -float("inf"))


def score_relative(score, b, h, q, kv):
    return score + (q - kv)
''',
}


def flex_attention_check(q, k, v):
    """Propagation's stand-in for flex_attention (an eager call compiles it): the same output
    spec, and its CPU restriction (no backward) applied everywhere, since propagation runs on
    meta tensors that do not say which device the case targets."""
    if q.requires_grad or k.requires_grad or v.requires_grad:
        raise RuntimeError("covfuzz: flex_attention cases are forward-only")
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def _namespace() -> tuple[dict, dict[str, str]]:
    """The objects the helper sources define, and why any helper is unavailable here."""
    namespace: dict = {"torch": torch, "flex_attention_check": flex_attention_check}
    exec(IMPORTS, namespace)  # noqa: S102 - this module's own constant text
    missing: dict[str, str] = {}
    for name, source in SOURCES.items():
        trial = dict(namespace)
        try:
            exec(source, trial)  # noqa: S102 - this module's own constant text
        except Exception as exc:  # e.g. a decorator this torch does not have
            missing[name] = f"{type(exc).__name__}: {exc}"
            continue
        namespace.update(trial)
    return namespace, missing


NAMESPACE, UNAVAILABLE = _namespace()


def source_for(names) -> str:
    """Program text defining the helpers `names` (and the imports they need), in a fixed order."""
    names = set(names)
    wanted = [name for name in SOURCES if name in names]
    if not wanted:
        return ""
    return IMPORTS + "".join("\n\n" + SOURCES[name].strip("\n") + "\n"
                             for name in wanted if SOURCES[name])
