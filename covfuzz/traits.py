"""What a test case is made of, and which of those traits have paid in new coverage.

Feedback mode's generator does not take the first random graph: it draws a few (a graph costs
milliseconds to draw and check, seconds to compile) and executes the one whose traits promise
the most new coverage. A trait is an input-side property: an op, a producer -> consumer op
pair, an op on a given dtype, a kind of input layout, a compile setting or config flag.

`TraitYield` learns, from every execution's new-feature count, the optimistic mean gain of the
cases that had each trait: (features found by cases with it + g) / (cases with it + 1), where
g is the mean gain of all executions so far. An unseen trait is worth one average execution;
a trait seen often without new coverage fades as 1/n. A candidate's score is the sum over its
traits. The no-feedback baseline never uses this.
"""

from __future__ import annotations

from covfuzz.ir import TensorSpec, TestCase, contiguous_stride

MAX_TRAITS = 200_000  # the table is saved with the campaign state; keep it bounded


def traits(case: TestCase) -> set[str]:
    graph = case.graph
    base = len(graph.inputs)
    result: set[str] = set()
    for i, inp in enumerate(graph.inputs):
        spec = inp.spec
        if isinstance(spec, TensorSpec):
            if 0 in spec.stride and spec.numel > 1:
                result.add("layout:expanded")
            elif spec.stride != contiguous_stride(spec.shape):
                result.add("layout:strided")
            if spec.offset:
                result.add("layout:offset")
            if 0 in spec.shape:
                result.add("layout:empty")
            result.add(f"fill:{inp.fill}")
    for node in graph.nodes:
        result.add(f"op:{node.op}")
        first = graph.spec_of(node.args[0]) if node.args else None
        if isinstance(first, TensorSpec):
            result.add(f"dtype:{node.op}:{first.dtype}")
        for arg in node.args:
            producer = graph.node_of(arg)
            result.add(f"edge:{producer.op if producer else 'input'}>{node.op}")
    s = case.settings
    result.add(f"set:dynamic={s.dynamic}")
    result.update(f"set:{name}" for name, on in (
        ("backward", s.backward), ("fullgraph", s.fullgraph),
        ("mark_dynamic", bool(s.mark_dynamic))) if on)
    if s.mode:
        result.add(f"set:mode={s.mode}")
    result.update(f"inductor:{key}={value!r}" for key, value in s.inductor_config.items())
    result.update(f"dynamo:{key}={value!r}" for key, value in s.dynamo_config.items())
    return result


class TraitYield:
    """Per-trait new-feature yield; state is a plain dict (saved in the campaign info)."""

    def __init__(self, state: dict | None = None):
        state = state or {}
        self.table: dict[str, list[float]] = {k: list(v) for k, v in state.get("table", {}).items()}
        self.total_gain = float(state.get("total_gain", 0.0))
        self.executions = int(state.get("executions", 0))

    def state(self) -> dict:
        return {"table": self.table, "total_gain": self.total_gain, "executions": self.executions}

    @property
    def mean_gain(self) -> float:
        return self.total_gain / self.executions if self.executions else 1.0

    def record(self, case: TestCase, gain: float) -> None:
        self.total_gain += gain
        self.executions += 1
        for trait in traits(case):
            row = self.table.get(trait)
            if row is None:
                if len(self.table) >= MAX_TRAITS:
                    continue
                row = self.table[trait] = [0.0, 0]
            row[0] += gain
            row[1] += 1

    def score(self, case: TestCase) -> float:
        prior = max(self.mean_gain, 1e-6)
        total = 0.0
        for trait in traits(case):
            gain, count = self.table.get(trait, (0.0, 0))
            total += (gain + prior) / (count + 1)
        return total

    def best(self, cases: list[TestCase]) -> TestCase:
        """The candidate with the highest score (the first one on ties)."""
        return max(cases, key=self.score)
