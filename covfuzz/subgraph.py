"""Cutting a test case down to part of its graph.

`sub_case(case, outputs)` keeps only what the chosen values need: the case whose outputs are
`outputs`, with dead nodes and unused inputs removed and value ids renumbered. Localization
builds prefixes with it (the graph up to one node, that node as the output) and reduction builds
its candidates with it.
"""

from __future__ import annotations

import dataclasses

from covfuzz.ir import Graph, Input, Node, TensorSpec, TestCase


def ancestors(graph: Graph, value: int) -> list[int]:
    """The node values `value` depends on, itself included, in graph (topological) order."""
    base = len(graph.inputs)
    need = {value}
    for j in range(len(graph.nodes) - 1, -1, -1):
        if base + j in need:
            need.update(graph.nodes[j].args)
    return sorted(v for v in need if v >= base)


def rebuild(case: TestCase, inputs: list[Input], nodes: list[Node], outputs: list[int],
            settings=None, keep_inputs: bool = False) -> TestCase:
    """The case built from (inputs, nodes, outputs) with positional ids, dead nodes removed
    (and unused inputs, unless `keep_inputs`), ids renumbered, mark_dynamic remapped; output
    specs cleared (propagation fills them again)."""
    inputs, nodes, outputs = list(inputs), list(nodes), list(dict.fromkeys(outputs))
    base = len(inputs)
    live = set(outputs)
    for j in range(len(nodes) - 1, -1, -1):
        if base + j in live:
            live.update(nodes[j].args)
    keep_in = [i for i in range(base) if keep_inputs or i in live]
    keep_nodes = [j for j in range(len(nodes)) if base + j in live]
    ids = {old: new for new, old in enumerate(keep_in)}
    for new, j in enumerate(keep_nodes):
        ids[base + j] = len(keep_in) + new
    new_nodes = tuple(dataclasses.replace(nodes[j], args=tuple(ids[a] for a in nodes[j].args),
                                          out=None)
                      for j in keep_nodes)
    settings = settings or case.settings
    marks = []
    for i, d in settings.mark_dynamic:
        if i in ids:
            spec = inputs[i].spec
            if isinstance(spec, TensorSpec) and d < spec.rank:
                marks.append((ids[i], d))
    settings = dataclasses.replace(settings, mark_dynamic=tuple(dict.fromkeys(marks)))
    graph = Graph(tuple(inputs[i] for i in keep_in), new_nodes, tuple(ids[o] for o in outputs))
    return TestCase(graph, settings, case.seed)


def sub_case(case: TestCase, outputs: list[int]) -> TestCase:
    """`case` cut down to the nodes `outputs` (node value ids of `case`) need, with those as its
    outputs. Every input stays, unused ones included: seeded input values are drawn per input
    position, so dropping one would change the values of the inputs after it."""
    g = case.graph
    return rebuild(case, g.inputs, g.nodes, outputs, keep_inputs=True)
