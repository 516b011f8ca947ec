"""The validity check: propagate shapes and dtypes through torch itself.

Each node's expression (the text codegen emits, or the op's cheaper `check_template` with the
same output spec) is evaluated on meta tensors, which run
torch's own shape/dtype/stride rules without allocating or computing: a small graph is checked
in about a millisecond. The result fills in every node's output spec. Graphs with data-dependent
ops (or ops without meta kernels) are propagated on small real CPU tensors instead, built by the
same materializer the program uses.

A case from outside may name large tensors, so propagation is bounded per case: the bytes of
real tensors it materializes (`MAX_REAL_BYTES`, counted once per storage) and its wall-clock
time (`DEADLINE_S`, checked between nodes). Past either it raises InvalidGraph with a one-line
message; generated cases stay far below both (tests/test_generator.py compares).

Real tensors hold the case's own inputs, edge values included, and a few CPU kernels do not
survive them (`torch.div(INT64_MIN, -1, rounding_mode="trunc")` dies of SIGFPE). Outside a
worker, the real-tensor check therefore runs in a sandbox child (covfuzz/sandbox.py): a kernel
that kills it makes the candidate invalid, not the campaign dead. Workers and the sandbox itself
run it inline (`run_real_checks_inline`): a crash there is already contained.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings

import torch

from covfuzz import ops, serialize
from covfuzz.ops import helpers
from covfuzz.codegen import build_input, index_bound, no_grad, node_expr, value_name
from covfuzz.errors import InvalidGraph
from covfuzz.ir import (DTYPES, MAX_NUMEL, Graph, ScalarSpec, TensorSpec, TestCase,
                        storage_numel)

MAX_REAL_BYTES = 128 << 20  # real tensors one propagation may materialize (generated: < 1 MiB)
DEADLINE_S = 10.0           # one propagation's wall-clock time (generated: < 1 s)

_CODE_CACHE: dict[str, object] = {}
_CODE_CACHE_LIMIT = 20000


def _compiled(expr: str):
    code = _CODE_CACHE.get(expr)
    if code is None:
        if len(_CODE_CACHE) > _CODE_CACHE_LIMIT:
            _CODE_CACHE.clear()
        code = compile(expr, "<covfuzz node>", "eval")
        _CODE_CACHE[expr] = code
    return code


def _spec_of(value, device: str, where: str):
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        if dtype not in DTYPES:
            raise InvalidGraph(f"{where}: produces unsupported dtype {dtype}")
        shape, stride = tuple(value.shape), tuple(value.stride())
        if storage_numel(shape, stride, 0) > MAX_NUMEL or value.numel() > MAX_NUMEL:
            raise InvalidGraph(f"{where}: output of shape {list(shape)} exceeds {MAX_NUMEL} elements")
        return TensorSpec(shape, stride, dtype, int(value.storage_offset()), device,
                          bool(value.requires_grad))
    if isinstance(value, bool):
        return ScalarSpec("bool")
    if isinstance(value, int):
        return ScalarSpec("int")
    if isinstance(value, float):
        return ScalarSpec("float")
    raise InvalidGraph(f"{where}: produces a {type(value).__name__}, not a tensor or scalar")


def _meta_input(spec: TensorSpec):
    dtype = getattr(torch, spec.dtype)
    n = storage_numel(spec.shape, spec.stride, spec.offset)
    t = torch.empty(n, dtype=dtype, device="meta").as_strided(spec.shape, spec.stride, spec.offset)
    if spec.requires_grad:
        t.requires_grad_(True)
    return t


def needs_real_tensors(graph: Graph) -> bool:
    return any(ops.get_op(n.op).data_dependent or ops.get_op(n.op).real_only for n in graph.nodes)


def propagate(case: TestCase, real: bool | None = None) -> TestCase:
    """`case` with every node's `out` spec filled in; raises InvalidGraph when torch rejects it."""
    graph = case.graph
    if real is None:
        real = needs_real_tensors(graph)
    for j, node in enumerate(graph.nodes):
        # Meta tensors carry no device, so a device-bound construct (CUDA streams) in a CPU
        # case would otherwise pass; eager would refuse it and the case would run as `invalid`.
        if not ops.allowed_on(ops.get_op(node.op), case.settings.device):
            raise InvalidGraph(f"node v{len(graph.inputs) + j} ({node.op}) is not available "
                               f"on device {case.settings.device}", j)
    if case.settings.fullgraph:
        for j, node in enumerate(graph.nodes):
            if ops.get_op(node.op).graph_break:
                raise InvalidGraph(f"node v{len(graph.inputs) + j} ({node.op}) breaks the graph, "
                                   "which fullgraph=True forbids", j)
    try:
        return _propagate_real(case) if real else _propagate(case, False)
    except InvalidGraph as exc:
        if not real and getattr(exc, "no_meta", False):
            return _propagate_real(case)
        raise


