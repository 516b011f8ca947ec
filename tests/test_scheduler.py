"""Scheduler energy and the mutator bandit; failure signatures."""

import random

import numpy as np

from covfuzz.generator import generate
from covfuzz.scheduler import Scheduler, SeedInfo
from covfuzz.triage.signature import normalize_message, signature, signature_id, torch_frames


def _seed(name, feats, nodes=3, exec_time=1.0):
    return SeedInfo(name, np.array(sorted(feats), dtype=np.uint64), nodes, exec_time)


def test_rare_features_get_more_energy():
    sched = Scheduler(random.Random(0))
    sched.add_seed(_seed("common", range(0, 100)))
    sched.add_seed(_seed("rare", list(range(0, 90)) + [10_000, 10_001]))
    for _ in range(50):
        sched.record_hits(np.arange(0, 100, dtype=np.uint64))
    sched.record_hits(np.array([10_000, 10_001], dtype=np.uint64))
    weights = dict(zip(["common", "rare"], sched.energies()))
    assert weights["rare"] > 5 * weights["common"]
    picks = [sched.pick()[0].seed_id for _ in range(300)]
    assert picks.count("rare") > picks.count("common")


def test_seeds_keep_only_their_rarest_features():
    features = np.arange(2000, dtype=np.uint64)
    hits = np.concatenate([np.full(1990, 100), np.ones(10)])
    kept = Scheduler.rare_subset(features, hits, first_found=np.array([5], dtype=np.uint64), limit=10)
    assert set(kept.tolist()) == set(range(1990, 2000)) | {5}


def test_favored_is_the_cheapest_owner_of_a_feature():
    sched = Scheduler(random.Random(0))
    sched.add_seed(_seed("big", [1, 2, 3], nodes=20))
    sched.add_seed(_seed("small", [1, 2], nodes=2))
    sched.add_seed(_seed("dup", [1, 2], nodes=5))
    sched.energies()
    assert sched.is_favored("small") and sched.is_favored("big")  # big alone owns feature 3
    assert not sched.is_favored("dup")


def test_bandit_learns_which_mutator_pays():
    sched = Scheduler(random.Random(1))
    names = ["good", "bad"]
    for _ in range(200):
        chosen = sched.choose_mutators(names, 1)
        sched.reward(chosen, chosen[0] == "good" and sched.rng.random() < 0.5)
    table = sched.mutator_table()
    assert table["good"]["tries"] > 2 * table["bad"]["tries"]
    restored = Scheduler(random.Random(2))
    restored.load_state(sched.state())
    assert restored.mutator_table() == table


def test_signature_normalizes_numbers_names_and_paths():
    a = normalize_message("AssertionError: buf12 has size 17 at 0xdeadbeef in /tmp/x/cpp_fused_add_3.cpp")
    b = normalize_message("AssertionError: buf3 has size 4 at 0x1234 in /var/y/cpp_fused_mul_0.cpp")
    assert a == b
    frames_a = ["_inductor/lowering.py:100:make_pointwise", "_inductor/ir.py:20:create"]
    frames_b = ["_inductor/lowering.py:101:make_pointwise", "_inductor/ir.py:22:create"]
    assert torch_frames(frames_a) == torch_frames(frames_b) == ["_inductor/ir.py:create",
                                                                "_inductor/lowering.py:make_pointwise"]
    s1 = signature("compile_crash", "LoweringException", "size 17 bad", frames_a)
    s2 = signature("compile_crash", "LoweringException", "size 4 bad", frames_b)
    s3 = signature("compile_crash", "LoweringException", "size 4 bad", ["_dynamo/x.py:1:other"])
    assert s1 == s2 != s3
    assert signature_id(s1) == signature_id(s2) and len(signature_id(s1)) == 12


def test_mismatch_signature_uses_the_op_pattern():
    case = generate(4)
    sig = signature("mismatch", case=case, output_index=0)
    node = case.graph.node_of(case.graph.outputs[0])
    assert sig.startswith("mismatch|") and node.op in sig


def test_rate_bandit_prefers_the_arm_with_most_new_features_per_second():
    from covfuzz.scheduler import RateBandit
    rng = random.Random(4)
    bandit = RateBandit(rng, explore=0.1)
    per_second = {"generate": 2.0, "settings": 10.0, "mutate": 0.2}
    tries = {name: 0 for name in per_second}
    for _ in range(600):
        arm = bandit.choose(sorted(per_second))
        tries[arm] += 1
        seconds = rng.uniform(1.0, 3.0)
        bandit.reward(arm, rng.expovariate(1.0 / (per_second[arm] * seconds)), seconds)
    assert tries["settings"] > 3 * tries["generate"] > 0
    assert min(tries.values()) >= 600 * 0.1 / 3 * 0.5  # the exploration share reaches every arm
    restored = RateBandit(random.Random(0))
    restored.load(bandit.table())
    assert restored.table() == bandit.table()
    restored.load({"bad": {"gain": "x"}, "worse": 3, "ok": {"gain": 1, "cost": 2, "tries": 1}})
    assert "ok" in restored.table() and "bad" not in restored.table()


def test_rate_bandit_follows_a_falling_yield():
    """Yields fall as a campaign saturates; decayed statistics let another arm take over."""
    from covfuzz.scheduler import RateBandit
    rng = random.Random(8)
    bandit = RateBandit(rng, explore=0.1, decay=0.98)
    late = {"a": 0, "b": 0}
    for step in range(800):
        arm = bandit.choose(["a", "b"])
        rate = (50.0 if step < 300 else 0.5) if arm == "a" else 5.0
        bandit.reward(arm, rate * 2.0, 2.0)
        if step >= 600:
            late[arm] += 1
    assert late["b"] > 3 * late["a"]


def test_incremental_favored_matches_the_definition():
    """Seeds added one by one and in bulk: the favored set is exactly "cheapest owner of some
    feature" (ties to the older seed), recomputed from scratch here."""
    rng = np.random.default_rng(3)
    infos = [SeedInfo(f"s{i}", np.unique(rng.integers(0, 400, size=int(rng.integers(1, 30)),
                                                      dtype=np.uint64)),
                      int(rng.integers(1, 20)), float(rng.random())) for i in range(300)]
    one_by_one, bulk = Scheduler(random.Random(0)), Scheduler(random.Random(0))
    for info in infos[:150]:
        one_by_one.add_seed(info)
    one_by_one.add_seeds(infos[150:])
    bulk.add_seeds(infos)
    best = {}
    for i, info in enumerate(infos):
        cost = info.nodes * 10.0 + info.exec_time
        for f in info.features.tolist():
            if f not in best or cost < best[f][0]:
                best[f] = (cost, i)
    expected = {i for _, i in best.values()}
    for sched in (one_by_one, bulk):
        sched.energies()
        assert sched._favored == expected
        assert np.all(np.diff(sched.tracked.astype(np.float64)) > 0)  # sorted, unique
