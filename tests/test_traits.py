"""Trait yield: which input-side traits of a case have paid in new coverage."""

from covfuzz.generator import generate
from covfuzz.ir import CompileSettings, Graph, Input, Node, TensorSpec, TestCase
from covfuzz.propagate import propagate
from covfuzz.traits import TraitYield, traits


def _case(op: str, backward=False, inductor=None) -> TestCase:
    x = Input(TensorSpec.contiguous((4, 3)))
    graph = Graph((x,), (Node(op, (0,), {}), Node("torch.cos", (1,), {})), (2,))
    settings = CompileSettings(backward=backward, inductor_config=inductor or {})
    return propagate(TestCase(graph, settings))


def test_traits_name_ops_edges_dtypes_and_settings():
    t = traits(_case("torch.sin", backward=True, inductor={"cpp_wrapper": True}))
    assert {"op:torch.sin", "op:torch.cos", "edge:input>torch.sin", "edge:torch.sin>torch.cos",
            "dtype:torch.sin:float32", "set:backward", "inductor:cpp_wrapper=True"} <= t
    assert "set:backward" not in traits(_case("torch.sin"))


def test_unpaid_traits_fade_and_unseen_ones_win():
    model = TraitYield()
    seen, fresh = _case("torch.sin"), _case("torch.exp")
    for _ in range(20):
        model.record(seen, 0.0, 2.0)
    model.record(_case("torch.tan"), 50.0, 2.0)  # something pays: the mean gain is positive
    assert model.score(fresh) > model.score(seen)
    paying = _case("torch.tan")
    assert model.score(paying) > model.score(seen)


def test_slow_traits_score_lower_per_second():
    """Two traits that pay the same, one in a tenth of the time: the fast one scores higher."""
    model = TraitYield()
    fast, slow = _case("torch.sin"), _case("torch.exp")
    for _ in range(5):
        model.record(fast, 10.0, 1.0)
        model.record(slow, 10.0, 10.0)
    assert model.score(fast) > model.score(slow)


def test_state_round_trips_and_is_plain_data():
    import json
    model = TraitYield()
    for seed in range(5):
        model.record(generate(seed), float(seed), 1.5)
    again = TraitYield(json.loads(json.dumps(model.state())))
    case = generate(99)
    assert again.score(case) == model.score(case)
    assert again.mean_gain == model.mean_gain == 2.0


def test_feedback_generation_scores_each_graph_under_its_changed_setting(tmp_path):
    from covfuzz.campaign import Campaign, CampaignOptions
    campaign = Campaign(str(tmp_path / "c"), CampaignOptions(quiet=True, gen_candidates=6))
    try:
        before = campaign.counters.next_gen_seed
        candidate = campaign.candidates.generated(with_setting=True)
        case, origin = candidate.case, candidate.origin
        assert campaign.counters.next_gen_seed == before + 6  # six graphs drawn
        assert origin["mutators"] == ["generate", "mutate_settings"] and origin["settings"]
        assert case.settings != generate(case.seed).settings or case.graph != generate(case.seed).graph
    finally:
        campaign.close()


def test_one_execution_teaches_at_most_the_gain_cap():
    """The first executions find thousands of features any graph would: capped, they do not make
    the traits of those cases outweigh everything for hundreds of executions."""
    from covfuzz.scheduler import GAIN_CAP
    model = TraitYield()
    first, other = _case("torch.sin"), _case("torch.exp")
    model.record(first, 30_000.0, 2.0)
    assert model.total_gain == GAIN_CAP
    for _ in range(3):
        model.record(other, GAIN_CAP, 2.0)
    assert model.score(other) >= model.score(first) * 0.5


def test_one_slow_trait_makes_the_whole_graph_slow():
    """A graph costs what its slowest op costs: a slow op among traits it shares with fast
    graphs (the second op, its edges, the fill, the settings) is not averaged away."""
    model = TraitYield()
    fast, slow = _case("torch.sin"), _case("torch.exp")
    for _ in range(20):
        model.record(fast, 10.0, 1.0)
        model.record(slow, 10.0, 10.0)
    assert 10.0 > model.expected_seconds(traits(slow)) > 7.0
    assert model.expected_seconds(traits(fast)) < 7.0
    assert model.score(fast) > 1.5 * model.score(slow)