# ----------------------------------------------------------------------------- real tensors

INLINE_ENV = "COVFUZZ_REAL_CHECKS_INLINE"  # "1": this process runs real-tensor checks itself
SANDBOX_MARGIN_S = 30.0  # beyond DEADLINE_S before a silent sandbox counts as hung
_sandbox = None


def run_real_checks_inline() -> None:
    """This process (a worker, the sandbox child) runs real-tensor checks itself, as do the
    processes it starts."""
    os.environ[INLINE_ENV] = "1"


def _propagate_real(case: TestCase) -> TestCase:
    global _sandbox
    if os.environ.get(INLINE_ENV) == "1":
        return _propagate(case, True)
    from covfuzz.sandbox import Sandbox, SandboxCrashed
    if _sandbox is None:
        _sandbox = Sandbox(_serve, "real-tensor check sandbox")
    try:
        reply = _sandbox.call(serialize.encode(case), DEADLINE_S + SANDBOX_MARGIN_S)
    except SandboxCrashed as exc:
        raise InvalidGraph(f"{exc} (a kernel that cannot survive these "
                           "inputs: the case runs only in a worker)") from None
    if reply[:1] == b"o":  # keep the caller's case; take only the output specs
        checked = serialize.decode(reply[1:]).graph.nodes
        nodes = tuple(dataclasses.replace(n, out=c.out) for n, c in zip(case.graph.nodes, checked))
        return dataclasses.replace(case, graph=dataclasses.replace(case.graph, nodes=nodes))
    err = json.loads(reply[1:])
    exc = InvalidGraph(str(err["message"]), err.get("node"))
    exc.no_meta = bool(err.get("no_meta"))
    raise exc


def _serve(conn) -> None:
    """The sandbox child's loop: an encoded case in, b"o" + the propagated case or b"e" + the
    error as JSON out."""
    run_real_checks_inline()
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            reply = b"o" + serialize.encode(_propagate(serialize.decode(data), True))
        except InvalidGraph as exc:
            reply = b"e" + json.dumps({"message": str(exc), "node": exc.node,
                                       "no_meta": bool(getattr(exc, "no_meta", False))}).encode()
        except Exception as exc:  # noqa: BLE001 - whatever torch raised: the case is invalid
            reply = b"e" + json.dumps({"message": f"{type(exc).__name__}: {_first_line(exc)}",
                                       "node": None}).encode()
        conn.send_bytes(reply)


