"""What a test case is made of, and which of those traits have paid in new coverage.

Feedback mode's generator does not take the first random graph: it draws a few (a graph costs
milliseconds to draw and check, seconds to compile) and executes the one whose traits promise
the most new coverage. A trait is an input-side property: an op, a producer -> consumer op
pair, an op on a given dtype, a kind of input layout, an input held as a model parameter (and
an op reading one), a compile setting or config flag (each pass of a pass list on its own).

`TraitYield` learns, from every execution's new-feature count (capped at GAIN_CAP, as the
strategy bandits cap it) and time, two optimistic means
per trait: the gain of the cases that had it, (features found by them + g) / (cases + 1), and
their time, (seconds + t) / (cases + 1), where g and t are the mean gain and time of all
executions so far. An unseen trait is worth one average execution; a trait that stops paying
fades as 1/n. A candidate's score is its expected new features per second, the objective the
strategy bandits use too: the sum of its traits' gains over its expected time, the time of its
slowest trait (`expected_seconds`: a graph costs about what its most expensive op or setting
costs; shrunk toward the mean time by TIME_PRIOR_CASES, so one slow case does not mark a trait).
The mean of its traits' times, used before, let one costly op or setting (backward, a template
autotune) hide among a graph's many cheap traits: in a 2-hour campaign feedback's fresh graphs
took 3.5-4.1 s per execution against the baseline's 2.6 s, so it compiled 1,400 graphs to the
baseline's 2,300 and found no more root causes.
It favors larger graphs (more traits), and they do find more per execution. Scaling the time by
the node count as well made feedback mode keep graphs of 4.7 nodes on average (the baseline's
6.1): it ran 44% more cases than the baseline and covered 6% fewer lines after 7 minutes, so
size is left out.
benchmarks/trait_selection.py replays a baseline campaign to compare values of K.
The no-feedback baseline never uses this.

The same table steers which ops a fresh graph is drawn from (issue 18: ~700 ops): `op_yield`
gives the generator each op's rate (its `op:` trait's optimistic features per second over the
mean execution's) and how many executions had it, so ops that paid are drawn more, ops that
stopped paying fade, and ops never executed lead new graphs first (covfuzz/generator.py).
"""

from __future__ import annotations

from covfuzz.codegen import no_grad
from covfuzz.ir import TensorSpec, TestCase, contiguous_stride
from covfuzz.scheduler import GAIN_CAP

MAX_TRAITS = 200_000  # the table is saved with the campaign state; keep it bounded
TIME_PRIOR_CASES = 3  # a trait's time is shrunk toward the mean as if it had 3 average cases


def traits(case: TestCase) -> set[str]:
    graph = case.graph
    result: set[str] = set()
    for inp in graph.inputs:
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
            if inp.param:
                result.add("input:param")
    if no_grad(case):  # a model run as in inference, where freezing applies
        result.add("input:param-inference")
    for node in graph.nodes:
        result.add(f"op:{node.op}")
        if any(arg < len(graph.inputs) and graph.inputs[arg].param for arg in node.args):
            result.add(f"param>{node.op}")
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
    for key, value in s.inductor_config.items():
        if isinstance(value, tuple):  # a pass list: each pass is its own trait
            result.update(f"inductor:{key}+{name}" for name in value)
        else:
            result.add(f"inductor:{key}={value!r}")
    result.update(f"dynamo:{key}={value!r}" for key, value in s.dynamo_config.items())
    return result


class TraitYield:
    """Per-trait new-feature yield and time; state is plain data (saved in the campaign info)."""

    def __init__(self, state: dict | None = None):
        state = state or {}
        # trait -> [features found, cases, seconds]
        self.table: dict[str, list[float]] = {
            k: (list(v) + [0.0, 0, 0.0])[:3] for k, v in state.get("table", {}).items()}
        self.total_gain = float(state.get("total_gain", 0.0))
        self.total_seconds = float(state.get("total_seconds", 0.0))
        self.executions = int(state.get("executions", 0))
        self.op_traits = {k for k in self.table if k.startswith("op:")}

    def state(self) -> dict:
        return {"table": self.table, "total_gain": self.total_gain,
                "total_seconds": self.total_seconds, "executions": self.executions}

    @property
    def mean_gain(self) -> float:
        return self.total_gain / self.executions if self.executions else 1.0

    @property
    def mean_seconds(self) -> float:
        return self.total_seconds / self.executions if self.executions else 1.0

    def record(self, case: TestCase, gain: float, seconds: float = 0.0) -> None:
        gain = min(gain, GAIN_CAP)
        self.total_gain += gain
        self.total_seconds += seconds
        self.executions += 1
        for trait in traits(case):
            row = self.table.get(trait)
            if row is None:
                if len(self.table) >= MAX_TRAITS:
                    continue
                row = self.table[trait] = [0.0, 0, 0.0]
                if trait.startswith("op:"):
                    self.op_traits.add(trait)
            row[0] += gain
            row[1] += 1
            row[2] += seconds

    def op_yield(self) -> dict[str, tuple[float, int]]:
        """Per op with an `op:` trait: (its optimistic new features per second relative to the
        mean execution's, executions that had it): GenOptions.op_yield. An op missing here has
        never been executed (the generator treats it as (1.0, 0))."""
        prior_gain = max(self.mean_gain, 1e-6)
        prior_seconds = max(self.mean_seconds, 1e-3)
        mean_rate = prior_gain / prior_seconds
        out = {}
        for trait in self.op_traits:
            got, count, spent = self.table[trait]
            out[trait[3:]] = ((got + prior_gain) / (spent + prior_seconds) / mean_rate, int(count))
        return out

    def score(self, case: TestCase) -> float:
        """Expected new features per second of executing `case`: its traits' optimistic gains
        over `expected_seconds`."""
        prior_gain = max(self.mean_gain, 1e-6)
        found = traits(case)
        gain = 0.0
        for trait in found:
            got, count, _ = self.table.get(trait, (0.0, 0, 0.0))
            gain += (got + prior_gain) / (count + 1)
        return gain / self.expected_seconds(found)

    def expected_seconds(self, found: set[str]) -> float:
        """The expected time of a case with traits `found`: that of its slowest trait, each
        trait's mean time shrunk toward the mean execution's by TIME_PRIOR_CASES."""
        prior = max(self.mean_seconds, 1e-3)
        slowest = 0.0
        for trait in found:
            _, count, spent = self.table.get(trait, (0.0, 0, 0.0))
            slowest = max(slowest, (spent + TIME_PRIOR_CASES * prior) / (count + TIME_PRIOR_CASES))
        return slowest or prior
