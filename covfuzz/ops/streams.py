"""CUDA streams: ops spread over two or three streams, joined with `wait_stream` and events.

Dynamo traces user streams and events into the graph (torch.ops.streams.*: `wait_stream`,
`record_event`, `wait_event`) and Inductor must keep the work on each stream ordered by them:
a missed dependency reads a value before its stream wrote it. The helpers (covfuzz/ops/helpers.py
`on_streams`, `stream_chain`) raise on tensors that are not on a CUDA device, so these ops are
for cases on cuda only (`ops.allowed_on`); propagation checks the output spec through the
`check_template` (the same arithmetic on one stream), since meta tensors have no streams.
"""

from __future__ import annotations

from covfuzz.ops.base import Int, Name, OpDef, T, broadcast_partner
from covfuzz.ops.hops import METHODS, sample_method, sample_two_methods

DEVICE = "cuda"  # the only device these ops run on
FLOAT = T("float", 0, 4)
FLOAT_PARTNER = T("float", 0, 4, shape=broadcast_partner, same_dtype=True)
M = Name(*METHODS)


def _fork_join(rng, first):
    return {**sample_two_methods(rng, first), "n": rng.choice([2, 3])}


OPS: list[OpDef] = [
    # f(a) on a side stream, g(b) on a second side stream (n=3) or the current one (n=2).
    OpDef("cuda.streams", "streams",
          "on_streams({0}, {1}, {n}, lambda t: t.{f}(), lambda t: t.{g}())",
          (FLOAT, FLOAT_PARTNER), {"f": M, "g": M, "n": Int(2, 3)}, _fork_join,
          target="torch.cuda.Stream", helpers=("on_streams",), weight=2.0,
          check_template="{0}.{f}() + {1}.{g}()"),
    # A producer on one stream and its consumer on another, ordered by events.
    OpDef("cuda.stream_chain", "streams", "stream_chain({0}, lambda t: t.{f}())",
          (FLOAT,), {"f": M}, sample_method,
          target="torch.cuda.Event", helpers=("on_streams",), weight=2.0,
          check_template="{0}.{f}() * 2"),
]