def eval_node(graph: Graph, j: int, env: dict, device: str, writes: "WriteRules | None" = None):
    """Node j of `graph` evaluated on the values in `env` (named as codegen names them): its
    value and output spec. InvalidGraph, with `no_meta` set when a meta kernel is missing.
    `writes`: the in-place write rules of this graph so far (checked, then updated)."""
    node = graph.nodes[j]
    where = f"node v{len(graph.inputs) + j} ({node.op})"
    args = [env.get(value_name(graph, a)) for a in node.args]
    if writes is not None:
        problem = writes.check(node, args)
        if problem:
            raise InvalidGraph(f"{where}: {problem}", j)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = eval(_compiled(node_expr(graph, node, check=True)), env)  # noqa: S307 - catalog text
    except NotImplementedError as exc:
        err = InvalidGraph(f"{where}: {type(exc).__name__}: {_first_line(exc)}", j)
        err.no_meta = True
        raise err from None
    except Exception as exc:  # torch rejects the call: that is the verdict we want
        raise InvalidGraph(f"{where}: {type(exc).__name__}: {_first_line(exc)}", j) from None
    spec = _spec_of(value, device, where)
    op = ops.get_op(node.op)
    if op.out_kind in ("int", "float", "bool") and (
            not isinstance(spec, ScalarSpec) or spec.kind != op.out_kind):
        raise InvalidGraph(f"{where}: expected a Python {op.out_kind}", j)
    if writes is not None:
        writes.record(node, args, value)
    return value, spec


def may_overlap(shape, stride) -> bool:
    """Whether two indices of a tensor of this geometry may address the same element (an
    expanded, stride-0 dim; any layout we cannot prove free of overlap)."""
    if any(s == 0 for s in shape):
        return False
    extent = 0  # the largest offset the dims taken so far reach
    for st, size in sorted((abs(st), size) for size, st in zip(shape, stride) if size > 1):
        if st <= extent:
            return True
        extent += (size - 1) * st
    return False


