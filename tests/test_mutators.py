"""Mutators: validity, invariants, determinism, mutant validity (candidates run eagerly)."""

import collections
import importlib.util
import os
import random

import pytest

from covfuzz import ops, serialize
from covfuzz.config_space import check_config_override
from covfuzz.generator import GenOptions, generate
from covfuzz.ir import MAX_INPUTS, MAX_NODES, MAX_OUTPUTS, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.propagate import propagate
from mutators import (ACCEPTED, ERROR, LAST_ERRORS, MUTATORS, Applied, MutationContext, mutate,
                      propose, setting_moves, stack)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mutant_validity():
    """benchmarks/mutant_validity.py (its `measure` and `run_eagerly`), loaded by path."""
    spec = importlib.util.spec_from_file_location(
        "mutant_validity", os.path.join(ROOT, "benchmarks", "mutant_validity.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_validity = _mutant_validity()
measure, run_eagerly = _validity.measure, _validity.run_eagerly

EXPECTED = {"insert_node", "delete_node", "replace_op", "retype", "perturb_layout", "perturb_shape",
            "mutate_attrs", "splice", "mutate_settings", "mutate_values", "value_magnitudes",
            "value_specials", "simd_counts"}


@pytest.fixture(scope="module")
def cases():
    return [generate(seed) for seed in range(51)]


@pytest.fixture(scope="module")
def ctx(cases):
    return MutationContext(corpus=cases)


def check_invariants(case: TestCase, repropagate: bool = True) -> None:
    g = case.graph
    assert 1 <= len(g.nodes) <= MAX_NODES and len(g.inputs) <= MAX_INPUTS
    assert 1 <= len(g.outputs) <= MAX_OUTPUTS
    assert all(0 <= o < g.num_values for o in g.outputs)
    base = len(g.inputs)
    for j, node in enumerate(g.nodes):
        op = ops.get_op(node.op)
        assert len(node.args) == len(op.args), node
        assert op.check_attrs(node.attrs) is None, (node, op.check_attrs(node.attrs))
        assert node.out is not None
        for a, vid in enumerate(node.args):
            assert 0 <= vid < base + j, "args name earlier values only"
            is_index_input = vid < base and g.inputs[vid].fill == "index"
            assert is_index_input == (op.args[a].fill == "index"), (node.op, a)
            if op.args[a].fresh:
                assert vid < base
        if op.data_dependent:
            assert case.settings.dynamo_config.get("capture_scalar_outputs")
    used = {a for n in g.nodes for a in n.args} | set(g.outputs)
    assert all(i in used for i in range(base)), "unused inputs are dropped"
    for i, d in case.settings.mark_dynamic:
        spec = g.inputs[i].spec
        assert isinstance(spec, TensorSpec) and 0 <= d < spec.rank
    for section in ("inductor_config", "dynamo_config"):
        for k, v in getattr(case.settings, section).items():
            assert check_config_override(section, k, v) is None
    # serializes, and the round trip is exact
    data = serialize.encode(case)
    assert serialize.encode(serialize.decode(data)) == data
    if repropagate:
        assert serialize.encode(propagate(case)) == data  # valid, and specs are the propagated ones


def test_registry_has_every_mutator():
    assert set(MUTATORS) == EXPECTED
    assert all(callable(fn) for fn in MUTATORS.values())


def test_every_mutator_produces_valid_different_candidates(cases, ctx):
    for name in sorted(MUTATORS):
        rng = random.Random(name)
        produced = 0
        for case in cases:
            cand = propose(name, case, rng, ctx).case
            if cand is None:
                continue
            assert serialize.encode(cand) != serialize.encode(case)
            check_invariants(cand)
            produced += 1
        assert produced >= len(cases) // 3, (name, produced)


def test_invariants_over_stacked_mutations(cases, ctx):
    rng = random.Random(1234)
    pool = list(cases)
    stats = collections.Counter()
    errors_before = len(LAST_ERRORS)
    for i in range(2000):
        case = pool[rng.randrange(len(pool))]
        out = mutate(case, rng, ctx, max_stack=4)
        cand, names = out.case, [a.mutator for a in out.applied]
        if cand is None:
            stats["none"] += 1
            continue
        assert 1 <= len(names) <= 4 and all(n in MUTATORS for n in names)
        assert len(out.tried) >= len(names)
        stats.update(names)
        check_invariants(cand, repropagate=i % 10 == 0)
        if i % 20 == 0:
            why = run_eagerly(cand)
            stats["eager ok" if why is None else "eager failed"] += 1
        if rng.random() < 0.3 and len(cand.graph.nodes) <= 16:  # let mutants grow from mutants
            pool.append(cand)
    assert stats["none"] < 20, stats
    assert stats["eager failed"] <= 0.1 * (stats["eager ok"] + stats["eager failed"]), stats
    assert all(stats[name] > 50 for name in MUTATORS), stats
    assert len(LAST_ERRORS) == errors_before, LAST_ERRORS[-3:]


def test_mutators_are_deterministic(cases, ctx):
    for name in sorted(MUTATORS):
        for case in cases[:10]:
            a = propose(name, case, random.Random(7), ctx).case
            b = propose(name, case, random.Random(7), ctx).case
            assert (a is None) == (b is None)
            if a is not None:
                assert serialize.encode(a) == serialize.encode(b)
    for case in cases[:10]:
        a = mutate(case, random.Random(99), ctx)
        b = mutate(case, random.Random(99), ctx)
        assert a.applied == b.applied and a.tried == b.tried
        assert serialize.encode(a.case) == serialize.encode(b.case)


def test_mutant_validity_at_least_90_percent(cases, ctx):
    table = measure(cases, per_mutator=30, seed=5, ctx=ctx)
    accepted = sum(row[ACCEPTED] for row in table.values())
    ran = sum(row["ran"] for row in table.values())
    assert accepted >= 290
    assert all(row[ERROR] == 0 for row in table.values()), LAST_ERRORS[-3:]
    failures = {n: row["failures"].most_common(3) for n, row in table.items() if row["failures"]}
    assert ran / accepted >= 0.90, failures
    for name, row in table.items():
        assert row["ran"] / max(row[ACCEPTED], 1) >= 0.8, (name, failures.get(name))


# ----------------------------------------------------------------------------- specific behaviour


def _chain_case() -> TestCase:
    spec = TensorSpec.contiguous((4, 8))
    g = Graph((Input(spec), Input(spec, "positive")),
              (Node("torch.add", (0, 1), {"alpha": 1}), Node("torch.sin", (2,), {}),
               Node("torch.mul", (3, 0), {})),
              (4,))
    return propagate(TestCase(g))


def test_delete_node_renumbers_and_drops_unused_inputs():
    case = _chain_case()
    seen = set()
    for seed in range(40):
        cand = propose("delete_node", case, random.Random(seed), MutationContext()).case
        if cand is None:
            continue
        check_invariants(cand)
        seen.add(tuple(n.op for n in cand.graph.nodes))
        if "torch.add" not in [n.op for n in cand.graph.nodes] and \
                not any(i.fill == "positive" for i in cand.graph.inputs):
            seen.add("dropped input")
    assert ("torch.add", "torch.mul") in seen  # sin deleted: mul reads add directly
    assert "dropped input" in seen


def test_perturb_shape_changes_shared_dims_consistently():
    case = _chain_case()
    changed = 0
    for seed in range(30):
        cand = propose("perturb_shape", case, random.Random(seed), MutationContext()).case
        if cand is None:
            continue
        shapes = [i.spec.shape for i in cand.graph.inputs]
        assert all(s == TensorSpec.contiguous(s).shape for s in shapes)
        assert [i.spec.stride for i in cand.graph.inputs] == [TensorSpec.contiguous(s).stride
                                                             for s in shapes]
        changed += 1
    assert changed >= 10


def test_splice_needs_a_donor_and_grafts_its_nodes(cases):
    case = cases[0]
    assert propose("splice", case, random.Random(0), MutationContext()).case is None
    donor = _chain_case()
    grown = 0
    for seed in range(10):
        cand = propose("splice", case, random.Random(seed), MutationContext(corpus=[donor])).case
        if cand is not None:
            check_invariants(cand)
            grown += len(cand.graph.nodes) > len(case.graph.nodes)
    assert grown >= 5


def test_mutate_settings_covers_every_knob(cases, ctx):
    seen = collections.Counter()
    rng = random.Random(3)
    for i in range(300):
        case = cases[i % len(cases)]
        cand = propose("mutate_settings", case, rng, ctx).case
        if cand is None:
            continue
        a, b = case.settings, cand.settings
        for field in ("dynamic", "mode", "fullgraph", "backward", "mark_dynamic", "inductor_config",
                      "dynamo_config"):
            if getattr(a, field) != getattr(b, field):
                seen[field] += 1
        if b.backward:
            assert b.mode in (None, "default", "max-autotune-no-cudagraphs")
    assert set(seen) == {"dynamic", "mode", "fullgraph", "backward", "mark_dynamic", "inductor_config",
                         "dynamo_config"}, seen


def test_mutate_values_keeps_fixed_fills(cases, ctx):
    rng = random.Random(11)
    fills = collections.Counter()
    for i in range(300):
        case = cases[i % len(cases)]
        cand = propose("mutate_values", case, rng, ctx).case
        if cand is None:
            continue
        check_invariants(cand)
        fills.update(inp.fill for inp in cand.graph.inputs)
    for fill in ("zeros", "ones", "edge", "positive", "uniform", "normal"):
        assert fills[fill] > 0, fills


def test_options_restrict_new_ops_and_dtypes(cases):
    opts = GenOptions(op_weights={"torch.sin": 1.0, "torch.add": 1.0, "torch.mul": 1.0},
                      dtypes=("float32", "float64"))
    ctx = MutationContext(options=opts)
    case = _chain_case()
    rng = random.Random(0)
    for _ in range(100):
        cand = mutate(case, rng, ctx, max_stack=2).case
        if cand is None:
            continue
        new_ops = {n.op for n in cand.graph.nodes} - {"torch.add", "torch.sin", "torch.mul"}
        assert new_ops <= {"Tensor.to", "torch.reshape", "Tensor.expand", "torch.clone",
                           "torch.transpose", "Tensor.contiguous", "torch.repeat_interleave",
                           "Tensor.__getitem__.slice", "torch.narrow",
                           "Tensor.contiguous.memory_format"}, new_ops
        dtypes = {i.spec.dtype for i in cand.graph.inputs if isinstance(i.spec, TensorSpec)}
        assert dtypes <= {"float32", "float64"}, dtypes


def test_propose_reports_outcomes(cases, ctx):
    outcomes = collections.Counter(propose("perturb_shape", c, random.Random(i), ctx).outcome
                                   for i, c in enumerate(cases))
    assert outcomes[ACCEPTED] > 0
    assert set(outcomes) <= {"accepted", "rejected", "none", "same"}


def test_mutate_settings_obeys_a_settings_chooser(cases):
    """A campaign picks the setting to change (e.g. by its yield); the move made is reported."""
    moves = setting_moves()
    assert "backward" in moves and "inductor:cpp_wrapper" in moves and "dynamo:specialize_int" in moves
    asked = []

    def choose(options):
        asked.append(options)
        return "inductor:cpp_wrapper"

    chooser_ctx = MutationContext(corpus=list(cases), choose_setting=choose)
    rng = random.Random(5)
    changed = 0
    for case in cases[:20]:
        step = propose("mutate_settings", case, rng, chooser_ctx)
        if step.case is not None:
            assert step.move == "inductor:cpp_wrapper"
            changed += 1
            before = case.settings.inductor_config.get("cpp_wrapper")
            assert step.case.settings.inductor_config.get("cpp_wrapper") != before
            rest = {k: v for k, v in step.case.settings.inductor_config.items() if k != "cpp_wrapper"}
            assert rest == {k: v for k, v in case.settings.inductor_config.items() if k != "cpp_wrapper"}
    assert asked and asked[0] == moves
    assert changed >= 15


def test_stack_reports_mutators_applied_and_settings_moves(cases):
    """`stack` applies its plan in order, skips steps that do not apply, and returns the moves."""
    chooser_ctx = MutationContext(corpus=list(cases), choose_setting=lambda options: "backward")
    plan = ["mutate_settings", "splice", "mutate_values", "mutate_settings"]
    seen_moves = 0
    for i, case in enumerate(cases[:10]):
        out = stack(case, random.Random(i), chooser_ctx, plan)
        assert [name for name, _ in out.tried] == plan
        accepted = [name for name, outcome in out.tried if outcome == ACCEPTED]
        assert [a.mutator for a in out.applied] == accepted
        for a in out.applied:
            assert a.move == ("backward" if a.mutator == "mutate_settings" else None)
        seen_moves += sum(a.move is not None for a in out.applied)
        if out.applied:
            check_invariants(out.case)
            # two backward toggles cancel out; any other applied step leaves its mark
            assert out.case.settings.backward == case.settings.backward ^ (
                sum(a.move == "backward" for a in out.applied) % 2 == 1)
        else:
            assert out.case is None
    assert seen_moves >= 10
    # the step outcome and the move are the same whichever way the step is reached
    # (on a case whose backward toggle is valid: some generated graphs cannot run backward)
    case = next(c for c in cases
                if stack(c, random.Random(3), chooser_ctx, ["mutate_settings"]).applied)
    one = stack(case, random.Random(3), chooser_ctx, ["mutate_settings"])
    step = propose("mutate_settings", case, random.Random(3), chooser_ctx)
    assert one.applied == [Applied("mutate_settings", "backward")] and one.tried == [
        ("mutate_settings", ACCEPTED)]
    assert serialize.encode(one.case) == serialize.encode(step.case)
    # nothing applies: no case, and the proposal is still counted
    none = stack(cases[0], random.Random(0), MutationContext(), ["splice"])
    assert none.case is None and none.applied == [] and none.tried == [("splice", "none")]