def _storage_key(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage()._cdata
    except Exception:  # noqa: BLE001 - a tensor without a plain storage: itself
        return id(t)


class WriteRules:
    """Which in-place writes a test case may make: only into tensors that own their elements.

    - not into a tensor whose elements overlap (an expanded, stride-0 input or view): PyTorch
      documents in-place writes there as unsupported (`fill_`, `zero_`, `masked_fill_` do not
      even refuse them in eager);
    - not into a storage that an op aliased although its schema promises a new tensor: eager
      `dropout` in eval (or p=0), `contiguous()` of a contiguous tensor, `.to()` of the same
      dtype return their input itself, so a write through either name shows in the other in
      eager but not in compiled code, which follows the schema. Found by evaluation (the op
      returned one of its arguments), not by a list of ops.
    Autograd's own rules (no in-place write on a leaf that requires grad, nor on a value saved
    for backward) are torch's: eager raises on them, on meta tensors too, and propagation runs
    the backward whenever the harness's eager run would have grad enabled.
    """

    def __init__(self):
        self.unpromised: set[int] = set()  # storages aliased without the schema saying so

    def check(self, node, args: list) -> str | None:
        if ops.get_op(node.op).category != "inplace" or not args:
            return None
        target = args[0]
        if not isinstance(target, torch.Tensor):
            return None
        if may_overlap(tuple(target.shape), tuple(target.stride())):
            return ("writes in place into a tensor whose elements overlap (expanded, stride 0): "
                    "unsupported in PyTorch")
        if _storage_key(target) in self.unpromised:
            return ("writes in place into a tensor that an op aliased although its schema "
                    "promises a new tensor (eager returned its input itself)")
        return None

    def record(self, node, args: list, value) -> None:
        if ops.get_op(node.op).category == "inplace" or not isinstance(value, torch.Tensor):
            return  # an in-place op returns its target by contract
        if any(value is a for a in args):
            self.unpromised.add(_storage_key(value))


def meta_value(spec, value=None):
    """What stands for a value in a meta-tensor evaluation: a meta tensor of `spec`, or the
    scalar itself."""
    return _meta_input(spec) if isinstance(spec, TensorSpec) else value


class _Budget:
    """The bounds of one propagation: real-tensor bytes (each storage counted once) and time."""

    def __init__(self):
        self.deadline = time.monotonic() + DEADLINE_S
        self.storages: set[int] = set()
        self.bytes = 0

    def add(self, value, where: str) -> None:
        if isinstance(value, torch.Tensor) and value.device.type != "meta":
            storage = value.untyped_storage()
            if storage.data_ptr() not in self.storages:
                self.storages.add(storage.data_ptr())
                self.bytes += storage.nbytes()
                if self.bytes > MAX_REAL_BYTES:
                    raise InvalidGraph(f"{where}: real tensors of this case exceed "
                                       f"{MAX_REAL_BYTES >> 20} MiB (propagation bound)")

    def check_time(self, where: str) -> None:
        if time.monotonic() > self.deadline:
            raise InvalidGraph(f"{where}: propagation took more than {DEADLINE_S:g} s "
                               "(propagation bound)")


def _propagate(case: TestCase, real: bool) -> TestCase:
    graph = case.graph
    device = case.settings.device
    budget = _Budget()
    env: dict[str, object] = dict(helpers.NAMESPACE)
    pending_index: dict[int, TensorSpec] = {}
    for i, inp in enumerate(graph.inputs):
        spec = inp.spec
        if isinstance(spec, TensorSpec) and spec.requires_grad and spec.dtype not in (
                "float16", "bfloat16", "float32", "float64"):
            raise InvalidGraph(f"input x{i}: only floating-point inputs can require grad")
        if not isinstance(spec, TensorSpec):
            env[value_name(graph, i)] = inp.value
        elif not real:
            env[value_name(graph, i)] = _meta_input(spec)
        elif inp.fill == "index":
            pending_index[i] = spec  # its bound depends on shapes computed below
        else:
            env[value_name(graph, i)] = _real_input(case, i, 1)
            budget.add(env[value_name(graph, i)], f"input x{i}")

    new_nodes = list(graph.nodes)
    base = len(graph.inputs)
    writes = WriteRules()
    for j, node in enumerate(graph.nodes):
        where = f"node v{base + j} ({node.op})"
        budget.check_time(where)
        for a in node.args:
            if a in pending_index:
                partial = dataclasses.replace(graph, nodes=tuple(new_nodes))
                env[value_name(graph, a)] = _real_input(case, a, index_bound(partial, a))
                budget.add(env[value_name(graph, a)], f"input x{a}")
                del pending_index[a]
        value, spec = eval_node(graph, j, env, device, writes)
        budget.add(value, where)
        env[value_name(graph, base + j)] = value
        new_nodes[j] = dataclasses.replace(node, out=spec)

    for v in graph.outputs:
        if v >= graph.num_values:
            raise InvalidGraph(f"output {v} names no value")
    if case.settings.backward or (not no_grad(case) and any(
            isinstance(i.spec, TensorSpec) and i.spec.requires_grad for i in graph.inputs)):
        # Also without backward when an input requires grad: the harness runs with grad
        # enabled, and AOTAutograd traces the backward when it compiles.
        _check_backward([env[value_name(graph, v)] for v in graph.outputs])
    return dataclasses.replace(case, graph=dataclasses.replace(graph, nodes=tuple(new_nodes)))


def backward_loss(outputs):
    """The scalar the harness differentiates: the sum of every float output that needs grad."""
    terms = [o.double().sum() for o in outputs
             if isinstance(o, torch.Tensor) and o.requires_grad and o.is_floating_point()]
    return sum(terms) if terms else None


def _check_backward(outputs) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loss = backward_loss(outputs)  # can raise too (e.g. a view modified in place)
            if loss is None:
                return
            loss.backward()
    except Exception as exc:
        raise InvalidGraph(f"backward: {type(exc).__name__}: {_first_line(exc)}") from None


def _real_input(case: TestCase, index: int, high: int):
    """Input `index` as the program builds it on the CPU (literal values included)."""
    return build_input(case, index, "cpu", high)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def is_valid(case: TestCase) -> bool:
    try:
        propagate(case)
        return True
    except InvalidGraph:
        return False
